"""Missing modalities and padding: the learned "missing modality" token and masked pooling.

Design. A whole modality may be absent for a sample: ``tokens=None`` (absent for the whole batch) or a row
of the mask that is all False. Attention over an all-masked row is a softmax over nothing (NaN), so
before any head sees a sequence, :class:`MissingModalityToken` replaces each absent row by a sequence with
**one valid position holding a learned vector** (normal init, std 0.02) and every other position masked.
The rest of the head then runs unchanged; the learned vector tells it "nothing here", and with modality
dropout (the run's ``modality_dropout``, applied by the training network before the head) the head learns what
to do with it.

Padding never leaks: :meth:`MissingModalityToken.forward` also zeroes every masked-out token, and every
attention layer and pooling in this package uses the mask.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .capture import capturing

__all__ = [
    "MissingModalityToken",
    "masked_mean",
    "first_valid_token",
    "default_mask",
]


class MissingModalityToken(nn.Module):
    """A learned vector substituted for an absent modality.

    Args:
        dim (int): token width D of the modality (the encoder's width).
        init_std (float): std of the normal init.
    """

    def __init__(self, dim: int, init_std: float = 0.02) -> None:
        super().__init__()
        self.dim = dim
        self.token = nn.Parameter(torch.randn(dim) * init_std)

    def forward(
        self, tokens: Tensor | None, mask: Tensor | None, batch_size: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Make a sequence safe for attention.

        Args:
            tokens (Tensor | None): B x L x D, or None when the modality is absent for the whole batch.
            mask (Tensor | None): B x L bool, True = real token; None = all real.
            batch_size (int): B (needed when ``tokens`` is None).

        Returns:
            tokens (Tensor): B x L' x D with masked positions zeroed and absent rows replaced
                (L' = max(L, 1); L' = 1 when ``tokens`` is None).
            mask (Tensor): B x L' bool, at least one True per row.
            present (Tensor): B bool, False where the modality was absent.
        """
        device = self.token.device
        if tokens is None:
            out = self.token.expand(batch_size, 1, self.dim)
            mask_out = torch.ones(batch_size, 1, dtype=torch.bool, device=device)
            return out, mask_out, torch.zeros(batch_size, dtype=torch.bool, device=device)
        if tokens.dim() != 3 or tokens.shape[-1] != self.dim:
            raise ValueError(f"expected tokens of shape B x L x {self.dim}, got {tuple(tokens.shape)}")
        b, length, _ = tokens.shape
        if mask is None:
            mask = torch.ones(b, length, dtype=torch.bool, device=tokens.device)
        else:
            if mask.shape != (b, length):
                raise ValueError(f"mask shape {tuple(mask.shape)} does not match tokens {tuple(tokens.shape)}")
            mask = mask.to(device=tokens.device, dtype=torch.bool)
        if length == 0:
            tokens = tokens.new_zeros(b, 1, self.dim)
            mask = torch.zeros(b, 1, dtype=torch.bool, device=tokens.device)
        present = mask.any(dim=1)
        if tokens.device.type == "cpu" and not torch.is_grad_enabled() and not capturing() and bool(mask.all()):
            # nothing to zero, nothing absent (a free check on the CPU). Not under autograd: DDP wants the
            # learned token in every step's graph.
            return tokens, mask, present
        tokens = tokens.masked_fill(~mask.unsqueeze(-1), 0.0)
        # Absent rows: position 0 becomes the learned token, and the only valid position.
        first = torch.zeros_like(mask)
        first[:, 0] = True
        absent_first = first & ~present.unsqueeze(1)
        tokens = torch.where(absent_first.unsqueeze(-1), self.token.to(tokens.dtype), tokens)
        mask = mask | absent_first
        return tokens, mask, present


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over the real positions.

    Args:
        x (Tensor): B x L x D.
        mask (Tensor): B x L bool, True = real (at least one per row for a meaningful mean).

    Returns:
        Tensor: B x D.
    """
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


def first_valid_token(x: Tensor, mask: Tensor) -> Tensor:
    """The first real token of each row (the CLS token for right-padded encoder output).

    Args:
        x (Tensor): B x L x D.
        mask (Tensor): B x L bool.

    Returns:
        Tensor: B x D.
    """
    idx = mask.to(torch.int8).argmax(dim=1)  # first True (0 if none)
    return x[torch.arange(x.shape[0], device=x.device), idx]


def default_mask(tokens: Tensor | None, mask: Tensor | None) -> Tensor | None:
    """The mask to use: ``mask`` as bool, all True when only ``tokens`` is given, None when both are None.

    Args:
        tokens (Tensor | None): B x L x D.
        mask (Tensor | None): B x L.
    """
    if mask is not None:
        return mask.to(torch.bool)
    if tokens is None:
        return None
    return torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
