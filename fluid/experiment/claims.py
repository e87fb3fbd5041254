"""The paper's ordering statements, checked against an experiment's numbers.

A claim is checked on accuracy and on macro F1 separately; its verdict is ``supported`` when it holds on both,
``not supported`` when on neither, ``mixed`` otherwise, and ``not evaluated`` when a system it names was not
run. ``within_noise`` marks a comparison whose difference is no larger than the larger seed standard deviation
of the systems compared (the ordering could flip with other seeds).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fluid.experiment.paper import ABLATIONS, PRIOR_BASELINES

CLAIM_METRICS = ("accuracy", "macro_f1")


@dataclass(frozen=True)
class Claim:
    """One ordering statement.

    kind:
      * ``"greater"``: ``systems[0]`` scores higher than ``systems[1]``;
      * ``"lowest"``: ``systems[0]`` scores lowest of ``systems`` (e.g. the ablation that costs the most);
      * ``"margin"``: ``systems[0]`` beats every other system of ``systems`` by at least ``threshold``
        (a fraction: 0.13 = 13 points).
    """

    id: str
    text: str
    kind: str
    systems: tuple[str, ...]
    source: str
    threshold: float = 0.0
    metrics: tuple[str, ...] = field(default=CLAIM_METRICS)


PAPER_CLAIMS: tuple[Claim, ...] = (
    Claim("fluid>blip2", "FLUID > Modified BLIP2", "greater", ("fluid", "blip2"), "Table 1"),
    Claim("fluid>improved-attention", "FLUID > Improved-Attention", "greater", ("fluid", "improved-attention"),
          "Table 1"),
    Claim("fluid>early-fusion", "FLUID > Early-Fusion", "greater", ("fluid", "early-fusion"), "Table 1"),
    Claim("blip2>improved-attention", "Modified BLIP2 > Improved-Attention", "greater",
          ("blip2", "improved-attention"), "Table 1"),
    Claim("improved-attention>early-fusion", "Improved-Attention > Early-Fusion", "greater",
          ("improved-attention", "early-fusion"), "Table 1"),
    Claim("fluid-margin-13", "FLUID beats every prior baseline by at least 13 points", "margin",
          ("fluid", *PRIOR_BASELINES), "abstract / section 1", threshold=0.13),
    Claim("fluid>text-only", "FLUID > text-only", "greater", ("fluid", "text-only"), "Table 2"),
    Claim("fluid>image-only", "FLUID > image-only", "greater", ("fluid", "image-only"), "Table 2"),
    Claim("text-only>image-only", "text-only > image-only", "greater", ("text-only", "image-only"), "Table 2"),
    *(Claim(f"fluid>{name}", f"removing {name.removeprefix('fluid-no-')} lowers the score", "greater",
            ("fluid", name), "Table 3") for name in ABLATIONS),
    Claim("bottleneck-costs-most", "removing the Q-Bottleneck costs the most", "lowest",
          ("fluid-no-bottleneck", *[a for a in ABLATIONS if a != "fluid-no-bottleneck"]), "Table 3"),
)

#: Not the paper's: the question every report answers ("is the deep model worth it?").
REFERENCE_CLAIMS: tuple[Claim, ...] = (
    Claim("fluid>tfidf-image-logreg", "FLUID > TF-IDF + image features + logistic regression", "greater",
          ("fluid", "tfidf-image-logreg"), "this project (classical reference)"),
    Claim("fluid>tfidf-logreg", "FLUID > TF-IDF + logistic regression (text only)", "greater",
          ("fluid", "tfidf-logreg"), "this project (classical reference)"),
    Claim("text-only>tfidf-logreg", "deep text-only > TF-IDF + logistic regression", "greater",
          ("text-only", "tfidf-logreg"), "this project (classical reference)"),
)

ALL_CLAIMS = PAPER_CLAIMS + REFERENCE_CLAIMS


def _score(scores: dict, system: str, metric: str) -> tuple[float, float]:
    """(mean, std) of ``metric`` for ``system``; ``scores[system][metric]`` is ``{"mean", "std"}``."""
    value = scores[system][metric]
    return float(value["mean"]), float(value.get("std") or 0.0)


def evaluate_claim(claim: Claim, scores: dict) -> dict:
    """Checks one claim.

    Args:
        scores: system -> metric -> ``{"mean": float, "std": float}`` (fractions), e.g. the ``test`` entries of
            results.json's ``systems``.
    Returns:
        ``{"id", "claim", "source", "systems", "verdict", "metrics": {metric: {"holds", "values",
        "difference", "within_noise"}}}``; ``difference`` is the left side minus the right side (for
        ``lowest``: the runner-up minus the claimed lowest; for ``margin``: the gap minus the threshold).
    """
    result = {"id": claim.id, "claim": claim.text, "source": claim.source, "systems": list(claim.systems),
              "metrics": {}}
    missing = [s for s in claim.systems if s not in scores]
    if missing:
        return {**result, "verdict": "not evaluated", "missing": missing}
    holds_all = []
    for metric in claim.metrics:
        values = {s: _score(scores, s, metric) for s in claim.systems}
        means = {s: v[0] for s, v in values.items()}
        first, others = claim.systems[0], claim.systems[1:]
        if claim.kind == "greater":
            difference = means[first] - means[others[0]]
            holds = difference > 0
            noise = max(values[first][1], values[others[0]][1])
        elif claim.kind == "lowest":
            runner_up = min(others, key=lambda s: means[s])
            difference = means[runner_up] - means[first]
            holds = difference > 0
            noise = max(values[first][1], values[runner_up][1])
        elif claim.kind == "margin":
            best_other = max(others, key=lambda s: means[s])
            difference = means[first] - means[best_other] - claim.threshold
            holds = difference >= 0
            noise = max(values[first][1], values[best_other][1])
        else:
            raise ValueError(f"claim {claim.id}: unknown kind {claim.kind!r}")
        result["metrics"][metric] = {"holds": bool(holds), "values": means, "difference": difference,
                                     "within_noise": abs(difference) <= noise}
        holds_all.append(holds)
    verdict = "supported" if all(holds_all) else "not supported" if not any(holds_all) else "mixed"
    return {**result, "verdict": verdict}


def evaluate_claims(scores: dict, claims: tuple[Claim, ...] = ALL_CLAIMS) -> list[dict]:
    return [evaluate_claim(claim, scores) for claim in claims]
