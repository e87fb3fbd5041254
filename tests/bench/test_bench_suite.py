"""The benchmark suite at a toy size: every section runs, the JSON has the documented keys, ratios are
consistent with the measured numbers, and the markdown shows them. No timing is asserted."""

import json

import pytest
from fluid.bench import Plan, run_suite, write_markdown
from fluid.bench.suite import PAPER_EPOCHS
from fluid.bench.workload import DEFAULTS, REFERENCE, product_texts, single_optimisations
from typer.testing import CliRunner

TOY = Plan(train_items=32, batch_size=8, max_batches=1, latency_items=2, head_share_batches=(1, 4),
           head_share_repeats=(1, 1), head_share_size="tiny", quality_items=64, quality_epochs=1, quality_seeds=(0, 1),
           scaling_items=(150,))


@pytest.mark.slow
def test_suite_sections_and_keys(tmp_path, monkeypatch):
    import fluid.bench.suite as suite

    # two setups instead of ten keep the test short; the loop is the same for all
    monkeypatch.setattr(suite, "single_optimisations", lambda device_type, **_: [REFERENCE, DEFAULTS])
    results = run_suite(quick=True, plan=TOY, log=lambda message: None)
    for key in ("device", "train_speedup_vs_reference", f"run_{PAPER_EPOCHS}_epochs_speedup_vs_reference",
                "head_share_of_inference", "training", "head_share", "quality", "scaling", "suite_seconds"):
        assert key in results, key
    rows = {r["setup"]: r for r in results["training"]}
    reference, defaults = rows[REFERENCE.name], rows[DEFAULTS.name]
    assert reference["first_epoch_speedup"] == 1.0 and reference["cache_build_seconds"] == 0.0
    assert defaults["cache_build_seconds"] > 0  # the defaults cache the frozen encoders' features
    expected = reference["first_epoch_seconds"] / defaults["first_epoch_seconds"]
    assert results["train_speedup_vs_reference"] == pytest.approx(expected, rel=0.02)
    later = defaults["cache_build_seconds"] + PAPER_EPOCHS * defaults["later_epoch_seconds"]
    assert defaults[f"run_{PAPER_EPOCHS}_epochs_seconds"] == pytest.approx(later, rel=0.01, abs=0.01)
    for row in results["training"]:
        assert row["train_items_per_s"] > 0 and row["inference_items_per_s"] > 0
        assert row["p95_ms"] >= row["p50_ms"] > 0 and row["peak_rss_mib"] > 0
    shares = [v["head_share"] for k, v in results["head_share"].items() if k.startswith("batch_")]
    assert len(shares) == 2 and all(0 < s < 1 for s in shares)
    assert results["head_share_of_inference"] == max(shares)
    assert {r["setup"] for r in results["quality"]} >= {REFERENCE.name, DEFAULTS.name}
    for row in results["quality"]:
        assert row["seeds"] == [0, 1] and len(row["test_accuracies"]) == 2
        assert all(0.0 <= a <= 1.0 for a in row["test_accuracies"])
        assert row["test_accuracy"] == pytest.approx(sum(row["test_accuracies"]) / 2, abs=1e-4)
    (scaling,) = results["scaling"]
    assert scaling["items"] == 150 and scaling["train_items"] > 0 and scaling["peak_rss_mib"] > 0

    page = write_markdown(results, tmp_path / "BENCHMARKS.md").read_text(encoding="utf-8")
    assert f"{results['train_speedup_vs_reference']}×" in page and "fluid defaults" in page
    quality = results["quality"][0]
    assert f"{quality['test_accuracy']} ± {quality['test_accuracy_std']}" in page
    json.dumps(results)  # serialisable as the --json file


def test_setups_change_one_thing_each():
    fields = set(REFERENCE.to_dict()) - {"name"}
    for setup in single_optimisations("cpu")[1:-1]:
        changed = {k for k in fields if getattr(setup, k) != getattr(REFERENCE, k)}
        assert 1 <= len(changed) <= 2, (setup.name, changed)  # caching needs frozen encoders; bucketing dynamic padding
    assert DEFAULTS.freeze and DEFAULTS.cache and not DEFAULTS.pad_to_max and REFERENCE.pad_to_max


def test_product_texts_have_a_catalogue_shape():
    import pandas as pd

    frame = pd.DataFrame({"text": [f"Name{i} word{i % 7}. Short description alpha beta." for i in range(500)]})
    lengths = product_texts(frame, seed=0).str.split().str.len()
    assert (lengths <= 2).mean() == pytest.approx(0.2, abs=0.06)  # name only
    described = lengths[lengths > 2]
    assert 20 <= described.median() <= 50 and described.max() > 100


def test_cli_rejects_unknown_sections():
    from fluid.cli import app

    result = CliRunner().invoke(app, ["bench", "--section", "nope"])
    assert result.exit_code == 2 and "unknown --section" in result.output
