"""Image-only and text-only heads (paper Table 2): one modality + Q-Transform + MLP head."""

from __future__ import annotations

from torch import Tensor

from ..config import UnimodalConfig
from ..missing import MissingModalityToken
from ..mlp import MLP
from ..output import HeadOutput
from ..qtransform import QTransform
from .base import Head, TokenInput

__all__ = ["UnimodalHead"]


class UnimodalHead(Head):
    """Q-Transform on one modality -> mean of the queries -> MLP. The other modality is accepted (tensor or
    None) and ignored. If its own modality is absent, the learned missing-modality token stands in.

    Returns logits B x C and embedding B x d (mean of the queries).
    """

    config_class = UnimodalConfig

    def __init__(self, num_classes: int, image_dim: int, text_dim: int, config: UnimodalConfig, name: str = "text-only",
                 **cls_tokens: bool) -> None:
        super().__init__(num_classes, image_dim, text_dim, config, name, **cls_tokens)
        c = config
        d = c.hidden_dim
        dim = image_dim if c.modality == "image" else text_dim
        self.missing = MissingModalityToken(dim, c.missing_token_std)
        self.qtransform = QTransform(dim, d, c.num_queries, c.num_heads, c.qtransform_layers, c.ffn_hidden, c.dropout, c.query_init_std)
        self.embedding_dim = d
        self.mlp = MLP(d, c.mlp_hidden_dim or d, num_classes, c.dropout)

    def forward(self, image_tokens: TokenInput, text_tokens: TokenInput, image_mask: Tensor | None = None,
                text_mask: Tensor | None = None, *, aux_losses: bool = True) -> HeadOutput:
        b = self._batch_size(image_tokens, text_tokens)
        if self.config.modality == "image":
            tokens, mask = image_tokens, image_mask
        else:
            tokens, mask = text_tokens, text_mask
        tokens, mask, _ = self.missing(tokens, mask, b)
        embedding = self.qtransform(tokens, mask).mean(dim=1)
        return HeadOutput(logits=self.mlp(embedding), embedding=embedding)
