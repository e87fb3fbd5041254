"""Confident-learning label-issue detection (cleanlab) on out-of-sample probabilities, and how well it finds
a known set of corrupted labels."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["LabelIssues", "class_noise_rates", "detection_metrics", "find_label_issues", "read_corrupted_ids"]


@dataclass
class LabelIssues:
    """Result of :func:`find_label_issues`.

    Attributes:
        is_issue (np.ndarray): N bool, cleanlab's verdict (confident learning, prune by noise rate).
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
