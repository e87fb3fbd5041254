"""Shared machinery: turn raw columns into the canonical frame, find bad rows (one validator per kind of problem),
apply the bad-row policy.

Everything here is vectorised over rows except the per-cell classification of image cells of generic
catalogues (mixed types: paths, bytes, PIL images), which is a plain loop.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, ParamSpec, Sequence, TypeVar

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


@dataclass(frozen=True, eq=False, kw_only=True)
class CanonicalColumns:
    """One catalogue's columns (n rows each) as a reader converted them, for :func:`canonical`.

    ``index``: the frame's index, n labels (the file's row numbers or the DataFrame's index).
    ``ids`` / ``text`` / ``image``: Arrow strings (kept as the frame's buffers, no Python string per row) or
    object arrays (``image`` may hold bytes / PIL images; it then stays an object column); ``ids`` None: the
    source has no id column and the index labels are the ids.
    ``label`` / ``language`` / ``label_source``: object arrays of ``str`` / None whose equal strings share an
    object (:func:`shared_strings`, per chunk), or None when absent.
    ``cell_problems``: ``{reason: {row position: detail}}`` found while converting the cells (the image reasons,
    ``text-invalid``).
    ``has_text`` / ``has_image``: the source has text columns / an image column.
    ``memory_mapped``: the Arrow strings are memory-mapped (:class:`~fluid.data.store.StringColumns`); the frame
    is marked so, and dropping bad rows writes the kept text to new mapped files instead of RAM.
    """

    index: pd.Index
    ids: Strings | None
    text: Strings
    image: Strings
    label: np.ndarray | None
    language: np.ndarray | None
    label_source: np.ndarray | None
    cell_problems: Mapping[str, Mapping[int, str]]
    has_text: bool
    has_image: bool
    memory_mapped: bool = False


@dataclass(frozen=True, eq=False)
class Flagged:
    """The rows a validator flags for one reason. ``rows``: bool array, shape (n,). ``detail``: row position →
    what is wrong with that row (asked only for flagged rows), the ``detail`` of the report's examples."""

    rows: np.ndarray
    detail: Callable[[int], str]


def _always(detail: str) -> Callable[[int], str]:
    return lambda _position: detail


def missing_ids(ids: pa.ChunkedArray) -> Flagged:
    """``id-missing``: rows whose id cell is empty (``ids``: n Arrow strings, empty → null); :func:`canonical`
    uses their index label as id."""
    return Flagged(_nulls(ids), _always("empty id; row number used"))


def duplicate_ids(ids: pa.ChunkedArray, index: pd.Index) -> Flagged:
    """``duplicate-id``: rows whose id an earlier row holds, i.e. every occurrence of an id after its first.
    ``ids``: n Arrow strings, none missing; ``index``: the n row labels, the detail names the first row's."""
    first_row = first_rows(ids)
    return Flagged(first_row != np.arange(len(ids)),
                   lambda i: f"id {ids[int(i)].as_py()!r} already used on row {_plain_label(index[int(first_row[i])])}")


def cell_problems(problems: Mapping[str, Mapping[int, str]], n: int, *, has_image: bool) -> dict[str, Flagged]:
    """The problems found while converting the cells (``{reason: {row position: detail}}``: the image reasons,
    ``text-invalid``) as one :class:`Flagged` per reason, over ``n`` rows. Without an image column
    (``has_image`` false) an empty image cell is no problem."""
    flagged = {}
    for reason, details in problems.items():
        if reason == "image-empty" and not has_image:
            continue
        rows = np.zeros(n, dtype=bool)
        rows[list(details)] = True
        flagged[reason] = Flagged(rows, details.__getitem__)
    return flagged


def empty_text(text: pa.ChunkedArray) -> Flagged:
    """``text-empty``: rows with no text (``text``: the n joined text cells, Arrow strings, empty → null)."""
    return Flagged(_nulls(text), _always("all text columns are empty"))


def huge_text(text: pa.ChunkedArray) -> Flagged:
    """``text-huge``: rows whose text (n Arrow strings) is longer than :data:`MAX_TEXT_CHARS` characters. They are
    kept, their text cut to that length (no encoder reads further, and tokenizing megabytes per item per epoch
    would stall training)."""
    if len(text) == 0:
        return Flagged(np.zeros(0, dtype=bool), _always(""))
    lengths = np.asarray(pc.fill_null(pc.utf8_length(text), 0).to_numpy(), dtype=np.int64)
    return Flagged(lengths > MAX_TEXT_CHARS, lambda i: f"{lengths[i]} characters, cut to {MAX_TEXT_CHARS}")


def no_modality(text: pa.ChunkedArray, image: pa.ChunkedArray | np.ndarray) -> Flagged:
    """``no-modality``: rows with neither text nor image. ``text``: n Arrow strings, empty → null; ``image``: n
    image paths as Arrow strings, or an object array (paths, bytes, PIL images; None or NaN when missing or
    unusable)."""
    image_missing = _nulls(image) if isinstance(image, pa.ChunkedArray) else pd.isna(image).astype(bool)
    return Flagged(_nulls(text) & image_missing, _always("no usable text and no usable image"))


def missing_labels(labels: np.ndarray, *, required: bool) -> Flagged:
    """``label-missing``: rows without a label (``labels``: object array, shape (n,), of ``str`` / None) in a
    labelled catalogue: labels are ``required``, or some row has one. With no label at all and none required, the
    catalogue is unlabelled (e.g. to predict) and no row is flagged."""
    missing = pd.isna(labels).astype(bool)
    labelled = required or not missing.all()
    return Flagged(missing if labelled else np.zeros(len(labels), dtype=bool), _always("empty label"))


def canonical(columns: CanonicalColumns, *, source: str, on_bad_row: str, require_label: bool,
              image_root: Path | None, split: str | None, max_examples: int = 5) -> Catalogue:
    """The catalogue of ``columns``: its canonical frame, with the bad rows the validators above flag counted in its
    report (``max_examples`` examples per reason) and ``on_bad_row`` applied: ``"fail"`` raises
    :class:`~fluid.data.errors.BadRowError` for the first failing row; rows without text and image (and, with
    ``require_label``, without a label) are dropped; ``"skip"`` also drops those with an image problem or no text."""
    policy = check_policy(on_bad_row)
    report = BadRowReport(source, max_examples=max_examples)
    index = columns.index
    report.total_rows = len(index)
    ids, id_missing = _ids(index, columns.ids)
    text, image = chunked(columns.text), chunked(columns.image)
    assert text is not None, "text cells must be strings or missing"
    flagged = _validate(columns, ids, id_missing, text, image, require_label)
    if "text-huge" in flagged:
        text = _cut_huge(text, flagged["text-huge"].rows)
    if policy == "fail" and (failure := _first_failure(flagged, require_label)) is not None:
        position, reason = failure
        raise BadRowError(source, _plain_label(index[position]), ids[position].as_py(), reason,
                          flagged[reason].detail(position))
    drop = _record(report, flagged, _dropped_reasons(policy, require_label), ids, index, max_examples)
    frame = _frame(columns, ids, text, image)
    if columns.memory_mapped:
        mark_memory_mapped(frame)
    if drop.any():
        frame = rows_where(frame, ~drop)
    report.kept_rows = len(frame)
    return Catalogue(frame=frame, image_root=image_root, source=source, report=report, split=split)


def _ids(index: pd.Index, ids: Strings | None) -> tuple[pa.ChunkedArray, Flagged | None]:
    """The ids as Arrow strings, the index label standing in for each missing one, and the rows missing theirs
    (None without an id column: the index labels are the ids)."""
    if ids is None:
        return _index_strings(index), None
    strings = chunked(ids)
    if strings is None:
        strings = chunked(np.array([None if pd.isna(v) else _cell_str(v) for v in ids], dtype=object))
    missing = missing_ids(strings)
    if missing.rows.any():
        joined = pc.coalesce(strings.combine_chunks(), _index_strings(index).combine_chunks())
        strings = pa.chunked_array([joined], type=_T)
    return strings, missing


def _validate(columns: CanonicalColumns, ids: pa.ChunkedArray, id_missing: Flagged | None, text: pa.ChunkedArray,
              image: pa.ChunkedArray | None, require_label: bool) -> dict[str, Flagged]:
    """Each validator's flagged rows by reason, the reasons that flag no row left out."""
    flagged = {"id-missing": id_missing} if id_missing is not None else {}
    flagged["duplicate-id"] = duplicate_ids(ids, columns.index)
    flagged.update(cell_problems(columns.cell_problems, len(columns.index), has_image=columns.has_image))
    if columns.has_text:
        flagged["text-empty"] = empty_text(text)
    flagged["text-huge"] = huge_text(text)
    flagged["no-modality"] = no_modality(text, image if image is not None else columns.image)
    if columns.label is not None:
        flagged["label-missing"] = missing_labels(columns.label, required=require_label)
    return {reason: found for reason, found in flagged.items() if found.rows.any()}


def _fails(reason: str, require_label: bool) -> bool:
    """Whether a row flagged for ``reason`` stops reading under ``on_bad_row="fail"``."""
    if reason in _INFO_ONLY:
        return False
    return require_label if reason == "label-missing" else True


def _first_failure(flagged: Mapping[str, Flagged], require_label: bool) -> tuple[int, str] | None:
    """The first row position that fails and its reason (of several on that row, the first in :data:`REASONS`)."""
    first: tuple[int, str] | None = None
    for reason, found in flagged.items():
        if not _fails(reason, require_label):
            continue
        position = int(np.argmax(found.rows))
        if first is None or position < first[0] or (position == first[0] and _prio(reason) < _prio(first[1])):
            first = (position, reason)
    return first


def _dropped_reasons(policy: str, require_label: bool) -> set[str]:
    """The reasons whose rows ``policy`` drops."""
    reasons = {"no-modality"}
    if require_label:
        reasons.add("label-missing")
    if policy == "skip":
        reasons.update((*IMAGE_REASONS, "text-empty"))
    return reasons


def _record(report: BadRowReport, flagged: Mapping[str, Flagged], dropped_reasons: set[str], ids: pa.ChunkedArray,
            index: pd.Index, max_examples: int) -> np.ndarray:
    """Count each reason's flagged rows in ``report`` (in the order of :data:`REASONS`, ``max_examples`` examples
    each) and the rows dropped for ``dropped_reasons``, each under its first reason. Returns the rows to drop
    (bool, shape (n,))."""
    drop = np.zeros(len(index), dtype=bool)
    for reason in sorted(flagged, key=_prio):
        found = flagged[reason]
        examples = ((_plain_label(index[i]), ids[int(i)].as_py(), found.detail(int(i)))
                    for i in np.flatnonzero(found.rows)[:max_examples])
        report.add_many(reason, int(found.rows.sum()), examples)
        if reason in dropped_reasons:
            report.add_dropped(reason, int((found.rows & ~drop).sum()))
            drop |= found.rows
    return drop


def _frame(columns: CanonicalColumns, ids: pa.ChunkedArray, text: pa.ChunkedArray,
           image: pa.ChunkedArray | None) -> pd.DataFrame:
    """The canonical frame, every row of ``columns``; ``image`` None: ``columns.image`` stays an object column."""
    index = columns.index
    none = np.full(len(index), None, dtype=object)

    def optional(values: np.ndarray | None) -> pd.Series:
        return pd.Series(values if values is not None else none, index=index, dtype=object, copy=False)

    return pd.DataFrame(
        {
            ID: string_series(ids, index),
            TEXT: string_series(text, index),
            IMAGE: string_series(image, index) if image is not None
            else pd.Series(columns.image, index=index, dtype=object),
            LABEL: optional(columns.label),
            LANGUAGE: optional(columns.language),
            LABEL_SOURCE: optional(columns.label_source),
        },
        columns=list(COLUMNS),
        copy=False,
    )


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

