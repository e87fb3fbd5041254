"""Length bucketing: batches of similar text lengths, so dynamic padding pads little."""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class LengthBucketSampler(Sampler[list[int]]):
    """Batch sampler that groups items of similar length (use as ``DataLoader(ds, batch_sampler=...)``).

    Each epoch: shuffle all indices (if ``shuffle``), cut them into buckets of ``batch_size * bucket_batches``
    items, sort each bucket by length (longest first, stable), cut it into batches, then shuffle the order of
    all batches (if ``shuffle``). Without ``shuffle`` the dataset order is bucketed as is and batches keep
    their order. Deterministic for a given ``seed`` and epoch (:meth:`set_epoch`); the global RNG is untouched.

    Args:
        lengths: one length per dataset item (e.g. ``TextEncoder.lengths(texts)``).
        batch_size: items per batch.
        shuffle: randomise bucket contents and batch order.
        seed: base seed; the epoch is added to it.
        drop_last: drop the last, smaller batch of each bucket.
        bucket_batches: how many batches one bucket holds (more = tighter lengths, less randomness).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        bucket_batches: int = 50,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if bucket_batches < 1:
            raise ValueError("bucket_batches must be >= 1")
        self.lengths = [int(x) for x in lengths]
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.bucket_batches = int(bucket_batches)
        # Lightning (and torch's convention for batch samplers) calls ``batch_sampler.sampler.set_epoch``.
        self.sampler = _EpochCounter()

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def _batches(self) -> list[list[int]]:
        n = len(self.lengths)
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        order = torch.randperm(n, generator=g).tolist() if self.shuffle else list(range(n))
        bucket = self.batch_size * self.bucket_batches
        batches: list[list[int]] = []
        for start in range(0, n, bucket):
            chunk = sorted(order[start:start + bucket], key=lambda i: -self.lengths[i])
            for b in range(0, len(chunk), self.batch_size):
                batch = chunk[b:b + self.batch_size]
                if len(batch) < self.batch_size and self.drop_last:
                    continue
                batches.append(batch)
        if self.shuffle:
            perm = torch.randperm(len(batches), generator=g).tolist()
            batches = [batches[i] for i in perm]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        # A generator, so the batches are drawn at the first ``next`` and not when the iterator is made:
        # Lightning creates the epoch's iterator before it calls ``set_epoch`` when it resumes a run.
        yield from self._batches()

    def __len__(self) -> int:
        n = len(self.lengths)
        bucket = self.batch_size * self.bucket_batches
        full, rest = divmod(n, bucket)
        per_full = self.bucket_batches
        if self.drop_last:
            return full * per_full + rest // self.batch_size
        return full * per_full + -(-rest // self.batch_size)


class _EpochCounter:
    """Holds the epoch for :class:`LengthBucketSampler`; it is its ``.sampler`` so that trainers that call
    ``batch_sampler.sampler.set_epoch(e)`` every epoch (Lightning does) reshuffle the buckets."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
