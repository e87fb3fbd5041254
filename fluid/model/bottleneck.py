"""Q-Bottleneck (paper section 4.5, eqs. 7-8): a few queries Q3 distil the fused tokens F into F'."""

from __future__ import annotations

from torch import Tensor

from .config import QUERY_INIT_STD
from .qtransform import QTransform

__all__ = ["QBottleneck"]


class QBottleneck(QTransform):
    """Q3 (n x d, paper n = 2) attends to F (l x d): F' = Attention(Q3, F Wᴷ_F, F Wⱽ_F).

    The same block as :class:`QTransform` with input width d; kept as its own class because it is its own
    idea in the paper (and its own ablation switch, ``use_bottleneck``).

    Args:
        hidden_dim (int): d.
        num_queries (int): n (paper: 2).
        num_heads, num_layers, ffn_dim, dropout, query_init_std: as in :class:`QTransform`.
    """

    def __init__(
        self,
        hidden_dim: int,
        num_queries: int = 2,
        num_heads: int = 8,
        num_layers: int = 1,
        ffn_dim: int | None = None,
        dropout: float = 0.0,
        query_init_std: float = QUERY_INIT_STD,
    ) -> None:
        super().__init__(
            hidden_dim, hidden_dim, num_queries, num_heads, num_layers, ffn_dim, dropout, query_init_std
        )

    def forward(self, fused: Tensor, mask: Tensor | None = None) -> Tensor:
        """
        Args:
            fused (Tensor): B x l x d (F).
            mask (Tensor | None): B x l bool; None = all positions real (the FLUID case).

        Returns:
            Tensor: B x n x d (F').
        """
        return super().forward(fused, mask)
