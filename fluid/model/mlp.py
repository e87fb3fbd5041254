"""A two-layer MLP classifier (the no-MoE head and the baselines; the MoE experts compute the same in `moe.Experts`)."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["MLP"]


class MLP(nn.Module):
    """Linear -> GELU -> dropout -> Linear.

    Args:
        in_dim (int): input width.
        hidden_dim (int): hidden width.
        out_dim (int): output width.
        dropout (float): dropout after the activation.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, out_dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        """x (Tensor): ... x in_dim -> ... x out_dim."""
        return self.net(x)
