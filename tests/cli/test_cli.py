"""The CLI end to end: a CSV catalogue with a missing image and a bad row → train → evaluate → predict → report;
and the API on the same CSV and seed gives the same metrics."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from fluid import Classifier
from fluid.config import SMOKE_TEST_OVERRIDES
from fluid.cli import app

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}
TINY_CONFIG = SMOKE_TEST_OVERRIDES
runner = CliRunner()


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    """A latin-1 CSV with Windows-style image paths, one missing image file and one row with no text and no
    image (a bad row), plus the YAML config of a tiny model."""
    root = tmp_path_factory.mktemp("catalogue")
    (root / "imgs").mkdir()
    rows = []
    for i in range(48):
        colour = list(COLOURS)[i % 3]
        Image.new("RGB", (32, 32), COLOURS[colour]).save(root / "imgs" / f"{i}.png")
        rows.append({"id": f"p{i}", "title": f"{colour} café shirt {i}", "img": f"imgs\\{i}.png",
                     "cat": f"cat-{colour}"})
    rows.append({"id": "missing-image", "title": "red café shirt", "img": "imgs\\does-not-exist.png",
                 "cat": "cat-red"})
    rows.append({"id": "bad-row", "title": "", "img": "", "cat": "cat-blue"})
    pd.DataFrame(rows).to_csv(root / "products.csv", index=False, encoding="latin-1")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    return root


def _train_args(catalogue, out, model="fluid"):
    return ["train", "--data", str(catalogue / "products.csv"), "--model", model, "--out", str(out),
            "--config", str(catalogue / "tiny.yaml"), "--text-col", "title", "--image-col", "img",
            "--label-col", "cat", "--id-col", "id", "--seed", "0"]


@pytest.fixture(scope="module")
def trained(catalogue, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "fluid"
    result = runner.invoke(app, _train_args(catalogue, out))
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_the_run_directory_and_reports_bad_rows(trained):
    for name in ("config.yaml", "labels.json", "model.safetensors", "metrics.json", "report.md",
                 "log/metrics.csv", "checkpoints/last.ckpt", "bad_rows.json"):
        assert (trained / name).exists(), name
    bad = json.loads((trained / "bad_rows.json").read_text())["train"]
    text = json.dumps(bad)
    assert "does-not-exist" in text or "image" in text  # the missing image is counted
    assert bad["kept_rows"] == 49  # the row with neither text nor image is dropped and counted


def test_evaluate_and_predict(trained, catalogue, tmp_path):
    json_path = tmp_path / "metrics.json"
    result = runner.invoke(app, ["evaluate", str(trained), "--data", str(catalogue / "products.csv"),
                                 "--json", str(json_path)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(json_path.read_text())
    assert metrics["n_items"] == 49 and metrics["n_skipped"] == 1
    assert (trained / "eval" / "test.json").exists()
    result = runner.invoke(app, ["predict", str(trained), "--image", str(catalogue / "imgs" / "0.png"),
                                 "--text", "red shirt", "--top-k", "2"])
    assert result.exit_code == 0, result.output
    prediction = json.loads(result.output)
    assert len(prediction["labels"]) == 2 and prediction["missing"] == []
    assert len(prediction["gate"]) == 4 and all(0 <= g <= 1 for g in prediction["gate"])
    result = runner.invoke(app, ["predict", str(trained), "--text", "blue shirt"])
    assert json.loads(result.output)["missing"] == ["image"]


def test_cli_and_api_give_the_same_metrics(trained, catalogue):
    classifier = Classifier(label="cat", text="title", image="img", id="id", **TINY_CONFIG)
    classifier.fit(str(catalogue / "products.csv"), seed=0, progress=False)
    cli_metrics = json.loads((trained / "metrics.json").read_text())["validation"]
    api_metrics = classifier.metrics_["validation"]
    for key in ("accuracy", "macro_f1", "n_items"):
        assert api_metrics[key] == cli_metrics[key]
    np.testing.assert_allclose(
        Classifier.load(trained).predict_proba(str(catalogue / "products.csv")).to_numpy(),
        classifier.predict_proba(str(catalogue / "products.csv")).to_numpy(), rtol=0, atol=0)


def test_errors_are_clear(catalogue, tmp_path):
    args = _train_args(catalogue, tmp_path / "x")
    args[args.index("--label-col") + 1] = "nope"
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "nope" in result.output and "columns present" in result.output
    result = runner.invoke(app, ["evaluate", str(tmp_path), "--data", str(catalogue / "products.csv")])
    assert result.exit_code == 2 and "not a FLUID run directory" in result.output


def test_a_temporary_folder_that_cannot_hold_the_text_is_a_clear_error(catalogue, tmp_path, monkeypatch):
    import tempfile

    (tmp_path / "mapped.yaml").write_text(yaml.safe_dump({**TINY_CONFIG, "memory_map_rows": 0}))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))
    args = _train_args(catalogue, tmp_path / "x")
    args[args.index("--config") + 1] = str(tmp_path / "mapped.yaml")
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "cannot write the catalogue's text" in result.output and "no-such-folder" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path):
    """`fluid demo --quick` as a user runs it: a real process, no downloads."""
    out = tmp_path / "demo"
    completed = subprocess.run([sys.executable, "-m", "fluid", "demo", "--quick", "--out", str(out)],
                               capture_output=True, text=True, timeout=900, env={**__import__("os").environ,
                                                                                 "HF_HUB_OFFLINE": "1"})
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"fluid", "image-only", "text-only", "tfidf-image-logreg"}
    assert json.loads((out / "fluid" / "recipe.json").read_text())["recipe"] == "auto"
    n_classes = len(json.loads((out / "fluid" / "labels.json").read_text())["classes"])
    for system in results:
        assert (out / system / "report.md").exists() and (out / system / "model.safetensors").exists()
        assert (out / system / "plots" / "confusion.png").exists() or system == "tfidf-image-logreg"
        # every system learns something: clearly above a uniform guess over the classes
        assert results[system]["accuracy"] > 2.0 / n_classes, (system, results[system])
    assert "fluid" in completed.stdout and "Macro F1" in completed.stdout


@pytest.mark.slow
def test_train_on_two_cpu_devices_with_ddp(catalogue, tmp_path):
    """`--devices 2` on CPU: Lightning's DDP (gloo) in real processes; one run directory, written once."""
    out = tmp_path / "ddp"
    args = [sys.executable, "-m", "fluid"] + _train_args(catalogue, out)[:] + ["--devices", "2"]
    completed = subprocess.run(args, capture_output=True, text=True, timeout=600,
                               env={**__import__("os").environ, "CI": "true"})
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and (out / "report.md").exists()


def test_synth_writes_the_glami_layout(tmp_path):
    result = runner.invoke(app, ["synth", "--out", str(tmp_path), "--items", "60", "--seed", "3"])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "GLAMI-1M-dataset"
    train = pd.read_csv(folder / "GLAMI-1M-train.csv")
    test = pd.read_csv(folder / "GLAMI-1M-test.csv")
    assert len(train) + len(test) == 60
    assert {"item_id", "image_id", "name", "description", "geo", "category", "category_name",
            "label_source"} <= set(train.columns)
    assert all((folder / "images" / f"{i}.jpg").exists() for i in train["image_id"])
    assert json.loads((folder / "synthetic.json").read_text())["mode"] == "realistic"  # the default


def test_synth_mode_option_and_a_clear_error_for_an_unknown_mode(tmp_path):
    result = runner.invoke(app, ["synth", "--out", str(tmp_path), "--items", "20", "--mode", "complementary"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "GLAMI-1M-dataset" / "synthetic.json").read_text())["mode"] == "complementary"
    result = runner.invoke(app, ["synth", "--out", str(tmp_path / "x"), "--items", "20", "--mode", "dreamy"])
    assert result.exit_code == 2 and "mode" in result.output


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_predict_batch_writes_every_row_in_order(trained, catalogue, tmp_path, suffix):
    out = tmp_path / f"scores{suffix}"
    result = runner.invoke(app, ["predict-batch", str(trained), "--data", str(catalogue / "products.csv"),
                                 "--out", str(out), "--top-k", "2", "--chunk-size", "7"])
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    source = pd.read_csv(catalogue / "products.csv", encoding="latin-1")
    kept = source[source["id"] != "bad-row"]  # the reader drops the row with neither text nor image
    assert scores["id"].astype(str).tolist() == kept["id"].tolist()
    assert list(scores.columns[:5]) == ["id", "label_1", "probability_1", "label_2", "probability_2"]
    assert (scores["probability_1"] >= scores["probability_2"]).all()
    expected = Classifier.load(trained).predict(str(catalogue / "products.csv"))
    assert scores["label_1"].tolist() == expected.tolist()
    assert scores.loc[scores["id"] == "missing-image", "missing"].item() == "image"
    assert not (tmp_path / f"scores{suffix}.tmp").exists()
    assert "1 rows of the input could not be read" in result.output  # the bad row is reported, not lost


def test_train_prints_the_floor_and_recipe_paper_applies_the_papers_numbers(catalogue, trained, tmp_path):
    assert json.loads((trained / "metrics.json").read_text())["floor"]["model"] == "tfidf-image-logreg"
    out = tmp_path / "paper"
    result = runner.invoke(app, _train_args(catalogue, out) + ["--recipe", "paper", "--epochs", "1", "--no-floor",
                                                               "--colour-augment", "0.5"])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["recipe"] == "paper" and config["colour_augment"] == 0.5
    assert (config["schedule"], config["warmup_steps"], config["patience"], config["weight_decay"]) == (
        "constant", 0, 0, 0.01)
    assert config["epochs"] == 1 and config["batch_size"] == TINY_CONFIG["batch_size"]  # options win
    recipe = json.loads((out / "recipe.json").read_text())
    sources = {c["key"]: c["source"] for c in recipe["choices"]}
    assert sources["epochs"] == sources["colour_augment"] == "you" and sources["schedule"] == "recipe paper"
    assert "floor" not in json.loads((out / "metrics.json").read_text())


def test_train_summary_shows_the_floor_row(catalogue, tmp_path):
    result = runner.invoke(app, _train_args(catalogue, tmp_path / "run") + ["--epochs", "1"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "floor: tfidf-image-logreg" in result.output


def test_an_unreadable_image_is_missing_everywhere_and_the_output_says_why(trained, catalogue, tmp_path):
    """#24: a corrupt file, a truncated PNG and a decompression bomb were scored as if the image were present."""
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    result = subprocess.run([sys.executable, "-m", "fluid", "predict", str(trained), "--image", str(corrupt),
                             "--text", "red shirt"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    prediction = json.loads(result.stdout)
    assert prediction["missing"] == ["image"] and prediction["image_problem"] and prediction["labels"]
    assert "corrupt.jpg: the image could not be read" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run([sys.executable, "-m", "fluid", "predict", str(trained), "--image", str(corrupt)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "neither text nor image" in result.stderr
    assert json.loads(result.stdout)["labels"] == []

    source = pd.read_csv(catalogue / "products.csv", encoding="latin-1").iloc[:6]
    (catalogue / "imgs" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    source.loc[2, "img"] = "imgs\\corrupt.png"
    source.loc[3, ["img", "title"]] = ["imgs\\corrupt.png", ""]
    path = catalogue / "with-corrupt.csv"
    source.to_csv(path, index=False, encoding="latin-1")
    out = tmp_path / "scores.csv"
    result = runner.invoke(app, ["predict-batch", str(trained), "--data", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out)
    row2, row3 = scores.iloc[2], scores.iloc[3]
    assert row2["missing"] == "image" and isinstance(row2["image_problem"], str) and pd.notna(row2["label_1"])
    assert pd.isna(row2["error"])
    assert "image" in row3["missing"] and "neither text nor image" in row3["error"] and pd.isna(row3["label_1"])
    assert scores["image_problem"].notna().sum() == 2
    assert "2 with an image that could not be read" in result.output and "1 without text or image" in result.output


def test_a_pickle_in_place_of_the_weights_is_refused_in_one_line(trained, tmp_path):
    """#24: predict printed a full traceback for a refused pickle; now one line on stderr, exit code 2."""
    import pickle
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    (copy / "model.safetensors").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    result = subprocess.run([sys.executable, "-m", "fluid", "predict", str(copy), "--text", "red shirt"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "model.safetensors" in lines[0]
    assert "never a pickle" in lines[0] and result.stdout == ""
