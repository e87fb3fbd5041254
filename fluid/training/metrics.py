"""Classification metrics with a fixed JSON contract.

The keys of :func:`compute_metrics` are a public contract shared by ``fluid evaluate --json``,
``Classifier.evaluate`` and the experiment runner:

``accuracy, macro_precision, macro_recall, macro_f1, weighted_f1, top5_accuracy, log_loss, n_items, n_skipped,
per_class, per_language, per_label_source`` (the last only when the data has label sources).

Macro averages run over the classes that occur in the evaluated items' true labels or in the predictions
(scikit-learn's convention), so a class the model never predicts and that is absent from the data does not
dilute the average.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

METRIC_KEYS = (
    "accuracy",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "weighted_f1",
    "top5_accuracy",
    "log_loss",
    "n_items",
    "n_skipped",
    "per_class",
    "per_language",
)


def top_k_accuracy(y_true: np.ndarray, proba: np.ndarray, k: int = 5) -> float:
    """Share of items whose true class is among the ``k`` most probable ones.

    Args:
        y_true: N integer class indices.
        proba: N x C probabilities (or any scores).
    """
    if len(y_true) == 0:
        return float("nan")
    k = min(k, proba.shape[1])
    top = np.argpartition(-proba, kth=k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top == y_true[:, None], axis=1)))


#: Probabilities are clipped to at least this before the logarithm (one confidently wrong item costs at most ~27.6).
LOG_LOSS_EPS = 1e-12


def log_loss(y_true: np.ndarray, proba: np.ndarray) -> float:
    """The mean negative log-probability of the true class over the items with a known label (``y_true`` >= 0);
    NaN when none has one.

    Args:
        y_true: N class indices (-1: a label the model does not know, left out). proba: N x C probabilities.
    """
    known = y_true >= 0
    if not known.any():
        return float("nan")
    return float(-np.log(np.clip(proba[known, y_true[known]], LOG_LOSS_EPS, None)).mean())


def calibration(y_true: np.ndarray, proba: np.ndarray, bins: int = 10) -> dict:
    """Reliability of the top-1 confidence: per-bin mean confidence, accuracy and count, and the expected
    calibration error ECE = Σ_b (n_b / N) · |acc_b − conf_b|."""
    if len(y_true) == 0:
        return {"ece": float("nan"), "bins": []}
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        sel = which == b
        n = int(sel.sum())
        conf = float(confidence[sel].mean()) if n else None
        acc = float(correct[sel].mean()) if n else None
        if n:
            ece += n / len(y_true) * abs(acc - conf)
        table.append({"low": float(edges[b]), "high": float(edges[b + 1]), "confidence": conf, "accuracy": acc,
                      "n": n})
    return {"ece": float(ece), "bins": table}


def _summary(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float, float, float, float]:
    """accuracy, macro P/R/F1 and weighted F1 for integer labels."""
    accuracy = float(np.mean(y_true == y_pred))
    labels = np.union1d(y_true[y_true >= 0], y_pred)  # unknown labels (-1) count as errors, not as a class
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    _, _, wf, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="weighted",
                                                  zero_division=0)
    return accuracy, float(p), float(r), float(f), float(wf)


def _grouped(y_true: np.ndarray, y_pred: np.ndarray, groups: Sequence | None) -> dict[str, dict]:
    if groups is None:
        return {}
    groups = np.asarray([("unknown" if g is None or g != g else str(g)) for g in groups], dtype=object)
    result = {}
    for group in sorted(set(groups.tolist())):
        sel = groups == group
        acc, _, _, f1, _ = _summary(y_true[sel], y_pred[sel])
        result[group] = {"accuracy": acc, "macro_f1": f1, "n": int(sel.sum())}
    return result


def compute_metrics(
    y_true: Sequence[int],
    proba: np.ndarray,
    classes: Sequence[str],
    *,
    languages: Sequence | None = None,
    label_sources: Sequence | None = None,
    n_skipped: int = 0,
) -> dict:
    """Every metric of the contract for one evaluated set.

    Args:
        y_true: N class indices; ``-1`` marks an item whose label is unknown to the model (it counts as
            wrong in accuracy and is reported in ``n_unknown_label``).
        proba: N x C predicted probabilities, columns in the order of ``classes``.
        classes: C class names.
        languages / label_sources: N group values, or None.
        n_skipped: items that could not be scored at all (e.g. neither text nor image).

    Returns:
        dict with the keys of :data:`METRIC_KEYS` (+ ``per_label_source`` when given, ``n_unknown_label``).
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[0] != len(y_true) or proba.shape[1] != len(classes):
        raise ValueError(f"proba must be {len(y_true)} x {len(classes)}, got {proba.shape}")
    y_pred = proba.argmax(axis=1) if len(y_true) else np.zeros(0, dtype=np.int64)
    n_unknown = int(np.sum(y_true < 0))
    if len(y_true) == 0:
        nan = float("nan")
        metrics = dict.fromkeys(METRIC_KEYS[:7], nan)
    else:
        accuracy, p, r, f1, wf1 = _summary(y_true, y_pred)
        metrics = {
            "accuracy": accuracy,
            "macro_precision": p,
            "macro_recall": r,
            "macro_f1": f1,
            "weighted_f1": wf1,
            "top5_accuracy": top_k_accuracy(y_true, proba, 5),
            "log_loss": log_loss(y_true, proba),
        }
    metrics["n_items"] = int(len(y_true))
    metrics["n_skipped"] = int(n_skipped)
    metrics["n_unknown_label"] = n_unknown
    labels = np.arange(len(classes))
    if len(y_true):
        pc, rc, fc, sc = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    else:
        pc = rc = fc = np.zeros(len(classes))
        sc = np.zeros(len(classes), dtype=int)
    metrics["per_class"] = {
        str(name): {"precision": float(pc[i]), "recall": float(rc[i]), "f1": float(fc[i]), "support": int(sc[i])}
        for i, name in enumerate(classes)
    }
    known = y_true >= 0
    metrics["confusion_matrix"] = (confusion_matrix(y_true[known], y_pred[known], labels=labels).tolist()
                                   if known.any() else np.zeros((len(classes), len(classes)), dtype=int).tolist())
    metrics["calibration"] = calibration(y_true, proba)
    metrics["per_language"] = _grouped(y_true, y_pred, languages)
    if label_sources is not None and any(s is not None and s == s for s in label_sources):
        metrics["per_label_source"] = _grouped(y_true, y_pred, label_sources)
    return metrics
