"""Atomic file writes: write a temporary sibling, then rename it onto the target (``os.replace``).

A reader, a crash or a ``kill -9`` never sees a half-written file: the target holds either its previous content
or the new one. The temporary file lies in the target's folder (``os.replace`` is atomic only within one file
system) under a hidden name unique to the writer, ``.<name>.<pid>.<random>.tmp``, so two processes or threads
writing the same file never clash; it is removed when the write fails (also on ``KeyboardInterrupt``).

Parent folders are never created here: a caller that wants them makes them first (``path.parent.mkdir``).
Nothing is fsynced: after a power cut (not a process crash) the new content may be lost. A writer that needs
that durability fsyncs inside :func:`atomic_path` (as :class:`fluid.training.trainer.AtomicCheckpointIO` does).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _temp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path`` for a writer that needs a file name (``DataFrame.to_csv``,
    ``to_parquet``, safetensors ``save_file``, ``fig.savefig``, ``open(tmp, "wb")``); when the block ends
    without an exception the temporary file replaces ``path``, otherwise it is removed and ``path`` is left
    as it was.

    The temporary name ends in ``.tmp``, not in the target's suffix: pass writers that infer a format from
    the file name (matplotlib, pandas compression) the format explicitly. The block must create the file.

    Example::

        with atomic_path(out / "split.csv") as tmp:
            table.to_csv(tmp, index=False)
    """
    path = Path(path)
    tmp = _temp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Writes ``text`` to ``path`` atomically (see the module docstring); returns ``path`` as a Path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return path


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int | None = 2, sort_keys: bool = False,
                      ensure_ascii: bool = True, default: Callable[[Any], Any] | None = None) -> Path:
    """Writes ``json.dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii,
    default=default)`` to ``path`` atomically, as UTF-8, without a trailing newline; returns ``path`` as a Path.

    ``obj`` is serialised before anything is written: an object JSON cannot encode raises and leaves ``path``
    (and its folder) untouched.
    """
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii, default=default)
    return write_text_atomic(path, text)


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """:func:`write_json_atomic` for results holding NumPy values: NumPy integers and floats become numbers,
    arrays lists, anything else JSON cannot hold its ``str``."""
    write_json_atomic(path, payload, default=_json_value)


def _json_value(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
