"""Server-side micro-batching: concurrent requests gathered into one model call.

A :class:`MicroBatcher` owns an ``asyncio`` queue and one worker task. Each request ``await``s
:meth:`MicroBatcher.submit` with its item; the worker takes the first waiting item and everything queued behind
it, then, while other requests are on their way (announced with :meth:`MicroBatcher.arriving` and not queued
yet), keeps waiting for them until it holds ``max_batch_size`` items or ``max_wait_ms`` milliseconds have passed
since that first item; it runs ``run_batch(items)`` once, in a worker thread (the event loop stays free to accept
more requests meanwhile). A lone request, with nothing else arriving, is run at once: it never waits for company
that is not coming, and under load the requests that arrive during one call make up the next batch.
``run_batch`` must return one result per item, in order.

Failures stay per item: when ``run_batch`` raises on a batch of several items, each item is run again on its own,
so only the item that fails gets the exception and the others get their results.

``max_batch_size=1`` disables gathering: one model call per request, still one call at a time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["DEFAULT_MAX_BATCH_SIZE", "DEFAULT_MAX_WAIT_MS", "BatcherStats", "MicroBatcher"]

DEFAULT_MAX_BATCH_SIZE = 16
DEFAULT_MAX_WAIT_MS = 5.0

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class BatcherStats:
    """Counters since the batcher was created: ``requests`` items submitted and answered, ``model_calls``
    calls of ``run_batch`` (retries of a failed batch included), ``largest_batch`` items in the largest call,
    ``failed_batches`` batches that raised and were retried item by item."""

    requests: int = 0
    model_calls: int = 0
    largest_batch: int = 0
    failed_batches: int = 0
    batch_sizes: dict[int, int] = field(default_factory=dict)  # batch size -> how many calls had it

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "model_calls": self.model_calls, "largest_batch": self.largest_batch,
                "failed_batches": self.failed_batches,
                "mean_batch_size": (sum(s * n for s, n in self.batch_sizes.items()) / max(1, sum(
                    self.batch_sizes.values())))}


class MicroBatcher(Generic[Item, Result]):
    """Gathers items submitted concurrently into calls of ``run_batch``.

    Args:
        run_batch: ``list[Item] -> list[Result]`` (same length, same order); runs in a worker thread, never two
            calls at once.
        max_batch_size: most items per call (>= 1; 1 = no gathering).
        max_wait_ms: how long the first item of a batch waits for company (>= 0).
    """

    def __init__(self, run_batch: Callable[[list[Item]], Sequence[Result]], *,
                 max_batch_size: int = DEFAULT_MAX_BATCH_SIZE, max_wait_ms: float = DEFAULT_MAX_WAIT_MS):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.run_batch = run_batch
        self.max_batch_size = int(max_batch_size)
        self.max_wait_ms = float(max_wait_ms)
        self.stats = BatcherStats()
        self._stats_lock = threading.Lock()
        self._queue: asyncio.Queue | None = None
        self._arriving = 0  # requests announced with arriving() and not queued yet
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ lifecycle
    def _ensure_worker(self) -> asyncio.Queue:
        """Starts the worker on the running loop (lazily: the app may be driven by several loops in tests)."""
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done() or self._loop is not loop:
            self._loop = loop
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._work(self._queue), name="fluid-micro-batcher")
        return self._queue

    async def stop(self) -> None:
        """Stops the worker; items still waiting get a ``RuntimeError``."""
        worker, queue = self._worker, self._queue
        self._worker = self._queue = self._loop = None
        if worker is None:
            return
        worker.cancel()
        try:
            await worker
        except asyncio.CancelledError:
            pass
        while queue is not None and not queue.empty():
            _, future = queue.get_nowait()
            if not future.done():
                future.set_exception(RuntimeError("the server is shutting down"))

    # ------------------------------------------------------------------ use
    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Announces a request being received (e.g. its image decoding) that will be submitted: while any is
        announced, a batch waits for it (up to ``max_wait_ms``). Use it around the work before
        :meth:`enqueue`, in the event loop's thread."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1

    def enqueue(self, item: Item) -> asyncio.Future:
        """Queues ``item`` now; the returned future resolves to its result (or the exception its call raised)."""
        queue = self._ensure_worker()
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        queue.put_nowait((item, future))
        return future

    async def submit(self, item: Item) -> Result:
        """Queues ``item`` and waits for its result (or the exception its own call raised)."""
        return await self.enqueue(item)

    async def _collect(self, queue: asyncio.Queue) -> list[tuple[Item, asyncio.Future]]:
        batch = [await queue.get()]
        deadline = time.monotonic() + self.max_wait_ms / 1000
        while len(batch) < self.max_batch_size:
            try:
                batch.append(queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            if self._arriving <= 0:
                break  # nothing else on its way: do not wait for company that is not coming
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _work(self, queue: asyncio.Queue) -> None:
        while True:
            batch = await self._collect(queue)
            batch = [(item, future) for item, future in batch if not future.done()]  # skip cancelled requests
            if not batch:
                continue
            outcomes = await asyncio.to_thread(self._run_with_fallback, [item for item, _ in batch])
            for (_, future), (ok, value) in zip(batch, outcomes):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    # ------------------------------------------------------------------ the model call (worker thread)
    def _call(self, items: list[Item]) -> list[Result]:
        with self._stats_lock:
            self.stats.model_calls += 1
            self.stats.largest_batch = max(self.stats.largest_batch, len(items))
            self.stats.batch_sizes[len(items)] = self.stats.batch_sizes.get(len(items), 0) + 1
        results = list(self.run_batch(items))
        if len(results) != len(items):
            raise RuntimeError(f"run_batch returned {len(results)} results for {len(items)} items")
        return results

    def _run_with_fallback(self, items: list[Item]) -> list[tuple[bool, Any]]:
        """(True, result) or (False, exception) per item."""
        try:
            outcomes = [(True, result) for result in self._call(items)]
        except Exception as error:  # noqa: BLE001 - handed to the waiting request, never swallowed
            if len(items) == 1:
                outcomes = [(False, error)]
            else:
                with self._stats_lock:
                    self.stats.failed_batches += 1
                outcomes = []
                for item in items:
                    try:
                        outcomes.append((True, self._call([item])[0]))
                    except Exception as item_error:  # noqa: BLE001 - handed to that item's request
                        outcomes.append((False, item_error))
        with self._stats_lock:
            self.stats.requests += len(items)
        return outcomes
