"""Deterministic stratified train / validation split."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fluid.data._canonical import releases_arrow_memory
from fluid.data.store import rows_where
from fluid.data.schema import LABEL, sorted_labels

__all__ = ["stratified_split"]


@releases_arrow_memory
def stratified_split(
    frame: pd.DataFrame, val_fraction: float = 0.1, seed: int = 0, *, label_col: str = LABEL
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``frame`` into ``(train, val)`` with every class in the same proportion.

    The validation size is ``round(val_fraction × labelled rows that can be split)``, shared among the
    classes by largest remainder (so rare classes get their fair, possibly zero, share). A class with a single
    item, and every unlabelled row, stays in train; a class never loses all its train items. Deterministic
    for a given ``seed``; works with any index (positions are used, the index is kept) and keeps the
    original row order inside each part.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = len(frame)
    labels = frame[label_col].astype(object).to_numpy()
    lab = np.array([None if (v is None or (isinstance(v, float) and np.isnan(v))) else str(v) for v in labels],
                   dtype=object)
    classes = sorted_labels(pd.Series(lab, dtype=object))
    rng = np.random.default_rng(seed)
    groups = {c: np.flatnonzero(lab == c) for c in classes}
    eligible = {c: g for c, g in groups.items() if len(g) >= 2}
    n_eligible = sum(len(g) for g in eligible.values())
    target = int(round(val_fraction * n_eligible))

    quota = {c: val_fraction * len(g) for c, g in eligible.items()}
    take = {c: min(int(np.floor(q)), len(eligible[c]) - 1) for c, q in quota.items()}
    left = target - sum(take.values())
    if left > 0:
        order = sorted(eligible, key=lambda c: (-(quota[c] - np.floor(quota[c])), rng.random()))
        for c in order:
            if left <= 0:
                break
            if take[c] < len(eligible[c]) - 1:
                take[c] += 1
                left -= 1

    val_mask = np.zeros(n, dtype=bool)
    for c in classes:  # sorted order: deterministic rng consumption
        g = groups[c]
        k = take.get(c, 0)
        if k > 0:
            val_mask[rng.permutation(g)[:k]] = True
    return rows_where(frame, ~val_mask), rows_where(frame, val_mask)
