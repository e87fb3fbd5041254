"""Classical baselines: accuracy on the synthetic catalogue against chance and the modality ceilings, the
Classifier contract (fit / predict / evaluate / save / load, metric keys), pickle-free round trip, CLI."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from PIL import Image

from fluid import Classifier
from fluid.baselines import CLASSICAL_MODELS, ClassicalModel
from fluid.cli import app
from fluid.data import read_catalogue
from fluid.data.synthetic import modality_caps, write_synthetic
from fluid.training.metrics import METRIC_KEYS

runner = CliRunner()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("synthetic"), items=600, seed=3, mode="complementary")


@pytest.fixture(scope="module")
def small_frame():
    """36 products, 3 classes told apart by a word in the text and by the image colour; every sixth item has no
    text, every sixth another one no image."""
    colours = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}
    rows = []
    for i in range(36):
        name = list(colours)[i % 3]
        rows.append({"text": f"{name} shirt number {i}" if i % 6 != 3 else None,
                     "image": Image.new("RGB", (24, 24), colours[name]) if i % 6 != 0 else None,
                     "label": f"cat-{name}"})
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_accuracy_beats_chance_and_stays_under_the_modality_ceilings(synthetic, tmp_path):
    test = read_catalogue(synthetic, split="test").frame
    majority = test["label"].value_counts(normalize=True).iloc[0]
    text_cap, image_cap = modality_caps(mode="complementary")
    accuracy = {}
    for model in CLASSICAL_MODELS:
        clf = Classifier(model, path=str(tmp_path / model))
        clf.fit(synthetic, progress=False)
        accuracy[model] = clf.evaluate(synthetic)["accuracy"]
    # Measured (seed 3, 600 items): text 0.39, image 0.49, both 0.56; majority 0.28, text ceiling 0.61. The
    # text baseline is NOT yet near the ceiling on a catalogue this small (0.47 at 2,000 items): see the report.
    assert accuracy["tfidf-logreg"] > majority + 0.08, accuracy
    assert accuracy["tfidf-logreg"] <= text_cap + 0.05, (accuracy, text_cap)  # text cannot see the pattern
    assert accuracy["image-logreg"] > majority + 0.1, accuracy
    assert accuracy["image-logreg"] <= image_cap + 0.05, (accuracy, image_cap)
    assert accuracy["tfidf-image-logreg"] > max(accuracy["tfidf-logreg"], accuracy["image-logreg"]), accuracy


@pytest.mark.parametrize("model", list(CLASSICAL_MODELS))
def test_save_load_round_trip_gives_identical_predictions_without_pickle(model, small_frame, tmp_path):
    clf = Classifier(model, path=str(tmp_path / "run"), modality_dropout=0.3).fit(small_frame, progress=False)
    before = clf.predict_proba(small_frame)
    metrics = clf.evaluate(small_frame)
    assert set(METRIC_KEYS) <= set(metrics)
    # separable in either modality; a unimodal model misses the items that lack its modality (1 in 6)
    assert metrics["accuracy"] > (0.95 if model == "tfidf-image-logreg" else 0.8)
    saved = clf.save(tmp_path / "copy")
    assert {"config.yaml", "labels.json", "model.safetensors", "classical.json"} <= {p.name for p in saved.iterdir()}
    assert not list(saved.rglob("*.pkl")) and not list(saved.rglob("*.pickle"))
    state = json.loads((saved / "classical.json").read_text())
    assert state["model"] == model and state["classes"] == clf.classes_
    loaded = Classifier.load(saved)
    after = loaded.predict_proba(small_frame)
    np.testing.assert_array_equal(before.to_numpy(), after.to_numpy())  # NaN rows: no modality
    assert loaded.predict(small_frame).equals(clf.predict(small_frame))
    for drop in ("image", "text"):
        np.testing.assert_array_equal(clf.predict_proba(small_frame, drop_modality=drop).to_numpy(),
                                      loaded.predict_proba(small_frame, drop_modality=drop).to_numpy())


def test_probabilities_follow_the_linear_model(small_frame, tmp_path):
    """predict_proba = softmax(features @ coef.T + intercept), columns in the order of classes_."""
    clf = Classifier("tfidf-logreg", path=str(tmp_path / "run")).fit(small_frame, progress=False)
    model = clf.network
    design = model._design(list(small_frame["text"]), None).toarray()
    scores = design @ model.coef.T + model.intercept
    expected = np.exp(scores - scores.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    got = clf.predict_proba(small_frame)
    scorable = got.notna().all(axis=1).to_numpy()
    np.testing.assert_allclose(got.to_numpy()[scorable], expected[scorable], rtol=1e-10)
    assert list(got.columns) == clf.classes_ == ["cat-blue", "cat-green", "cat-red"]


def test_modality_dropout_adds_copies_with_one_modality_removed(small_frame):
    model = ClassicalModel("tfidf-image-logreg", ["cat-blue", "cat-green", "cat-red"], modality_dropout=0.5,
                           seed=1)
    full = small_frame.assign(text="some text", image=[small_frame["image"].dropna().iloc[0]] * len(small_frame))
    texts, images = model._inputs(full, None)
    y = model.label_indices(full)
    more_texts, more_images, more_y = model._with_modality_dropout(texts, images, y)
    added = len(more_y) - len(y)
    assert 0 < added < len(y)
    text_dropped = [t is None for t in more_texts[len(y):]]
    image_dropped = [row[-1] == 1.0 and not row[:-1].any() for row in more_images[len(y):]]
    assert all(t != i for t, i in zip(text_dropped, image_dropped))  # exactly one modality removed per copy
    assert any(text_dropped) and any(image_dropped)
    assert more_texts[: len(y)] == texts and np.array_equal(more_y[: len(y)], y)  # the originals are kept


def test_unknown_option_and_embed_errors_say_what_to_do(small_frame, tmp_path):
    with pytest.raises(ValueError, match="unknown options \\['alpha'\\].*valid options"):
        Classifier("tfidf-logreg", head={"alpha": 1}, path=str(tmp_path / "a")).fit(small_frame, progress=False)
    clf = Classifier("image-logreg", path=str(tmp_path / "b")).fit(small_frame, progress=False)
    with pytest.raises(ValueError, match="classical baseline"):
        clf.embed(small_frame)


def test_cli_train_evaluate_predict_and_models(small_frame, tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    rows = []
    for i, row in small_frame.iterrows():
        path = None
        if isinstance(row["image"], Image.Image):
            path = f"{i}.png"
            row["image"].save(images / path)
        rows.append({"title": row["text"], "img": path, "cat": row["label"]})
    pd.DataFrame(rows).to_csv(tmp_path / "products.csv", index=False)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "products.csv"), "--model", "tfidf-logreg",
                                 "--out", str(out), "--text-col", "title", "--image-col", "img", "--label-col",
                                 "cat", "--image-root", str(images), "--head", "C=3"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "classical.json").read_text())["options"]["C"] == 3
    assert (out / "report.md").exists()
    result = runner.invoke(app, ["evaluate", str(out), "--data", str(tmp_path / "products.csv"),
                                 "--json", str(tmp_path / "eval.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "eval.json").read_text())["accuracy"] > 0.9
    result = runner.invoke(app, ["predict", str(out), "--text", "blue shirt", "--top-k", "1"])
    assert result.exit_code == 0, result.output
    assert "cat-blue" in result.output
    listed = runner.invoke(app, ["models"]).output.split()
    assert set(CLASSICAL_MODELS) <= set(listed) and "fluid" in listed
