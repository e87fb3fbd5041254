"""Out-of-sample class probabilities by k-fold cross-fitting: a fresh classifier per fold, trained with a run's
configuration on the other folds, scores the held-out fold. Every item is scored by a model that never saw its
label, which is what confident learning needs."""

from __future__ import annotations

import tempfile
import warnings
from typing import Any

import numpy as np
import pandas as pd

from fluid.progress import progress_bar

__all__ = ["CANONICAL_COLUMNS", "cross_fit_proba", "fold_assignment"]

#: Column options that make a :class:`fluid.Classifier` read a canonical frame (``fluid.data.schema``) as is.
CANONICAL_COLUMNS = {"label": "label", "text": "text", "image": "image", "id": "id", "language": "language",
                     "label_source": "label_source", "image_root": None, "encoding": None}


def fold_assignment(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold number (0..folds-1) of each item, stratified by label.

    Args:
        labels (np.ndarray): N integer class ids.
        folds (int): K >= 2; every fold gets about N/K items and each class spread as evenly as it allows.
    Returns:
        np.ndarray: N ints.
    """
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    if len(labels) < folds:
        raise ValueError(f"cross-fitting {len(labels)} labelled items in {folds} folds: need at least one item "
                         "per fold")
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(labels), dtype=np.int64)
    start = 0  # rotate where each class starts, so small classes do not all land in fold 0
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        assignment[members] = (start + np.arange(len(members))) % folds
        start = (start + len(members)) % folds
    return assignment


def cross_fit_proba(params: dict[str, Any], frame: pd.DataFrame, classes: list[str], *, folds: int = 4,
                    seed: int = 0, progress: bool = True) -> np.ndarray:
    """Out-of-sample probabilities for every row of a labelled canonical frame.

    Args:
        params: :meth:`fluid.Classifier.get_params` of the run whose configuration each fold reuses (its
            column options and run path are replaced: the folds read the canonical frame and train in
            temporary folders).
        frame: canonical catalogue frame (``id, text, image, label, ...``; images as absolute paths, zip
            references or bytes — never decoded here).
        classes: the label order of the result's columns; labels outside it are an error.
        folds: K.
        seed: fold assignment and each fold's training seed.
    Returns:
        np.ndarray: N x C probabilities (rows sum to 1), row i scored by the model that did not train on it.
        A class absent from a fold's training part gets probability 0 from that fold's model.
    """
    from fluid.api import Classifier

    index = {c: i for i, c in enumerate(classes)}
    given = frame["label"].astype(str)
    unknown = sorted(set(given) - set(index))
    if unknown:
        raise ValueError(f"labels {unknown[:10]} are not among the classes {classes[:20]}")
    labels = given.map(index).to_numpy()
    assignment = fold_assignment(labels, folds, seed)
    fold_params = {**params, **CANONICAL_COLUMNS, "seed": seed, "floor": False}  # folds score; no floor each
    proba = np.zeros((len(frame), len(classes)), dtype=np.float64)
    with progress_bar("cross-fitting folds", folds, enabled=progress) as advance:
        for fold in range(folds):
            held_out = assignment == fold
            with tempfile.TemporaryDirectory(prefix=f"fluid-review-fold{fold}-") as run_dir, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = Classifier(**{**fold_params, "path": run_dir})
                model.fit(frame[~held_out], progress=False)
                fold_proba = model.predict_proba(frame[held_out])
            for name in fold_proba.columns:
                proba[held_out, index[name]] = fold_proba[name].to_numpy()
            advance(1)
    return proba
