import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone

from fluid import Classifier
from fluid.api import FluidNotFittedError

from .conftest import TINY


def make(root, **extra):
    return Classifier("fluid", label="category", text=["name", "description"], image="picture",
                      image_root=str(root), **{**TINY, **extra})


@pytest.fixture(scope="module")
def fitted(product_frame, tmp_path_factory):
    frame, root = product_frame
    clf = make(root, path=str(tmp_path_factory.mktemp("run")))
    assert clf.fit(frame, seed=0, progress=False) is clf
    return clf


def test_fit_writes_run_directory(fitted):
    for name in ("config.yaml", "labels.json", "model.safetensors", "metrics.json", "split.csv"):
        assert (fitted.run_dir / name).exists(), name
    assert fitted.classes_ == ["cat-blue", "cat-green", "cat-red"]
    assert set(fitted.metrics_["validation"]) >= {"accuracy", "macro_f1", "per_class"}


def test_predict_is_aligned_with_a_shuffled_index(fitted, product_frame):
    frame, _ = product_frame
    shuffled = frame.sample(frac=1.0, random_state=1)
    labels = fitted.predict(shuffled)
    assert isinstance(labels, pd.Series) and list(labels.index) == list(shuffled.index)
    assert set(labels) <= set(fitted.classes_)
    proba = fitted.predict_proba(shuffled)
    assert list(proba.columns) == fitted.classes_ and list(proba.index) == list(shuffled.index)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert (proba.idxmax(axis=1) == labels).all()


def test_evaluate_keys_and_embed_shape(fitted, product_frame):
    frame, _ = product_frame
    metrics = fitted.evaluate(frame)
    for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1", "top5_accuracy",
                "n_items", "n_skipped", "per_class", "per_language"):
        assert key in metrics
    assert metrics["n_items"] == len(frame)
    assert 0 <= metrics["gate_mean"] <= 1
    embedding = fitted.embed(frame)
    assert embedding.shape[0] == len(frame) and embedding.ndim == 2 and np.isfinite(embedding).all()
    dropped = fitted.evaluate(frame, drop_modality="image")
    assert dropped["drop_modality"] == "image" and dropped["n_items"] == len(frame)


def test_predict_accepts_dicts_and_missing_modalities(fitted):
    single = fitted.predict({"name": "red shirt", "description": "", "picture": None})
    assert len(single) == 1 and single.iloc[0] in fitted.classes_
    several = fitted.predict([{"name": "blue", "picture": None}, {"name": None, "picture": None}])
    assert several.iloc[0] in fitted.classes_ and several.iloc[1] is None  # neither modality: reported, no crash
    top = fitted.predict_top_k([{"name": "green", "picture": None}], k=2)[0]
    assert len(top["labels"]) == 2 and top["missing"] == ["image"] and len(top["gate"]) == 4


def test_save_load_gives_identical_probabilities(fitted, product_frame, tmp_path):
    frame, _ = product_frame
    before = fitted.predict_proba(frame)
    fitted.save(tmp_path / "saved")
    loaded = Classifier.load(tmp_path / "saved")
    pd.testing.assert_frame_equal(before, loaded.predict_proba(frame), check_exact=True)
    again = Classifier.from_pretrained(tmp_path / "saved")
    pd.testing.assert_frame_equal(before, again.predict_proba(frame), check_exact=True)


def test_fit_blends_the_classifiers_on_validation_and_the_blend_survives_save_and_load(fitted, tmp_path):
    import json

    blend = fitted.metrics_["blend"]  # the auto recipe blends the fused and per-modality classifiers
    assert blend["fitted_on"] == "validation" and blend["n_items"] > 0
    assert abs(sum(blend["weights"].values()) - 1.0) < 1e-6
    weights = [blend["weights"][m] for m in ("fused", "image", "text")]
    assert fitted.network.head.blend_weights.tolist() == pytest.approx(weights)
    assert json.loads((fitted.run_dir / "metrics.json").read_text())["blend"]["weights"] == blend["weights"]
    log = pd.read_csv(fitted.run_dir / "log" / "metrics.csv")  # each epoch validated the blended model
    assert log["val_blend_image"].notna().any() and log["val_accuracy"].notna().any()
    from fluid.training.report import write_report

    report = write_report(fitted.run_dir).read_text()
    assert "## Blend of the classifiers (validation)" in report and f"image {weights[1]:.1f}" in report
    fitted.save(tmp_path / "saved-blend")
    loaded = Classifier.load(tmp_path / "saved-blend")
    assert loaded.network.head.blend_weights.tolist() == pytest.approx(weights)


def test_scoring_and_the_feature_cache_run_on_the_configured_device(fitted, product_frame, tmp_path, monkeypatch):
    import fluid.learners.deep

    frame, root = product_frame
    asked = []
    monkeypatch.setattr(fluid.learners.deep, "resolve_device", lambda name: asked.append(name) or torch.device("cpu"))
    fitted.predict_proba(frame.head(5))
    assert asked == ["auto"]  # the default: the GPU when PyTorch sees one
    fitted.save(tmp_path / "saved")
    loaded = Classifier.load(tmp_path / "saved", device="cpu")
    assert loaded.config.device == "cpu" and Classifier.load(tmp_path / "saved").config.device == "auto"
    loaded.predict(frame.head(3))
    assert asked == ["auto", "cpu"]
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got 'tpu'"):
        Classifier.load(tmp_path / "saved", device="tpu")
    asked.clear()
    make(root, device="cpu", epochs=1, path=str(tmp_path / "run")).fit(frame, seed=0, progress=False)
    assert asked[0] == "cpu"  # before the feature cache is built


def test_sklearn_conventions(product_frame):
    _, root = product_frame
    clf = make(root)
    assert clf.get_params()["label"] == "category"
    copy = clone(clf)
    assert copy.get_params() == clf.get_params() and copy is not clf
    clf.set_params(epochs=3)
    assert clf.config.epochs == 3
    with pytest.raises(FluidNotFittedError, match="not fitted"):
        clf.predict({"name": "x"})


def test_bad_inputs_give_documented_errors(fitted, product_frame):
    frame, root = product_frame
    with pytest.raises(TypeError, match="data must be"):
        fitted.predict(42)
    with pytest.raises(ValueError, match="empty DataFrame"):
        make(root).fit(frame.iloc[:0])
    with pytest.raises(Exception, match="category") as info:
        make(root).fit(frame.drop(columns=["category"]))
    assert "picture" in str(info.value)  # the error lists the columns that do exist
    with pytest.raises(TypeError, match="unknown options \\['epochz'\\]"):
        Classifier(epochz=3)


def test_resume_continues_exactly_like_an_uninterrupted_run(product_frame, tmp_path):
    """Train 1 epoch (as if killed after it), resume to 2: same weights as 2 epochs in one go."""
    frame, root = product_frame
    whole = make(root, path=str(tmp_path / "whole")).fit(frame, epochs=2, progress=False)
    part = make(root, path=str(tmp_path / "part")).fit(frame, epochs=1, progress=False)
    assert (tmp_path / "part" / "checkpoints" / "last.ckpt").exists()
    resumed = make(root, path=str(tmp_path / "part")).fit(frame, epochs=2, resume=True, progress=False)
    assert resumed.metrics_["epochs_run"] == whole.metrics_["epochs_run"] == 2
    # the last epoch's weights, not the best epoch's (which may be the first in both runs)
    last_whole = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", weights_only=True)
    last_resumed = torch.load(tmp_path / "part" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last_whole["epoch"] == last_resumed["epoch"] == 1
    for key, value in last_whole["state_dict"].items():
        assert torch.equal(value, last_resumed["state_dict"][key]), key
    pd.testing.assert_frame_equal(whole.predict_proba(frame), resumed.predict_proba(frame), check_exact=True)
    # the interrupted part's log is kept beside the resumed part's
    assert (tmp_path / "part" / "log" / "metrics.csv").exists()
    assert (tmp_path / "part" / "log" / "resumed-1" / "metrics.csv").exists()
    assert part is not resumed


def test_resume_without_a_checkpoint_is_a_clear_error(product_frame, tmp_path):
    frame, root = product_frame
    with pytest.raises(FileNotFoundError, match="no interrupted run"):
        make(root, path=str(tmp_path / "empty")).fit(frame, resume=True)


def test_time_limit_stops_at_an_epoch_boundary_and_keeps_the_best(product_frame, tmp_path):
    frame, root = product_frame
    clf = make(root, path=str(tmp_path / "timed")).fit(frame, epochs=5, time_limit=0.001, progress=False)
    assert clf.metrics_["epochs_run"] == 1 and clf.metrics_["stopped_by_time_limit"] is True
    assert clf.metrics_["best_epoch"] == 1
    assert (tmp_path / "timed" / "model.safetensors").exists()


def test_predict_on_a_file_without_the_label_column(fitted, product_frame, tmp_path):
    frame, root = product_frame
    unlabelled = frame[frame["picture"].map(lambda v: isinstance(v, str))].drop(columns=["category"])
    unlabelled.to_csv(tmp_path / "new.csv")
    clone_root = fitted.config.columns.image_root
    assert clone_root == str(root)
    labels = fitted.predict(str(tmp_path / "new.csv"))
    assert len(labels) == len(unlabelled) and set(labels) <= set(fitted.classes_)


def test_checkpoints_leave_frozen_encoders_out_and_still_resume_exactly(product_frame, tmp_path):
    """A frozen encoder is reloaded from its source, so its weights are not written to every checkpoint (with
    mBERT + ViT-B that was ~1 GB per file); resuming puts them back."""
    frame, root = product_frame
    frozen = {"freeze": True, "feature_cache": str(tmp_path / "cache")}
    whole = make(root, path=str(tmp_path / "whole"), **frozen).fit(frame, epochs=2, progress=False, verbose=False)
    make(root, path=str(tmp_path / "part"), **frozen).fit(frame, epochs=1, progress=False, verbose=False)
    saved = torch.load(tmp_path / "part" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert saved and all(key.startswith("network.head.") for key in saved), sorted(saved)[:5]
    resumed = make(root, path=str(tmp_path / "part"), **frozen).fit(frame, epochs=2, resume=True, progress=False,
                                                                     verbose=False)
    pd.testing.assert_frame_equal(whole.predict_proba(frame), resumed.predict_proba(frame), check_exact=True)


def test_evaluate_with_no_label_known_to_the_model_reports_it_instead_of_crashing(fitted, product_frame):
    frame, _ = product_frame
    relabelled = frame.assign(category="cat-purple")
    with pytest.warns(UserWarning, match="none of the 60 labels .* is a class this model knows"):
        metrics = fitted.evaluate(relabelled)
    assert metrics["accuracy"] == 0.0 and metrics["n_unknown_label"] == metrics["n_items"] == 60
    assert metrics["unknown_labels"] == ["cat-purple"]
    assert np.asarray(metrics["confusion_matrix"]).sum() == 0


def test_training_progress_goes_to_stderr_and_stdout_stays_clean(product_frame, tmp_path, capsys):
    frame, root = product_frame
    make(root, epochs=1, floor=False, path=str(tmp_path / "run")).fit(frame, seed=0, progress=True, verbose=False)
    out, err = capsys.readouterr()
    assert out == ""
    assert "Epoch 0/0" in err  # Lightning's rich bar, on the one progress stream
