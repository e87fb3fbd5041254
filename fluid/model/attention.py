"""Multi-head attention with a key padding mask, a feed-forward sublayer, and a pre-LN cross-attention block.

All attention in ``fluid.model`` goes through :class:`MultiHeadAttention`, which calls
``torch.nn.functional.scaled_dot_product_attention`` with a boolean mask (True = attend). Callers must
guarantee at least one valid key per row (see ``fluid.model.missing``); an all-masked row gives NaN.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from fluid._sdpa import varying_length_attention

__all__ = ["MultiHeadAttention", "FeedForward", "CrossAttentionBlock"]


class MultiHeadAttention(nn.Module):
    """softmax(Q Kᵀ / √d_head) V over ``num_heads`` heads, with input and output projections.

    Args:
        dim (int): width d of queries and of the output.
        num_heads (int): heads; d must be divisible by it.
        kv_dim (int | None): width of the key/value input (projected to d by W^K, W^V); None = dim.
        dropout (float): dropout on the attention weights (training only).
    """

    def __init__(self, dim: int, num_heads: int, kv_dim: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        kv_dim = dim if kv_dim is None else kv_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(kv_dim, dim)
        self.v_proj = nn.Linear(kv_dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def _split(self, x: Tensor) -> Tensor:
        b, length, d = x.shape
        return x.view(b, length, self.num_heads, d // self.num_heads).transpose(1, 2)

    def forward(self, query: Tensor, key_value: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """
        Args:
            query (Tensor): B x L_q x d.
            key_value (Tensor): B x L_k x kv_dim.
            key_mask (Tensor | None): B x L_k bool, True = real key; None = all real.

        Returns:
            Tensor: B x L_q x d.
        """
        q = self._split(self.q_proj(query))
        k = self._split(self.k_proj(key_value))
        v = self._split(self.v_proj(key_value))
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]
        with varying_length_attention(q.device):
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
            )
        b, _, lq, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, lq, -1))


class FeedForward(nn.Module):
    """Linear -> GELU -> dropout -> Linear.

    Args:
        dim (int): input and output width.
        hidden_dim (int): hidden width.
        dropout (float): dropout after the activation.
    """

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        """x (Tensor): ... x dim -> ... x dim."""
        return self.net(x)


class CrossAttentionBlock(nn.Module):
    """Pre-LN cross-attention + residual, then pre-LN FFN + residual (one Q-Former cross-attention layer).

        x = x + Drop(Attn(LN(x), LN_kv(memory), mask));   x = x + Drop(FFN(LN(x)))

    Args:
        dim (int): width d of the query stream.
        kv_dim (int): width of the memory (keys/values), projected to d inside the attention.
        num_heads (int): attention heads.
        ffn_dim (int | None): FFN hidden width; None = no FFN sublayer.
        dropout (float): dropout on attention weights and residual branches.
    """

    def __init__(
        self, dim: int, kv_dim: int, num_heads: int, ffn_dim: int | None = None, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(kv_dim)
        self.attn = MultiHeadAttention(dim, num_heads, kv_dim=kv_dim, dropout=dropout)
        self.drop = nn.Dropout(dropout)
        if ffn_dim is None:
            self.norm_ffn = None
            self.ffn = None
        else:
            self.norm_ffn = nn.LayerNorm(dim)
            self.ffn = FeedForward(dim, ffn_dim, dropout)

    def forward(self, x: Tensor, memory: Tensor, memory_mask: Tensor | None = None) -> Tensor:
        """
        Args:
            x (Tensor): B x L_q x d.
            memory (Tensor): B x L_k x kv_dim.
            memory_mask (Tensor | None): B x L_k bool, True = real.

        Returns:
            Tensor: B x L_q x d.
        """
        x = x + self.drop(self.attn(self.norm_q(x), self.norm_kv(memory), memory_mask))
        if self.ffn is not None:
            x = x + self.drop(self.ffn(self.norm_ffn(x)))
        return x
