"""Training-time image augmentation: random horizontal flips and shifts, on a prepared batch's pixels.

Runs on the tensors a batch already carries (uint8 ``pixels`` or float ``pixel_values``, B x C x H x W), on
their device, after collation: no second decode, and the feature cache's frozen features are never touched
(augmentation only matters for an image encoder that trains).
"""

from __future__ import annotations

import torch
from torch import Tensor


def flip_and_shift(images: Tensor, max_shift: float, *, generator: torch.Generator | None = None) -> Tensor:
    """Each image of ``images`` (B x C x H x W, any dtype) mirrored left-right with probability 1/2 and moved
    by a random whole number of pixels in each direction, at most ``max_shift`` of the side; the pixels that
    move in repeat the edge. Returns a new tensor of the same shape and dtype; ``max_shift`` 0 only flips."""
    if images.ndim != 4:
        raise ValueError(f"expected B x C x H x W images, got shape {tuple(images.shape)}")
    if not 0.0 <= max_shift < 0.5:
        raise ValueError(f"max_shift must be in [0, 0.5), got {max_shift}")
    b, _, h, w = images.shape
    device = images.device

    def draw(limit: int) -> Tensor:
        return torch.randint(-limit, limit + 1, (b, 1), generator=generator).to(device)

    dy, dx = draw(int(h * max_shift)), draw(int(w * max_shift))
    flip = (torch.rand(b, 1, generator=generator) < 0.5).to(device)
    rows = (torch.arange(h, device=device) + dy).clamp_(0, h - 1)  # B x H
    cols = torch.arange(w, device=device).expand(b, w)
    cols = torch.where(flip, w - 1 - cols, cols)
    cols = (cols + dx).clamp_(0, w - 1)  # B x W
    picked = images[torch.arange(b, device=device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return picked.permute(0, 3, 1, 2).contiguous()  # B x H x W x C -> B x C x H x W


def augment_image_batch(batch: dict[str, Tensor], max_shift: float) -> dict[str, Tensor]:
    """A prepared image batch (``pixels`` or ``pixel_values`` + ``present``) with :func:`flip_and_shift`
    applied to its pixels; the input is left unchanged."""
    key = "pixels" if "pixels" in batch else "pixel_values"
    return {**batch, key: flip_and_shift(batch[key], max_shift)}
