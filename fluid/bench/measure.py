"""Measuring helpers for the benchmark suite: wall time with device synchronisation, peak memory, percentiles."""

from __future__ import annotations

import os
import resource
import sys
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


def _status_kib(*fields: str) -> dict[str, int]:
    """``kB`` fields of ``/proc/self/status`` (Linux) in KiB, read in one pass; empty where there is no such
    file."""
    found: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in fields:
                    found[name] = int(value.split()[0])
    except OSError:  # pragma: no cover - not Linux
        pass
    return found


def current_rss_bytes() -> int:
    """Resident set size of this process now (Linux ``/proc``; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:  # pragma: no cover - not Linux
        return peak_rss_bytes()


def current_anon_rss_bytes() -> int | None:
    """Anonymous resident memory now (``RssAnon``: heap, tensors, Python objects), without file-backed pages
    such as a memory-mapped feature cache, which the kernel can drop and re-read; None off Linux."""
    kib = _status_kib("RssAnon").get("RssAnon")
    return None if kib is None else kib * 1024


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far.

    Linux: ``VmHWM``, the high-water mark of this process's own address space. Not ``ru_maxrss``: Linux keeps
    ``ru_maxrss`` across ``exec``, so a process started by a large parent (``fluid bench`` starting a scaling
    run) would report the parent's peak. Elsewhere ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    """
    kib = _status_kib("VmHWM").get("VmHWM")
    if kib is not None:
        return kib * 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


class PeakMemory:
    """Peak RSS and peak anonymous RSS (sampled every ``interval`` s by a thread) and peak CUDA memory while
    the block runs.

    ``with PeakMemory(device) as peak: ...`` then ``peak.rss_bytes``, ``peak.anon_rss_bytes`` (None off Linux),
    ``peak.cuda_bytes`` (None on CPU).
    """

    def __init__(self, device: torch.device, interval: float = 0.01):
        self.device = device
        self.interval = interval
        self.rss_bytes = 0
        self.anon_rss_bytes: int | None = None
        self.cuda_bytes: int | None = None
        self._stop = threading.Event()

    def _take(self) -> None:
        status = _status_kib("VmRSS", "RssAnon")  # one read per sample
        rss = status["VmRSS"] * 1024 if "VmRSS" in status else current_rss_bytes()
        self.rss_bytes = max(self.rss_bytes, rss)
        if "RssAnon" in status:
            self.anon_rss_bytes = max(self.anon_rss_bytes or 0, status["RssAnon"] * 1024)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._take()
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._take()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._take()
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
