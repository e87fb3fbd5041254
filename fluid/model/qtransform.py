"""Q-Transform (paper section 4.3, eqs. 3-6): l learnable queries cross-attend to a token sequence."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .attention import CrossAttentionBlock

__all__ = ["QTransform"]


class QTransform(nn.Module):
    """Learnable queries Q (l x d) attend to a token sequence X (L x D) and return l x d.

    Each layer is a pre-LN cross-attention block with residual and FFN (Q-Former style); keys and values
    are K = X Wᴷ, V = X Wⱽ with Wᴷ, Wⱽ ∈ ℝ^{D×d} (eq. 3), attention softmax(Q Kᵀ/√d) V (eq. 6) per head.
    A final LayerNorm closes the stack (pre-LN convention).

    The first layer's queries are the same for every item: they stay 1 x l x d (broadcast over the batch) until
    the first attention, so their LayerNorm and projection W^Q run once per batch, not once per item.

    Args:
        input_dim (int): token width D of the attended sequence.
        hidden_dim (int): query width d.
        num_queries (int): l.
        num_heads (int): attention heads.
        num_layers (int): cross-attention blocks.
        ffn_dim (int): FFN hidden width.
        dropout (float): dropout.
        query_init_std (float): queries ~ N(0, std²) at init (never zeros).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        num_queries: int,
        num_heads: int = 8,
        num_layers: int = 1,
        ffn_dim: int | None = None,
        dropout: float = 0.0,
        query_init_std: float = 0.02,
    ) -> None:
        super().__init__()
        if query_init_std <= 0:
            raise ValueError("query_init_std must be > 0: zero queries attend uniformly and learn slowly")
        self.queries = nn.Parameter(torch.randn(num_queries, hidden_dim) * query_init_std)
        ffn_dim = 4 * hidden_dim if ffn_dim is None else ffn_dim
        self.layers = nn.ModuleList(
            CrossAttentionBlock(hidden_dim, input_dim, num_heads, ffn_dim, dropout) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(hidden_dim)

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        """
        Args:
            tokens (Tensor): B x L x D.
            mask (Tensor | None): B x L bool, True = real token (at least one per row).

        Returns:
            Tensor: B x l x d.
        """
        x = self.queries.unsqueeze(0)  # 1 x l x d, shared by the batch until the first attention
        for layer in self.layers:
            x = layer(x, tokens, mask)
        return self.norm(x.expand(tokens.shape[0], -1, -1))
