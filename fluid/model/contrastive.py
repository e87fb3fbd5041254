"""Image-text contrastive loss (CLIP-style symmetric InfoNCE) with a learnable, clamped temperature, the
optional projection of the compared vectors, and the optional masking of same-label negatives."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "similarity_logits",
    "info_nce",
    "same_label_negatives",
    "contrastive_loss",
    "ContrastiveLoss",
    "ContrastiveProjection",
]


def similarity_logits(image_emb: Tensor, text_emb: Tensor, temperature: float | Tensor) -> Tensor:
    """S = norm(image_emb) · norm(text_emb)ᵀ / temperature (cosine similarities, CLIP).

    Args:
        image_emb (Tensor): B x D; row i is paired with ``text_emb[i]``.
        text_emb (Tensor): B x D.
        temperature (float | Tensor): T > 0 (scalar).

    Returns:
        Tensor: B x B; S[i, j] compares image i with text j.
    """
    if image_emb.shape != text_emb.shape or image_emb.dim() != 2:
        raise ValueError(f"expected two B x D tensors, got {tuple(image_emb.shape)} and {tuple(text_emb.shape)}")
    image_emb = F.normalize(image_emb, dim=-1)
    text_emb = F.normalize(text_emb, dim=-1)
    return image_emb @ text_emb.t() / temperature


def info_nce(logits: Tensor, exclude: Tensor | None = None) -> Tensor:
    """Symmetric InfoNCE on a similarity matrix whose diagonal holds the positive pairs.

        loss = (CE(S, arange(B)) + CE(Sᵀ, arange(B))) / 2

    Args:
        logits (Tensor): B x B, S[i, j] = image i against text j.
        exclude (Tensor | None): B x B bool, True = leave this pair out of both softmaxes (not a negative);
            the diagonal must be False. None = every off-diagonal pair is a negative.

    Returns:
        Tensor: scalar. Equals log(B) when all similarities are equal and nothing is excluded.
    """
    if exclude is not None:
        logits = logits.masked_fill(exclude, float("-inf"))
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def same_label_negatives(labels: Tensor) -> Tensor:
    """The off-diagonal pairs whose items share a label (so are not negatives of each other).

    Args:
        labels (Tensor): B int64; -1 = no label (such an item shares its label with nobody).

    Returns:
        Tensor: B x B bool, True where i != j and labels[i] == labels[j] >= 0 (symmetric).
    """
    same = (labels.unsqueeze(0) == labels.unsqueeze(1)) & (labels >= 0).unsqueeze(0)
    return same & ~torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)


def contrastive_loss(image_emb: Tensor, text_emb: Tensor, temperature: float | Tensor) -> Tensor:
    """Symmetric InfoNCE over cosine similarities, as in CLIP: ``info_nce(similarity_logits(...))``.

    Args:
        image_emb (Tensor): B x D; row i is paired with ``text_emb[i]``.
        text_emb (Tensor): B x D.
        temperature (float | Tensor): T > 0 (scalar).

    Returns:
        Tensor: scalar. Equals log(B) when all similarities are equal.
    """
    return info_nce(similarity_logits(image_emb, text_emb, temperature))


class ContrastiveLoss(nn.Module):
    """:func:`contrastive_loss` with a learnable temperature, over complete pairs only.

    The temperature is stored as ``logit_scale`` = log(1/T) (CLIP), initialised to log(1/init_temperature)
    and clamped so that 1/T <= max_logit_scale.

    Two ways to use it: ``forward(image_emb, text_emb, valid)`` gives the loss at once; ``similarities`` then
    ``loss(logits, exclude)`` split it where the negatives are known only later (same-label masking needs the
    labels, which a head's forward does not get).

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
        return self.loss(self.similarities(image_emb, text_emb, valid))

    def similarities(self, image_emb: Tensor, text_emb: Tensor, valid: Tensor | None = None) -> Tensor:
        """The scaled similarity matrix of the complete pairs.

        Args:
            image_emb (Tensor): B x D. text_emb (Tensor): B x D.
            valid (Tensor | None): B bool, as in :meth:`forward`.

        Returns:
            Tensor: B' x B' (B' = complete pairs), S[i, j] = cos(image i, text j) / T.
        """
        if valid is not None:
            image_emb, text_emb = image_emb[valid], text_emb[valid]
        return similarity_logits(image_emb, text_emb, self.temperature())

    def loss(self, logits: Tensor, exclude: Tensor | None = None) -> Tensor:
        """:func:`info_nce` on :meth:`similarities`' output.

        Args:
            logits (Tensor): B' x B'. exclude (Tensor | None): B' x B' bool (see :func:`info_nce`).

        Returns:
            Tensor: scalar; 0 when B' < 2.
        """
        if logits.shape[0] < 2:
            # zero, but still connected to the temperature and, through ``logits``, to the inputs (a projection
            # before this loss included), so DDP never sees an unused parameter
            return 0.0 * (self.logit_scale + logits.sum())
        return info_nce(logits, exclude)


class ContrastiveProjection(nn.Module):
    """One learned linear map per modality (no bias) from the pooled summaries to the space that is contrasted
    (CLIP's and BLIP-2's image/text projections), so the alignment does not act on the vectors that feed the gate.

    Args:
        dim (int): d, width of the pooled I_n / T_n. out_dim (int): width of the contrasted space.
    """

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.image = nn.Linear(dim, out_dim, bias=False)
        self.text = nn.Linear(dim, out_dim, bias=False)

    def forward(self, image_vec: Tensor, text_vec: Tensor) -> tuple[Tensor, Tensor]:
        """image_vec (Tensor): B x d, text_vec (Tensor): B x d -> (B x out_dim, B x out_dim)."""
        return self.image(image_vec), self.text(text_vec)
