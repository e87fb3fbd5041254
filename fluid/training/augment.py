"""Training-time image augmentation on a prepared batch's pixels: random horizontal flips and shifts
(:func:`flip_and_shift`) and random colour-channel orders (:func:`permute_colours`).

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


def permute_colours(images: Tensor, rate: float, *, generator: torch.Generator | None = None) -> Tensor:
    """Each image of ``images`` (B x 3 x H x W, any dtype) with, at probability ``rate``, its colour channels
    in a random order (one of the six, the identity included): red, green and blue trade places, so colour
    stops being a cue while shape, texture and brightness stay. Returns a new tensor; ``rate`` 0 copies."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected B x 3 x H x W images, got shape {tuple(images.shape)}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    b = images.shape[0]
    orders = torch.rand(b, 3, generator=generator).argsort(dim=1)  # B x 3, a uniform permutation per image
    keep = torch.rand(b, generator=generator) >= rate
    orders[keep] = torch.arange(3)
    index = orders.to(images.device)[:, :, None, None].expand_as(images)
    return images.gather(1, index)


def augment_image_batch(batch: dict[str, Tensor], max_shift: float, colour_rate: float = 0.0) -> dict[str, Tensor]:
    """A prepared image batch (``pixels`` or ``pixel_values`` + ``present``) with :func:`flip_and_shift` (when
    ``max_shift`` > 0) and :func:`permute_colours` (when ``colour_rate`` > 0) applied to its pixels; the input is
    left unchanged."""
    key = "pixels" if "pixels" in batch else "pixel_values"
    pixels = batch[key]
    if max_shift > 0:
        pixels = flip_and_shift(pixels, max_shift)
    if colour_rate > 0:
        pixels = permute_colours(pixels, colour_rate)
    return {**batch, key: pixels}
