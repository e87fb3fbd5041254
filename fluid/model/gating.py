"""Gated fusion (paper section 4.4): a per-query-position gate a ∈ (0, 1)ˡ mixes I_n and T_n."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["GatedFusion"]


class GatedFusion(nn.Module):
    """a = sigmoid(MLP([I_n ; T_n])) with one ReLU hidden layer; F = a ⊙ I_n + (1 − a) ⊙ T_n.

    Args:
        dim (int): d, width of I_n and T_n.
        hidden_dim (int): width of the gate MLP's hidden layer.
        dropout (float): dropout after the ReLU.
    """

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(2 * dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_dim, 1)
        )

    def forward(self, image: Tensor, text: Tensor) -> tuple[Tensor, Tensor]:
        """
        Args:
            image (Tensor): B x l x d (I_n).
            text (Tensor): B x l x d (T_n).

        Returns:
            fused (Tensor): B x l x d (F).
            gate (Tensor): B x l, a in (0, 1): the image weight per position.
        """
        gate = torch.sigmoid(self.mlp(torch.cat([image, text], dim=-1))).squeeze(-1)
        a = gate.unsqueeze(-1)
        return a * image + (1.0 - a) * text, gate
