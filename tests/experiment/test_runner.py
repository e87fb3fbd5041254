"""The experiment runner on a very small configuration: the row plan, results.json's documented keys, the split
file, results.md, resume (finished rows are not retrained), and `fluid experiment paper` via the CLI."""

import json
import time

import pandas as pd
import pytest
from typer.testing import CliRunner

from fluid.cli import app
from fluid.experiment import ExperimentSettings, plan_rows, run_experiment
from fluid.experiment import runner as runner_module

cli = CliRunner()
SYSTEM_KEYS = {"model", "variant", "family", "config", "seeds", "parameters", "trainable_parameters",
               "train_seconds", "inference_items_per_second", "validation", "test", "without_image",
               "without_text", "drop", "paper", "difference"}
TOP_KEYS = {"schema_version", "settings", "data", "protocol", "paper", "systems", "claims", "rows",
            "wall_seconds", "rows_trained_this_run", "plot"}
METRICS = {"accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1", "top5_accuracy"}


def tiny_settings(out) -> ExperimentSettings:
    return ExperimentSettings(out=str(out), models=["image-only", "tfidf-image-logreg"], seeds=1, quick=True,
                              items=160, epochs=1, dropout_models=["tfidf-image-logreg"])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("experiment")
    statuses = []
    results = run_experiment(tiny_settings(out), on_row=lambda row, status: statuses.append((row.key, status)))
    return out, results, statuses


def test_plan_rows_configs_and_variants(tmp_path):
    settings = ExperimentSettings(out=str(tmp_path), models=["fluid", "fluid-no-contrastive", "tfidf-logreg"],
                                  seeds=2, dropout_models=["fluid"]).resolved()
    rows = plan_rows(settings)
    assert [(r.system, r.seed) for r in rows] == [
        ("fluid", 0), ("fluid", 1), ("fluid +md", 0), ("fluid +md", 1),
        ("fluid-no-contrastive", 0), ("fluid-no-contrastive", 1), ("tfidf-logreg", 0)]
    fluid = rows[0].config
    assert fluid["head"] == {"contrastive_weight": 1 / 3}  # the paper's, not auto's 0 for scratch encoders
    assert fluid["floor"] is False and fluid["recipe"] == "auto"
    assert fluid["modality_dropout"] == 0.0 and rows[2].config["modality_dropout"] == 0.3
    assert fluid["text_encoder"] == "tiny" and fluid["epochs"] == 10 and fluid["seed"] == 0
    assert rows[1].config["seed"] == 1
    assert len({r.key for r in rows}) == len(rows)
    with pytest.raises(ValueError, match="unknown systems \\['nope'\\]"):
        ExperimentSettings(out=str(tmp_path), models=["nope"]).resolved()


def test_rows_say_the_only_modality_dropout_they_train_with(tmp_path):
    """The run-level rate stored with a row is all it trains with: no head (MoLT had 0.1 of its own, stacked on
    the run's, while its base row read "plain") hides a modality by itself."""
    from fluid.baselines import is_classical
    from fluid.experiment.report import training_label
    from fluid.model import head_config

    settings = ExperimentSettings(out=str(tmp_path), models=["molt", "fluid", "tfidf-image-logreg"], seeds=1,
                                  dropout_models=["molt", "tfidf-image-logreg"]).resolved()
    rows = plan_rows(settings)
    assert [r.system for r in rows] == ["molt", "molt +md", "fluid", "tfidf-image-logreg",
                                        "tfidf-image-logreg +md"]
    for row in rows:
        rate = 0.3 if row.variant == "modality-dropout" else 0.0
        assert row.config["modality_dropout"] == rate, row.system
        assert training_label(row.config) == ("modality dropout 0.3" if rate else "none")
        if not is_classical(row.model):
            assert not hasattr(head_config(row.model, **row.config["head"]), "modality_dropout"), row.system


def test_row_fingerprint_covers_the_model_code_revision(tmp_path, monkeypatch):
    row = plan_rows(ExperimentSettings(out=str(tmp_path), models=["molt"], seeds=1, dropout_models=[]).resolved())[0]
    before = row.fingerprint("split")
    monkeypatch.setattr(runner_module, "ROW_REVISION", runner_module.ROW_REVISION + 1)
    assert row.fingerprint("split") != before


@pytest.mark.slow
def test_results_json_has_the_documented_keys(finished):
    out, results, statuses = finished
    assert [s for _, s in statuses] == ["trained"] * 3
    stored = json.loads((out / "results.json").read_text())
    assert set(stored) == TOP_KEYS
    assert set(stored["systems"]) == {"image-only", "tfidf-image-logreg", "tfidf-image-logreg +md"}
    for name, entry in stored["systems"].items():
        assert set(entry) == SYSTEM_KEYS, name
        for evaluation in ("test", "without_image", "without_text", "validation"):
            assert set(entry[evaluation]) == METRICS
            assert set(entry[evaluation]["accuracy"]) == {"mean", "std", "values"}
        assert entry["drop"]["without_image"]["accuracy"] == pytest.approx(
            entry["test"]["accuracy"]["mean"] - entry["without_image"]["accuracy"]["mean"])
        assert entry["parameters"] > 0 and entry["inference_items_per_second"]["mean"] > 0
    image_only = stored["systems"]["image-only"]
    assert image_only["paper"]["accuracy"] == 0.46 and image_only["paper"]["row"] == "Image-only"
    assert image_only["difference"]["accuracy"] == pytest.approx(image_only["test"]["accuracy"]["mean"] - 0.46)
    assert stored["systems"]["tfidf-image-logreg"]["paper"] is None
    assert stored["systems"]["tfidf-image-logreg +md"]["config"]["modality_dropout"] == 0.3
    # image-only ignores the text: removing it changes nothing
    assert image_only["drop"]["without_text"]["accuracy"] == pytest.approx(0.0)
    claims = {c["id"]: c for c in stored["claims"]}
    assert claims["fluid>blip2"]["verdict"] == "not evaluated"
    assert stored["data"]["kind"] == "synthetic" and stored["data"]["split"] == "official"
    assert stored["rows"] == ["rows/image-only__seed0.json", "rows/tfidf-image-logreg__seed0.json",
                              "rows/tfidf-image-logreg_md__seed0.json"]


@pytest.mark.slow
def test_split_file_markdown_and_plot(finished):
    out, results, _ = finished
    split = pd.read_csv(out / "split.csv", dtype=str)
    assert set(split["split"]) == {"train", "val", "test"}
    assert split["id"].is_unique
    counts = split["split"].value_counts()
    assert counts["test"] == results["data"]["n_test"] and counts["val"] == results["data"]["n_val"]
    markdown = (out / "results.md").read_text()
    for heading in ("## Configuration of each row", "## Tables 1–3", "## Classical references",
                    "## Missing modality", "## Claims", "## What this run says and does not say"):
        assert heading in markdown
    assert "| image-only | Image-only |" in markdown
    assert (out / "paper_vs_ours.png").stat().st_size > 1000


@pytest.mark.slow
def test_rerun_reuses_finished_rows_and_retrains_only_missing_ones(finished, monkeypatch):
    out, results, _ = finished
    before = {p.name: p.stat().st_mtime_ns for p in (out / "rows").glob("*.json")}

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished row was trained again")

    monkeypatch.setattr(runner_module, "train_and_evaluate", must_not_train)
    statuses = []
    again = run_experiment(tiny_settings(out), on_row=lambda row, status: statuses.append(status))
    assert statuses == ["reused"] * 3 and again["rows_trained_this_run"] == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "rows").glob("*.json")} == before
    assert again["systems"]["image-only"]["test"] == results["systems"]["image-only"]["test"]

    monkeypatch.undo()
    (out / "rows" / "tfidf-image-logreg__seed0.json").unlink()  # as if killed while training this row
    statuses.clear()
    resumed = run_experiment(tiny_settings(out), on_row=lambda row, status: statuses.append((row.key, status)))
    assert statuses == [("image-only__seed0", "reused"), ("tfidf-image-logreg__seed0", "trained"),
                        ("tfidf-image-logreg_md__seed0", "reused")]
    assert resumed["systems"]["tfidf-image-logreg"]["test"] == results["systems"]["tfidf-image-logreg"]["test"]


@pytest.mark.slow
def test_cli_experiment_paper_end_to_end(tmp_path):
    """A reduced `fluid experiment paper --quick` (two systems, one epoch, one seed) through the CLI."""
    out = tmp_path / "paper"
    started = time.perf_counter()
    result = cli.invoke(app, ["experiment", "paper", "--quick", "--out", str(out), "--items", "150", "--epochs",
                              "1", "--seeds", "1", "--models", "text-only,tfidf-logreg"])
    assert result.exit_code == 0, result.output
    assert "## Claims" in result.output and "text-only" in result.output
    stored = json.loads((out / "results.json").read_text())
    assert set(stored["systems"]) == {"text-only", "tfidf-logreg"}
    assert stored["settings"]["quick"] is True and stored["settings"]["seeds"] == 1
    print(f"reduced `fluid experiment paper --quick`: {time.perf_counter() - started:.1f} s")


@pytest.mark.slow
def test_full_quick_experiment_runs_every_system(tmp_path, one_torch_thread):
    """The whole `fluid experiment paper --quick`: every head of Tables 1-3, MoLT, the classical rows, the
    modality-dropout variants, the missing-modality evaluations and the claims (a few minutes)."""
    from fluid.baselines import CLASSICAL_MODELS
    from fluid.model import available_heads

    result = cli.invoke(app, ["experiment", "paper", "--quick", "--out", str(tmp_path / "paper")])
    assert result.exit_code == 0, result.output
    stored = json.loads((tmp_path / "paper" / "results.json").read_text())
    expected = set(available_heads()) | set(CLASSICAL_MODELS) | {"fluid +md", "molt +md", "tfidf-image-logreg +md"}
    assert set(stored["systems"]) == expected
    for name, system in stored["systems"].items():
        for evaluation in ("test", "without_image", "without_text"):
            assert 0.0 <= system[evaluation]["accuracy"]["mean"] <= 1.0, (name, evaluation)
    assert {claim["verdict"] for claim in stored["claims"]} <= {"supported", "not supported", "mixed"}
    assert (tmp_path / "paper" / "paper_vs_ours.png").stat().st_size > 10_000
