"""What scoring a canonical frame returns, whichever learner scored it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: Unreadable images listed by example (in metrics.json and bad_rows.json); all of them are counted.
UNREADABLE_EXAMPLES = 20


@dataclass
class Scores:
    """Arrays aligned with the scored frame's rows (N items, C classes).

    proba: N x C class probabilities.
    labels: N class indices of the frame's labels (-1: no label, or one the model does not know).
    embedding: N x E, the representation before the classifier (when asked for and the model has one).
    gate: N x l gate values (FLUID heads), routing: N x E expert weights (heads with experts),
    expert_load: E, the mean routing weight per expert; None where the model has none.
    unreadable: frame position -> why that item's image could not be decoded (it was scored without it).
    """

    proba: np.ndarray
    labels: np.ndarray
    embedding: np.ndarray | None = None
    gate: np.ndarray | None = None
    expert_load: np.ndarray | None = None
    routing: np.ndarray | None = None
    unreadable: dict[int, str] = field(default_factory=dict)

    def unreadable_rows(self, frame: pd.DataFrame, limit: int | None = None) -> list[dict]:
        """``[{"row", "id", "problem"}]`` for the unreadable images, in frame order, the first ``limit`` (None:
        all); ``row`` is the frame's index label (the file's data row)."""
        return unreadable_rows(frame, self.unreadable, limit)


def unreadable_rows(frame: pd.DataFrame, problems: dict[int, str], limit: int | None = None) -> list[dict]:
    """``[{"row", "id", "problem"}]`` in frame order for the frame positions in ``problems``."""
    rows = []
    for position in sorted(problems)[:limit]:
        row = frame.index[position]
        rows.append({"row": row.item() if hasattr(row, "item") else row, "id": frame["id"].iloc[position],
                     "problem": problems[position]})
    return rows
