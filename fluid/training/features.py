"""Frozen-encoder features for training, computed once and read from the on-disk :class:`FeatureCache`.

A frozen encoder gives the same tokens for the same input every epoch, so :func:`cached_features` encodes
each distinct text / image once (under ``inference_mode``), stores the tokens as fp16 memmaps, and training
reads them back instead of running the encoder. Items are keyed by **content**, not by catalogue id (two
catalogues may reuse ids for different products): a text by the SHA-1 of the string, an image file by its
path, size and modification time, in-memory image bytes by their SHA-1. The encoder's fingerprint (weights,
config, preprocessing, ``max_length``) is part of the cache key, so a changed encoder never reads stale
features.

Only heads that read the encoders' last layer can use the cache (MoLT reads several layers); only frozen
encoders are cached (a trained encoder's features change every step).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fluid.config import cache_home
from fluid.data.dataset import ColumnCells
from fluid.data.problems import Problem
from fluid.data.errors import BadImageError
from fluid.data.images import load_image
from fluid.data.schema import has_value
from fluid.encoders.cache import CachedFeatures, FeatureCache

MODALITIES = ("text", "image")
CACHE_ENV = "FLUID_CACHE_DIR"


def cache_root(setting: str | None) -> Path | None:
    """Where the feature cache lives for a ``RunConfig.feature_cache`` value.

    ``"auto"`` → ``$FLUID_CACHE_DIR``, else ``$XDG_CACHE_HOME/fluid/features`` (``~/.cache/fluid/features``);
    ``"off"``/None → no cache; anything else is a folder.
    """
    if setting in (None, "off"):
        return None
    if setting == "auto":
        if os.environ.get(CACHE_ENV):
            return Path(os.environ[CACHE_ENV])
        return cache_home() / "features"
    return Path(setting)


def cacheable_modalities(network) -> list[str]:
    """The modalities of ``network`` (a :class:`~fluid.training.network.MultimodalNetwork`) whose encoder is
    frozen and whose head reads only the last encoder layer."""
    if network.encoder_layers != 1:
        return []
    encoders = {"text": network.text_encoder, "image": network.image_encoder}
    return [m for m in MODALITIES if encoders[m] is not None and encoders[m].frozen]


def _text_key(text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        return "text:none"
    return "text:" + hashlib.sha1(text.encode("utf-8")).hexdigest()


def _image_key(cell: Any, image_root: str | os.PathLike | None) -> str:
    if not has_value(cell):
        return "image:none"
    if isinstance(cell, (bytes, bytearray)):
        return "image:sha1:" + hashlib.sha1(cell).hexdigest()
    if isinstance(cell, (str, os.PathLike)):
        path = Path(cell) if image_root is None or Path(cell).is_absolute() else Path(image_root) / cell
        try:
            stat = path.stat()
        except OSError:
            return f"image:unreadable:{path}"
        return f"image:file:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    tobytes = getattr(cell, "tobytes", None)  # a PIL image held in memory
    if tobytes is not None:
        digest = hashlib.sha1(f"{cell.mode}{cell.size}".encode() + tobytes()).hexdigest()
        return "image:pil:" + digest
    return f"image:object:{id(cell)}"


class _LazyImages(Sequence):
    """Images of a frame decoded on access (one batch at a time), None where missing or unreadable.

    A :class:`~fluid.encoders.cache.ProblemSequence`: ``fetch(i)`` also says why an image is None
    (``"image: <BadImageError message>"``, the text :class:`~fluid.data.CatalogueDataset` reports), and the
    feature cache stores that reason with the shard. Picklable (cells + root), so DataLoader workers decode.
    """

    def __init__(self, cells: Sequence, image_root: str | os.PathLike | None):
        self.cells = cells
        self.image_root = image_root

    def __len__(self) -> int:
        return len(self.cells)

    def __getitem__(self, i: int):
        return self.fetch(i)[0]

    def fetch(self, i: int) -> tuple[Any, Problem | None]:
        """``(PIL image or None, the Problem that made it None, or None)``; an empty cell is missing, not a
        problem."""
        cell = self.cells[i]
        if not has_value(cell):
            return None, None
        try:
            return load_image(cell, self.image_root), None
        except BadImageError as e:
            return None, Problem("image", e.kind, str(e))  # the missing-modality path, with the reason kept

    def estimate_view(self) -> list:
        """The undecoded cells, None where empty: enough for the image encoder's token estimate."""
        if isinstance(self.cells, ColumnCells):  # already None where missing or blank; read lazily
            return self.cells
        return [cell if has_value(cell) else None for cell in self.cells]


def item_keys(frame: pd.DataFrame, modality: str, image_root: str | os.PathLike | None = None) -> list[str]:
    """One content key per row of a canonical frame (see the module docstring)."""
    if modality == "text":
        return [_text_key(t) for t in ColumnCells(frame["text"], "text")]
    if modality == "image":
        return [_image_key(c, image_root) for c in ColumnCells(frame["image"], "image")]
    raise ValueError(f"modality must be 'text' or 'image', got {modality!r}")


def cached_features(network, frame: pd.DataFrame, image_root: str | os.PathLike | None, cache: FeatureCache,
                    *, batch_size: int = 64, progress: bool = True, workers: int = 0) -> dict[str, CachedFeatures]:
    """Features of every row of ``frame`` for each cacheable modality of ``network``, from ``cache``
    (computing what is missing). Returns ``{"text"|"image": CachedFeatures aligned with the frame's rows}``;
    a modality whose cache would exceed the budget or the free disk space is left out (computed on the fly).

    ``workers`` DataLoader processes decode images / tokenise texts while the encoder runs (0: this process;
    see :meth:`FeatureCache.build`). An image that cannot be decoded is encoded as missing, and
    ``features["image"].problems`` maps its row position (0-based, in the frame's order) to the reason, e.g.
    ``{7: "image: unreadable file /data/7.jpg (cannot identify image file ...)"}`` — also on a later cache hit.
    """
    features: dict[str, CachedFeatures] = {}
    for modality in cacheable_modalities(network):
        encoder = network.text_encoder if modality == "text" else network.image_encoder
        keys = item_keys(frame, modality, image_root)
        if modality == "text":
            items: Sequence = ColumnCells(frame["text"], "text")
        else:
            items = _LazyImages(ColumnCells(frame["image"], "image"), image_root)
        built = cache.build(encoder, keys, items, batch_size=batch_size, progress=progress, workers=workers)
        if built is not None:
            features[modality] = built
    return features
