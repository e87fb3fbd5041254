"""Multi-head attention with a key padding mask, a feed-forward sublayer, and a pre-LN cross-attention block.

All attention in ``fluid.model`` goes through :class:`MultiHeadAttention`. Callers must guarantee at least one
valid key per row (see ``fluid.model.missing``); an all-masked row gives NaN.

Two evaluations of the same attention, softmax(Q_h K_hᵀ/√d_h) V_h per head h with K_h = X W_hᴷᵀ + b_hᴷ and
V_h = X W_hⱽᵀ + b_hⱽ:

- **projected** (the usual one): project every key/value token X (L_k x D) to K and V, then
  ``F.scaled_dot_product_attention`` with a boolean mask (True = attend). Costs 2·L_k·D·d multiply-adds for
  K and V.
- **absorbed**: W_hᴷ and W_hⱽ move to the query side, where there are few vectors (32 queries, 2 in the
  Q-Bottleneck) instead of many tokens (197 image tokens):

      Q_h K_hᵀ = (Q_h W_hᴷ) Xᵀ + Q_h b_hᴷ             (one row of scores per query and head)
      P_h V_h  = (P_h X) W_hⱽᵀ + b_hⱽ                 (P_h = softmax rows, each sums to 1)

  so X is read as it is and never projected. Same function, other rounding (about 1e-6 relative in fp32).
  It is used where it needs fewer multiply-adds by a clear margin (:meth:`MultiHeadAttention.absorbs`): on
  the CPU in fp32 (where multiply-adds are the time; GPUs, autocast and ``torch.compile`` / ONNX export keep
  the fused SDPA call), without attention dropout in training (the absorbed form needs rows of P that sum
  to 1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fluid.sdpa import varying_length_attention

from .capture import capturing

__all__ = ["ABSORB_MODES", "CrossAttentionBlock", "FeedForward", "MultiHeadAttention"]

ABSORB_MODES = ("auto", "always", "never")

#: "auto" absorbs W^K, W^V into the queries when that needs at most this share of the projected form's
#: multiply-adds (the absorbed form's matrix products are smaller and run less efficiently; see
#: benchmarks/head_profile.py).
ABSORB_MAX_COST_RATIO = 0.5


class MultiHeadAttention(nn.Module):
    """softmax(Q Kᵀ / √d_head) V over ``num_heads`` heads, with input and output projections.

    Args:
        dim (int): width d of queries and of the output.
        num_heads (int): heads; d must be divisible by it.
        kv_dim (int | None): width of the key/value input (projected to d by W^K, W^V); None = dim.
        dropout (float): dropout on the attention weights (training only).

    Attributes:
        absorb (str): "auto" (default; see :meth:`absorbs`), "always" or "never": which evaluation runs (module
            docstring). Not a parameter and not saved: both give the same outputs.
    """

    def __init__(self, dim: int, num_heads: int, kv_dim: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        kv_dim = dim if kv_dim is None else kv_dim
        self.dim = dim
        self.kv_dim = kv_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.absorb = "auto"
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
            query (Tensor): B_q x L_q x d (B_q = B, or 1 for queries shared by the batch).
            key_value (Tensor): B x L_k x kv_dim.
            key_mask (Tensor | None): B x L_k bool, True = real key; None = all real.

        Returns:
            Tensor: B x L_q x d.
        """
        if self.absorb not in ABSORB_MODES:
            raise ValueError(f"absorb={self.absorb!r} is not one of {list(ABSORB_MODES)}")
        q = self._split(self.q_proj(query))  # B_q x H x L_q x d_head
        if self.absorbs(query, key_value):
            out = self._absorbed(q, key_value, key_mask)
        else:
            out = self._projected(q, key_value, key_mask)
        b, _, lq, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, lq, -1))

    def absorbs(self, query: Tensor, key_value: Tensor) -> bool:
        """Whether :meth:`forward` evaluates the absorbed form for these inputs (module docstring).

        Args:
            query (Tensor): B_q x L_q x d, as given to :meth:`forward` (only its shape is read).
            key_value (Tensor): B x L_k x kv_dim.

        "auto": on the CPU, outside graph capture and autocast (the fused kernel keeps fp32 softmax statistics
        for bf16 inputs), without active attention dropout, and when the absorbed form needs at most
        ``ABSORB_MAX_COST_RATIO`` of the projected form's multiply-adds. Multiply-adds (H heads, d = H·d_head):

            projected = B·(2·L_k·kv_dim·d + 2·L_q·L_k·d)
            absorbed  = B·(2·H·L_q·L_k·kv_dim + L_q·kv_dim·d) + B_q·L_q·d·kv_dim

        (projected: K and V, then Q Kᵀ and P V; absorbed: (Q_h W_hᴷ) Xᵀ and P_h X, then W_hⱽ, plus Q_h W_hᴷ on
        the B_q query rows, which every call computes).
        """
        if self.absorb != "auto":
            return self.absorb == "always"
        if key_value.device.type != "cpu" or capturing() or torch.is_autocast_enabled("cpu"):
            return False
        if self.training and self.dropout > 0:
            return False
        b, lk, kv = key_value.shape
        bq, lq, _ = query.shape
        d = self.dim
        projected = b * (2 * lk * kv * d + 2 * lq * lk * d)
        absorbed = b * (2 * self.num_heads * lq * lk * kv + lq * kv * d) + bq * lq * d * kv
        return absorbed <= ABSORB_MAX_COST_RATIO * projected

    def _projected(self, q: Tensor, key_value: Tensor, key_mask: Tensor | None) -> Tensor:
        """q: B_q x H x L_q x d_head -> B x H x L_q x d_head (K, V projected, fused SDPA)."""
        k = self._split(self.k_proj(key_value))
        v = self._split(self.v_proj(key_value))
        if q.shape[0] != k.shape[0]:  # queries shared by the batch (fused kernels want real strides)
            q = q.expand(k.shape[0], -1, -1, -1).contiguous()
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]
        with varying_length_attention(q.device, q.dtype):
            return F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
            )

    def _absorbed(self, q: Tensor, x: Tensor, key_mask: Tensor | None) -> Tensor:
        """The absorbed form (module docstring): q B_q x H x L_q x d_head, x B x L_k x kv_dim ->
        B x H x L_q x d_head."""
        bq, h, lq, dh = q.shape
        b = x.shape[0]
        key_weight = self.k_proj.weight.view(h, dh, self.kv_dim)  # W_hᴷ: d_head x kv_dim per head
        keys = torch.matmul(q, key_weight).view(bq, h * lq, self.kv_dim)  # Q_h W_hᴷ: B_q x (H·L_q) x kv_dim
        bias = torch.matmul(q, self.k_proj.bias.view(h, dh, 1)).view(bq, 1, h * lq)  # Q_h b_hᴷ: B_q x 1 x (H·L_q)
        if bq == 1:  # one matrix product for the whole batch: (B·L_k) x kv_dim times kv_dim x (H·L_q)
            scores = torch.matmul(x, keys[0].t())
        else:
            scores = torch.bmm(x, keys.transpose(1, 2))  # B x L_k x (H·L_q)
        scores = (scores + bias) * (1.0 / math.sqrt(dh))
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, :, None], float("-inf"))
        probs = scores.softmax(dim=1)  # over the keys
        mixed = torch.bmm(probs.transpose(1, 2), x)  # P X: B x (H·L_q) x kv_dim
        # per head h: (P_h X) W_hⱽᵀ, as one batched product over the heads with the batch folded into the rows
        mixed = mixed.view(b, h, lq, self.kv_dim).transpose(0, 1).reshape(h, b * lq, self.kv_dim)
        value_weight = self.v_proj.weight.view(h, dh, self.kv_dim)  # W_hⱽ
        out = torch.baddbmm(self.v_proj.bias.view(h, 1, dh), mixed, value_weight.transpose(1, 2))  # H x (B·L_q) x d_h
        return out.view(h, b, lq, dh).transpose(0, 1)


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
            x (Tensor): B x L_q x d, or 1 x L_q x d for a query stream shared by the batch (learned queries).
            memory (Tensor): B x L_k x kv_dim.
            memory_mask (Tensor | None): B x L_k bool, True = real.

        Returns:
            Tensor: B x L_q x d.
        """
        x = x + self.drop(self.attn(self.norm_q(x), self.norm_kv(memory), memory_mask))
        if self.ffn is not None:
            x = x + self.drop(self.ffn(self.norm_ffn(x)))
        return x
