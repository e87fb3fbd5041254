"""Confident-learning label-issue detection (cleanlab) on out-of-sample probabilities, and how well it finds
a known set of corrupted labels."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["MIN_TRUSTED", "LabelIssues", "class_noise_rates", "detection_metrics", "fdr_flags", "find_label_issues",
           "label_source_matches", "read_corrupted_ids", "trusted_mask"]

#: Fewest trusted items for the trusted-FDR flag rule: with fewer, one trusted item above the threshold already
#: stands for N / MIN_TRUSTED estimated false discoveries, too coarse a null distribution; cleanlab decides then.
MIN_TRUSTED = 50


@dataclass
class LabelIssues:
    """Result of :func:`find_label_issues`.

    Attributes:
        is_issue (np.ndarray): N bool, the flagged items: cleanlab's verdict (confident learning, prune by
            noise rate); ``review_catalogue`` replaces it with :func:`fdr_flags` when trusted labels exist.
        score (np.ndarray): N floats in [0, 1], 1 - cleanlab's self-confidence label quality: the higher, the
            surer we are that the given label is wrong.
        ranking (np.ndarray): all N row positions, most probable issue first (by ``score``).
        suggested (np.ndarray): N ints, the most probable class (the label we would suggest).
    """

    is_issue: np.ndarray
    score: np.ndarray
    ranking: np.ndarray
    suggested: np.ndarray

    @property
    def issue_positions(self) -> np.ndarray:
        """Row positions of the flagged items, most probable issue first."""
        return self.ranking[self.is_issue[self.ranking]]


def find_label_issues(labels: np.ndarray, pred_probs: np.ndarray) -> LabelIssues:
    """Flags items whose given label disagrees with out-of-sample probabilities (cleanlab's confident learning).

    Args:
        labels (np.ndarray): N given class ids in 0..C-1.
        pred_probs (np.ndarray): N x C out-of-sample probabilities (rows sum to 1).
    """
    import cleanlab.filter
    import cleanlab.rank

    labels = np.asarray(labels, dtype=np.int64)
    pred_probs = _checked(labels, pred_probs)
    is_issue = cleanlab.filter.find_label_issues(labels, pred_probs, filter_by="prune_by_noise_rate", n_jobs=1)
    quality = cleanlab.rank.get_label_quality_scores(labels, pred_probs, method="self_confidence")
    score = 1.0 - quality
    ranking = np.argsort(-score, kind="stable")
    return LabelIssues(is_issue=np.asarray(is_issue, dtype=bool), score=score, ranking=ranking,
                       suggested=pred_probs.argmax(axis=1))


def fdr_flags(score: np.ndarray, trusted: np.ndarray, max_fdr: float = 0.2
              ) -> tuple[np.ndarray, float | None, float | None]:
    """Flags the items whose score reaches a threshold chosen for an estimated false-discovery rate <= ``max_fdr``,
    using trusted (correctly labelled) items as the null distribution of the score.

    For a threshold ``t`` (the candidates are the distinct scores), with ``N`` items of which ``n_trusted`` are
    trusted::

        FPR_trusted(t) = #{trusted items with score >= t} / n_trusted
        FDR(t)         = N * FPR_trusted(t) / max(1, #{items with score >= t})

    ``N * FPR_trusted(t)`` estimates the false discoveries among all ``N`` items as if every item were correctly
    labelled (conservative: the clean items are at most ``N``; errors among the trusted labels, if any, only raise
    it). The estimate is made monotone like a q-value (Benjamini-Hochberg, target-decoy):
    ``q(t) = min(1, min over t' <= t of FDR(t'))``, so a lower threshold never has a higher estimate. The flagged
    set is every item with ``score >= t*``, ``t*`` the smallest candidate with ``q(t*) <= max_fdr``: the largest
    flagged set under the bound (``q(t*) = FDR(t*)``).

    Args:
        score (np.ndarray): N floats, higher = surer the label is wrong (``LabelIssues.score``).
        trusted (np.ndarray): N bools, the items known to be correctly labelled (e.g. label_source ``human``).
        max_fdr (float): the bound, in (0, 1).

    Returns:
        ``(is_issue, threshold, estimated_fdr)``: N bools; ``t*`` and ``FDR(t*)``, or ``(all False, None, None)``
        when no threshold qualifies.
    """
    score = np.asarray(score, dtype=np.float64)
    trusted = np.asarray(trusted, dtype=bool)
    if score.ndim != 1 or trusted.shape != score.shape:
        raise ValueError(f"score and trusted must be two vectors of one length; got shapes {score.shape} and "
                         f"{trusted.shape}")
    if np.isnan(score).any():
        raise ValueError("score contains NaN")
    if not 0.0 < max_fdr < 1.0:
        raise ValueError(f"max_fdr must be in (0, 1); got {max_fdr}")
    if not trusted.any():
        raise ValueError("fdr_flags needs at least one trusted item")
    order = np.argsort(-score, kind="stable")
    ranked = score[order]
    # candidate t = each distinct score; counts of items (all / trusted) with score >= t at its last tie
    last = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])
    n_above = last + 1
    trusted_above = np.cumsum(trusted[order])[last]
    fdr = len(score) * (trusted_above / trusted.sum()) / np.maximum(1, n_above)
    q = np.minimum(1.0, np.minimum.accumulate(fdr[::-1])[::-1])  # running min towards lower thresholds
    ok = np.flatnonzero(q <= max_fdr)
    if len(ok) == 0:
        return np.zeros(len(score), dtype=bool), None, None
    best = ok[-1]  # the lowest qualifying threshold
    threshold = float(ranked[last[best]])
    return score >= threshold, threshold, float(fdr[best])


def label_source_matches(sources: np.ndarray, trusted_source: str) -> np.ndarray:
    """N bools: the items whose label source is ``trusted_source`` (surrounding spaces ignored; None/NaN never
    match)."""
    return np.fromiter((not pd.isna(v) and str(v).strip() == trusted_source for v in sources), dtype=bool,
                       count=len(sources))


def trusted_mask(sources: np.ndarray | None, trusted_source: str | None, *, min_trusted: int = MIN_TRUSTED
                 ) -> tuple[np.ndarray | None, str]:
    """Which items are trusted for :func:`fdr_flags`, or why the trusted-FDR rule cannot be used.

    Args:
        sources: each item's label source (e.g. ``human`` / ``machine``; None/NaN = unknown), or None when the
            catalogue has no label-source column.
        trusted_source: the trusted value (None = do not use the rule).
        min_trusted: fewest trusted items for the rule (:data:`MIN_TRUSTED`).

    Returns:
        ``(mask, reason)``: N bools and ``""`` when the rule applies; otherwise ``None`` and a sentence saying why
        (no column, value absent, fewer than ``min_trusted`` trusted items, or every item trusted).
    """
    if trusted_source is None:
        return None, "no trusted label source given"
    if sources is None:
        return None, "the catalogue has no label_source column"
    mask = label_source_matches(sources, trusted_source)
    n = int(mask.sum())
    if n == 0:
        seen = sorted({str(v).strip() for v in sources if not pd.isna(v)})
        return None, f"no item has label_source {trusted_source!r} (found {seen})"
    if n < min_trusted:
        return None, f"only {n} items have label_source {trusted_source!r}; the trusted-FDR rule needs {min_trusted}"
    if n == len(mask):
        return None, f"every item has label_source {trusted_source!r}: no untrusted labels to flag"
    return mask, ""


def class_noise_rates(labels: np.ndarray, pred_probs: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Per given class: how many items carry it, cleanlab's estimate of how many of those are wrong, and that
    share (``noise_rate``, = 1 - P(true = k | given = k)), noisiest first."""
    import cleanlab.dataset

    labels = np.asarray(labels, dtype=np.int64)
    pred_probs = _checked(labels, pred_probs)
    table = cleanlab.dataset.rank_classes_by_label_quality(labels, pred_probs)
    counts = np.bincount(labels, minlength=len(classes))
    out = pd.DataFrame({
        "label": [classes[i] for i in table["Class Index"]],
        "n_items": counts[table["Class Index"].to_numpy()],
        "estimated_label_issues": table["Label Issues"].to_numpy(),
        "noise_rate": table["Label Noise"].to_numpy(),
    })
    return out.sort_values(["noise_rate", "n_items"], ascending=[False, False], kind="stable").reset_index(drop=True)


def read_corrupted_ids(path: str | Path) -> set[str]:
    """Ids of the items whose label is known to be wrong, from a synthetic catalogue's sidecar
    (``noisy_labels.csv``: item_id, true_category, given_category; rows where they differ)."""
    path = Path(path)
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        expected = {"item_id", "true_category", "given_category"}
        if not reader.fieldnames or not expected <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected the columns {sorted(expected)}, found {reader.fieldnames}")
        return {row["item_id"] for row in reader if row["true_category"] != row["given_category"]}


def detection_metrics(ids: list[str], issues: LabelIssues, corrupted: set[str], *, k: int = 100) -> dict:
    """Precision and recall of the flagged set against the known corrupted ids (restricted to ``ids``, the
    reviewed items), precision among the ``k`` highest-scored items, and the precision of the ranked list cut
    where it first reaches half of the corrupted items (``ranking_precision_at_recall_50``).

    Returns:
        ``{"detection_precision", "detection_recall", "precision_at_100", "ranking_precision_at_recall_50",
        "n_flagged", "n_corrupted", "n_true_positives"}`` (``precision_at_<k>`` for other k); a precision with
        nothing flagged (or nothing corrupted) is 0.
    """
    ids = np.asarray([str(i) for i in ids], dtype=object)
    truth = np.fromiter((i in corrupted for i in ids), dtype=bool, count=len(ids))
    flagged = issues.is_issue
    true_positives = int((flagged & truth).sum())
    top = issues.ranking[: min(k, len(ids))]
    found = np.cumsum(truth[issues.ranking])
    half = np.searchsorted(found, truth.sum() / 2) if truth.any() else len(ids)  # first cut with recall >= 0.5
    return {
        "detection_precision": true_positives / int(flagged.sum()) if flagged.any() else 0.0,
        "detection_recall": true_positives / int(truth.sum()) if truth.any() else 0.0,
        f"precision_at_{k}": float(truth[top].mean()) if len(top) else 0.0,
        "ranking_precision_at_recall_50": float(found[half] / (half + 1)) if truth.any() else 0.0,
        "n_flagged": int(flagged.sum()),
        "n_corrupted": int(truth.sum()),
        "n_true_positives": true_positives,
    }


def _checked(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    if pred_probs.ndim != 2 or len(pred_probs) != len(labels):
        raise ValueError(f"pred_probs must be N x C with N = {len(labels)} labels; got shape {pred_probs.shape}")
    if np.isnan(pred_probs).any():
        raise ValueError("pred_probs contains NaN rows (items that could not be scored); drop them first")
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= pred_probs.shape[1]:
        raise ValueError(f"labels must be class ids in 0..{pred_probs.shape[1] - 1}")
    return pred_probs
