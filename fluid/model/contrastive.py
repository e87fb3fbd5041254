"""Image-text contrastive loss (CLIP-style symmetric InfoNCE) with a learnable, clamped temperature."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["contrastive_loss", "ContrastiveLoss"]


def contrastive_loss(image_emb: Tensor, text_emb: Tensor, temperature: float | Tensor) -> Tensor:
    """Symmetric InfoNCE over cosine similarities, as in CLIP.

        S = norm(image_emb) · norm(text_emb)ᵀ / temperature
        loss = (CE(S, arange(B)) + CE(Sᵀ, arange(B))) / 2

    Args:
        image_emb (Tensor): B x D; row i is paired with ``text_emb[i]``.
        text_emb (Tensor): B x D.
        temperature (float | Tensor): T > 0 (scalar).

    Returns:
        Tensor: scalar. Equals log(B) when all similarities are equal.
    """
    if image_emb.shape != text_emb.shape or image_emb.dim() != 2:
        raise ValueError(f"expected two B x D tensors, got {tuple(image_emb.shape)} and {tuple(text_emb.shape)}")
    image_emb = F.normalize(image_emb, dim=-1)
    text_emb = F.normalize(text_emb, dim=-1)
    logits = image_emb @ text_emb.t() / temperature
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


class ContrastiveLoss(nn.Module):
    """:func:`contrastive_loss` with a learnable temperature, over complete pairs only.

    The temperature is stored as ``logit_scale`` = log(1/T) (CLIP), initialised to log(1/init_temperature)
    and clamped so that 1/T <= max_logit_scale.

    Args:
        init_temperature (float): initial T (CLIP: 0.07).
        max_logit_scale (float): upper bound of 1/T (CLIP: 100).
        learnable (bool): train the temperature or keep it fixed.
    """

    def __init__(self, init_temperature: float = 0.07, max_logit_scale: float = 100.0, learnable: bool = True) -> None:
        super().__init__()
        self.max_logit_scale = max_logit_scale
        value = torch.tensor(math.log(1.0 / init_temperature))
        if learnable:
            self.logit_scale = nn.Parameter(value)
        else:
            self.register_buffer("logit_scale", value)

    def scale(self) -> Tensor:
        """1/T, clamped to at most ``max_logit_scale``."""
        return self.logit_scale.exp().clamp(max=self.max_logit_scale)

    def temperature(self) -> Tensor:
        """T = 1 / scale()."""
        return 1.0 / self.scale()

    def forward(self, image_emb: Tensor, text_emb: Tensor, valid: Tensor | None = None) -> Tensor:
        """
        Args:
            image_emb (Tensor): B x D.
            text_emb (Tensor): B x D.
            valid (Tensor | None): B bool, True where both modalities are present; pairs with a missing
                side are skipped. None = all valid.

        Returns:
            Tensor: scalar loss; 0 when fewer than 2 complete pairs remain.
        """
        if valid is not None:
            image_emb, text_emb = image_emb[valid], text_emb[valid]
        if image_emb.shape[0] < 2:
            # zero, but still connected to the temperature (so DDP never sees it as an unused parameter)
            return 0.0 * self.logit_scale
        return contrastive_loss(image_emb, text_emb, self.temperature())
