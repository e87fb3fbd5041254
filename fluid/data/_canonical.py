"""Shared machinery: turn raw columns into the canonical frame, find bad rows, apply the bad-row policy.

Everything here is vectorised over rows except the per-cell classification of image cells of generic
catalogues (mixed types: paths, bytes, PIL images), which is a plain loop.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, ParamSpec, Sequence, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from fluid.data.errors import BadRowError, ColumnError
from fluid.data.images import PathProblem, check_image_file, is_zip_ref, resolve_image_path
from fluid.data.report import REASONS, BadRowReport, check_policy
from fluid.data.schema import (
    COLUMNS, ID, IMAGE, LABEL, LABEL_SOURCE, LANGUAGE, MAX_TEXT_CHARS, TEXT, Catalogue, string_series,
)
from fluid.data.store import mark_memory_mapped, rows_where

P = ParamSpec("P")
R = TypeVar("R")

# reasons that make the row's image None / its text None
IMAGE_REASONS = ("image-outside-root", "image-missing", "image-invalid", "image-empty")
# reasons that never raise under "fail" nor drop under "skip"
_INFO_ONLY = ("text-huge",)


def require_columns(present: Sequence[Any], wanted: Iterable[str | None], source: str | None) -> None:
    cols = list(present)
    for c in wanted:
        if c is not None and c not in cols:
            raise ColumnError(c, source, cols)


def text_cells(df: pd.DataFrame, columns: Sequence[str]) -> tuple[list[pd.Series], dict[int, str]]:
    """The text columns of ``df`` with every cell that is not text (a list, a mapping, a boolean: JSON lines
    parse them as such) made empty, and ``{row position: what it held}`` for the ``text-invalid`` bad-row
    reason. Numbers stay (a JSON ``42`` is the text "42")."""
    out, problems = [], {}
    for name in columns:
        column = df[name]
        if column.dtype == object:
            bad = column.map(lambda v: isinstance(v, (list, tuple, dict, set, bool))).to_numpy(dtype=bool)
            if bad.any():
                for position in np.flatnonzero(bad):
                    if int(position) not in problems:
                        value = column.iloc[position]
                        problems[int(position)] = f"column {name!r} holds a {type(value).__name__}, not text"
                column = column.where(~bad, None)
        out.append(column)
    return out, problems


def _cell_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("utf-8", "replace")
    return str(v)


#: Rows parsed at a time by the file readers: the parser's own Python strings exist for one chunk only.
CHUNK_ROWS = 20_000

_T = pa.large_string()
Strings = pa.Array | pa.ChunkedArray | np.ndarray
_EMPTY = pa.scalar("", _T)
_NULL = pa.scalar(None, _T)


def arrow_strings(s: pd.Series, *, strip: bool = True) -> pa.Array:
    """A column as an Arrow ``large_string`` array: values as text (integral floats without ``.0``),
    stripped, empty → null. Vectorised for string columns; other dtypes go through ``str()`` per cell."""
    if isinstance(s.dtype, pd.StringDtype):
        arr = pa.array(s, type=_T, from_pandas=True)
    else:
        if pd.api.types.is_float_dtype(s.dtype):
            vals = s.to_numpy()
            ok = ~np.isnan(vals)
            if ok.any() and np.all(np.mod(vals[ok], 1) == 0):
                s = s.astype("Int64")
        o = s.astype(object)
        values = [None if m else _cell_str(v) for v, m in zip(o.tolist(), o.isna().tolist())]
        arr = pa.array(values, type=_T)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if strip:
        arr = pc.utf8_trim_whitespace(arr)
    return pc.if_else(pc.equal(arr, _EMPTY), _NULL, arr)


def chunked(values: pa.Array | pa.ChunkedArray | np.ndarray) -> pa.ChunkedArray | None:
    """Arrow strings (an array, chunks, or an object array of ``str`` / None) as one ``large_string``
    ChunkedArray (no copy for Arrow input); None when some cell is neither a string nor missing (bytes, images)."""
    if isinstance(values, pa.ChunkedArray):
        return values if values.type == _T else values.cast(_T)
    if isinstance(values, pa.Array):
        return pa.chunked_array([values if values.type == _T else values.cast(_T)], type=_T)
    if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
        return None
    return pa.chunked_array([pa.array(values, type=_T, from_pandas=True)], type=_T)


def to_objects(arr: pa.Array) -> np.ndarray:
    """Arrow strings → numpy object array of ``str`` / ``None``."""
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=object)


def strings(s: pd.Series, *, strip: bool = True) -> np.ndarray:
    """A column as an object array of ``str`` (stripped) or ``None`` (missing or empty)."""
    return to_objects(arrow_strings(s, strip=strip))


def shared_strings(values: np.ndarray | None) -> np.ndarray | None:
    """``values`` (object array of ``str`` / None) with equal strings sharing one object: a column of a few
    distinct values (label, language, label_source) then costs a pointer per row instead of a ~50-byte
    string per row (12 MiB less for three such columns at 100k rows)."""
    if values is None:
        return None
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    table = np.empty(len(uniques) + 1, dtype=object)
    table[:-1] = uniques
    table[-1] = None  # code -1: missing
    return table[codes]


def release_arrow_memory() -> None:
    """Hand the memory Arrow freed back to the OS. Arrow's pool (mimalloc/jemalloc) keeps freed buffers for
    reuse; after converting a catalogue's columns it held ~85 MiB at 100k rows (and grows with the rows) that
    nothing would use again. Call after a bulk conversion, once its intermediate arrays are gone."""
    pa.default_memory_pool().release_unused()


def releases_arrow_memory(reader: Callable[P, R]) -> Callable[P, R]:
    """Decorator for a reader: :func:`release_arrow_memory` once it has returned (its locals freed)."""

    @functools.wraps(reader)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return reader(*args, **kwargs)
        finally:
            release_arrow_memory()

    return wrapper


def join_text(columns: Sequence[pa.Array], n: int) -> pa.Array:
    """Join text columns (Arrow arrays from :func:`arrow_strings`) with ``"\n"``, skipping empty cells;
    all-empty → null."""
    if not columns:
        return pa.nulls(n, type=_T)
    out = pc.fill_null(columns[0], _EMPTY)
    for col in columns[1:]:
        nxt = pc.fill_null(col, _EMPTY)
        both = pc.and_(pc.not_equal(out, _EMPTY), pc.not_equal(nxt, _EMPTY))
        sep = pc.if_else(both, pa.scalar("\n", _T), _EMPTY)
        out = pc.binary_join_element_wise(out, sep, nxt, _EMPTY)
    return pc.if_else(pc.equal(out, _EMPTY), _NULL, out)


def classify_images(
    cells: np.ndarray, image_root: str | None, *, check_exists: bool, allow_zip: bool
) -> tuple[np.ndarray, dict[str, dict[int, str]]]:
    """Per-cell: resolve paths (inside ``image_root`` when given), keep bytes / PIL images, mark problems.

    With ``check_exists``, a path must name a regular file and, with a root, no symbolic link on the way may
    lead outside the root (:func:`~fluid.data.images.check_image_file`); without it no file-system call is made
    and :func:`~fluid.data.images.load_image` does the link check when the image is read.

    Returns the image object array (problems → None) and ``{reason: {position: detail}}``.
    """
    out = np.full(len(cells), None, dtype=object)
    problems: dict[str, dict[int, str]] = {}

    def bad(reason: str, i: int, detail: str) -> None:
        problems.setdefault(reason, {})[i] = detail

    real_dirs: dict[str, str] = {}  # folder → its real path, for the symbolic-link check (one per folder)
    real_root = os.path.realpath(image_root) if image_root is not None and check_exists else None
    for i, v in enumerate(cells):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            bad("image-empty", i, "no image given")
            continue
        if isinstance(v, os.PathLike):
            v = os.fspath(v)
        if isinstance(v, str):
            if allow_zip and is_zip_ref(v):
                out[i] = v
                continue
            try:
                path = resolve_image_path(v, image_root)
                if check_exists:  # the file exists, is a regular file, and no link leads out of the root
                    check_image_file(v, path, image_root, real_dirs=real_dirs, real_root=real_root)
            except PathProblem as p:
                bad(p.reason, i, p.detail)
                continue
            out[i] = path
        elif isinstance(v, (bytes, bytearray, memoryview)):
            if len(v) == 0:
                bad("image-empty", i, "0 bytes")
            else:
                out[i] = bytes(v)
        elif isinstance(v, Image.Image):
            out[i] = v
        else:
            bad("image-invalid", i, f"unsupported image cell type {type(v).__name__}")
    return out, problems


def canonical(
    *,
    index: pd.Index,
    ids: Strings | None,
    text: Strings,
    image: Strings,
    label: np.ndarray | None,
    language: np.ndarray | None,
    label_source: np.ndarray | None,
    image_problems: dict[str, dict[int, str]] | None,
    has_text: bool,
    has_image: bool,
    source: str,
    on_bad_row: str,
    require_label: bool,
    image_root: Path | None,
    split: str | None,
    max_examples: int = 5,
    memory_mapped: bool = False,
) -> Catalogue:
    """Assemble the canonical frame, detect and count bad rows, and apply ``on_bad_row``.

    ``ids`` / ``text`` / ``image``: Arrow strings (kept as the frame's buffers, no Python string per row) or
    object arrays (``image`` may hold bytes / PIL images; it then stays an object column).
    ``label`` / ``language`` / ``label_source``: object arrays of ``str`` / None whose equal strings share an
    object (:func:`shared_strings`, per chunk), or None when absent.
    ``memory_mapped``: the Arrow strings are memory-mapped (:class:`~fluid.data.store.StringColumns`); the frame
    is marked so, and dropping bad rows writes the kept text to new mapped files instead of RAM."""
    policy = check_policy(on_bad_row)
    n = len(index)
    report = BadRowReport(source, max_examples=max_examples)
    report.total_rows = n
    none = np.full(n, None, dtype=object)
    image_problems = image_problems or {}

    masks: dict[str, np.ndarray] = {}
    details: dict[str, dict[int, str] | None] = {}

    # ids
    if ids is None:
        id_arr = _index_strings(index)
    else:
        id_arr = chunked(ids)
        if id_arr is None:
            id_arr = chunked(np.array([None if pd.isna(v) else _cell_str(v) for v in ids], dtype=object))
        missing_id = _nulls(id_arr)
        if missing_id.any():
            id_arr = pc.coalesce(id_arr.combine_chunks(), _index_strings(index).combine_chunks())
            id_arr = pa.chunked_array([id_arr], type=_T)
            masks["id-missing"] = missing_id
            details["id-missing"] = None
    first_row = first_rows(id_arr)
    dup = first_row != np.arange(n)
    if dup.any():
        masks["duplicate-id"] = dup
        details["duplicate-id"] = None

    def id_at(i: int) -> str:
        return id_arr[int(i)].as_py()

    # images
    for reason, d in image_problems.items():
        m = np.zeros(n, dtype=bool)
        m[list(d)] = True
        masks[reason] = m
        details[reason] = d
    if not has_image:
        masks.pop("image-empty", None)
    image_arr = chunked(image)
    image_missing = _nulls(image_arr) if image_arr is not None else pd.isna(image).astype(bool)

    # text
    text_arr = chunked(text)
    assert text_arr is not None, "text cells must be strings or missing"
    text_missing = _nulls(text_arr)
    if has_text and text_missing.any():
        masks["text-empty"] = text_missing
        details["text-empty"] = None
    if n:
        lengths = np.asarray(pc.fill_null(pc.utf8_length(text_arr), 0).to_numpy(), dtype=np.int64)
        huge = lengths > MAX_TEXT_CHARS
        if huge.any():
            masks["text-huge"] = huge
            details["text-huge"] = {int(i): f"{lengths[i]} characters, cut to {MAX_TEXT_CHARS}"
                                    for i in np.flatnonzero(huge)[:max_examples]}
            # No encoder reads that far, and tokenizing megabytes per item per epoch would stall training.
            text_arr = _cut_huge(text_arr, huge)

    # both modalities gone
    no_mod = image_missing & text_missing
    if no_mod.any():
        masks["no-modality"] = no_mod
        details["no-modality"] = None

    # labels
    if label is not None:
        lab_missing = pd.isna(label).astype(bool)
        labelled = require_label or (not lab_missing.all())
        if labelled and lab_missing.any():
            masks["label-missing"] = lab_missing
            details["label-missing"] = None

    # --- policy -------------------------------------------------------------------------------------
    def failing(reason: str) -> bool:
        if reason in _INFO_ONLY:
            return False
        if reason == "label-missing":
            return require_label
        return True

    def detail(reason: str, pos: int) -> str:
        if reason == "duplicate-id" and not (details.get(reason) and pos in details[reason]):
            first = int(first_row[pos])
            return f"id {id_at(pos)!r} already used on row {_plain_label(index[first])}"
        return _detail(reason, pos, details.get(reason))

    if policy == "fail":
        first: tuple[int, str] | None = None
        for reason, m in masks.items():
            if not failing(reason):
                continue
            pos = int(np.argmax(m))
            if first is None or pos < first[0] or (pos == first[0] and _prio(reason) < _prio(first[1])):
                first = (pos, reason)
        if first is not None:
            pos, reason = first
            raise BadRowError(source, _plain_label(index[pos]), id_at(pos), reason, detail(reason, pos))

    drop_reasons: list[str] = ["no-modality"]
    if require_label:
        drop_reasons.append("label-missing")
    if policy == "skip":
        drop_reasons += [r for r in IMAGE_REASONS if r in masks] + (["text-empty"] if has_text else [])

    drop = np.zeros(n, dtype=bool)
    for reason in sorted(masks, key=_prio):
        m = masks[reason]
        examples = ((_plain_label(index[i]), id_at(i), detail(reason, int(i))) for i in np.flatnonzero(m)[:max_examples])
        report.add_many(reason, int(m.sum()), examples)
        if reason in drop_reasons:
            report.add_dropped(reason, int((m & ~drop).sum()))
            drop |= m

    frame = pd.DataFrame(
        {
            ID: string_series(id_arr, index),
            TEXT: string_series(text_arr, index),
            IMAGE: string_series(image_arr, index) if image_arr is not None
            else pd.Series(image, index=index, dtype=object),
            LABEL: pd.Series(label if label is not None else none, index=index, dtype=object, copy=False),
            LANGUAGE: pd.Series(language if language is not None else none, index=index, dtype=object, copy=False),
            LABEL_SOURCE: pd.Series(label_source if label_source is not None else none, index=index, dtype=object,
                                    copy=False),
        },
        columns=list(COLUMNS),
        copy=False,
    )
    if memory_mapped:
        mark_memory_mapped(frame)
    if drop.any():
        frame = rows_where(frame, ~drop)
    report.kept_rows = len(frame)
    return Catalogue(frame=frame, image_root=image_root, source=source, report=report, split=split)


def first_rows(values: pa.ChunkedArray) -> np.ndarray:
    """For each row, the position of the first row holding the same string (its own position when none before).

    Rows are grouped by a 64-bit hash of their string, hashed one chunk at a time: an Arrow dictionary of a
    million ids cost ~165 MiB at its peak, the hashes cost 8 bytes a row. Rows that share a hash are then compared
    by their strings, so a hash collision never makes two different strings equal.
    """
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    hashes = np.concatenate([_hash_strings(chunk) for chunk in values.chunks])
    order = np.argsort(hashes, kind="stable")  # stable: a group's first entry is its first row
    sorted_hashes = hashes[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = sorted_hashes[1:] != sorted_hashes[:-1]
    del sorted_hashes
    first = np.empty(n, dtype=np.int64)
    first[order] = order[starts][np.cumsum(starts) - 1]
    del order, starts
    candidates = np.flatnonzero(first != np.arange(n))
    if candidates.size:
        collided = candidates[_strings_at(values, candidates) != _strings_at(values, first[candidates])]
        if collided.size:  # regroup the rows of colliding hashes by their strings
            rows = np.flatnonzero(np.isin(hashes, hashes[collided]))
            seen: dict[Any, int] = {}
            for row, value in zip(rows.tolist(), _strings_at(values, rows).tolist()):
                first[row] = seen.setdefault(value, row)
    return first


def _hash_strings(chunk: pa.Array) -> np.ndarray:
    return pd.util.hash_array(np.asarray(chunk.to_numpy(zero_copy_only=False), dtype=object), categorize=False)


def _strings_at(values: pa.ChunkedArray, positions: np.ndarray) -> np.ndarray:
    """The cells at ``positions`` (an object array), taken chunk by chunk (no join of the chunks)."""
    out = np.empty(len(positions), dtype=object)
    order = np.argsort(positions, kind="stable")
    ordered = positions[order]
    start = 0
    for chunk in values.chunks:
        lo, hi = np.searchsorted(ordered, [start, start + len(chunk)])
        if hi > lo:
            out[order[lo:hi]] = chunk.take(pa.array(ordered[lo:hi] - start)).to_numpy(zero_copy_only=False)
        start += len(chunk)
    return out


def _cut_huge(text: pa.ChunkedArray, huge: np.ndarray) -> pa.ChunkedArray:
    """``text`` with the cells marked in ``huge`` cut to :data:`MAX_TEXT_CHARS`; only the chunks holding such a
    cell are rewritten (the others keep their buffers, memory-mapped or not)."""
    chunks, start = [], 0
    for chunk in text.chunks:
        part = huge[start:start + len(chunk)]
        start += len(chunk)
        if part.any():
            chunk = pc.if_else(pa.array(part), pc.utf8_slice_codeunits(chunk, 0, MAX_TEXT_CHARS), chunk)
        chunks.append(chunk)
    return pa.chunked_array(chunks, type=_T)


def _nulls(values: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(values.is_null().to_numpy(), dtype=bool)


def _index_strings(index: pd.Index) -> pa.ChunkedArray:
    """The index labels as ids (``str`` of each; integers vectorised)."""
    if pd.api.types.is_integer_dtype(index.dtype):
        return pa.chunked_array([pa.array(index.to_numpy()).cast(_T)], type=_T)
    return pa.chunked_array([pa.array([_cell_str(x) for x in index], type=_T)], type=_T)


_PRIO = {r: i for i, r in enumerate(REASONS)}


def _prio(reason: str) -> int:
    return _PRIO.get(reason, len(_PRIO))


def _plain_label(x: Any) -> Any:
    if isinstance(x, np.integer):
        return int(x)
    return x


def _detail(reason: str, pos: int, d: dict[int, str] | None) -> str:
    if d is not None and pos in d:
        return d[pos]
    if reason == "text-empty":
        return "all text columns are empty"
    if reason == "no-modality":
        return "no usable text and no usable image"
    if reason == "label-missing":
        return "empty label"
    if reason == "id-missing":
        return "empty id; row number used"
    return REASONS.get(reason, "")
