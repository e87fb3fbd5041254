"""The torch side of :func:`fluid.data.stream.parsed_chunks` (imported only when a reader uses a worker, so
``import fluid.data`` does not import torch)."""

from __future__ import annotations

import pickle
from typing import Callable, Iterator

from torch.utils.data import IterableDataset


class Raised:
    """An exception handed from the worker to the calling process (as itself when it pickles, else as a
    RuntimeError with its type and message)."""

    def __init__(self, error: BaseException) -> None:
        try:
            pickle.loads(pickle.dumps(error))
            self.error = error
        except Exception:  # noqa: BLE001 - an exception that cannot travel is described instead
            self.error = RuntimeError(f"{type(error).__name__}: {error}")


class Stream(IterableDataset):
    """``produce()``'s items; an exception becomes a :class:`Raised` item (the DataLoader would turn it into a
    RuntimeError holding the worker's traceback as text, losing its type)."""

    def __init__(self, produce: Callable[[], Iterator]) -> None:
        self.produce = produce

    def __iter__(self) -> Iterator:
        try:
            yield from self.produce()
        except Exception as error:  # noqa: BLE001 - re-raised in the calling process by parsed_chunks
            yield Raised(error)


def as_is(item):
    return item
