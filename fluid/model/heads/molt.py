"""MoLT head: robust latent representation tuning (Sun & Song, arXiv 2406.06048; see docs/molt.md).

Per encoder layer slot j = 1..k (the last k layers of each frozen encoder):

    I'_j = W_i,j I_j + b_i,j,    T'_j = W_t,j T_j + b_t,j                 (latent translation, width d_c)
    L_CCA = mean_j softCCA(mean(I'_j), mean(T'_j)) over samples with both modalities
    H_i,j = I'_j + CrossAttn(LN(I'_j) -> LN(T'_j)),  H_t,j = T'_j + CrossAttn(LN(T'_j) -> LN(I'_j))
    h_i,j, h_t,j = masked means of H_i,j, H_t,j
    R_j = MFB(h_i,j, h_t,j)                                               (robust representation, d_c)

The correlation loss reads the translated streams before the cross-attention, as MoLT describes: after it,
each stream already holds the other modality, so a correlation there can be reached by the attention copying
one modality into the other rather than by the translations aligning the two.

    z = [R_1 ; ... ; R_k ; mean(I_k) ; mean(T_k)] -> LayerNorm -> MLP -> logits
    loss = α·CE + β·L_CCA
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..attention import CrossAttentionBlock
from ..cca import soft_cca_loss
from ..config import MoltConfig
from ..mfb import MFBPooling
from ..missing import MissingModalityToken, masked_mean
from ..mlp import MLP
from ..output import HeadOutput
from .base import Head, TokenInput

__all__ = ["MoltHead"]


class MoltHead(Head):
    """MoLT on the last k hidden states of a frozen image encoder and a frozen text encoder.

    Forward:
        image_tokens: one tensor B x L_i x image_dim (used for every layer slot) or a sequence of per-layer
            tensors (oldest first; the last k are used if more are given), or None (image absent).
        text_tokens: likewise for the text.
        image_mask, text_mask (Tensor | None): B x L bool, shared by all layers of a modality.

    Returns:
        HeadOutput: logits B x C; aux_losses {"cca": β·L_CCA} (empty with ``aux_losses=False``); embedding
        B x (k·d_c + image_dim + text_dim).
    """

    config_class = MoltConfig

    def __init__(self, num_classes: int, image_dim: int, text_dim: int, config: MoltConfig, name: str = "molt",
                 **cls_tokens: bool) -> None:
        super().__init__(num_classes, image_dim, text_dim, config, name, **cls_tokens)
        c = config
        d, k = c.hidden_dim, c.encoder_layers
        self.image_missing = MissingModalityToken(image_dim, c.missing_token_std)
        self.text_missing = MissingModalityToken(text_dim, c.missing_token_std)
        self.image_proj = nn.ModuleList(nn.Linear(image_dim, d) for _ in range(k))
        self.text_proj = nn.ModuleList(nn.Linear(text_dim, d) for _ in range(k))
        self.image_to_text = nn.ModuleList(CrossAttentionBlock(d, d, c.num_heads, None, c.dropout) for _ in range(k))
        self.text_to_image = nn.ModuleList(CrossAttentionBlock(d, d, c.num_heads, None, c.dropout) for _ in range(k))
        self.mfb = nn.ModuleList(MFBPooling(d, d, d, c.mfb_factor, c.dropout) for _ in range(k))
        self.embedding_dim = k * d + image_dim + text_dim
        self.norm = nn.LayerNorm(self.embedding_dim)
        self.mlp = MLP(self.embedding_dim, c.fusion_hidden_dim or 2 * d, num_classes, c.dropout)

    def forward(self, image_tokens: TokenInput, text_tokens: TokenInput, image_mask: Tensor | None = None,
                text_mask: Tensor | None = None, *, aux_losses: bool = True) -> HeadOutput:
        c: MoltConfig = self.config
        layer_inputs = self.prepare_layer_inputs(image_tokens, text_tokens, image_mask, text_mask, c.encoder_layers)

        robust: list[Tensor] = []
        cca_terms: list[Tensor] = []
        final_image = final_text = None
        both = None
        for j, (_, (image, i_mask, i_present), (text, t_mask, t_present)) in enumerate(layer_inputs):
            both = i_present & t_present
            image_c, text_c = self.image_proj[j](image), self.text_proj[j](text)
            if aux_losses:
                cca_terms.append(self._cca(image_c, text_c, i_mask, t_mask, both))
            h_image = self.image_to_text[j](image_c, text_c, t_mask)
            h_text = self.text_to_image[j](text_c, image_c, i_mask)
            pooled_image, pooled_text = masked_mean(h_image, i_mask), masked_mean(h_text, t_mask)
            robust.append(self.mfb[j](pooled_image, pooled_text))
            if j == c.encoder_layers - 1:
                final_image, final_text = masked_mean(image, i_mask), masked_mean(text, t_mask)

        embedding = torch.cat([*robust, final_image, final_text], dim=-1)
        logits = self.mlp(self.norm(embedding))
        aux = {"cca": c.cca_weight * torch.stack(cca_terms).mean()} if aux_losses else {}
        return HeadOutput(logits=logits, aux_losses=aux, embedding=embedding)

    def _cca(self, image: Tensor, text: Tensor, image_mask: Tensor, text_mask: Tensor, both: Tensor) -> Tensor:
        """Soft-CCA between the masked means of one layer slot's translated streams I'_j, T'_j (B x L x d_c,
        before the cross-attention), over the samples with both modalities (``both``, B bool) -> scalar."""
        pooled_image, pooled_text = masked_mean(image, image_mask), masked_mean(text, text_mask)
        loss = soft_cca_loss(pooled_image[both], pooled_text[both], self.config.cca_decorrelation)
        return loss.to(pooled_image.dtype)

