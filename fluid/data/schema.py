"""The canonical record every reader returns (see docs/architecture.md, "Canonical record")."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fluid.data.report import BadRowReport

__all__ = [
    "ID", "TEXT", "IMAGE", "LABEL", "LANGUAGE", "LABEL_SOURCE", "COLUMNS",
    "MAX_TEXT_CHARS", "STRING", "Catalogue", "empty_frame", "sorted_labels", "has_value", "is_arrow_strings",
    "present", "string_series",
]

ID = "id"
TEXT = "text"
IMAGE = "image"
LABEL = "label"
LANGUAGE = "language"
LABEL_SOURCE = "label_source"

#: Column order of the canonical frame.
COLUMNS = (ID, TEXT, IMAGE, LABEL, LANGUAGE, LABEL_SOURCE)

#: dtype of the ``id`` and ``text`` columns (and ``image`` when every cell is a path): pandas' own string dtype,
#: stored in Arrow buffers (UTF-8 plus offsets, no Python object per row), NaN where missing.
STRING = pd.StringDtype("pyarrow", na_value=np.nan)

#: Texts longer than this are reported as ``text-huge`` and cut to this length (no encoder reads that far;
#: tokenizing megabytes per item would stall training). The row is kept.
MAX_TEXT_CHARS = 100_000


@dataclass
class Catalogue:
    """A catalogue read into the canonical frame.

    ``frame``: columns :data:`COLUMNS`. ``id`` and ``text`` are :data:`STRING` (NaN where missing), ``image`` too
    when every cell is a path (else object: in-memory bytes / PIL images, ``None`` where missing); ``label``,
    ``language`` and ``label_source`` are object (``None`` where missing). Its index is the 0-based data
    row of the file (header excluded) for files, or the input DataFrame's index for in-memory frames, so
    predictions can be aligned back. ``image_root``: the folder relative image paths were resolved against
    (``None`` for in-memory frames without one and for zip archives). ``source``: the file read (or
    ``"<DataFrame>"``). ``report``: the :class:`~fluid.data.report.BadRowReport`. ``split``: e.g. ``"train"``.
    """

    frame: pd.DataFrame
    image_root: Path | None = None
    source: str = "<DataFrame>"
    report: BadRowReport = field(default_factory=BadRowReport)
    split: str | None = None

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def labels(self) -> list[str]:
        """Sorted distinct labels (numeric order when every label is an integer)."""
        return sorted_labels(self.frame[LABEL])


def sorted_labels(labels) -> list[str]:
    """Distinct non-missing labels as strings, sorted numerically when all are integers, else as text."""
    uniq = {str(v) for v in pd.unique(pd.Series(labels, dtype=object).dropna())}
    if uniq and all(u.lstrip("-").isdigit() for u in uniq):
        return sorted(uniq, key=int)
    return sorted(uniq)


def label_sort_key(label: str) -> tuple[int, int, str]:
    """The order of a model's classes: integer labels first, by value, then the others as text."""
    return (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label)


def scorable_rows(frame: pd.DataFrame) -> pd.Series:
    """N bool, aligned with ``frame``: the rows of a canonical frame that have a text or an image."""
    return pd.Series(present(frame[TEXT]) | present(frame[IMAGE]), index=frame.index)


def empty_frame() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in COLUMNS})


def has_value(cell) -> bool:
    """True for a usable cell of a canonical frame: not None/NaN, not an empty or blank string, not empty bytes."""
    if cell is None or (isinstance(cell, float) and cell != cell):
        return False
    if isinstance(cell, str):
        return cell.strip() != ""
    if isinstance(cell, (bytes, bytearray)):
        return len(cell) > 0
    return True


def is_arrow_strings(column: pd.Series) -> bool:
    """Whether a column is a :data:`STRING`-like column: pandas strings stored in Arrow buffers."""
    return isinstance(column.dtype, pd.StringDtype) and column.dtype.storage == "pyarrow"


def string_series(values, index: pd.Index) -> pd.Series:
    """A :data:`STRING` Series over ``values``'s Arrow buffers (a ``large_string`` ChunkedArray; no copy)."""
    return pd.Series(pd.arrays.ArrowStringArray(values, dtype=STRING), index=index, copy=False)


def present(column: pd.Series) -> np.ndarray:
    """:func:`has_value` of every cell of a canonical column (bool array), vectorised for :data:`STRING`
    columns (no Python string per row)."""
    if isinstance(column.dtype, pd.StringDtype):
        return (column.notna() & (column.str.strip() != "")).to_numpy(dtype=bool, na_value=False)
    return column.map(has_value).to_numpy(dtype=bool)
