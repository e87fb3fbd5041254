"""GLAMI-1M in its official layout, from the extracted folder or straight from the zip archive.

Layout (github.com/glami/glami-1m): ``GLAMI-1M-dataset/`` holding ``GLAMI-1M-train.csv``,
``GLAMI-1M-test.csv`` and ``images/<image_id>.jpg``; the archive ``GLAMI-1M-dataset.zip`` holds the same
tree. CSV columns: ``item_id, image_id, name, description, geo, category, category_name, label_source``.

``text`` = name + "\\n" + description (each stripped, empty parts skipped). ``category`` becomes ``label`` (as
a string); ``category_name`` is never read. Reading is vectorised; image files are not checked at read time
(1M ``stat`` calls) — a missing or broken image is found when it is decoded
(:class:`~fluid.data.dataset.CatalogueDataset` records it as a problem, or raises under ``"fail"``).
"""

from __future__ import annotations

import functools
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fluid.data._canonical import (
    CHUNK_ROWS, CanonicalColumns, arrow_strings, canonical, join_text, releases_arrow_memory, require_columns,
    shared_strings, strings,
)
from fluid.data.errors import ColumnError
from fluid.data.images import _open_zip, zip_ref
from fluid.data.report import DEFAULT_POLICY
from fluid.data.schema import Catalogue
from fluid.data.store import MEMORY_MAP_ROWS
from fluid.data.stream import Chunk, gather, parsed_chunks

__all__ = ["read_glami", "find_glami", "GlamiLocation", "GLAMI_DIR", "GLAMI_ZIP", "GLAMI_COLUMNS", "GLAMI_GEOS",
           "glami_csv_name"]

GLAMI_DIR = "GLAMI-1M-dataset"
GLAMI_ZIP = "GLAMI-1M-dataset.zip"
GLAMI_COLUMNS = ("item_id", "image_id", "name", "description", "geo", "category", "category_name", "label_source")
#: ``geo`` values of GLAMI-1M (13 countries / languages).
GLAMI_GEOS = ("cz", "sk", "ro", "gr", "si", "hu", "hr", "es", "lt", "lv", "tr", "ee", "bg")
_SPLITS = ("train", "test")
_REQUIRED = ("item_id", "image_id", "name")
_OPTIONAL = ("description", "geo", "category", "label_source")


def glami_csv_name(split: str) -> str:
    if split not in _SPLITS:
        raise ValueError(f"GLAMI-1M split must be one of {_SPLITS}, got {split!r}")
    return f"GLAMI-1M-{split}.csv"


@dataclass(frozen=True)
class GlamiLocation:
    """Where a GLAMI-1M copy lives: ``kind`` ``"dir"`` (``root`` = the dataset folder) or ``"zip"`` (``root`` =
    the archive, ``prefix`` = the folder inside it, e.g. ``"GLAMI-1M-dataset/"``)."""

    kind: str
    root: Path
    prefix: str = ""

    def csv(self, split: str) -> str:
        name = glami_csv_name(split)
        return str(self.root / name) if self.kind == "dir" else f"{self.root}::{self.prefix}{name}"


def _zip_location(zip_path: Path) -> GlamiLocation | None:
    try:
        zf = _open_zip(os.path.abspath(zip_path))
    except (OSError, zipfile.BadZipFile):
        return None
    names = zf.NameToInfo
    for prefix in (f"{GLAMI_DIR}/", ""):
        if any(f"{prefix}{glami_csv_name(s)}" in names for s in _SPLITS):
            return GlamiLocation("zip", Path(os.path.abspath(zip_path)), prefix)
    for name in names:  # any folder name inside the archive
        for s in _SPLITS:
            if name.endswith("/" + glami_csv_name(s)) and name.count("/") == 1:
                return GlamiLocation("zip", Path(os.path.abspath(zip_path)), name[: name.rindex("/") + 1])
    return None


def find_glami(path: str | os.PathLike, *, strict: bool = True) -> GlamiLocation | None:
    """Recognise a GLAMI-1M copy at ``path``: the dataset folder, its parent, the zip, or a folder holding the
    zip. A folder or zip counts when it holds either split's CSV. Returns None (``strict=False``) or raises
    ``FileNotFoundError`` when nothing is recognised."""
    p = Path(path)
    loc: GlamiLocation | None = None
    if p.is_dir():
        for d in (p, p / GLAMI_DIR):
            if any((d / glami_csv_name(s)).is_file() for s in _SPLITS):
                loc = GlamiLocation("dir", Path(os.path.abspath(d)))
                break
        if loc is None and (p / GLAMI_ZIP).is_file():
            loc = _zip_location(p / GLAMI_ZIP)
    elif p.is_file() and p.suffix.lower() == ".zip":
        loc = _zip_location(p)
    if loc is None and strict:
        raise FileNotFoundError(
            f"no GLAMI-1M layout at {p}: expected {GLAMI_DIR}/ with {glami_csv_name('train')} / "
            f"{glami_csv_name('test')} and images/, its parent folder, or {GLAMI_ZIP}"
        )
    return loc


def _open_csv(loc: GlamiLocation, split: str) -> Any:
    """The split's CSV opened for binary reading (from the folder or the archive)."""
    name = glami_csv_name(split)
    if loc.kind == "dir":
        p = loc.root / name
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found (GLAMI-1M split {split!r})")
        return open(p, "rb")
    zf = _open_zip(str(loc.root))
    try:
        return zf.open(loc.prefix + name)
    except KeyError:
        raise FileNotFoundError(f"{loc.csv(split)} not found in the archive (GLAMI-1M split {split!r})") from None


def _read_csv(f: Any, **kw: Any) -> Any:
    return pd.read_csv(f, encoding="utf-8", encoding_errors="replace", **kw)


def _csv_columns(loc: GlamiLocation, split: str) -> list[str]:
    """The columns of the split's CSV that are read (checked: the required ones are there)."""
    with _open_csv(loc, split) as f:
        present = list(_read_csv(f, nrows=0).columns)
    require_columns(present, _REQUIRED, loc.csv(split))
    return [c for c in (*_REQUIRED, *_OPTIONAL) if c in present]


#: The label-like columns of the canonical frame and the GLAMI columns they come from.
_OPTIONAL_FROM = (("label", "category"), ("language", "geo"), ("label_source", "label_source"))


def _chunks(loc: GlamiLocation, split: str, use: list[str], nrows: int | None, chunk_rows: int,
            prefix: str) -> Iterator[Chunk]:
    """The split's CSV parsed ``chunk_rows`` rows at a time and converted (in a worker, when one is used)."""
    with _open_csv(loc, split) as f:
        for df in _read_csv(f, usecols=use, dtype={c: str for c in use}, keep_default_na=False, na_values=[""],
                            nrows=nrows, chunksize=chunk_rows):
            problems: dict[str, dict[int, str]] = {}
            yield Chunk(
                rows=len(df),
                strings={
                    "text": join_text([arrow_strings(df[c]) for c in ("name", "description") if c in df], len(df)),
                    "image": _image_column(arrow_strings(df["image_id"]), prefix, problems),
                    "ids": arrow_strings(df["item_id"]),
                },
                # shared per chunk so its per-row strings die now, not after the read
                optional={key: shared_strings(strings(df[column])) for key, column in _OPTIONAL_FROM if column in df},
                problems=problems,
            )


def _image_column(ids_arrow: pa.Array, prefix: str, problems: dict[str, dict[int, str]]) -> pa.Array:
    """Image cells (``prefix + image_id + ".jpg"``, None where unusable) for one chunk; unusable ids are added
    to ``problems`` under their row number in the chunk."""
    has_id = ids_arrow.is_valid().to_numpy(zero_copy_only=False)
    unsafe = pc.fill_null(pc.match_substring_regex(ids_arrow, r"[/\\]|\.\."), False).to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(~has_id):
        problems.setdefault("image-empty", {})[int(i)] = "empty image_id"
    for i in np.flatnonzero(unsafe):
        problems.setdefault("image-outside-root", {})[int(i)] = (
            f"image_id {ids_arrow[int(i)].as_py()!r} is not a plain file name")
    ok = has_id & ~unsafe
    if not ok.any():
        return pa.nulls(len(ids_arrow), type=ids_arrow.type)
    paths = pc.binary_join_element_wise(pa.scalar(prefix, ids_arrow.type), ids_arrow,
                                        pa.scalar(".jpg", ids_arrow.type), pa.scalar("", ids_arrow.type))
    return pc.if_else(pa.array(ok), paths, pa.scalar(None, ids_arrow.type))


@releases_arrow_memory
def read_glami(
    path: str | os.PathLike,
    split: str = "train",
    *,
    on_bad_row: str = DEFAULT_POLICY,
    require_label: bool = False,
    nrows: int | None = None,
    max_examples: int = 5,
    chunk_rows: int = CHUNK_ROWS,
    memory_map_rows: int | None = MEMORY_MAP_ROWS,
    workers: int = 0,
) -> Catalogue:
    """Read one GLAMI-1M split (``"train"`` or ``"test"``) into the canonical frame.

    ``path``: the ``GLAMI-1M-dataset`` folder, its parent, ``GLAMI-1M-dataset.zip`` or the folder holding it.
    From the zip, nothing is extracted: the CSV is parsed from the archive member and image cells are
    ``"zip://<zip>::GLAMI-1M-dataset/images/<image_id>.jpg"`` references that
    :func:`~fluid.data.images.load_image` reads lazily. ``nrows`` reads only the first rows (quick looks).
    The CSV is parsed ``chunk_rows`` rows at a time; ``id``, ``text`` and ``image`` stay in the Arrow buffers
    they were parsed into (no Python string per row). From ``memory_map_rows`` rows on (``None``: never) those
    buffers go chunk by chunk into memory-mapped temporary files (:class:`~fluid.data.store.StringColumns`), so
    reading holds at most that many rows' text plus one chunk in RAM; the other columns cost a pointer per row
    (see docs/data.md, "What stays in memory"). ``workers`` > 0 parses and converts the chunks in a DataLoader
    worker process (:func:`~fluid.data.stream.parsed_chunks`).
    """
    glami_csv_name(split)
    loc = find_glami(path)
    assert loc is not None
    if loc.kind == "dir":
        prefix = str(loc.root / "images") + os.sep
        image_root: Path | None = loc.root / "images"
    else:
        prefix = zip_ref(loc.root, f"{loc.prefix}images/")
        image_root = None
    use = _csv_columns(loc, split)
    source = loc.csv(split)
    if require_label and "category" not in use:
        raise ColumnError("category", source, use, "labels are required")
    produce = functools.partial(_chunks, loc, split, use, nrows, chunk_rows, prefix)
    gathered = gather(parsed_chunks(produce, workers=workers), ("ids", "text", "image"),
                      [key for key, column in _OPTIONAL_FROM if column in use], memory_map_rows=memory_map_rows)
    columns = CanonicalColumns(
        index=pd.RangeIndex(gathered.rows),
        ids=gathered.strings["ids"],
        text=gathered.strings["text"],
        image=gathered.strings["image"],
        label=gathered.optional.get("label"),
        language=gathered.optional.get("language"),
        label_source=gathered.optional.get("label_source"),
        cell_problems=gathered.problems,
        has_text=True,
        has_image=True,
        memory_mapped=gathered.memory_mapped,
    )
    return canonical(columns, source=source, on_bad_row=on_bad_row, require_label=require_label,
                     image_root=image_root, split=split, max_examples=max_examples)
