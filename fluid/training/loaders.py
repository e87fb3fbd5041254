"""The DataLoader over a canonical catalogue frame that feeds a :class:`~fluid.training.network.MultimodalNetwork`:
what training, inference and the benchmarks all read batches through."""

from __future__ import annotations

import os

import pandas as pd
import torch
from torch.utils.data import DataLoader

from fluid.data.dataset import CatalogueDataset, ColumnCells
from fluid.data.report import DEFAULT_POLICY
from fluid.encoders import LengthBucketSampler
from fluid.training.network import Collator
from fluid.training.sampling import EpochShuffleSampler


def catalogue_loader(network, frame: pd.DataFrame, image_root: str | os.PathLike | None, label_map: dict[str, int],
                     *, batch_size: int, shuffle: bool, seed: int = 0, bucket: bool = False, num_workers: int = 0,
                     on_bad_row: str = DEFAULT_POLICY, drop_modality: str | None = None, corruption=None,
                     features: dict | None = None) -> DataLoader:
    """Batches of ``frame`` for ``network``.

    Args:
        shuffle: a new permutation every epoch (from ``seed`` and the epoch Lightning sets); else frame order.
        bucket: with ``shuffle``, batches of similar text length (less padding), when the text encoder runs.
        features: cached encoder features per modality (rows aligned with ``frame``), used instead of running
            that encoder; their images are then not decoded.
        drop_modality / corruption: robustness evaluation (see :class:`~fluid.data.dataset.CatalogueDataset`).
    """
    features = features or {}
    dataset = CatalogueDataset(frame, label_map, image_root=image_root, on_bad_row=on_bad_row,
                               corruption=corruption, load_images="image" not in features, compact=num_workers > 0)
    collate = Collator.for_network(network, drop_modality=drop_modality, features=features)
    workers = dict(num_workers=num_workers, persistent_workers=num_workers > 0,
                   pin_memory=num_workers > 0 and torch.cuda.is_available())
    text_encoder = network.text_encoder
    if shuffle and bucket and text_encoder is not None and "text" not in features:
        lengths = text_encoder.lengths(ColumnCells(frame["text"], "text"))
        batches = LengthBucketSampler(lengths, batch_size, shuffle=True, seed=seed)
        return DataLoader(dataset, batch_sampler=batches, collate_fn=collate, **workers)
    sampler = EpochShuffleSampler(len(dataset), seed=seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate, **workers)
