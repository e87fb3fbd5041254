"""Exceptions raised by :mod:`fluid.data`."""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["ColumnError", "BadRowError", "BadImageError", "SpillError"]


class ColumnError(ValueError, KeyError):
    """A configured column is missing from a catalogue.

    Subclasses both ``ValueError`` and ``KeyError`` so either ``except`` clause catches it. The message names
    the missing column, the file, and lists the columns that are present.
    """

    def __init__(self, column: str, source: str | None, available: Sequence[Any], hint: str = "") -> None:
        self.column = column
        self.source = source
        self.available = [str(c) for c in available]
        where = f" in {source}" if source else ""
        msg = f"column {column!r} not found{where}; columns present: {self.available}"
        if hint:
            msg += f" ({hint})"
        self.message = msg
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class BadRowError(ValueError):
    """A row has a problem and the bad-row policy is ``"fail"``.

    Attributes: ``source`` (file or ``"<DataFrame>"``), ``row`` (0-based data row, header excluded, or the
    DataFrame index label), ``id``, ``reason`` (see :data:`fluid.data.report.REASONS`) and ``detail``.
    """

    def __init__(self, source: str | None, row: Any, id: Any, reason: str, detail: str = "") -> None:
        self.source = source
        self.row = row
        self.id = id
        self.reason = reason
        self.detail = detail
        where = f"{source}: " if source else ""
        msg = f"{where}row {row} (id {id!r}): {reason}"
        if detail:
            msg += f": {detail}"
        msg += " [on_bad_row='fail'; use 'missing-modality' or 'skip' to continue past bad rows]"
        super().__init__(msg)


class BadImageError(ValueError):
    """An image cell cannot be turned into an RGB picture.

    ``kind`` is one of ``"missing"``, ``"empty"``, ``"unreadable"``, ``"too large"``, ``"outside root"``,
    ``"invalid"``; ``path`` is the file (or ``"<bytes>"``, ``"<PIL image>"``, a ``zip://`` reference).
    ``str(err)`` reads like ``"unreadable file /x/1.jpg (cannot identify image file)"``.
    """

    def __init__(self, path: Any, reason: str, kind: str = "unreadable") -> None:
        self.path = str(path)
        self.reason = reason
        self.kind = kind
        super().__init__(f"{kind} file {self.path} ({reason})")


class SpillError(OSError):
    """The text of a large catalogue could not be written to its memory-mapped temporary file (a full or
    read-only temporary folder). The message names the folder and the two ways out."""

    def __init__(self, folder: str, error: OSError) -> None:
        super().__init__(
            error.errno,
            f"cannot write the catalogue's text to a memory-mapped file in {folder}: {error.strerror or error}; "
            "point TMPDIR at a folder with room for about the catalogue's text size, or set memory_map_rows to "
            "None (--set memory_map_rows=null) to keep the text in RAM",
        )
