"""A torch ``Dataset`` of raw samples (see docs/architecture.md, "Sample").

Images are decoded in ``__getitem__`` (so in DataLoader workers), and nothing is cached per item. The ``id`` /
``text`` / ``image`` columns the readers return are Arrow buffers (:data:`~fluid.data.schema.STRING`): the
dataset reads them in place through numpy views — UTF-8 bytes plus offsets, no Python object per row, no copy —
so forked workers do not slowly copy the parent's memory by touching reference counts. Object columns (a
hand-made frame) are packed into such buffers for DataLoader workers (``compact=True``) or read as they are
(``compact=False``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from torch.utils.data import Dataset

from fluid.data._canonical import release_arrow_memory
from fluid.data.corruptions import Corruption
from fluid.data.errors import BadImageError, BadRowError
from fluid.data.images import load_image
from fluid.data.problems import Problem
from fluid.data.report import DEFAULT_POLICY, check_policy
from fluid.data.schema import ID, IMAGE, LABEL, TEXT, Catalogue, is_arrow_strings, sorted_labels

__all__ = ["CatalogueDataset", "ColumnCells", "sorted_labels", "IMAGE_PROBLEM"]

#: How a :class:`~fluid.data.problems.Problem` of an image reads as text (feature-cache indexes store that form).
IMAGE_PROBLEM = "image: "


_T = pa.large_string()


def _arrow(values: Any) -> pa.Array | None:
    """``values`` as Arrow strings (None/NaN → null), or None when some value is not a string."""
    try:
        arr = pa.array(values, type=_T, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _blank_to_null(arr: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(pc.utf8_trim_whitespace(arr), pa.scalar("", _T)), pa.scalar(None, _T), arr)


class _FrameStrings:
    """The frame's own cells (no copy), read like :class:`_PackedStrings`. ``kind``: ``"id"`` → ``str(cell)``;
    ``"text"`` → the string, None unless a non-blank ``str``; ``"image"`` → the cell (a path, or in-memory
    bytes / PIL image), None where missing or blank."""

    def __init__(self, cells: np.ndarray, kind: str) -> None:
        self.cells = cells
        self.kind = kind

    def __len__(self) -> int:
        return len(self.cells)

    def __getitem__(self, i: int) -> Any:
        v = self.cells[i]
        if self.kind == "id":
            return str(v)
        if self.kind == "text" and not isinstance(v, str):
            return None
        return None if _is_missing(v) else v


class _PackedStrings:
    """``str | None`` values as UTF-8 in uint8 buffers plus int64 offsets, one pair per Arrow chunk (picklable,
    no Python object per item). ``copy=False`` reads the Arrow buffers themselves (numpy views: a
    :data:`~fluid.data.schema.STRING` column of the frame costs nothing more); ``copy=True`` packs a private copy
    (for arrays built here and then dropped)."""

    def __init__(self, arr: pa.Array | pa.ChunkedArray, *, copy: bool = True) -> None:
        chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
        self.missing = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        self.starts = np.cumsum([0] + [len(c) for c in chunks])[:-1]
        self.offsets: list[np.ndarray] = []
        self.bufs: list[np.ndarray] = []
        for chunk in chunks:
            _, offsets, data = chunk.buffers()
            view = np.frombuffer(offsets, dtype=np.int64)[chunk.offset: chunk.offset + len(chunk) + 1]
            buf = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
            self.offsets.append(view.copy() if copy else view)
            self.bufs.append(buf.copy() if copy else buf)

    def __len__(self) -> int:
        return len(self.missing)

    def __getitem__(self, i: int) -> str | None:
        if self.missing[i]:
            return None
        k = 0 if len(self.starts) == 1 else int(np.searchsorted(self.starts, i, side="right")) - 1
        offsets, j = self.offsets[k], i - int(self.starts[k])
        return self.bufs[k][offsets[j]: offsets[j + 1]].tobytes().decode("utf-8")


def _arrow_of(column: pd.Series) -> pa.ChunkedArray:
    """The Arrow strings behind a :data:`~fluid.data.schema.STRING` column (no copy)."""
    arr = column.array.__arrow_array__()
    return arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr])


def _column_reader(column: pd.Series, kind: str, compact: bool) -> Any:
    """How the dataset reads one of the ``id`` / ``text`` / ``image`` columns (``kind``): a column already in
    Arrow buffers is read in place; an object column is read in place (``compact=False``) or packed into numpy
    buffers for DataLoader workers (``compact=True``, see the module docstring)."""
    if is_arrow_strings(column) and not (kind == "id" and column.hasnans):
        return _PackedStrings(_arrow_of(column), copy=False)
    cells = column.to_numpy(dtype=object)
    if not compact:
        return _FrameStrings(cells, kind)
    if kind == "id":
        ids = _arrow(cells)
        if ids is None or ids.null_count:
            ids = pa.array([str(v) for v in column.tolist()], type=_T)
        return _PackedStrings(ids)
    if kind == "text":
        texts = _arrow(cells)
        if texts is None:
            texts = pa.array([t if isinstance(t, str) else None for t in column.tolist()], type=_T)
        return _PackedStrings(_blank_to_null(texts))
    paths = _arrow(cells)
    if paths is None:  # in-memory bytes / PIL images: keep the objects (they are already in memory)
        return _FrameStrings(cells, "image")
    return _PackedStrings(_blank_to_null(paths))


class ColumnCells(Sequence):
    """The cells of a canonical frame's ``id``, ``text`` or ``image`` column (``kind``), read one at a time: a
    :data:`~fluid.data.schema.STRING` column from its Arrow buffers, so walking a million texts holds one Python
    string at a time instead of a million. ``text``: the string, None where missing or blank; ``image``: the cell
    (a path, or in-memory bytes / PIL image), None where missing or blank; ``id``: ``str(cell)``. A slice gives
    a list. ``compact``: see :class:`CatalogueDataset`."""

    def __init__(self, column: pd.Series, kind: str, *, compact: bool = False) -> None:
        if kind not in ("id", "text", "image"):
            raise ValueError(f"kind must be 'id', 'text' or 'image', got {kind!r}")
        self.kind = kind
        self._reader = _column_reader(column, kind, compact)

    def __len__(self) -> int:
        return len(self._reader)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        v = self._reader[i]
        if self.kind != "id" and isinstance(v, str) and not v.strip():
            return None
        return v


def _label_str(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


class CatalogueDataset(Dataset):
    """Samples of a canonical frame (or a :class:`~fluid.data.schema.Catalogue`).

    Args:
        frame: the canonical frame (columns ``id, text, image, label``; others ignored) or a Catalogue.
        label_to_index: label string → class index. Default: the frame's labels sorted (numerically when
            all are integers). Labels absent from the map give ``label`` -1 and the problem
            ``Problem("label", "unknown label", ...)``; a missing label gives -1 with no problem (unlabelled).
        image_root: folder for relative image paths (canonical frames hold absolute ones).
        on_bad_row: what a decoding failure does. ``"missing-modality"`` (default) and ``"skip"``: the image
            becomes None and a ``Problem("image", kind, detail)`` is added to ``problems`` — a Dataset cannot
            drop rows after the fact, so ``"skip"`` behaves like ``"missing-modality"`` here; the readers already
            dropped the rows they could judge. ``"fail"``: raises :class:`~fluid.data.errors.BadRowError` with the
            row and id.
        max_pixels: decompression-bomb limit passed to :func:`~fluid.data.images.load_image`.
        corruption: a :class:`~fluid.data.corruptions.Corruption` applied to every item's image or text (its
            modality) after decoding, seeded by the item id (robustness evaluation); None = clean input.
        load_images: False leaves ``image`` None without reading the file (when image features come from a
            feature cache instead).
        compact: for object columns only (Arrow-backed ones are always read in place): True (default) packs
            their strings into numpy buffers, for DataLoader workers; False reads the frame's own strings (no
            copy: for ``num_workers=0``, where the copy would only double the memory they take).

    ``__getitem__(i)`` returns ``{"index": i, "id", "text", "image" (RGB PIL or None), "label" (int),
    "problems" (list[fluid.data.problems.Problem])}``; ``i`` is the position in the frame (``frame.index[i]`` aligns it back).
    """

    def __init__(
        self,
        frame: pd.DataFrame | Catalogue,
        label_to_index: Mapping[str, int] | None = None,
        *,
        image_root: str | os.PathLike | None = None,
        on_bad_row: str = DEFAULT_POLICY,
        max_pixels: int | None = None,
        corruption: Corruption | None = None,
        load_images: bool = True,
        compact: bool = True,
    ) -> None:
        self.source: str | None = None
        self.load_images = load_images
        if isinstance(frame, Catalogue):
            if image_root is None and frame.image_root is not None:
                image_root = frame.image_root
            self.source = frame.source
            frame = frame.frame
        missing = [c for c in (ID, TEXT, IMAGE, LABEL) if c not in frame.columns]
        if missing:
            raise ValueError(
                f"CatalogueDataset needs a canonical frame (columns id, text, image, label); missing {missing}; "
                "build one with fluid.data.read_catalogue / normalize_frame"
            )
        self.on_bad_row = check_policy(on_bad_row)
        self.image_root = os.fspath(image_root) if image_root is not None else None
        self.max_pixels = max_pixels
        self.corruption = corruption
        self.source_index = frame.index  # positions → original index labels

        self._ids = ColumnCells(frame[ID], "id", compact=compact)
        self._texts = ColumnCells(frame[TEXT], "text", compact=compact)
        self._images = ColumnCells(frame[IMAGE], "image", compact=compact)

        labels = _arrow(frame[LABEL].to_numpy(dtype=object))
        if labels is None:
            labels = pa.array([None if _is_missing(v) else _label_str(v) for v in frame[LABEL].tolist()], type=_T)
        if label_to_index is None:
            label_to_index = {lab: i for i, lab in enumerate(sorted_labels(labels.drop_null().unique().to_pylist()))}
        self.label_to_index = {str(k): int(v) for k, v in label_to_index.items()}
        keys = list(self.label_to_index)
        pos = pc.index_in(labels, value_set=pa.array(keys, type=_T))
        lookup = np.array([self.label_to_index[k] for k in keys] + [-1], dtype=np.int64)
        pos_np = np.asarray(pc.fill_null(pos, len(keys)).to_numpy(zero_copy_only=False), dtype=np.int64)
        self.labels = lookup[pos_np]
        unknown = np.flatnonzero(np.asarray(pc.and_(labels.is_valid(), pos.is_null()).to_numpy(zero_copy_only=False)))
        self._unknown = {int(i): labels[int(i)].as_py() for i in unknown}
        release_arrow_memory()

    @property
    def classes(self) -> list[str]:
        """Labels ordered by class index."""
        return [k for k, _ in sorted(self.label_to_index.items(), key=lambda kv: kv[1])]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        n = len(self)
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"CatalogueDataset indices must be integers, got {type(i).__name__}")
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for {n} samples")
        id_ = self._ids[i]
        problems: list[Problem] = []
        label = int(self.labels[i])
        if i in self._unknown:
            problems.append(Problem("label", "unknown label", f"unknown label {self._unknown[i]!r}"))
        cell = self._images[i]
        image = None
        if cell is not None and self.load_images:
            try:
                image = load_image(cell, self.image_root, max_pixels=self.max_pixels)
            except BadImageError as e:
                if self.on_bad_row == "fail":
                    raise BadRowError(self.source, self.source_index[i], id_, f"image-{e.kind.replace(' ', '-')}",
                                      str(e)) from None
                problems.append(Problem("image", e.kind, str(e)))
        text = self._texts[i]
        if self.corruption is not None:
            if self.corruption.modality == "image":
                image = self.corruption(image, id_)
            else:
                text = self.corruption(text, id_)
        return {"index": i, "id": id_, "text": text, "image": image, "label": label, "problems": problems}
