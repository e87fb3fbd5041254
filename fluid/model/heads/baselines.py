"""Multimodal baselines of paper Table 1: early fusion, improved attention, modified BLIP-2."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..attention import CrossAttentionBlock, FeedForward, MultiHeadAttention
from ..config import Blip2Config, EarlyFusionConfig, ImprovedAttentionConfig
from ..missing import MissingModalityToken, first_valid_token, masked_mean
from ..mlp import MLP
from ..output import HeadOutput
from .base import Head, TokenInput

__all__ = ["EarlyFusionHead", "ImprovedAttentionHead", "Blip2Head"]


class EarlyFusionHead(Head):
    """Pooled image features ⊕ pooled text features -> MLP (Gallo et al., 2020 style).

    Forward: as :class:`~fluid.model.heads.fluid.FluidHead`. Returns logits B x C and
    embedding B x (image_dim + text_dim) (the concatenated pooled features).
    """

    config_class = EarlyFusionConfig

    def __init__(self, num_classes: int, image_dim: int, text_dim: int, config: EarlyFusionConfig, name: str = "early-fusion",
                 **cls_tokens: bool) -> None:
        super().__init__(num_classes, image_dim, text_dim, config, name, **cls_tokens)
        c = config
        self.image_missing = MissingModalityToken(image_dim, c.missing_token_std)
        self.text_missing = MissingModalityToken(text_dim, c.missing_token_std)
        self.embedding_dim = image_dim + text_dim
        self.mlp = MLP(self.embedding_dim, c.mlp_hidden_dim or c.hidden_dim, num_classes, c.dropout)

    def _pool(self, tokens: Tensor, mask: Tensor) -> Tensor:
        return first_valid_token(tokens, mask) if self.config.pooling == "cls" else masked_mean(tokens, mask)

    def forward(self, image_tokens: TokenInput, text_tokens: TokenInput, image_mask: Tensor | None = None,
                text_mask: Tensor | None = None, *, aux_losses: bool = True) -> HeadOutput:
        _, (image, image_mask, _), (text, text_mask, _) = self.prepare_inputs(
            image_tokens, text_tokens, image_mask, text_mask)
        embedding = torch.cat([self._pool(image, image_mask), self._pool(text, text_mask)], dim=-1)
        return HeadOutput(logits=self.mlp(embedding), embedding=embedding)


class ImprovedAttentionHead(Head):
    """Cross-modal attention both ways (image->text and text->image), masked-mean pooled, ⊕ -> MLP.

    Each layer: I ← I + Attn(LN(I), LN(T)), T ← T + Attn(LN(T), LN(I)) (both from the previous I, T), each
    followed by a pre-LN FFN. Returns logits B x C and embedding B x 2d.
    """

    config_class = ImprovedAttentionConfig

    def __init__(self, num_classes: int, image_dim: int, text_dim: int, config: ImprovedAttentionConfig, name: str = "improved-attention",
                 **cls_tokens: bool) -> None:
        super().__init__(num_classes, image_dim, text_dim, config, name, **cls_tokens)
        c = config
        d = c.hidden_dim
        self.image_missing = MissingModalityToken(image_dim, c.missing_token_std)
        self.text_missing = MissingModalityToken(text_dim, c.missing_token_std)
        self.image_proj = nn.Linear(image_dim, d)
        self.text_proj = nn.Linear(text_dim, d)
        self.image_to_text = nn.ModuleList(
            CrossAttentionBlock(d, d, c.num_heads, c.ffn_hidden, c.dropout) for _ in range(c.num_layers)
        )
        self.text_to_image = nn.ModuleList(
            CrossAttentionBlock(d, d, c.num_heads, c.ffn_hidden, c.dropout) for _ in range(c.num_layers)
        )
        self.image_norm = nn.LayerNorm(d)
        self.text_norm = nn.LayerNorm(d)
        self.embedding_dim = 2 * d
        self.mlp = MLP(2 * d, c.mlp_hidden_dim or d, num_classes, c.dropout)

    def forward(self, image_tokens: TokenInput, text_tokens: TokenInput, image_mask: Tensor | None = None,
                text_mask: Tensor | None = None, *, aux_losses: bool = True) -> HeadOutput:
        _, (image, image_mask, _), (text, text_mask, _) = self.prepare_inputs(
            image_tokens, text_tokens, image_mask, text_mask)
        image, text = self.image_proj(image), self.text_proj(text)
        for i2t, t2i in zip(self.image_to_text, self.text_to_image):
            image, text = i2t(image, text, text_mask), t2i(text, image, image_mask)
        embedding = torch.cat(
            [masked_mean(self.image_norm(image), image_mask), masked_mean(self.text_norm(text), text_mask)], dim=-1
        )
        return HeadOutput(logits=self.mlp(embedding), embedding=embedding)


class Blip2Layer(nn.Module):
    """One Q-Former layer: joint self-attention over [queries ; text], queries cross-attend to the image,
    separate FFNs for queries and text (as in BLIP-2). All sublayers pre-LN with residuals.

    Args:
        dim (int): d. image_dim (int): image token width. num_heads, ffn_dim (int), dropout (float).
    """

    def __init__(self, dim: int, image_dim: int, num_heads: int, ffn_dim: int, dropout: float, update_text: bool = True) -> None:
        super().__init__()
        self.norm_sa = nn.LayerNorm(dim)
        self.self_attn = MultiHeadAttention(dim, num_heads, dropout=dropout)
        self.cross = CrossAttentionBlock(dim, image_dim, num_heads, ffn_dim, dropout)
        # The last layer's text output is never read, so it has no text FFN (no unused parameters).
        self.norm_text_ffn = nn.LayerNorm(dim) if update_text else None
        self.text_ffn = FeedForward(dim, ffn_dim, dropout) if update_text else None
        self.drop = nn.Dropout(dropout)

    def forward(self, queries: Tensor, text: Tensor, text_mask: Tensor, image: Tensor, image_mask: Tensor) -> tuple[Tensor, Tensor]:
        """
        Args:
            queries (Tensor): B x l x d. text (Tensor): B x L_t x d. text_mask (Tensor): B x L_t.
            image (Tensor): B x L_i x image_dim. image_mask (Tensor): B x L_i.

        Returns:
            (queries B x l x d, text B x L_t x d)
        """
        l = queries.shape[1]
        joint = torch.cat([queries, text], dim=1)
        joint_mask = torch.cat([text_mask.new_ones(text_mask.shape[0], l), text_mask], dim=1)
        h = self.norm_sa(joint)
        joint = joint + self.drop(self.self_attn(h, h, joint_mask))
        queries, text = joint[:, :l], joint[:, l:]
        queries = self.cross(queries, image, image_mask)
        if self.text_ffn is not None:
            text = text + self.drop(self.text_ffn(self.norm_text_ffn(text)))
        return queries, text


class Blip2Head(Head):
    """Modified BLIP-2: learnable queries self-attend jointly with the text tokens (text conditioning),
    cross-attend to the image tokens, -> mean of queries -> linear classifier.

    Returns logits B x C and embedding B x d (mean of the queries).
    """

    config_class = Blip2Config

    def __init__(self, num_classes: int, image_dim: int, text_dim: int, config: Blip2Config, name: str = "blip2",
                 **cls_tokens: bool) -> None:
        super().__init__(num_classes, image_dim, text_dim, config, name, **cls_tokens)
        c = config
        d = c.hidden_dim
        self.image_missing = MissingModalityToken(image_dim, c.missing_token_std)
        self.text_missing = MissingModalityToken(text_dim, c.missing_token_std)
        self.queries = nn.Parameter(torch.randn(c.num_queries, d) * c.query_init_std)
        self.text_proj = nn.Linear(text_dim, d)
        self.layers = nn.ModuleList(
            Blip2Layer(d, image_dim, c.num_heads, c.ffn_hidden, c.dropout, update_text=i < c.num_layers - 1)
            for i in range(c.num_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(c.dropout)
        self.embedding_dim = d
        self.classifier = nn.Linear(d, num_classes)

    def forward(self, image_tokens: TokenInput, text_tokens: TokenInput, image_mask: Tensor | None = None,
                text_mask: Tensor | None = None, *, aux_losses: bool = True) -> HeadOutput:
        b, (image, image_mask, _), (text, text_mask, _) = self.prepare_inputs(
            image_tokens, text_tokens, image_mask, text_mask)
        text = self.text_proj(text)
        queries = self.queries.unsqueeze(0).expand(b, -1, -1)
        for layer in self.layers:
            queries, text = layer(queries, text, text_mask, image, image_mask)
        embedding = self.norm(queries).mean(dim=1)
        return HeadOutput(logits=self.classifier(self.drop(embedding)), embedding=embedding)
