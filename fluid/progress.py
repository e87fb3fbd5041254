"""FLUID's one progress mechanism: rich bars on stderr, so stdout carries only results (a prediction's JSON, a
table) and a pipe stays clean.

Every long step (feature caching, scoring, cross-fitting, a download) opens :func:`progress_bar`; training uses
Lightning's rich bar on the same stream (:data:`LIGHTNING_CONSOLE`). A disabled bar costs nothing and draws
nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

#: ``console_kwargs`` for Lightning's ``RichProgressBar``: the same stream as :func:`progress_bar`.
LIGHTNING_CONSOLE = {"stderr": True}
UNITS = ("items", "bytes")


@contextlib.contextmanager
def progress_bar(description: str, total: int | None, *, enabled: bool = True, unit: str = "items",
                 completed: int = 0, transient: bool = False, console=None) -> Iterator[Callable[[int], None]]:
    """A rich bar on stderr for ``total`` units (None: unknown); yields ``advance(n)``.

    ``unit="items"`` shows done/total and the elapsed time, ``"bytes"`` sizes, speed and the time left.
    ``transient`` removes the bar when done (a step inside a larger one). ``console`` replaces the stderr
    console (tests, or a caller that owns one).
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    if not enabled:
        yield lambda n=1: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    counts = ((DownloadColumn(), TransferSpeedColumn(), TextColumn("eta"), TimeRemainingColumn()) if unit == "bytes"
              else (MofNCompleteColumn(), TimeElapsedColumn()))
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), *counts,
                  console=console or Console(stderr=True), transient=transient) as bar:
        task = bar.add_task(description, total=total, completed=completed)
        yield lambda n=1: bar.advance(task, n)
