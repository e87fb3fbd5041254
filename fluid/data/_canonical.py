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
from fluid.data.images import PathProblem, is_zip_ref, resolve_image_path
from fluid.data.report import REASONS, BadRowReport, check_policy
from fluid.data.schema import (
    COLUMNS, ID, IMAGE, LABEL, LABEL_SOURCE, LANGUAGE, MAX_TEXT_CHARS, TEXT, Catalogue,
)

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


def _cell_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("utf-8", "replace")
    return str(v)


_T = pa.large_string()
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


def join_text(columns: Sequence[pa.Array], n: int) -> np.ndarray:
    """Join text columns (Arrow arrays from :func:`arrow_strings`) with ``"\n"``, skipping empty cells;
    all-empty → ``None``."""
    if not columns:
        return np.full(n, None, dtype=object)
    out = pc.fill_null(columns[0], _EMPTY)
    for col in columns[1:]:
        nxt = pc.fill_null(col, _EMPTY)
        both = pc.and_(pc.not_equal(out, _EMPTY), pc.not_equal(nxt, _EMPTY))
        sep = pc.if_else(both, pa.scalar("\n", _T), _EMPTY)
        out = pc.binary_join_element_wise(out, sep, nxt, _EMPTY)
    out = pc.if_else(pc.equal(out, _EMPTY), _NULL, out)
    return to_objects(out)


def classify_images(
    cells: np.ndarray, image_root: str | None, *, check_exists: bool, allow_zip: bool
) -> tuple[np.ndarray, dict[str, dict[int, str]]]:
    """Per-cell: resolve paths (inside ``image_root`` when given), keep bytes / PIL images, mark problems.

    Returns the image object array (problems → None) and ``{reason: {position: detail}}``.
    """
    out = np.full(len(cells), None, dtype=object)
    problems: dict[str, dict[int, str]] = {}

    def bad(reason: str, i: int, detail: str) -> None:
        problems.setdefault(reason, {})[i] = detail

    isfile = os.path.isfile
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
            except PathProblem as p:
                bad(p.reason, i, p.detail)
                continue
            if check_exists and not isfile(path):
                bad("image-missing", i, f"{v.strip()!r} not found (looked for {path})")
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
    ids: np.ndarray | None,
    text: np.ndarray,
    image: np.ndarray,
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
) -> Catalogue:
    """Assemble the canonical frame, detect and count bad rows, and apply ``on_bad_row``."""
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
        ids = np.array([_cell_str(x) for x in index], dtype=object)
    else:
        missing_id = pd.isna(ids)
        if missing_id.any():
            fill = np.array([_cell_str(x) for x in index[missing_id]], dtype=object)
            ids = ids.copy()
            ids[missing_id] = fill
            masks["id-missing"] = missing_id
            details["id-missing"] = None
    dup = pd.Series(ids, dtype=object).duplicated(keep="first").to_numpy()
    if dup.any():
        masks["duplicate-id"] = dup
        details["duplicate-id"] = None

    # images
    for reason, d in image_problems.items():
        m = np.zeros(n, dtype=bool)
        m[list(d)] = True
        masks[reason] = m
        details[reason] = d
    if not has_image:
        masks.pop("image-empty", None)

    # text
    text_missing = pd.isna(text).astype(bool) if n else np.zeros(0, dtype=bool)
    if has_text and text_missing.any():
        masks["text-empty"] = text_missing
        details["text-empty"] = None
    if n:
        lengths = np.fromiter((len(t) if t is not None else 0 for t in text), dtype=np.int64, count=n)
        huge = lengths > MAX_TEXT_CHARS
        if huge.any():
            masks["text-huge"] = huge
            details["text-huge"] = {int(i): f"{lengths[i]} characters, cut to {MAX_TEXT_CHARS}"
                                    for i in np.flatnonzero(huge)[:max_examples]}
            # No encoder reads that far, and tokenizing megabytes per item per epoch would stall training.
            text = text.copy()
            for i in np.flatnonzero(huge):
                text[i] = text[i][:MAX_TEXT_CHARS]

    # both modalities gone
    image_missing = pd.isna(image).astype(bool) if n else np.zeros(0, dtype=bool)
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
            raise BadRowError(source, _plain_label(index[pos]), ids[pos], reason,
                              _detail(reason, pos, details.get(reason), ids, index))

    drop_reasons: list[str] = ["no-modality"]
    if require_label:
        drop_reasons.append("label-missing")
    if policy == "skip":
        drop_reasons += [r for r in IMAGE_REASONS if r in masks] + (["text-empty"] if has_text else [])

    drop = np.zeros(n, dtype=bool)
    for reason in sorted(masks, key=_prio):
        m = masks[reason]
        examples = ((_plain_label(index[i]), ids[i], _detail(reason, i, details.get(reason), ids, index))
                    for i in np.flatnonzero(m)[:max_examples])
        report.add_many(reason, int(m.sum()), examples)
        if reason in drop_reasons:
            report.add_dropped(reason, int((m & ~drop).sum()))
            drop |= m

    frame = pd.DataFrame(
        {
            ID: pd.Series(ids, index=index, dtype=object),
            TEXT: pd.Series(text, index=index, dtype=object),
            IMAGE: pd.Series(image, index=index, dtype=object),
            LABEL: pd.Series(shared_strings(label) if label is not None else none, index=index, dtype=object),
            LANGUAGE: pd.Series(shared_strings(language) if language is not None else none, index=index,
                                dtype=object),
            LABEL_SOURCE: pd.Series(shared_strings(label_source) if label_source is not None else none, index=index,
                                    dtype=object),
        },
        columns=list(COLUMNS),
    )
    if drop.any():
        frame = frame[~drop]
    report.kept_rows = len(frame)
    return Catalogue(frame=frame, image_root=image_root, source=source, report=report, split=split)


_PRIO = {r: i for i, r in enumerate(REASONS)}


def _prio(reason: str) -> int:
    return _PRIO.get(reason, len(_PRIO))


def _plain_label(x: Any) -> Any:
    if isinstance(x, np.integer):
        return int(x)
    return x


def _detail(reason: str, pos: int, d: dict[int, str] | None, ids: np.ndarray, index: pd.Index) -> str:
    if d is not None and pos in d:
        return d[pos]
    if reason == "duplicate-id":
        first = np.flatnonzero(ids == ids[pos])[0]
        return f"id {ids[pos]!r} already used on row {_plain_label(index[first])}"
    if reason == "text-empty":
        return "all text columns are empty"
    if reason == "no-modality":
        return "no usable text and no usable image"
    if reason == "label-missing":
        return "empty label"
    if reason == "id-missing":
        return "empty id; row number used"
    return REASONS.get(reason, "")
