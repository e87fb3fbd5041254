"""The claims table against hand-made numbers: each kind of claim, verdicts, noise flags, missing systems."""

import pytest

from fluid.experiment.claims import PAPER_CLAIMS, Claim, evaluate_claim, evaluate_claims
from fluid.experiment.paper import PAPER_RESULTS


def scores(table: dict[str, tuple[float, float]], std: float = 0.0) -> dict:
    """system -> (accuracy, macro_f1) → the results.json ``test`` shape."""
    return {s: {"accuracy": {"mean": a, "std": std}, "macro_f1": {"mean": f, "std": std}}
            for s, (a, f) in table.items()}


def test_greater_claim_verdicts():
    claim = Claim("x", "A > B", "greater", ("a", "b"), "test")
    assert evaluate_claim(claim, scores({"a": (0.8, 0.6), "b": (0.7, 0.5)}))["verdict"] == "supported"
    assert evaluate_claim(claim, scores({"a": (0.6, 0.4), "b": (0.7, 0.5)}))["verdict"] == "not supported"
    mixed = evaluate_claim(claim, scores({"a": (0.8, 0.4), "b": (0.7, 0.5)}))
    assert mixed["verdict"] == "mixed"
    assert mixed["metrics"]["accuracy"]["holds"] and not mixed["metrics"]["macro_f1"]["holds"]
    assert mixed["metrics"]["accuracy"]["difference"] == pytest.approx(0.1)
    assert mixed["metrics"]["macro_f1"]["difference"] == pytest.approx(-0.1)
    tie = evaluate_claim(claim, scores({"a": (0.7, 0.5), "b": (0.7, 0.5)}))
    assert tie["verdict"] == "not supported"  # a tie is not "greater"


def test_within_noise_uses_the_larger_seed_std():
    claim = Claim("x", "A > B", "greater", ("a", "b"), "test")
    noisy = evaluate_claim(claim, scores({"a": (0.72, 0.52), "b": (0.70, 0.50)}, std=0.03))
    assert noisy["verdict"] == "supported" and noisy["metrics"]["accuracy"]["within_noise"]
    clear = evaluate_claim(claim, scores({"a": (0.80, 0.60), "b": (0.70, 0.50)}, std=0.03))
    assert not clear["metrics"]["accuracy"]["within_noise"]


def test_lowest_and_margin_claims():
    lowest = Claim("x", "C costs the most", "lowest", ("c", "d", "e"), "test")
    numbers = {"c": (0.5, 0.3), "d": (0.6, 0.2), "e": (0.7, 0.5)}
    result = evaluate_claim(lowest, scores(numbers))
    assert result["verdict"] == "mixed"  # lowest in accuracy, not in F1 (d is lower)
    assert result["metrics"]["accuracy"]["difference"] == pytest.approx(0.1)  # runner-up d − c
    assert result["metrics"]["macro_f1"]["difference"] == pytest.approx(-0.1)
    margin = Claim("m", "A beats B, C by 13 points", "margin", ("a", "b", "c"), "test", threshold=0.13)
    assert evaluate_claim(margin, scores({"a": (0.91, 0.87), "b": (0.78, 0.63), "c": (0.6, 0.4)}))["verdict"] \
        == "supported"  # exactly 13 points in accuracy counts
    short = evaluate_claim(margin, scores({"a": (0.90, 0.87), "b": (0.78, 0.63), "c": (0.6, 0.4)}))
    assert short["verdict"] == "mixed"
    assert short["metrics"]["accuracy"]["difference"] == pytest.approx(-0.01)


def test_missing_system_is_not_evaluated():
    claim = Claim("x", "A > B", "greater", ("a", "b"), "test")
    result = evaluate_claim(claim, scores({"a": (0.8, 0.6)}))
    assert result["verdict"] == "not evaluated" and result["missing"] == ["b"]


def test_the_paper_supports_its_own_claims():
    """Fed the paper's own numbers, every paper claim must come out supported (or mixed where the paper's
    table itself disagrees with the text: w/o contrastive and w/o Q-Bottleneck tie on accuracy)."""
    paper = {s: {m: {"mean": v, "std": 0.0} for m, v in values.items()} for s, values in PAPER_RESULTS.items()}
    verdicts = {r["id"]: r["verdict"] for r in evaluate_claims(paper, PAPER_CLAIMS)}
    assert verdicts.pop("bottleneck-costs-most") == "mixed"  # 75 = 75 accuracy; 64 < 67 F1
    assert set(verdicts.values()) == {"supported"}, verdicts
