"""Every deep run fits the classical floor on its split and says when it loses to it; model="auto" keeps the
better of the candidates and the floor; recipe choices are written to the run directory."""

import json
import warnings

import pytest

from fluid import Classifier
from fluid.api import FloorWarning
from fluid.baselines.floor import fit_floor, floor_model_for

from .conftest import TINY

COLUMNS = dict(label="category", text=["name", "description"], image="picture")


def test_floor_model_reads_what_the_head_reads():
    assert floor_model_for((True, True)) == "tfidf-image-logreg"
    assert floor_model_for((True, False)) == "image-logreg"
    assert floor_model_for((False, True)) == "tfidf-logreg"


def test_floor_is_fitted_on_a_stratified_sample_of_a_large_split(product_frame):
    from fluid.data import read_catalogue

    frame, root = product_frame
    canonical = read_catalogue(frame, text_cols=COLUMNS["text"], image_col="picture", label_col="category",
                               image_root=str(root)).frame
    floor = fit_floor(canonical, root, ["cat-blue", "cat-green", "cat-red"], (True, True), max_items=30)
    assert floor.sampled and floor.n_train == 30
    assert floor.describe()["model"] == "tfidf-image-logreg"
    whole = fit_floor(canonical, root, ["cat-blue", "cat-green", "cat-red"], (False, True))
    assert not whole.sampled and whole.n_train == len(canonical) and whole.model.name == "tfidf-logreg"


def test_a_deep_run_records_its_floor_and_warns_when_it_is_worse(product_frame, tmp_path, capsys):
    """Two epochs of the smallest head cannot beat logistic regression on this easy catalogue: the run must
    say so, and metrics.json must hold both scores."""
    frame, root = product_frame
    clf = Classifier("fluid", image_root=str(root), path=str(tmp_path / "run"), **COLUMNS,
                     **{**TINY, "epochs": 1, "lr": 1e-6})
    with pytest.warns(FloorWarning, match="scores below the classical floor on validation"):
        clf.fit(frame, progress=False)
    floor = clf.metrics_["floor"]
    assert floor["model"] == "tfidf-image-logreg" and floor["validation"]["accuracy"] == 1.0
    assert floor["deep_minus_floor"] < 0
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["floor"]["validation"]["accuracy"] == floor["validation"]["accuracy"]
    assert (tmp_path / "run" / "floor" / "model.safetensors").exists()
    recipe = json.loads((tmp_path / "run" / "recipe.json").read_text())
    assert recipe["recipe"] == "auto" and {c["key"] for c in recipe["choices"]} >= {"batch_size", "warmup_steps"}
    assert "recipe auto:" in capsys.readouterr().err
    from fluid.training.report import write_report

    report = write_report(tmp_path / "run").read_text()
    assert "Against the classical floor" in report and "is **worse** by" in report
    copied = clf.save(tmp_path / "copy")
    assert (copied / "floor" / "model.safetensors").exists() and (copied / "recipe.json").exists()


def test_floor_can_be_switched_off(product_frame, tmp_path):
    frame, root = product_frame
    clf = Classifier("text-only", image_root=str(root), path=str(tmp_path / "run"), floor=False, **COLUMNS,
                     **{**TINY, "epochs": 1, "head": {"hidden_dim": 32, "num_heads": 2}})
    clf.fit(frame, progress=False, verbose=False)
    assert "floor" not in clf.metrics_ and not (tmp_path / "run" / "floor").exists()


def test_model_auto_keeps_the_best_on_validation_and_says_why(product_frame, tmp_path):
    frame, root = product_frame
    clf = Classifier("auto", image_root=str(root), path=str(tmp_path / "run"), candidates=["fluid", "text-only"],
                     **COLUMNS, **{**TINY, "epochs": 1, "lr": 1e-6})
    clf.fit(frame, progress=False, verbose=False)
    selection = clf.metrics_["selection"]
    assert set(selection["candidates"]) == {"fluid", "text-only", "tfidf-image-logreg"}
    assert selection["chosen"] == min(selection["candidates"], key=selection["candidates"].get)
    assert selection["chosen"] == "tfidf-image-logreg"  # one epoch at lr 1e-6 learns nothing
    assert clf.config.model == "tfidf-image-logreg" and clf.get_params()["model"] == "auto"
    assert selection["compared_on"] == "validation log_loss" and "lowest validation log_loss" in selection["reason"]
    fluid_validation = json.loads((tmp_path / "run" / "candidates" / "fluid" / "metrics.json").read_text())
    assert selection["candidates"]["fluid"] == pytest.approx(fluid_validation["validation"]["log_loss"])
    loaded = Classifier.load(tmp_path / "run")
    assert loaded.config.model == "tfidf-image-logreg"
    assert (loaded.predict(frame) == clf.predict(frame)).all()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["selection"]["chosen"] == "tfidf-image-logreg"


def test_model_auto_keeps_a_deep_candidate_that_beats_the_floor(product_frame, tmp_path, monkeypatch):
    """Force the floor to lose (its score is set below any model's) and check the deep model is written."""
    import fluid.learners.floor as floors

    frame, root = product_frame
    real = floors.fit_floor_beside

    def losing_floor(*args, **kwargs):
        record = real(*args, **kwargs)
        record["validation"] = {**record["validation"], "log_loss": 1e9}
        return record

    monkeypatch.setattr(floors, "fit_floor_beside", losing_floor)
    clf = Classifier("auto", image_root=str(root), path=str(tmp_path / "run"), **COLUMNS, **{**TINY, "epochs": 1})
    clf.fit(frame, progress=False, verbose=False)
    assert clf.metrics_["selection"]["chosen"] == "fluid" and clf.config.model == "fluid"
    loaded = Classifier.load(tmp_path / "run")
    assert loaded.config.model == "fluid" and (tmp_path / "run" / "encoders").is_dir()


def test_model_auto_tries_the_single_modality_heads_only_when_every_encoder_is_frozen():
    """Frozen encoders: every head trains on cached features, so auto adds text-only and image-only (each only
    where the catalogue has its column); an encoder that trains (from scratch or fine-tuning) keeps auto to FLUID."""
    from fluid.config import RunConfig
    from fluid.learners.selection import default_candidates

    frozen = dict(text_encoder="tiny", image_encoder="tiny", freeze=True)
    assert default_candidates(RunConfig(**frozen)) == ("fluid", "text-only", "image-only")
    assert default_candidates(RunConfig()) == ("fluid", "text-only", "image-only")  # hub encoders: frozen by default
    assert default_candidates(RunConfig.from_keywords({**frozen, "image": None})) == ("fluid", "text-only")
    assert default_candidates(RunConfig.from_keywords({**frozen, "text": []})) == ("fluid", "image-only")
    assert default_candidates(RunConfig(text_encoder="tiny", image_encoder="tiny")) == ("fluid",)  # from scratch
    assert default_candidates(RunConfig(freeze=False)) == ("fluid",)
    assert default_candidates(RunConfig(train_top_layers=2)) == ("fluid",)


def test_model_auto_with_frozen_encoders_trains_and_compares_every_default_candidate(product_frame, tmp_path):
    frame, root = product_frame
    clf = Classifier("auto", image_root=str(root), path=str(tmp_path / "run"), **COLUMNS,
                     **{**TINY, "epochs": 1, "freeze": True})
    with warnings.catch_warnings():
        warnings.simplefilter("error", FloorWarning)  # the selection compares with the floor: no "try auto" here
        clf.fit(frame, progress=False, verbose=False)
    selection = clf.metrics_["selection"]
    assert set(selection["candidates"]) == {"fluid", "text-only", "image-only", "tfidf-image-logreg"}
    assert {p.name for p in (tmp_path / "run" / "candidates").iterdir()} == {"fluid", "text-only", "image-only"}
    assert selection["chosen"] == min(selection["candidates"], key=selection["candidates"].get)
    assert clf.config.model == selection["chosen"]


def test_selection_ranks_on_the_log_loss_lowest_first_nan_last_ties_to_the_earlier():
    from fluid.learners.floor import SELECTION_METRIC, select

    assert SELECTION_METRIC == "log_loss"
    picked = select({"fluid": 0.29, "text-only": 0.10, "image-only": float("nan"), "floor": 0.8})
    assert picked["chosen"] == "text-only" and picked["reason"].startswith("lowest validation log_loss: text-only")
    assert picked["compared_on"] == "validation log_loss"
    assert select({"fluid": 0.2, "text-only": 0.2})["chosen"] == "fluid"
    assert select({"fluid": float("nan"), "floor": 0.9})["chosen"] == "floor"
