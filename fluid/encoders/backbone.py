"""Non-Hugging-Face image backbones: the interface, the preprocessing and the registry.

A backbone turns pixels into a token sequence; :class:`~fluid.encoders.image.ImageEncoder` wraps it exactly
like a Hugging Face vision model (masks for missing images, freezing, ``num_layers``, save/load, feature
cache). Adding a backbone is one module (a subclass of :class:`ImageBackbone` plus a factory function) and one
line in :data:`IMAGE_BACKBONES`.

A backbone provides:

* ``config`` (:class:`BackboneConfig`): ``name``, ``hidden_size`` (D of the tokens), ``num_hidden_layers``
  (= ``len(stages)``) and whatever else determines its outputs (it goes into the feature-cache fingerprint);
* ``transform`` (:class:`ImageTransform`): its preprocessing (resize/crop and normalisation the weights expect);
* ``stem`` (the input layers, never trained by ``train_top_layers``) and ``stages`` (an ``nn.ModuleList``
  run in order; ``train_top_layers=N`` trains the last N). The output of the last stage, B x D x h x w, becomes
  the h*w image tokens.

``forward(pixel_values, output_hidden_states=False)`` returns :class:`BackboneOutput` (``last_hidden_state``
B x L x D, ``hidden_states`` and an optional token ``mask``). With ``output_hidden_states`` every stage's
output is returned as tokens on the final grid: average-pooled to h x w and zero-padded from its C_i channels
to D (parameter free), so that heads reading several layers (MoLT) get B x L x D per layer and learn their
own projection of each.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.nn import functional as F

from fluid.atomic import write_json_atomic

#: Registered non-Hugging-Face image backbones: preset name -> "module:factory". The factory takes the
#: preset's keyword overrides and returns a pretrained :class:`ImageBackbone`.
IMAGE_BACKBONES: dict[str, str] = {
    "efficientnet-lite0": "fluid.encoders.efficientnet:efficientnet_lite0",
    "efficientnet-lite2": "fluid.encoders.efficientnet:efficientnet_lite2",
}

TRANSFORM_FILE = "image_transform.json"
CONFIG_FILE = "config.json"


class BackboneOutput(NamedTuple):
    """Output of an :class:`ImageBackbone`.

    Args:
        last_hidden_state (Tensor): B x L x D tokens (the last stage's feature map, flattened row-major).
        hidden_states (tuple[Tensor, ...] | None): every stage's output as B x L x D tokens (oldest first; the
            last one is ``last_hidden_state``) when asked for, else None.
        mask (Tensor | None): B x L bool, True for real tokens; None means every token is real.
    """

    last_hidden_state: Tensor
    hidden_states: tuple[Tensor, ...] | None = None
    mask: Tensor | None = None


class BackboneConfig:
    """JSON-serialisable description of a backbone (goes into ``config.json`` and the cache fingerprint)."""

    def __init__(self, name: str, hidden_size: int, num_hidden_layers: int, **extra: Any) -> None:
        self.name = str(name)
        self.hidden_size = int(hidden_size)
        self.num_hidden_layers = int(num_hidden_layers)
        self.extra = dict(extra)

    def to_dict(self) -> dict[str, Any]:
        return {"backbone": self.name, "hidden_size": self.hidden_size,
                "num_hidden_layers": self.num_hidden_layers, **self.extra}

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        write_json_atomic(Path(directory) / CONFIG_FILE, self.to_dict(), sort_keys=True)

    def __repr__(self) -> str:
        return f"BackboneConfig({self.to_dict()})"


class ImageTransform:
    """Picklable PIL -> tensor preprocessing of a backbone (called like a Hugging Face image processor).

    Steps: RGB; ``fit="crop"``: crop the central square of side ``size / (size + crop_padding)`` x the shorter
    side (TensorFlow's EfficientNet evaluation crop; ``crop_padding=0`` keeps the whole central square), or
    ``fit="pad"``: pad the image to a square with the mean colour (nothing is cut off); then resize to
    ``size`` x ``size`` (bicubic) and normalise ``(x - mean) / std`` with x in 0..255.

    ``transform(images=[PIL, ...], return_tensors="pt") -> {"pixel_values": B x 3 x size x size float32}``.
    """

    FITS = ("crop", "pad")

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float], *, fit: str = "crop",
                 crop_padding: int = 32) -> None:
        if int(size) < 8:
            raise ValueError(f"image size must be >= 8 pixels, got {size}")
        if fit not in self.FITS:
            raise ValueError(f"fit must be one of {self.FITS}, got {fit!r}")
        if int(crop_padding) < 0:
            raise ValueError(f"crop_padding must be >= 0, got {crop_padding}")
        self.size = int(size)
        self.mean = [float(x) for x in mean]
        self.std = [float(x) for x in std]
        self.fit = fit
        self.crop_padding = int(crop_padding)

    def _square(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        if self.fit == "pad":
            side = max(w, h)
            fill = tuple(round(m) for m in self.mean)
            canvas = Image.new("RGB", (side, side), fill)
            canvas.paste(img, ((side - w) // 2, (side - h) // 2))
            return canvas
        crop = max(1, int(self.size / (self.size + self.crop_padding) * min(w, h)))
        top, left = (h - crop + 1) // 2, (w - crop + 1) // 2
        return img.crop((left, top, left + crop, top + crop))

    def pixels(self, img: Image.Image) -> np.ndarray:
        """One image -> 3 x size x size float32 array."""
        img = img if img.mode == "RGB" else img.convert("RGB")
        img = self._square(img).resize((self.size, self.size), Image.BICUBIC)
        x = np.asarray(img, dtype=np.float32)
        x = (x - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def __call__(self, images: Sequence[Image.Image], return_tensors: str = "pt") -> dict[str, Tensor]:
        if return_tensors != "pt":
            raise ValueError("ImageTransform only returns torch tensors (return_tensors='pt')")
        return {"pixel_values": torch.from_numpy(np.stack([self.pixels(im) for im in images]))}

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "mean": self.mean, "std": self.std, "fit": self.fit,
                "crop_padding": self.crop_padding}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageTransform:
        return cls(d["size"], d["mean"], d["std"], fit=d.get("fit", "crop"), crop_padding=d.get("crop_padding", 32))

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        write_json_atomic(Path(directory) / TRANSFORM_FILE, self.to_dict(), sort_keys=True)

    def __repr__(self) -> str:
        return f"ImageTransform({self.to_dict()})"


class ImageBackbone(nn.Module):
    """Base class of non-Hugging-Face image backbones (see the module docstring).

    Subclasses set ``self.config``, ``self.transform``, ``self.stem`` and ``self.stages`` in ``__init__``.
    """

    config: BackboneConfig
    transform: ImageTransform
    stem: nn.Module
    stages: nn.ModuleList

    def feature_maps(self, pixel_values: Tensor) -> list[Tensor]:
        """Output of every stage, each B x C_i x H_i x W_i (the last one has C = hidden_size)."""
        x = self.stem(pixel_values)
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def forward(self, pixel_values: Tensor, output_hidden_states: bool = False,
                return_dict: bool = True) -> BackboneOutput:
        """B x 3 x H x W pixels -> :class:`BackboneOutput` (tokens B x (h*w) x D)."""
        maps = self.feature_maps(pixel_values)
        final = maps[-1]
        if final.shape[1] != self.config.hidden_size:
            raise ValueError(f"{self.config.name}: last stage has {final.shape[1]} channels, "
                             f"config.hidden_size is {self.config.hidden_size}")
        hidden = None
        if output_hidden_states:
            hidden = tuple(self.to_tokens(self.align(m, final)) for m in maps)
        return BackboneOutput(last_hidden_state=self.to_tokens(final), hidden_states=hidden)

    @staticmethod
    def to_tokens(feature_map: Tensor) -> Tensor:
        """B x C x h x w -> B x (h*w) x C."""
        return feature_map.flatten(2).transpose(1, 2)

    def align(self, feature_map: Tensor, final: Tensor) -> Tensor:
        """Pool ``feature_map`` to the final grid and zero-pad its channels to hidden_size."""
        if feature_map.shape[-2:] != final.shape[-2:]:
            feature_map = F.adaptive_avg_pool2d(feature_map, final.shape[-2:])
        missing = self.config.hidden_size - feature_map.shape[1]
        if missing > 0:
            feature_map = F.pad(feature_map, (0, 0, 0, 0, 0, missing))
        return feature_map


def is_backbone(name: str) -> bool:
    """True when ``name`` is a registered non-Hugging-Face image backbone preset."""
    return str(name) in IMAGE_BACKBONES


def backbone_factory(name: str) -> Callable[..., ImageBackbone]:
    module_name, _, attr = IMAGE_BACKBONES[str(name)].partition(":")
    return getattr(importlib.import_module(module_name), attr)


def build_backbone(name: str, **overrides: Any) -> ImageBackbone:
    """Build registered backbone ``name`` with its pretrained weights (raises EncoderLoadError if unavailable)."""
    if not is_backbone(name):
        raise KeyError(f"unknown image backbone {name!r}; registered: {sorted(IMAGE_BACKBONES)}")
    backbone = backbone_factory(name)(**overrides)
    backbone.eval()
    return backbone
