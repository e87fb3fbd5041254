"""Keep a catalogue's text out of RAM: Arrow string columns in temporary files, memory-mapped.

The readers keep ``id``, ``text`` and image paths as Arrow buffers (:data:`~fluid.data.schema.STRING` columns).
Here those buffers are written, chunk by chunk, to Arrow IPC files and read back memory-mapped: the frame reads the
same cells, while the operating system pages the text in on demand and can drop it again under memory pressure,
so the process's own (anonymous) memory no longer grows with the text of the catalogue. Each file is deleted as
soon as it is mapped (the mapping keeps its pages until the last array over it is gone); where the operating
system refuses (Windows), at exit.

* :class:`StringColumns` gathers a reader's columns chunk by chunk: in RAM up to ``memory_map_rows`` rows, then
  straight into mapped files, so a reader never holds a large catalogue's text in RAM at once.
* :func:`memory_map_strings` maps the string columns of a frame that is already in RAM.
* :func:`rows_where` filters a frame; a mapped frame's filtered text goes into new mapped files, chunk by chunk.

A mapped frame carries ``frame.attrs[MAPPED]`` (the folder for its further files; ``""``: the system's temporary
folder, ``TMPDIR``), which pandas keeps through copies and selections.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import tempfile
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc

from fluid.data.errors import SpillError
from fluid.data.schema import is_arrow_strings, string_series

__all__ = ["memory_map_strings", "rows_where", "is_memory_mapped", "StringColumns", "StringSpill",
           "MEMORY_MAP_ROWS", "MAPPED"]

#: Rows from which the readers and ``Classifier.fit`` keep text in memory-mapped files (``memory_map_rows``).
MEMORY_MAP_ROWS = 50_000
#: Most rows per record batch of a file (a batch is the unit an array over the mapping is chunked in).
BATCH_ROWS = 65_536
#: ``frame.attrs`` key marking a frame whose string columns are memory-mapped; its value is the folder for files.
MAPPED = "fluid.memory_mapped"

_T = pa.large_string()
_SCHEMA = pa.schema([pa.field("strings", _T)])


class StringSpill:
    """One ``large_string`` column written chunk by chunk to a temporary Arrow IPC file, then memory-mapped.

    Use as a context manager: the file is removed on an error, and :meth:`mapped` removes it once mapped.
    Only the chunk being written is in RAM.
    """

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.folder = os.fspath(folder) if folder else tempfile.gettempdir()
        self.rows = 0
        self._writer: ipc.RecordBatchFileWriter | None = None
        with self._writing():
            handle, self.path = tempfile.mkstemp(prefix="fluid-strings-", suffix=".arrow", dir=self.folder)
            os.close(handle)
            self._writer = ipc.new_file(self.path, _SCHEMA)

    def append(self, values: pa.Array | pa.ChunkedArray) -> None:
        """Write ``values`` (strings; cast to ``large_string``) after what is already there."""
        if self._writer is None:
            raise ValueError(f"{self.path} is already mapped or discarded; nothing can be appended")
        for chunk in (values.chunks if isinstance(values, pa.ChunkedArray) else [values]):
            chunk = chunk if chunk.type == _T else chunk.cast(_T)
            with self._writing():
                for start in range(0, len(chunk), BATCH_ROWS):
                    self._writer.write_batch(pa.record_batch([chunk.slice(start, BATCH_ROWS)], schema=_SCHEMA))
            self.rows += len(chunk)

    @contextlib.contextmanager
    def _writing(self):
        """Turns a failed write (a full or read-only folder) into a :class:`~fluid.data.errors.SpillError`."""
        try:
            yield
        except OSError as error:  # pyarrow's IOError is an OSError too
            raise SpillError(self.folder, error) from error

    def mapped(self) -> pa.ChunkedArray:
        """Close the file and return its column, memory-mapped (one chunk per record batch); the file is deleted."""
        if self._writer is None:
            raise ValueError(f"{self.path} is already mapped or discarded")
        self._writer.close()
        self._writer = None
        try:
            return ipc.open_file(pa.memory_map(self.path, "r")).read_all().column(0)
        finally:
            _unlink(self.path)

    def discard(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
            _unlink(self.path)

    def __enter__(self) -> StringSpill:
        return self

    def __exit__(self, kind, error, tb) -> None:
        if error is not None:
            self.discard()


def spill_strings(chunks: Iterable[pa.Array | pa.ChunkedArray], folder: str | os.PathLike | None = None
                  ) -> pa.ChunkedArray:
    """``chunks`` (consumed one at a time) as one memory-mapped ``large_string`` ChunkedArray."""
    with StringSpill(folder) as spill:
        for chunk in chunks:
            spill.append(chunk)
        return spill.mapped()


class StringColumns:
    """A reader's string columns (e.g. ``id``, ``text``, ``image``) gathered chunk by chunk.

    Chunks stay in RAM until ``memory_map_rows`` rows have arrived (``None``: always); from then on every chunk,
    those before included, goes into a :class:`StringSpill` per column, so at most ``memory_map_rows`` rows plus
    one chunk are ever in RAM.
    """

    def __init__(self, names: Sequence[str], *, memory_map_rows: int | None = MEMORY_MAP_ROWS,
                 folder: str | os.PathLike | None = None) -> None:
        if memory_map_rows is not None and memory_map_rows < 0:
            raise ValueError(f"memory_map_rows must be >= 0 or None, got {memory_map_rows}")
        self.names = tuple(names)
        self.memory_map_rows = memory_map_rows
        self.folder = folder
        self.rows = 0
        self._pending: dict[str, list[pa.Array]] = {name: [] for name in self.names}
        self._spills: dict[str, StringSpill] | None = None

    @property
    def memory_mapped(self) -> bool:
        return self._spills is not None

    def append(self, chunk: dict[str, pa.Array]) -> None:
        """Add one chunk: a string array per column (cast to ``large_string``), all of the same length."""
        lengths = {len(chunk[name]) for name in self.names}
        if len(lengths) != 1:
            raise ValueError(f"the columns of a chunk differ in length: {sorted(lengths)}")
        self.rows += lengths.pop()
        if self._spills is None:
            for name in self.names:
                values = chunk[name]
                self._pending[name].append(values if values.type == _T else values.cast(_T))
            if self.memory_map_rows is not None and self.rows >= self.memory_map_rows:
                self._spill_pending()
        else:
            for name in self.names:
                self._spills[name].append(chunk[name])

    def _spill_pending(self) -> None:
        self._spills = {}
        try:
            for name in self.names:
                self._spills[name] = StringSpill(self.folder)
                for part in self._pending[name]:
                    self._spills[name].append(part)
                self._pending[name] = []
        except BaseException:
            self.discard()
            raise

    def columns(self) -> dict[str, pa.ChunkedArray]:
        """Every column as one ChunkedArray (memory-mapped when :attr:`memory_mapped`); call once."""
        if self._spills is None:
            out = {name: pa.chunked_array(parts, type=_T) for name, parts in self._pending.items()}
            self._pending = {name: [] for name in self.names}
            return out
        spills, self._spills = self._spills, {}
        return {name: spill.mapped() for name, spill in spills.items()}

    def discard(self) -> None:
        """Remove the files written so far (after an error)."""
        for spill in (self._spills or {}).values():
            spill.discard()


def is_memory_mapped(frame: pd.DataFrame) -> bool:
    """Whether ``frame``'s string columns were put in memory-mapped files here (``frame.attrs[MAPPED]``)."""
    return MAPPED in frame.attrs


def mark_memory_mapped(frame: pd.DataFrame, folder: str | os.PathLike | None = None) -> pd.DataFrame:
    """Mark ``frame`` (in place) as memory-mapped; its filtered copies go to files in ``folder``."""
    frame.attrs[MAPPED] = "" if folder is None else os.fspath(folder)
    return frame


def memory_map_strings(frame: pd.DataFrame, folder: str | os.PathLike | None = None) -> pd.DataFrame:
    """``frame`` with its :data:`~fluid.data.schema.STRING` columns read from memory-mapped files.

    Args:
        frame: a canonical frame (or any frame); other columns are kept as they are.
        folder: where the temporary files are written (default: the system's temporary folder); they need about
            the UTF-8 size of those columns, for as long as the returned frame lives.

    Returns:
        A new frame with the same index, columns, dtypes and cells; ``frame`` itself is unchanged (drop it to
        free its buffers). A frame that is already memory-mapped, or has no rows or no such column, is returned
        as it is.
    """
    names = [name for name in frame.columns if is_arrow_strings(frame[name])]
    if not names or len(frame) == 0 or is_memory_mapped(frame):
        return frame
    out = frame.copy(deep=False)
    for name in names:
        out[name] = string_series(spill_strings([_arrow(frame[name])], folder), frame.index).array
    return mark_memory_mapped(out, folder)


def rows_where(frame: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    """``frame[mask]``, with each :data:`~fluid.data.schema.STRING` column filtered by Arrow chunk by chunk.

    pandas would take those rows by position, and Arrow's take first joins all the chunks of a column into one
    more copy of it (1.1M GLAMI-size rows: ~220 MiB more at the peak). A memory-mapped frame's filtered chunks
    are written to new mapped files one at a time, so its text never comes back into RAM.
    """
    mask = np.asarray(mask, dtype=bool)
    if len(mask) != len(frame):
        raise ValueError(f"mask has {len(mask)} values for {len(frame)} rows")
    mapped = is_memory_mapped(frame)
    folder = frame.attrs.get(MAPPED) or None
    keep = pa.array(mask)
    index = frame.index[mask]
    columns = {}
    for name in frame.columns:
        column = frame[name]
        if not is_arrow_strings(column):
            columns[name] = column[mask]
        elif mapped:
            columns[name] = string_series(spill_strings(_filtered_chunks(_arrow(column), mask), folder), index)
        else:
            columns[name] = string_series(_arrow(column).filter(keep), index)
    out = pd.DataFrame(columns, index=index, columns=frame.columns, copy=False)
    out.attrs.update(frame.attrs)
    return out


def _filtered_chunks(values: pa.ChunkedArray, mask: np.ndarray) -> Iterable[pa.Array]:
    start = 0
    for chunk in values.chunks:
        part = mask[start:start + len(chunk)]
        start += len(chunk)
        if part.any():
            yield chunk.filter(pa.array(part))


def _arrow(column: pd.Series) -> pa.ChunkedArray:
    values = column.array.__arrow_array__()
    return values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:  # Windows: a mapped file cannot be deleted
        atexit.register(_remove, path)


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
