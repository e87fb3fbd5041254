"""Readers for any catalogue: CSV / TSV / Parquet / JSON lines files and in-memory DataFrames.

All of them return a :class:`~fluid.data.schema.Catalogue` holding the canonical frame (see
docs/architecture.md) and a :class:`~fluid.data.report.BadRowReport`.
"""

from __future__ import annotations

import codecs
import os
import warnings
from pathlib import Path
import functools
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from fluid.data._canonical import (
    CHUNK_ROWS, CanonicalColumns, arrow_strings, canonical, chunked, classify_images, join_text, releases_arrow_memory,
    require_columns, shared_strings, strings, text_cells,
)
from fluid.data.errors import ColumnError
from fluid.data.report import DEFAULT_POLICY
from fluid.data.schema import ID, LABEL_SOURCE, LANGUAGE, Catalogue
from fluid.data.store import MEMORY_MAP_ROWS
from fluid.data.stream import Chunk, Gathered, gather, parsed_chunks
from fluid.config import Columns
from fluid.errors import OptionError

__all__ = ["read_table", "normalize_frame", "read_catalogue", "detect_encoding", "TABLE_SUFFIXES"]

#: File suffixes :func:`read_table` understands (optionally followed by .gz/.bz2/.xz/.zst/.zip for text formats).
TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".parquet", ".pq", ".jsonl", ".ndjson", ".json")
_COMPRESSION = (".gz", ".bz2", ".xz", ".zst", ".zip")
_CHUNK = 16 * 1024 * 1024


def _format_of(path: Path) -> tuple[str, bool]:
    """``(suffix, compressed)`` for a table file, e.g. ``("csv", False)``."""
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] in _COMPRESSION
    if compressed:
        suffixes = suffixes[:-1]
    if not suffixes or suffixes[-1] not in TABLE_SUFFIXES:
        raise ValueError(
            f"{path}: unsupported table format; expected one of {', '.join(TABLE_SUFFIXES)} "
            f"(text formats may be compressed with {', '.join(_COMPRESSION)})"
        )
    fmt = suffixes[-1]
    if fmt in (".parquet", ".pq"):
        if compressed:
            raise ValueError(f"{path}: parquet files are compressed internally; do not wrap them")
        return "parquet", False
    return {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
            ".json": "json"}[fmt], compressed


#: A text encoding for files that are UTF-8 except for a few stray legacy bytes (a row pasted from an old system):
#: valid UTF-8 decodes as UTF-8, each invalid byte as cp1252 (latin-1 where cp1252 has no character).
UTF8_WITH_CP1252_FALLBACK = "utf-8-with-cp1252-fallback"


def _cp1252_fallback(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    out = []
    for byte in error.object[error.start:error.end]:
        try:
            out.append(bytes([byte]).decode("cp1252"))
        except UnicodeDecodeError:
            out.append(bytes([byte]).decode("latin-1"))
    return "".join(out), error.end


class _FallbackIncrementalDecoder(codecs.BufferedIncrementalDecoder):
    def _buffer_decode(self, data, errors, final):
        return codecs.utf_8_decode(data, "fluid-cp1252-fallback", final)


def _search_codec(name: str):
    if name.replace("-", "_") != UTF8_WITH_CP1252_FALLBACK.replace("-", "_"):
        return None
    return codecs.CodecInfo(
        name=UTF8_WITH_CP1252_FALLBACK, encode=codecs.utf_8_encode,
        decode=lambda data, errors="strict": codecs.utf_8_decode(data, "fluid-cp1252-fallback", True),
        incrementalencoder=codecs.getincrementalencoder("utf-8"), incrementaldecoder=_FallbackIncrementalDecoder,
        streamwriter=codecs.getwriter("utf-8"), streamreader=codecs.getreader("utf-8"),
    )


codecs.register_error("fluid-cp1252-fallback", _cp1252_fallback)
codecs.register(_search_codec)


def _mostly_utf8(sample: bytes) -> bool:
    """Whether a sample that is not valid UTF-8 still decodes mostly as UTF-8: its valid multi-byte characters
    outnumber its invalid bytes (a legacy file has almost no valid multi-byte sequences)."""
    text = sample.decode("utf-8", errors="replace")
    invalid = text.count("\ufffd")
    valid = sum(1 for ch in text if ord(ch) > 127) - invalid
    return invalid > 0 and valid >= 2 * invalid


def detect_encoding(path: str | os.PathLike) -> str:
    """Guess a text file's encoding: a BOM if any, else UTF-8 if the whole file decodes as UTF-8 (streamed),
    else :data:`UTF8_WITH_CP1252_FALLBACK` when it is mostly UTF-8 with a few stray legacy bytes, else
    charset-normalizer's best guess on a sample (cp1252 on a tie with other single-byte code pages), else
    ``latin-1`` (which never fails). Pass ``encoding=`` to the readers when the guess is wrong."""
    with open(path, "rb") as f:
        head = f.read(4)
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
            return "utf-32"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        f.seek(0)
        dec = codecs.getincrementaldecoder("utf-8")()
        offset = 0
        try:
            while True:
                chunk = f.read(_CHUNK)
                if not chunk:
                    dec.decode(b"", final=True)
                    return "utf-8"
                dec.decode(chunk)
                offset += len(chunk)
        except UnicodeDecodeError as e:
            bad_at = offset + e.start
        f.seek(0)
        sample = f.read(1 << 20)
        if bad_at > len(sample):
            f.seek(max(0, bad_at - (1 << 16)))
            sample += b"\n" + f.read(1 << 17)
    if _mostly_utf8(sample):
        return UTF8_WITH_CP1252_FALLBACK
    try:
        from charset_normalizer import from_bytes

        results = list(from_bytes(sample))
        if results:
            best = results[0]
            # charset-normalizer often cannot tell Western (cp1252) from Central European (cp1250) text in
            # short samples; when they tie, prefer cp1252, the most common legacy encoding.
            ties = [r.encoding for r in results
                    if abs(r.chaos - best.chaos) < 1e-9 and abs(r.coherence - best.coherence) < 1e-9]
            enc = "cp1252" if "cp1252" in ties else best.encoding
            if enc and enc.replace("_", "-") not in ("utf-8", "ascii"):
                return enc
    except Exception:  # noqa: BLE001 - detection is best effort
        pass
    return "latin-1"


def _read_with_encoding(reader, path: Path, encoding: str | None, compressed: bool, detected: str | None = None):
    """Call ``reader(encoding)``; when the encoding was guessed and turns out wrong, retry with latin-1."""
    if encoding is not None:
        return reader(encoding), encoding
    enc = detected or ("utf-8" if compressed else detect_encoding(path))
    try:
        return reader(enc), enc
    except UnicodeDecodeError:
        return reader("latin-1"), "latin-1"


def _as_tuple(cols: str | Sequence[str] | None) -> tuple[str, ...]:
    if cols is None:
        return ()
    if isinstance(cols, str):
        return (cols,)
    return tuple(cols)


def _wanted_columns(
    present: Sequence[Any], *, text_cols, image_col, label_col, id_col, language_col, label_source_col,
    require_label: bool, source: str | None,
) -> dict[str, Any]:
    """Validate the column options against ``present``; returns the resolved columns (None = absent)."""
    present = list(present)
    require_columns(present, text_cols, source)
    require_columns(present, [image_col, id_col, language_col, label_source_col], source)
    if label_col is not None and label_col not in present:
        if label_col == "label" and not require_label:
            label_col = None  # default name absent: an unlabelled catalogue (e.g. to predict)
        else:
            raise ColumnError(label_col, source, present,
                              "name the label column: --label-col on the command line, label= in Python"
                              if require_label else
                              "name the label column (--label-col / label=), or none for an unlabelled catalogue")
    return {
        "text_cols": text_cols,
        "image_col": image_col,
        "label_col": label_col,
        "id_col": id_col if id_col is not None else (ID if ID in present else None),
        "language_col": language_col if language_col is not None else (LANGUAGE if LANGUAGE in present else None),
        "label_source_col": label_source_col if label_source_col is not None
        else (LABEL_SOURCE if LABEL_SOURCE in present else None),
    }


def _convert(df: pd.DataFrame, cols: dict[str, Any], image_root: str | None, check_images: bool,
             allow_zip: bool) -> Chunk:
    """One chunk of a table (or a whole DataFrame) converted: Arrow strings, shared label-like strings, image
    problems."""
    n = len(df)
    texts, invalid_text = text_cells(df, cols["text_cols"])
    strings_of = {"text": join_text([arrow_strings(c) for c in texts], n)}
    problems: dict[str, dict[int, str]] = {"text-invalid": invalid_text} if invalid_text else {}
    image = np.full(n, None, dtype=object)
    if cols["image_col"] is not None:
        image, image_problems = classify_images(df[cols["image_col"]].to_numpy(dtype=object), image_root,
                                          check_exists=check_images, allow_zip=allow_zip)
        problems.update(image_problems)
    paths = chunked(image)
    strings_of["image"] = paths if paths is not None else pa.nulls(n, type=pa.large_string())
    if cols["id_col"] is not None:
        strings_of["ids"] = arrow_strings(df[cols["id_col"]])
    optional = {key: shared_strings(strings(df[cols[f"{key}_col"]])) for key in _OPTIONAL if cols[f"{key}_col"]}
    return Chunk(rows=n, strings=strings_of, optional=optional, problems=problems,
                 images=image if paths is None else None)


_OPTIONAL = ("label", "language", "label_source")


def _gather(chunks: Iterable[Chunk], cols: dict[str, Any], memory_map_rows: int | None) -> Gathered:
    names = ("text", "image") + (("ids",) if cols["id_col"] is not None else ())
    return gather(chunks, names, [key for key in _OPTIONAL if cols[f"{key}_col"]], memory_map_rows=memory_map_rows)


def _normalize(
    columns: Gathered, index: pd.Index, cols: dict[str, Any], *, source: str, on_bad_row: str, require_label: bool,
    split: str | None, max_examples: int, root_for_catalogue: Path | None,
) -> Catalogue:
    catalogue_columns = CanonicalColumns(
        index=index,
        ids=columns.strings.get("ids"),
        text=columns.strings["text"],
        image=columns.images if columns.images is not None else columns.strings["image"],
        label=columns.optional.get("label"),
        language=columns.optional.get("language"),
        label_source=columns.optional.get("label_source"),
        cell_problems=columns.problems,
        has_text=bool(cols["text_cols"]),
        has_image=cols["image_col"] is not None,
        memory_mapped=columns.memory_mapped,
    )
    return canonical(catalogue_columns, source=source, on_bad_row=on_bad_row, require_label=require_label,
                     image_root=root_for_catalogue, split=split, max_examples=max_examples)


@releases_arrow_memory
def normalize_frame(
    df: pd.DataFrame,
    *,
    text_cols: str | Sequence[str] = ("text",),
    image_col: str | None = "image",
    label_col: str | None = "label",
    id_col: str | None = None,
    language_col: str | None = None,
    label_source_col: str | None = None,
    image_root: str | os.PathLike | None = None,
    require_label: bool = False,
    on_bad_row: str = DEFAULT_POLICY,
    check_images: bool = True,
    split: str | None = None,
    source: str = "<DataFrame>",
    max_examples: int = 5,
) -> Catalogue:
    """Normalise an in-memory DataFrame into the canonical frame.

    Image cells may be a path (relative to ``image_root`` and kept inside it; absolute or relative to the
    working directory when ``image_root`` is None), ``bytes``, a ``PIL.Image.Image``, a ``zip://`` reference
    (only without ``image_root``) or missing (None/NaN/""). Text cells may be missing. The canonical frame
    keeps ``df``'s index (rows dropped by the policy are absent, never reordered). Path cells are checked for
    existence when ``check_images`` is true.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"normalize_frame expects a pandas DataFrame, got {type(df).__name__}")
    cols = _wanted_columns(
        df.columns, text_cols=_as_tuple(text_cols), image_col=image_col, label_col=label_col, id_col=id_col,
        language_col=language_col, label_source_col=label_source_col, require_label=require_label, source=source,
    )
    root = os.path.abspath(os.fspath(image_root)) if image_root is not None else None
    columns = _gather([_convert(df, cols, root, check_images, allow_zip=root is None)], cols, memory_map_rows=None)
    return _normalize(columns, df.index, cols, source=source, on_bad_row=on_bad_row, require_label=require_label,
                      split=split, max_examples=max_examples, root_for_catalogue=Path(root) if root else None)


def _table_columns(path: Path, fmt: str, compressed: bool, encoding: str | None,
                   delimiter: str | None = None) -> tuple[list[str], str | None]:
    """Column names of a CSV / TSV / Parquet file (its header or schema only) and the CSV's encoding."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names), None
    return _read_with_encoding(
        lambda e: list(pd.read_csv(path, sep=_separator(path, fmt, e, delimiter), nrows=0, encoding=e).columns), path,
        encoding, compressed
    )


#: Delimiters tried, in order, when a ``.csv`` header does not split on commas.
OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}


def _separator(path: Path, fmt: str, encoding: str | None, delimiter: str | None = None) -> str:
    """The delimiter of a CSV / TSV file: ``delimiter`` when given; else a tab for TSV; for CSV a comma, unless the
    header is one column that splits on a semicolon, tab or pipe (spreadsheets in many locales write ``;``),
    which a warning then names (once per file version)."""
    if delimiter is not None:
        return delimiter
    if fmt != "csv":
        return "\t"
    return _sniffed_separator(str(path), encoding, os.stat(path).st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sniffed_separator(path: str, encoding: str | None, mtime_ns: int) -> str:
    header = pd.read_csv(path, sep=",", nrows=0, encoding=encoding).columns
    if len(header) > 1:
        return ","
    for sep, name in OTHER_DELIMITERS.items():
        if len(pd.read_csv(path, sep=sep, nrows=0, encoding=encoding).columns) > 1:
            warnings.warn(f"{path}: the header is one column with commas but splits on {name}s: reading the file "
                          f"as {name}-separated", stacklevel=4)
            return sep
    return ","


#: Names a delimiter may be given by (a tab is awkward to type on a command line).
DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


def parse_delimiter(delimiter: str | None, fmt: str, path: Path) -> str | None:
    """``delimiter`` as one character (names of :data:`DELIMITER_NAMES` accepted); None stays None (sniffed);
    a ValueError naming the file for anything else, or for a file that has no delimiter (Parquet, JSON)."""
    if delimiter is None:
        return None
    value = DELIMITER_NAMES.get(delimiter.lower(), delimiter)
    if fmt not in ("csv", "tsv"):
        raise ValueError(f"{path}: --delimiter applies to CSV / TSV files; this is {fmt}")
    if len(value) != 1 or value in "\"\r\n":
        raise ValueError(f"{path}: the delimiter must be one character (or tab, comma, semicolon, pipe); got "
                         f"{delimiter!r}")
    return value


def column_options(columns: Columns, *, file: bool = True) -> dict[str, Any]:
    """The readers' keyword options for a :class:`~fluid.config.Columns` (a file's also get its encoding and
    delimiter)."""
    options = {"text_cols": columns.text, "image_col": columns.image, "label_col": columns.label,
               "id_col": columns.id, "language_col": columns.language, "label_source_col": columns.label_source,
               "image_root": columns.image_root}
    if file:
        options.update(encoding=columns.encoding, delimiter=columns.delimiter)
    return options


def _is_json_array(path: Path, fmt: str) -> bool:
    """A ``.json`` file holding one array of records (parsed whole); any other JSON file is JSON lines."""
    return fmt == "json" and _first_char(path) == "["


def _json_lines(path: Path, encoding: str | None, **kw):
    """pandas' JSON-lines reader with cells kept as parsed (``dtype=False``: no type or date conversion)."""
    return pd.read_json(path, lines=True, dtype=False, encoding=encoding, **kw)


class _NewColumns(Exception):
    """A JSON-lines chunk named a column that may change which columns are read (e.g. ``language`` first
    appearing after the first chunk): the file is read again knowing it."""

    def __init__(self, columns: list[str]) -> None:
        super().__init__(columns)
        self.columns = columns


def _json_lines_chunks(path: Path, encoding: str | None, known: list[str], candidates: frozenset[str],
                       cols: dict[str, Any], image_root: str, check_images: bool) -> Iterator[Chunk]:
    """A JSON-lines file's wanted columns, :data:`CHUNK_ROWS` records at a time, converted; raises
    :class:`_NewColumns` when a chunk names a column in ``candidates`` that ``known`` lacks. A record without a
    key reads as an empty cell, as in a whole-file read."""
    use = _unique(cols)
    with _json_lines(path, encoding, chunksize=CHUNK_ROWS) as reader:
        for chunk in reader:
            new = _unread(chunk.columns, known, candidates)
            if new:
                raise _NewColumns([*known, *new])
            yield _convert(chunk.reindex(columns=use), cols, image_root, check_images, allow_zip=False)


def _json_columns_beyond(path: Path, encoding: str | None, known: list[str], candidates: frozenset[str]
                         ) -> list[str]:
    """The ``candidates`` columns that some record of the file names and ``known`` lacks."""
    found: list[str] = []
    with _json_lines(path, encoding, chunksize=CHUNK_ROWS) as reader:
        for chunk in reader:
            found += _unread(chunk.columns, [*known, *found], candidates)
    return found


def _unread(columns: Iterable[Any], known: Sequence[str], candidates: frozenset[str]) -> list[str]:
    """The ``columns`` that are ``candidates`` (could be read) and not ``known`` yet."""
    return [c for c in columns if c in candidates and c not in known]


def _first_char(path: Path) -> str:
    if _format_of(path)[1]:  # compressed: assume JSON lines
        return ""
    with open(path, "rb") as f:
        head = f.read(4096).lstrip(codecs.BOM_UTF8).lstrip()
    return head[:1].decode("ascii", "replace")


@releases_arrow_memory
def read_table(
    path: str | os.PathLike,
    *,
    text_cols: str | Sequence[str] = ("text",),
    image_col: str | None = "image",
    label_col: str | None = "label",
    id_col: str | None = None,
    language_col: str | None = None,
    label_source_col: str | None = None,
    image_root: str | os.PathLike | None = None,
    encoding: str | None = None,
    on_bad_row: str = DEFAULT_POLICY,
    require_label: bool = False,
    check_images: bool = True,
    split: str | None = None,
    max_examples: int = 5,
    memory_map_rows: int | None = MEMORY_MAP_ROWS,
    workers: int = 0,
    delimiter: str | None = None,
) -> Catalogue:
    """Read a CSV / TSV / Parquet / JSON-lines catalogue.

    Args:
        text_cols: one or more text columns, joined with ``"\\n"`` (empty cells skipped).
        image_col: column of image paths relative to ``image_root`` (``None``: a text-only catalogue).
            Backslash separators are accepted; absolute paths and ``..`` leaving the root are bad rows.
        label_col: label column (``None``: unlabelled). The default name ``"label"`` may be absent when
            ``require_label`` is false; any other configured column that is absent raises ``ColumnError``.
        id_col / language_col / label_source_col: default to ``"id"`` / ``"language"`` / ``"label_source"``
            when present; ids default to the row number.
        image_root: folder image paths are relative to; default the file's folder.
        encoding: force a text encoding; default: detected (UTF-8, then charset-normalizer, then latin-1).
        delimiter: the CSV / TSV field separator, one character (``"tab"`` for a tab); default: a tab for TSV,
            and for CSV a comma unless the header splits on a semicolon, tab or pipe instead (said in a warning).
        on_bad_row: ``"missing-modality"`` (default), ``"skip"`` or ``"fail"`` (see docs/data.md).
        require_label: count rows without label as ``label-missing`` and drop them.
        check_images: check that image files exist now (one ``stat`` per row).
        memory_map_rows: from this many rows on (``None``: never), the text, id and image-path columns go into
            memory-mapped temporary files as they are read (:mod:`fluid.data.store`). CSV, TSV, Parquet and JSON
            lines are read :data:`~fluid.data._canonical.CHUNK_ROWS` rows at a time; a JSON array is parsed
            whole first.
        workers: > 0 parses and converts CSV / TSV / Parquet chunks in a DataLoader worker process
            (:func:`~fluid.data.stream.parsed_chunks`); the image existence checks then run there too.

    Cells are read as strings; only empty cells are missing (``"NA"``, ``"None"`` stay text).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"catalogue file not found: {path}")
    fmt, compressed = _format_of(path)
    source = str(path)
    text_cols = _as_tuple(text_cols)

    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty (0 bytes); expected a header row naming the columns, then "
                         "one row per product")
    root = os.path.abspath(os.fspath(image_root) if image_root is not None else path.parent)
    with _parse_errors(path, fmt):
        columns, cols = _parse_table(
            path, fmt, compressed, source, text_cols=text_cols, image_col=image_col, label_col=label_col,
            id_col=id_col, language_col=language_col, label_source_col=label_source_col, encoding=encoding,
            require_label=require_label, image_root=root, check_images=check_images,
            memory_map_rows=memory_map_rows, workers=workers, delimiter=parse_delimiter(delimiter, fmt, path),
        )
    return _normalize(columns, pd.RangeIndex(columns.rows), cols, source=source, on_bad_row=on_bad_row,
                      require_label=require_label, split=split, max_examples=max_examples,
                      root_for_catalogue=Path(root))


class _parse_errors:
    """Turns a parser's own exception (pandas, pyarrow, json, codecs) into a ``ValueError`` naming the file
    and the format; our own errors (``ColumnError``, ``BadRowError``) pass through unchanged."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path, self.fmt = path, fmt

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, tb) -> bool:
        from fluid.data.errors import BadRowError, SpillError

        ours = (ColumnError, BadRowError, SpillError)
        if error is None or isinstance(error, ours) or not isinstance(error, Exception):
            return False
        import pyarrow as pa

        parse_errors = (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeError, pa.ArrowException,
                        ValueError, EOFError, OSError)
        if isinstance(error, FileNotFoundError) or not isinstance(error, parse_errors):
            return False
        detail = str(error).strip() or type(error).__name__
        raise ValueError(f"{self.path}: cannot read it as {self.fmt.upper()}: {detail}") from None


def _parse_table(path: Path, fmt: str, compressed: bool, source: str, *, text_cols, image_col, label_col, id_col,
                 language_col, label_source_col, encoding, require_label, image_root: str, check_images: bool,
                 memory_map_rows: int | None, workers: int, delimiter: str | None = None
                 ) -> tuple[Gathered, dict[str, Any]]:
    """The wanted columns of a table file, parsed as strings :data:`CHUNK_ROWS` rows at a time (a JSON array:
    whole), converted (CSV / TSV / Parquet: in a DataLoader worker when ``workers`` > 0) and gathered; and the
    resolved column options."""
    def wanted(present: Sequence[Any]) -> dict[str, Any]:
        return _wanted_columns(present, text_cols=text_cols, image_col=image_col, label_col=label_col,
                               id_col=id_col, language_col=language_col, label_source_col=label_source_col,
                               require_label=require_label, source=source)

    if _is_json_array(path, fmt):
        df, _ = _read_with_encoding(
            lambda e: pd.read_json(path, orient="records", dtype=False, encoding=e), path, encoding, compressed)
        cols = wanted(df.columns)
        chunk = _convert(df.reset_index(drop=True), cols, image_root, check_images, allow_zip=False)
        return _gather([chunk], cols, memory_map_rows), cols
    if fmt in ("json", "jsonl"):
        candidates = frozenset(c for c in [*text_cols, image_col, label_col, id_col, language_col, label_source_col,
                                           ID, LANGUAGE, LABEL_SOURCE] if c is not None)

        def read_lines(e: str | None) -> tuple[Gathered, dict[str, Any]]:
            known = list(_json_lines(path, e, nrows=CHUNK_ROWS).columns)
            while True:
                try:
                    cols = wanted(known)
                except ColumnError:
                    more = _json_columns_beyond(path, e, known, candidates)
                    if not more:
                        raise
                    known = [*known, *more]
                    continue
                try:
                    produce = _json_lines_chunks(path, e, known, candidates, cols, image_root, check_images)
                    return _gather(produce, cols, memory_map_rows), cols
                except _NewColumns as grown:
                    known = grown.columns

        return _read_with_encoding(read_lines, path, encoding, compressed)[0]
    present, enc = _table_columns(path, fmt, compressed, encoding, delimiter)
    cols = wanted(present)

    def read(e: str | None) -> Gathered:
        produce = functools.partial(_table_chunks, path, fmt, _unique(cols), e, cols, image_root, check_images,
                                    delimiter)
        return _gather(parsed_chunks(produce, workers=workers), cols, memory_map_rows)

    if fmt == "parquet":
        return read(None), cols
    return _read_with_encoding(read, path, encoding, compressed, detected=enc)[0], cols


def _table_chunks(path: Path, fmt: str, use: list[str], encoding: str | None, cols: dict[str, Any],
                  image_root: str, check_images: bool, delimiter: str | None = None) -> Iterator[Chunk]:
    """A CSV / TSV / Parquet file's wanted columns, :data:`CHUNK_ROWS` rows at a time, converted."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as parquet:
            for batch in parquet.iter_batches(batch_size=CHUNK_ROWS, columns=use):
                yield _convert(batch.to_pandas(), cols, image_root, check_images, allow_zip=False)
        return
    with pd.read_csv(path, sep=_separator(path, fmt, encoding, delimiter), dtype=str, keep_default_na=False, na_values=[""],
                     usecols=use, encoding=encoding, chunksize=CHUNK_ROWS) as chunks:
        for chunk in chunks:
            yield _convert(chunk[use], cols, image_root, check_images, allow_zip=False)


def _unique(cols: dict[str, Any]) -> list[str]:
    seen: list[str] = []
    for c in [*cols["text_cols"], cols["image_col"], cols["label_col"], cols["id_col"], cols["language_col"],
              cols["label_source_col"]]:
        if c is not None and c not in seen:
            seen.append(c)
    return seen


_ACCEPTED = ("a pandas DataFrame, a Catalogue, a str/Path to a .csv/.tsv/.parquet/.jsonl/.json file, "
             "or a GLAMI-1M folder (GLAMI-1M-dataset/ or its parent) or GLAMI-1M-dataset.zip")


def read_catalogue(
    path_or_frame: Any,
    *,
    split: str | None = None,
    on_bad_row: str = DEFAULT_POLICY,
    require_label: bool = False,
    memory_map_rows: int | None = MEMORY_MAP_ROWS,
    workers: int = 0,
    columns: Columns | None = None,
    **options: Any,
) -> Catalogue:
    """Read anything FLUID accepts as a catalogue.

    Which columns hold what comes as a :class:`fluid.config.Columns` (``columns``, the run configuration's own
    record) or as the readers' keyword options (``text_cols=``, ``image_col=``, ...), not both.

    Files of at least ``memory_map_rows`` rows (``None``: never) keep their text in memory-mapped temporary
    files (:mod:`fluid.data.store`); in-memory DataFrames stay in RAM. ``workers`` > 0 parses files in a
    DataLoader worker process.

    * ``DataFrame`` → :func:`normalize_frame` (``columns`` are its column options);
    * a :class:`Catalogue` → returned unchanged;
    * a GLAMI-1M folder, its parent, or the GLAMI-1M zip → :func:`fluid.data.glami.read_glami` (``split``
      defaults to ``"train"``; column options are not accepted);
    * a table file → :func:`read_table` (``columns``: ``text_cols``, ``image_col``, ``label_col``, ``id_col``,
      ``language_col``, ``label_source_col``, ``image_root``, ``encoding``, ``check_images``).

    Anything else raises ``TypeError`` listing the accepted inputs.
    """
    if columns is not None:
        if options:
            raise OptionError(f"give the columns as a Columns or as keyword options, not both (got {sorted(options)})")
        options = column_options(columns, file=not isinstance(path_or_frame, pd.DataFrame))
    columns = options
    if isinstance(path_or_frame, Catalogue):
        return path_or_frame
    if isinstance(path_or_frame, pd.DataFrame):
        return normalize_frame(path_or_frame, on_bad_row=on_bad_row, require_label=require_label, split=split,
                               **columns)
    if not isinstance(path_or_frame, (str, os.PathLike)):
        raise TypeError(f"cannot read a catalogue from {type(path_or_frame).__name__}; expected {_ACCEPTED}")
    from fluid.data.glami import find_glami, read_glami

    path = Path(path_or_frame)
    if not path.exists():
        raise FileNotFoundError(f"catalogue not found: {path} (expected {_ACCEPTED})")
    if find_glami(path, strict=False) is not None:
        if columns:
            raise OptionError(f"{path} is a GLAMI-1M catalogue; column options {sorted(columns)} do not apply")
        return read_glami(path, split or "train", on_bad_row=on_bad_row, require_label=require_label,
                          memory_map_rows=memory_map_rows, workers=workers)
    if path.is_dir():
        raise ValueError(
            f"{path} is a folder but not a GLAMI-1M layout (no GLAMI-1M-{split or 'train'}.csv in it, nor in "
            f"{path / 'GLAMI-1M-dataset'}); expected {_ACCEPTED}"
        )
    try:
        _format_of(path)
    except ValueError:
        raise TypeError(f"cannot read a catalogue from {path}; expected {_ACCEPTED}") from None
    return read_table(path, on_bad_row=on_bad_row, require_label=require_label, split=split,
                      memory_map_rows=memory_map_rows, workers=workers, **columns)
