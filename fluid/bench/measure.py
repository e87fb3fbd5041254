"""Measuring helpers for the benchmark suite: wall time with device synchronisation, peak memory, percentiles."""

from __future__ import annotations

import os
import resource
import threading
import time
from contextlib import contextmanager

import numpy as np
import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def synchronize(device: torch.device) -> None:
    """Waits for queued GPU work, so a timer measures the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def current_rss_bytes() -> int:
    """Resident set size of this process now (Linux ``/proc``; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:  # pragma: no cover - not Linux
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Peak RSS (sampled every ``interval`` s by a thread) and peak CUDA memory while the block runs.

    ``with PeakMemory(device) as peak: ...`` then ``peak.rss_bytes``, ``peak.cuda_bytes`` (None on CPU).
    """

    def __init__(self, device: torch.device, interval: float = 0.01):
        self.device = device
        self.interval = interval
        self.rss_bytes = 0
        self.cuda_bytes: int | None = None
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.rss_bytes = max(self.rss_bytes, current_rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.rss_bytes = current_rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.rss_bytes = max(self.rss_bytes, current_rss_bytes())
        if self.device.type == "cuda":
            self.cuda_bytes = int(torch.cuda.max_memory_allocated(self.device))


@contextmanager
def timed(device: torch.device, into: list[float]):
    """Appends the block's wall time in seconds to ``into``, synchronising the device before and after."""
    synchronize(device)
    started = time.perf_counter()
    yield
    synchronize(device)
    into.append(time.perf_counter() - started)


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50 / p95 of a list of durations, in milliseconds."""
    values = np.asarray(seconds, dtype=float) * 1000.0
    return {"p50_ms": round(float(np.percentile(values, 50)), 3), "p95_ms": round(float(np.percentile(values, 95)), 3)}


def mib(n_bytes: int | None) -> float | None:
    return None if n_bytes is None else round(n_bytes / 2**20, 1)
