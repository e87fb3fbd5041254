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
    arrow_strings, canonical, join_text, releases_arrow_memory, require_columns, shared_strings, strings,
)
from fluid.data.errors import ColumnError
from fluid.data.images import _open_zip, zip_ref
from fluid.data.report import DEFAULT_POLICY
from fluid.data.schema import Catalogue

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


#: Rows parsed at a time: the CSV's own Python strings exist for one chunk only, so reading GLAMI-1M peaks at
#: the canonical columns plus one chunk instead of twice the whole table.
CHUNK_ROWS = 20_000


def _read_csv(loc: GlamiLocation, split: str, nrows: int | None,
              chunk_rows: int) -> tuple[Iterator[pd.DataFrame], list[str], str, Any]:
    """``(chunks of the wanted columns as strings, their names, the CSV's name for messages, the open file)``."""
    name = glami_csv_name(split)
    source = loc.csv(split)

    def read(f: Any, **kw: Any) -> Any:
        return pd.read_csv(f, encoding="utf-8", encoding_errors="replace", **kw)

    def opener():
        if loc.kind == "dir":
            p = loc.root / name
            if not p.is_file():
                raise FileNotFoundError(f"{p} not found (GLAMI-1M split {split!r})")
            return open(p, "rb")
        zf = _open_zip(str(loc.root))
        try:
            return zf.open(loc.prefix + name)
        except KeyError:
            raise FileNotFoundError(f"{source} not found in the archive (GLAMI-1M split {split!r})") from None

    with opener() as f:
        present = list(read(f, nrows=0).columns)
    require_columns(present, _REQUIRED, source)
    use = [c for c in (*_REQUIRED, *_OPTIONAL) if c in present]
    f = opener()
    chunks = read(f, usecols=use, dtype={c: str for c in use}, keep_default_na=False, na_values=[""], nrows=nrows,
                  chunksize=chunk_rows)
    return chunks, use, source, f


def _image_column(ids_arrow: pa.Array, offset: int, prefix: str, problems: dict[str, dict[int, str]]) -> pa.Array:
    """Image cells (``prefix + image_id + ".jpg"``, None where unusable) for one chunk; unusable ids are added
    to ``problems`` under their row number (``offset`` = the chunk's first row)."""
    has_id = ids_arrow.is_valid().to_numpy(zero_copy_only=False)
    unsafe = pc.fill_null(pc.match_substring_regex(ids_arrow, r"[/\\]|\.\."), False).to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(~has_id):
        problems.setdefault("image-empty", {})[offset + int(i)] = "empty image_id"
    for i in np.flatnonzero(unsafe):
        problems.setdefault("image-outside-root", {})[offset + int(i)] = (
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
) -> Catalogue:
    """Read one GLAMI-1M split (``"train"`` or ``"test"``) into the canonical frame.

    ``path``: the ``GLAMI-1M-dataset`` folder, its parent, ``GLAMI-1M-dataset.zip`` or the folder holding it.
    From the zip, nothing is extracted: the CSV is parsed from the archive member and image cells are
    ``"zip://<zip>::GLAMI-1M-dataset/images/<image_id>.jpg"`` references that
    :func:`~fluid.data.images.load_image` reads lazily. ``nrows`` reads only the first rows (quick looks).
    The CSV is parsed ``chunk_rows`` rows at a time; ``id``, ``text`` and ``image`` stay in the Arrow buffers
    they were parsed into (no Python string per row). Memory: those buffers plus the other columns' pointers
    (see docs/data.md) plus one chunk.
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
    chunks, use, source, handle = _read_csv(loc, split, nrows, chunk_rows)
    if require_label and "category" not in use:
        handle.close()
        raise ColumnError("category", source, use, "labels are required")
    columns: dict[str, list] = {k: [] for k in ("ids", "text", "image", "label", "language", "source")}
    problems: dict[str, dict[int, str]] = {}
    n = 0
    with handle:
        for df in chunks:
            columns["text"].append(join_text([arrow_strings(df[c]) for c in ("name", "description") if c in df], len(df)))
            columns["image"].append(_image_column(arrow_strings(df["image_id"]), n, prefix, problems))
            columns["ids"].append(arrow_strings(df["item_id"]))
            for key, column in (("label", "category"), ("language", "geo"), ("source", "label_source")):
                if column in df.columns:  # shared per chunk so its per-row strings die now, not after the read
                    columns[key].append(shared_strings(strings(df[column])))
            n += len(df)
            del df

    def joined(key: str) -> np.ndarray | None:
        parts = columns[key]
        if not parts:
            return None if key in ("label", "language", "source") else np.full(0, None, dtype=object)
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def arrow_joined(key: str) -> pa.ChunkedArray:
        return pa.chunked_array(columns[key], type=pa.large_string())

    return canonical(
        index=pd.RangeIndex(n),
        ids=arrow_joined("ids"),
        text=arrow_joined("text"),
        image=arrow_joined("image"),
        label=joined("label"),
        language=joined("language"),
        label_source=joined("source"),
        image_problems=problems,
        has_text=True,
        has_image=True,
        source=source,
        on_bad_row=on_bad_row,
        require_label=require_label,
        image_root=image_root,
        split=split,
        max_examples=max_examples,
    )
