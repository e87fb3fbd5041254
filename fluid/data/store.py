"""Move a canonical frame's text out of RAM: its Arrow string columns into a temporary file, memory-mapped.

The readers keep ``id``, ``text`` and image paths as Arrow buffers (:data:`~fluid.data.schema.STRING` columns).
:func:`memory_map_strings` writes those buffers to an Arrow IPC file and reads them back memory-mapped: the frame
then reads the same cells, while the operating system pages the text in on demand and can drop it again under
memory pressure, so the process's own (anonymous) memory no longer grows with the text of the catalogue. The
file is deleted as soon as it is mapped (the mapping keeps its pages until the frame is gone); where the
operating system refuses (Windows), at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import tempfile

import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc

from fluid.data._canonical import string_series
from fluid.data.schema import is_arrow_strings

__all__ = ["memory_map_strings"]

#: Rows per record batch of the file (a batch is the unit the mapping is read in).
BATCH_ROWS = 65_536


def memory_map_strings(frame: pd.DataFrame, folder: str | os.PathLike | None = None) -> pd.DataFrame:
    """``frame`` with its :data:`~fluid.data.schema.STRING` columns read from a memory-mapped file.

    Args:
        frame: a canonical frame (or any frame); other columns are kept as they are.
        folder: where the temporary file is written (default: the system's temporary folder); it needs about the
            UTF-8 size of those columns, for as long as the returned frame lives.

    Returns:
        A new frame with the same index, columns, dtypes and cells; ``frame`` itself is unchanged (drop it to
        free its buffers).
    """
    names = [name for name in frame.columns if is_arrow_strings(frame[name])]
    if not names or len(frame) == 0:
        return frame
    table = pa.table({str(name): frame[name].array.__arrow_array__() for name in names})
    handle, path = tempfile.mkstemp(prefix="fluid-frame-", suffix=".arrow", dir=folder)
    os.close(handle)
    try:
        with ipc.new_file(path, table.schema) as writer:
            writer.write_table(table, max_chunksize=BATCH_ROWS)
        mapped = ipc.open_file(pa.memory_map(path, "r")).read_all()
    finally:
        try:
            os.unlink(path)
        except OSError:  # Windows: a mapped file cannot be deleted
            atexit.register(_remove, path)
    out = frame.copy(deep=False)
    for name in names:
        out[name] = string_series(mapped.column(str(name)), frame.index).array
    return out


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
