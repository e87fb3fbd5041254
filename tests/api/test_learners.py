"""The learners behind Classifier: one contract for deep and classical models, a typed Scores, the run
directory's layout in one place, and one vocabulary for a run's settings (RunConfig <-> Classifier keywords)."""

import ast
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fluid import Classifier
from fluid.config import Columns, RunConfig
from fluid.errors import OptionError
from fluid.learners import ClassicalLearner, DeepLearner, RunDirectory, Scores, learner_class
from fluid.learners.predictions import TableWriter, top_k_table

from .conftest import TINY

COLUMNS = dict(label="category", text=["name", "description"], image="picture")
FLUID = Path(__file__).resolve().parents[2] / "fluid"


def test_keywords_and_run_config_are_one_vocabulary():
    config = RunConfig.from_keywords({"model": "early-fusion", "text": "title", "image": None, "id": "sku",
                                      "epochs": 3, "lr": None})
    assert config.columns == Columns(text=["title"], image=None, id="sku")
    assert config.epochs == 3 and config.lr is None  # None: left to the recipe
    assert RunConfig.from_keywords(config.keywords()) == config
    assert Classifier.from_config(config).config == config
    with pytest.raises(OptionError, match="unknown options \\['epoch'\\]"):
        RunConfig.from_keywords({"epoch": 3})


def test_each_model_gets_its_learner():
    assert learner_class("fluid") is DeepLearner and learner_class("molt") is DeepLearner
    assert learner_class("tfidf-image-logreg") is ClassicalLearner
    assert DeepLearner.has_floor and not ClassicalLearner.has_floor


@pytest.mark.parametrize("model", ["fluid", "tfidf-image-logreg"])
def test_both_learners_keep_one_contract(model, product_frame, tmp_path):
    frame, root = product_frame
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = Classifier(model, image_root=str(root), path=str(tmp_path / "run"), floor=False, **COLUMNS,
                         **(TINY if model == "fluid" else {})).fit(frame, progress=False, verbose=False)
    catalogue = clf.read(frame, split="test", require_label=True)
    scores = clf.learner.score(catalogue.frame, catalogue.image_root)
    assert isinstance(scores, Scores)
    assert scores.proba.shape == (len(frame), 3)
    np.testing.assert_allclose(scores.proba.sum(axis=1), 1.0, atol=1e-5)
    expected = [clf.classes_.index(label) for label in catalogue.frame["label"]]
    assert scores.labels.tolist() == expected
    assert (scores.gate is not None) == (model == "fluid") and scores.unreadable == {}
    run = RunDirectory(tmp_path / "run")
    reloaded = learner_class(model).load(run, run.config(), run.classes())
    again = reloaded.score(catalogue.frame, catalogue.image_root)
    np.testing.assert_allclose(again.proba, scores.proba, atol=1e-5)


def test_a_classical_model_says_why_an_image_could_not_be_read(product_frame, tmp_path):
    frame, root = product_frame
    clf = Classifier("tfidf-image-logreg", image_root=str(root), path=str(tmp_path / "run"), **COLUMNS)
    clf.fit(frame, progress=False, verbose=False)
    (root / "broken.png").write_bytes(b"not an image at all")
    rows = [{"name": "red shirt", "description": "", "picture": "broken.png"},
            {"name": "", "description": "", "picture": "broken.png"}]
    with_text, without = clf.predict_top_k(rows, k=2)
    assert with_text["missing"] == ["image"] and "broken.png" in with_text["image_problem"]
    assert with_text["labels"][0]["label"] == "cat-red"
    assert without["labels"] == [] and "could not be read" in without["error"]
    labelled = pd.DataFrame([{**rows[0], "category": "cat-red"}])
    assert clf.evaluate(labelled)["n_unreadable_image"] == 1


def test_run_directory_says_what_is_missing(tmp_path):
    run = RunDirectory(tmp_path / "run").create()
    with pytest.raises(FileNotFoundError, match="not a FLUID run directory: config.yaml is missing"):
        run.check_complete()
    with pytest.raises(FileNotFoundError, match="no interrupted run"):
        run.check_resumable()
    run.write_config(RunConfig(), ["a", "b"])
    assert run.classes() == ["a", "b"] and run.config() == RunConfig()
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing"):
        run.check_complete()


def test_an_empty_parquet_prediction_file_is_parquet(tmp_path):
    path = tmp_path / "out.parquet"
    writer = TableWriter(path, csv=False)
    writer.close(3)
    table = pd.read_parquet(path)
    assert len(table) == 0 and list(table.columns) == list(top_k_table([], [], 3).columns)


def test_the_front_asks_no_model_what_kind_it_is():
    """Classifier talks to its learner through the contract only: no classical-or-deep branch, no model
    internals, and it stays a thin front."""
    source = (FLUID / "api.py").read_text(encoding="utf-8")
    names = {node.id for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Name)}
    assert not names & {"is_classical", "_is_classical", "ClassicalModel", "MultimodalNetwork", "DeepLearner",
                        "ClassicalLearner"}
    assert len(source.splitlines()) <= 300
    assert not any("_is_classical" in path.read_text(encoding="utf-8") for path in FLUID.rglob("*.py"))


@pytest.mark.parametrize("model", ["fluid", "tfidf-image-logreg"])
def test_predict_items_skips_the_reader_and_agrees_with_predict_top_k(model, product_frame, tmp_path, monkeypatch):
    """The single-request path (no DataFrame reader, no DataLoader, an image decoded once) gives what the
    catalogue path gives, missing and unreadable images included."""
    import io

    import fluid.api
    from PIL import Image

    frame, root = product_frame
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = Classifier(model, image_root=str(root), path=str(tmp_path / "run"), floor=False, **COLUMNS,
                         **(TINY if model == "fluid" else {})).fit(frame, progress=False, verbose=False)
    png = io.BytesIO()
    Image.new("RGB", (40, 40), (30, 30, 220)).save(png, format="PNG")
    items = [{"text": "  red shirt \n", "image": Image.new("RGB", (40, 40), (220, 30, 30))},
             {"text": None, "image": png.getvalue()},
             {"text": "green cotton item", "image": None},
             {"text": "blue shirt", "image": b"not an image"},
             {"text": "   ", "image": None}]
    expected = clf.predict_top_k([{"name": it["text"], "description": None, "picture": it["image"]}
                                  for it in items], k=3)

    def no_reader(*args, **kwargs):
        raise AssertionError("predict_items must not read a catalogue")

    monkeypatch.setattr(fluid.api, "read_input", no_reader)
    got = clf.predict_items(items, k=3)
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected):
        assert [hit["label"] for hit in mine["labels"]] == [hit["label"] for hit in theirs["labels"]]
        np.testing.assert_allclose([h["probability"] for h in mine["labels"]],
                                   [h["probability"] for h in theirs["labels"]], atol=1e-5)
        assert mine["missing"] == theirs["missing"] and ("error" in mine) == ("error" in theirs)
    assert got[3]["missing"] == ["image"] and got[3]["image_problem"]
    assert got[4]["error"] == "neither text nor image"


def test_the_deep_learner_hands_every_augmentation_setting_to_its_network():
    from fluid.config import RunConfig

    config = RunConfig(model="image-only", image_encoder="tiny", image_augment=0.2, colour_augment=0.4,
                       modality_dropout=0.0,
                       encoder_overrides={"image": {"hidden_size": 16, "image_size": 16, "widths": [8, 8, 8]}},
                       head={"hidden_dim": 16, "num_heads": 2, "num_queries": 2})
    network = DeepLearner.build(config, ["a", "b"]).network
    assert (network.image_augment, network.colour_augment) == (0.2, 0.4)
