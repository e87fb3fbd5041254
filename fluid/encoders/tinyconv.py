"""The offline ``tiny`` image preset: a small randomly initialised convolutional network, trained with the head.

A vision transformer trained from scratch needs far more images than a first catalogue has (it must learn
locality from data); a convolution has it built in (measured in BENCHMARKS.md, "The tiny image encoder").
The ViT stays available as the ``tiny-vit`` preset.

Layout (defaults; 64 x 64 input):

| part | layer | output |
|---|---|---|
| stem | conv 3x3 stride 2, 3 -> 32 | 32 x 32 x 32 |
| stage 1 | conv 3x3 32 -> 32, max-pool 2 | 32 x 16 x 16 |
| stage 2 | conv 3x3 32 -> 64, max-pool 2 | 64 x 8 x 8 |
| stage 3 | conv 3x3 64 -> 128 | 128 x 8 x 8 |

Every conv is followed by GroupNorm (no batch statistics: an item's tokens do not depend on the rest of its
batch, in training or serving, and a missing image's zeros never enter running averages) and GELU. The last
map becomes 8 x 8 = 64 image tokens of size ``hidden_size``. Preprocessing is the tiny ViT's: a bilinear
resize to ``image_size`` squared, ``(x / 255 - 0.5) / 0.5``.

Overrides: ``image_size`` (64), ``hidden_size`` (128, the last stage's channels), ``widths`` (the stem's and
the first two stages' channels, ``[32, 32, 64]``), ``seed`` (the initialisation's seed; None: the global RNG).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from fluid.errors import OptionError

from .backbone import BackboneConfig, ImageBackbone

NAME = "tiny"
DEFAULTS: dict[str, Any] = {"image_size": 64, "hidden_size": 128, "widths": [32, 32, 64]}
GROUPS = 8
STAGES = 3


def conv_block(channels_in: int, channels_out: int, *, stride: int = 1) -> nn.Sequential:
    """3x3 convolution, GroupNorm, GELU: B x C_in x H x W -> B x C_out x H/stride x W/stride."""
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(_groups(channels_out), channels_out),
        nn.GELU(),
    )


def _groups(channels: int) -> int:
    return next(g for g in (GROUPS, 4, 2, 1) if channels % g == 0)


class TinyConvNet(ImageBackbone):
    """Stem + three stages (see the module docstring); tokens B x (image_size/8)² x hidden_size."""

    def __init__(self, image_size: int, hidden_size: int, widths: Sequence[int], processor) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) != 3 or min(widths) < 1:
            raise ValueError(f"widths must be three positive channel counts (stem, stage 1, stage 2), got {widths}")
        if int(image_size) < 8 or int(image_size) % 8:
            raise ValueError(f"image_size must be a multiple of 8 (>= 8), got {image_size}")
        self.config = BackboneConfig(NAME, hidden_size=int(hidden_size), num_hidden_layers=STAGES,
                                     image_size=int(image_size), widths=widths)
        self.transform = processor
        self.stem = conv_block(3, widths[0], stride=2)
        self.stages = nn.ModuleList([
            nn.Sequential(conv_block(widths[0], widths[1]), nn.MaxPool2d(2)),
            nn.Sequential(conv_block(widths[1], widths[2]), nn.MaxPool2d(2)),
            conv_block(widths[2], int(hidden_size)),
        ])


def tiny_convnet(**overrides: Any) -> TinyConvNet:
    """The ``tiny`` image backbone with random weights (``seed`` makes them reproducible without touching the
    global RNG). Raises OptionError (a TypeError) naming the valid options for an unknown one."""
    from .presets import make_vit_processor, seeded

    unknown = sorted(set(overrides) - set(DEFAULTS) - {"seed"})
    if unknown:
        raise OptionError(f"unknown tiny image preset option(s) {unknown}; use {sorted([*DEFAULTS, 'seed'])} "
                        "(the tiny-vit preset takes ViT options)")
    options = {**DEFAULTS, **{k: v for k, v in overrides.items() if k != "seed"}}
    return seeded(lambda: TinyConvNet(options["image_size"], options["hidden_size"], options["widths"],
                                      make_vit_processor(int(options["image_size"]))), overrides.get("seed"))
