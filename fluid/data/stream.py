"""A file reader's chunks: parsed and converted one at a time, optionally in a DataLoader worker, then gathered.

A reader turns its file into :class:`Chunk` s (``CHUNK_ROWS`` rows each: Arrow strings for ``text``, image paths
and ids; shared-string object arrays for the label-like columns; the chunk's image problems).
:func:`parsed_chunks` runs that producer in the calling process or in one DataLoader worker process, so parsing
and converting overlap with what the calling process does with the chunks, and the parser's own per-row Python
objects never exist in the calling process. :func:`gather` collects the chunks into whole columns, memory-mapped
from ``memory_map_rows`` rows on (:class:`~fluid.data.store.StringColumns`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa

from fluid.data._canonical import release_arrow_memory
from fluid.data.store import StringColumns

__all__ = ["Chunk", "Gathered", "gather", "parsed_chunks"]


@dataclass
class Chunk:
    """One parsed, converted chunk of a file. Row numbers in ``problems`` count from the chunk's first row."""

    rows: int
    strings: dict[str, pa.Array]  # large_string arrays: "text", "image" (paths), "ids" when read
    optional: dict[str, np.ndarray] = field(default_factory=dict)  # label / language / label_source
    problems: dict[str, dict[int, str]] = field(default_factory=dict)  # image problems: {reason: {row: detail}}
    images: np.ndarray | None = None  # image cells that are not all paths (in-memory bytes / PIL images)


@dataclass
class Gathered:
    """Whole columns of a file, ready for :func:`~fluid.data._canonical.canonical`."""

    rows: int
    strings: dict[str, pa.ChunkedArray]
    memory_mapped: bool
    optional: dict[str, np.ndarray]
    problems: dict[str, dict[int, str]]
    images: np.ndarray | None


def gather(chunks: Iterable[Chunk], names: Sequence[str], optional: Sequence[str], *,
           memory_map_rows: int | None) -> Gathered:
    """Collect ``chunks``: the string columns ``names`` into Arrow buffers, memory-mapped from ``memory_map_rows``
    rows on; the ``optional`` object columns concatenated; problems renumbered to the file's rows."""
    strings = StringColumns(names, memory_map_rows=memory_map_rows)
    parts: dict[str, list[np.ndarray]] = {key: [] for key in optional}
    images: list[np.ndarray] = []
    problems: dict[str, dict[int, str]] = {}
    try:
        for chunk in chunks:
            if chunk.images is not None and strings.rows:
                raise ValueError("in-memory image cells (bytes / PIL images) are read as a single chunk")
            for reason, where in chunk.problems.items():
                problems.setdefault(reason, {}).update({strings.rows + row: d for row, d in where.items()})
            for key in parts:
                parts[key].append(chunk.optional[key])
            if chunk.images is not None:
                images.append(chunk.images)
            strings.append(chunk.strings)
            del chunk
            if strings.memory_mapped:
                release_arrow_memory()  # the chunk's buffers are in the files now
    except BaseException:
        strings.discard()
        raise
    return Gathered(
        rows=strings.rows, memory_mapped=strings.memory_mapped, strings=strings.columns(),
        optional={key: _joined(p) for key, p in parts.items()}, problems=problems,
        images=images[0] if images else None,
    )


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return np.full(0, None, dtype=object)
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def parsed_chunks(produce: Callable[[], Iterator[Chunk]], *, workers: int = 0) -> Iterator[Chunk]:
    """``produce()``'s chunks, produced here (``workers == 0``) or in one DataLoader worker process (``workers``
    > 0: a file is one stream, so one worker; ``produce`` must then be picklable where processes are spawned).
    An exception in the worker is raised here with its own type."""
    if workers <= 0:
        yield from produce()
        return
    from torch.utils.data import DataLoader

    from fluid.data._worker import Raised, Stream, as_is

    for item in DataLoader(Stream(produce), batch_size=None, num_workers=1, collate_fn=as_is, prefetch_factor=4):
        if isinstance(item, Raised):
            raise item.error
        yield item
