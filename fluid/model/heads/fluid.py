"""The FLUID head (paper section 4) with the Table 3 ablations as config switches."""

from __future__ import annotations

from torch import Tensor, nn

from ..bottleneck import QBottleneck
from ..config import FluidConfig
from ..contrastive import ContrastiveLoss
from ..gating import GatedFusion
from ..missing import MissingModalityToken, first_valid_token, masked_mean
from ..mlp import MLP
from ..moe import MixtureOfExperts, load_balancing_loss, router_z_loss
from ..output import HeadOutput
from ..qtransform import QTransform
from .base import Head, TokenInput, full_gate

__all__ = ["FluidHead"]


class TokenSummary(nn.Module):
    """``use_qtransform=False``: one token per sequence (first valid / masked mean), projected to d.

    Args:
        input_dim (int): D. hidden_dim (int): d. pooling (str): "cls" or "mean".
    """

    def __init__(self, input_dim: int, hidden_dim: int, pooling: str) -> None:
        super().__init__()
        self.pooling = pooling
        self.proj = nn.Linear(input_dim, hidden_dim)
        self.norm = nn.LayerNorm(hidden_dim)

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """tokens (Tensor): B x L x D, mask (Tensor): B x L -> B x 1 x d."""
        pooled = first_valid_token(tokens, mask) if self.pooling == "cls" else masked_mean(tokens, mask)
        return self.norm(self.proj(pooled)).unsqueeze(1)


class FluidHead(Head):
    """Q-Transform ×2 -> contrastive alignment -> gated fusion -> Q-Bottleneck -> MoE.

    Forward:
        image_tokens (Tensor | None): B x L_i x image_dim (I); None = image absent for the batch.
        text_tokens (Tensor | None): B x L_t x text_dim (T); None = text absent for the batch.
        image_mask, text_mask (Tensor | None): B x L bool, True = real token; a row all False = that
            sample's modality is absent (replaced by the learned missing-modality token).
        aux_losses (bool): False = skip the auxiliary losses (inference); the other outputs are unchanged.

    Returns:
        HeadOutput: logits B x C; aux_losses "contrastive" (λ2·L_contrast), "moe_balance" (λ3·L_MoE) and,
        if enabled, "router_z" (empty with ``aux_losses=False``); embedding B x (n·d) = flattened F'
        (n = num_bottleneck_queries, or 1 without the bottleneck); gate B x l; expert_load E and routing B x E
        (None without the MoE).
    """

    config_class = FluidConfig

    def __init__(self, num_classes: int, image_dim: int, text_dim: int, config: FluidConfig, name: str = "fluid") -> None:
        super().__init__(num_classes, image_dim, text_dim, config, name)
        c = config
        d = c.hidden_dim
        self.image_missing = MissingModalityToken(image_dim, c.missing_token_std)
        self.text_missing = MissingModalityToken(text_dim, c.missing_token_std)
        if c.use_qtransform:
            self.image_summary = QTransform(
                image_dim, d, c.num_queries, c.num_heads, c.qtransform_layers, c.ffn_hidden, c.dropout, c.query_init_std
            )
            self.text_summary = QTransform(
                text_dim, d, c.num_queries, c.num_heads, c.qtransform_layers, c.ffn_hidden, c.dropout, c.query_init_std
            )
            self.num_tokens = c.num_queries
        else:
            self.image_summary = TokenSummary(image_dim, d, c.no_qtransform_pooling)
            self.text_summary = TokenSummary(text_dim, d, c.no_qtransform_pooling)
            self.num_tokens = 1
        self.contrastive = (
            ContrastiveLoss(c.init_temperature, c.max_logit_scale, c.learnable_temperature)
            if c.use_contrastive
            else None
        )
        self.gating = GatedFusion(d, c.gate_hidden_dim or d, c.dropout) if c.use_gating else None
        if c.use_bottleneck:
            self.bottleneck = QBottleneck(
                d, c.num_bottleneck_queries, c.num_heads, c.bottleneck_layers, c.ffn_hidden, c.dropout, c.query_init_std
            )
            self.num_fused = c.num_bottleneck_queries
        else:
            self.bottleneck = None
            self.num_fused = 1
        self.embedding_dim = self.num_fused * d
        in_dim = d if c.moe_input == "per-token" else self.embedding_dim
        hidden = c.expert_hidden_dim or d
        if c.use_moe:
            self.moe = MixtureOfExperts(
                in_dim, hidden, num_classes, c.num_experts, c.top_k, c.dropout, c.moe_dispatch,
                c.balance_loss_trains_input,
            )
            self.mlp = None
        else:
            self.moe = None
            self.mlp = MLP(self.embedding_dim, hidden, num_classes, c.dropout)

    def forward(
        self,
        image_tokens: TokenInput,
        text_tokens: TokenInput,
        image_mask: Tensor | None = None,
        text_mask: Tensor | None = None,
        *,
        aux_losses: bool = True,
    ) -> HeadOutput:
        c: FluidConfig = self.config
        b = self._batch_size(image_tokens, text_tokens)
        image_mask, text_mask = self._masks(image_tokens, text_tokens, image_mask, text_mask)
        image, image_mask, image_present = self.image_missing(image_tokens, image_mask, b)
        text, text_mask, text_present = self.text_missing(text_tokens, text_mask, b)

        image_n = self.image_summary(image, image_mask)  # B x l x d (I_n)
        text_n = self.text_summary(text, text_mask)  # B x l x d (T_n)

        aux: dict[str, Tensor] = {}
        if self.contrastive is not None and aux_losses:
            img_c, txt_c = image_n, text_n
            if not c.contrastive_trains_encoders and _requires_grad(image_tokens, text_tokens):
                # A second, cheap Q-Transform pass on detached tokens: the loss shapes the head only.
                img_c = self.image_summary(image.detach(), image_mask)
                txt_c = self.text_summary(text.detach(), text_mask)
            if c.contrastive_pooling == "mean":
                img_vec, txt_vec = img_c.mean(dim=1), txt_c.mean(dim=1)
            else:
                img_vec, txt_vec = img_c[:, 0], txt_c[:, 0]
            aux["contrastive"] = c.contrastive_weight * self.contrastive(img_vec, txt_vec, image_present & text_present)

        if self.gating is not None:
            fused, gate = self.gating(image_n, text_n)  # F, a
        else:
            fused, gate = 0.5 * (image_n + text_n), full_gate(b, self.num_tokens, image_n)

        fused_prime = self.bottleneck(fused) if self.bottleneck is not None else fused.mean(dim=1, keepdim=True)
        embedding = fused_prime.flatten(1)  # B x (n·d)

        expert_load = routing = None
        if self.moe is not None:
            if c.moe_input == "flatten":
                moe = self.moe(embedding)
                logits = moe.output
            else:
                moe = self.moe(fused_prime.reshape(b * self.num_fused, -1))
                logits = moe.output.view(b, self.num_fused, -1).mean(dim=1)
            if aux_losses:
                aux["moe_balance"] = c.moe_weight * load_balancing_loss(moe.balance_logits, c.top_k)
                if c.router_z_loss_weight > 0:
                    aux["router_z"] = c.router_z_loss_weight * router_z_loss(moe.router_logits)
            expert_load = moe.load
            routing = moe.routing.view(b, -1, moe.routing.shape[-1]).mean(dim=1)  # B x E
        else:
            logits = self.mlp(embedding)
        return HeadOutput(logits=logits, aux_losses=aux, embedding=embedding, gate=gate, expert_load=expert_load,
                          routing=routing)



def _requires_grad(*tokens: Tensor | None) -> bool:
    """Whether any encoder output carries a gradient (i.e. some encoder is being trained)."""
    return any(t is not None and t.requires_grad for t in tokens)
