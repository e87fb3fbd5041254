"""The FLUID head (paper section 4) with the Table 3 ablations as config switches."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..bottleneck import QBottleneck
from ..config import FluidConfig
from ..contrastive import ContrastiveLoss, ContrastiveProjection, same_label_negatives
from ..gating import GatedFusion
from ..missing import MissingModalityToken, first_valid_token, masked_mean
from ..mlp import MLP
from ..moe import MixtureOfExperts, load_balancing_loss, router_z_loss
from ..output import HeadOutput
from ..qtransform import QTransform
from .base import Head, TokenInput, full_gate

__all__ = ["FluidHead"]


def summary_pooling(pooling: str, has_cls: bool) -> str:
    """The pooling of :class:`TokenSummary` for one modality: "auto" becomes "cls" where the encoder's
    sequences start with a CLS token and "mean" where they do not (e.g. a CNN's grid tokens, whose first
    token is one corner of the image); "cls" and "mean" stay as they are."""
    if pooling != "auto":
        return pooling
    return "cls" if has_cls else "mean"


class TokenSummary(nn.Module):
    """``use_qtransform=False``: one token per sequence (first valid / masked mean), projected to d.

    Args:
        input_dim (int): D. hidden_dim (int): d. pooling (str): "cls" or "mean" (see :func:`summary_pooling`).
    """

    def __init__(self, input_dim: int, hidden_dim: int, pooling: str) -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        self.pooling = pooling
        self.proj = nn.Linear(input_dim, hidden_dim)
        self.norm = nn.LayerNorm(hidden_dim)

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """tokens (Tensor): B x L x D, mask (Tensor): B x L -> B x 1 x d."""
        pooled = first_valid_token(tokens, mask) if self.pooling == "cls" else masked_mean(tokens, mask)
        return self.norm(self.proj(pooled)).unsqueeze(1)


class PooledShortcut(nn.Module):
    """``pooled_shortcut``: logits from the pooled encoder tokens, added to the head's.

    Args:
        image_dim (int): D_i. text_dim (int): D_t. num_classes (int): C.

    Forward: image B x L_i x D_i, image_mask B x L_i, text B x L_t x D_t, text_mask B x L_t (after the
    missing-modality token has replaced absent sequences) -> B x C = W [LN(mean(image)); LN(mean(text))] + b.
    """

    def __init__(self, image_dim: int, text_dim: int, num_classes: int) -> None:
        super().__init__()
        self.image_norm = nn.LayerNorm(image_dim)
        self.text_norm = nn.LayerNorm(text_dim)
        self.classifier = nn.Linear(image_dim + text_dim, num_classes)

    def forward(self, image: Tensor, image_mask: Tensor, text: Tensor, text_mask: Tensor) -> Tensor:
        pooled = torch.cat([self.image_norm(masked_mean(image, image_mask)),
                            self.text_norm(masked_mean(text, text_mask))], dim=-1)
        return self.classifier(pooled)


class UnimodalClassifiers(nn.Module):
    """``unimodal_weight`` > 0: one linear classifier per modality on its pooled encoder tokens (trained by the
    "unimodal" loss term; at inference they serve only ``unimodal_blend``).

    Args:
        image_dim (int): D_i. text_dim (int): D_t. num_classes (int): C.

    Forward: image B x L_i x D_i, image_mask B x L_i, text B x L_t x D_t, text_mask B x L_t ->
    {"image": B x C = W_i LN(mean(image)) + b_i, "text": B x C = W_t LN(mean(text)) + b_t}.
    """

    def __init__(self, image_dim: int, text_dim: int, num_classes: int) -> None:
        super().__init__()
        self.image = nn.Sequential(nn.LayerNorm(image_dim), nn.Linear(image_dim, num_classes))
        self.text = nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, num_classes))

    def forward(self, image: Tensor, image_mask: Tensor, text: Tensor, text_mask: Tensor) -> dict[str, Tensor]:
        return {"image": self.image(masked_mean(image, image_mask)), "text": self.text(masked_mean(text, text_mask))}


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
        (None without the MoE). With ``contrastive_mask_same_label`` the contrastive term needs the labels:
        forward leaves ``contrastive_logits`` / ``contrastive_pairs`` and ``loss`` adds "contrastive".

    ``image_has_cls`` / ``text_has_cls`` (see :class:`Head`) resolve ``no_qtransform_pooling="auto"``.
    """

    config_class = FluidConfig

    def __init__(self, num_classes: int, image_dim: int, text_dim: int, config: FluidConfig, name: str = "fluid",
                 **cls_tokens: bool) -> None:
        super().__init__(num_classes, image_dim, text_dim, config, name, **cls_tokens)
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
            self.image_summary = TokenSummary(image_dim, d, summary_pooling(c.no_qtransform_pooling, self.image_has_cls))
            self.text_summary = TokenSummary(text_dim, d, summary_pooling(c.no_qtransform_pooling, self.text_has_cls))
            self.num_tokens = 1
        self.contrastive = (
            ContrastiveLoss(c.init_temperature, c.max_logit_scale, c.learnable_temperature)
            if c.use_contrastive
            else None
        )
        self.contrastive_projection = (
            ContrastiveProjection(d, c.contrastive_dim or d) if c.use_contrastive and c.contrastive_projection else None
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
        self.shortcut = PooledShortcut(image_dim, text_dim, num_classes) if c.pooled_shortcut else None
        queries = c.unimodal_input == "queries"
        self.unimodal = (UnimodalClassifiers(d if queries else image_dim, d if queries else text_dim, num_classes)
                         if c.unimodal_weight > 0 else None)
        if c.unimodal_blend:
            self.register_buffer("blend_weights", torch.tensor(FUSED_ONLY))
        else:
            self.blend_weights = None
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
        b, (image, image_mask, image_present), (text, text_mask, text_present) = self.prepare_inputs(
            image_tokens, text_tokens, image_mask, text_mask)

        encoders_train = _requires_grad(image_tokens, text_tokens)
        unimodal_image, unimodal_text = image, text
        fused_reads_detached = not c.fusion_trains_encoders and encoders_train
        if fused_reads_detached:
            image, text = _encoders_detached(image, image_present), _encoders_detached(text, text_present)
        image_n = self.image_summary(image, image_mask)  # B x l x d (I_n)
        text_n = self.text_summary(text, text_mask)  # B x l x d (T_n)

        aux: dict[str, Tensor] = {}
        contrastive_logits = contrastive_pairs = None
        if self.contrastive is not None and aux_losses:
            img_c, txt_c = image_n, text_n
            if c.fusion_trains_encoders and not c.contrastive_trains_encoders and encoders_train:
                # A second, cheap Q-Transform pass on detached tokens: the loss shapes the head only.
                img_c = self.image_summary(image.detach(), image_mask)
                txt_c = self.text_summary(text.detach(), text_mask)
            img_vec, txt_vec = self._contrasted(img_c, txt_c)
            pairs = image_present & text_present
            if c.contrastive_mask_same_label:  # the negatives depend on the labels: head.loss finishes the term
                contrastive_logits, contrastive_pairs = self.contrastive.similarities(img_vec, txt_vec, pairs), pairs
            else:
                aux["contrastive"] = c.contrastive_weight * self.contrastive(img_vec, txt_vec, pairs)

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
        if self.shortcut is not None:
            logits = logits + self.shortcut(image, image_mask, text, text_mask)
        unimodal = None
        blending = self.blend_weights is not None and not self.training
        if self.unimodal is not None and (aux_losses or blending):
            if c.unimodal_input == "queries":
                scores = self._unimodal_on_queries(image_n, text_n, unimodal_image, unimodal_text, image_mask,
                                                   text_mask, detached=fused_reads_detached)
            else:
                scores = self.unimodal(unimodal_image, image_mask, unimodal_text, text_mask)
            unimodal = {"image": (scores["image"], image_present), "text": (scores["text"], text_present)}
        if blending:
            logits = blend_log_probs(self.blend_weights, logits, unimodal["image"], unimodal["text"])
        return HeadOutput(logits=logits, aux_losses=aux, embedding=embedding, gate=gate, expert_load=expert_load,
                          routing=routing, contrastive_logits=contrastive_logits, contrastive_pairs=contrastive_pairs,
                          unimodal_logits=unimodal)

    def _unimodal_on_queries(self, image_n: Tensor, text_n: Tensor, image: Tensor, text: Tensor, image_mask: Tensor,
                             text_mask: Tensor, *, detached: bool) -> dict[str, Tensor]:
        """``unimodal_input="queries"``: each modality's classifier reads the mean of its Q-Transform's queries
        (B x l x d -> B x C). When the fused path read detached tokens, the Q-Transforms run again on the
        encoders' own tokens, so the per-modality losses still train the encoders."""
        if detached:
            image_n, text_n = self.image_summary(image, image_mask), self.text_summary(text, text_mask)
        every_query = torch.ones(image_n.shape[:2], dtype=torch.bool, device=image_n.device)  # B x l, both sides
        return self.unimodal(image_n, every_query, text_n, every_query)

    def _contrasted(self, image_n: Tensor, text_n: Tensor) -> tuple[Tensor, Tensor]:
        """The vectors the contrastive loss compares: I_n, T_n (B x l x d) pooled (``contrastive_pooling``) to
        B x d, then projected to B x contrastive_dim if ``contrastive_projection``."""
        if self.config.contrastive_pooling == "mean":
            image_vec, text_vec = image_n.mean(dim=1), text_n.mean(dim=1)
        else:
            image_vec, text_vec = image_n[:, 0], text_n[:, 0]
        if self.contrastive_projection is not None:
            image_vec, text_vec = self.contrastive_projection(image_vec, text_vec)
        return image_vec, text_vec

    def label_losses(self, output: HeadOutput, labels: Tensor) -> dict[str, Tensor]:
        """The terms that need the labels. labels (Tensor): B int64, -1 = no label.

        * ``contrastive_mask_same_label``: "contrastive" = λ2·InfoNCE on ``output.contrastive_logits`` with the
          off-diagonal pairs that share a label left out of the softmax;
        * ``unimodal_weight`` > 0: "unimodal" = λu · mean over the modalities of the cross-entropy of that
          modality's classifier, on the labelled items where it is present.
        """
        losses = {}
        if output.contrastive_logits is not None:
            exclude = same_label_negatives(labels[output.contrastive_pairs])
            losses["contrastive"] = self.config.contrastive_weight * self.contrastive.loss(output.contrastive_logits,
                                                                                            exclude)
        if output.unimodal_logits is not None:
            terms = [unimodal_cross_entropy(logits, labels, present)
                     for logits, present in output.unimodal_logits.values()]
            losses["unimodal"] = self.config.unimodal_weight * torch.stack(terms).mean()
        return losses


def unimodal_cross_entropy(logits: Tensor, labels: Tensor, present: Tensor) -> Tensor:
    """Mean cross-entropy of ``logits`` (B x C) over the items with a label (``labels`` B, -1 = none) whose
    modality is ``present`` (B bool); 0 (keeping the graph) when there is none."""
    keep = present & (labels >= 0)
    if not bool(keep.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[keep], labels[keep])


#: ``blend_weights`` before they are fitted: the fused classifier alone.
FUSED_ONLY = (1.0, 0.0, 0.0)


def blend_log_probs(weights: Tensor, fused: Tensor, image: tuple[Tensor, Tensor], text: tuple[Tensor, Tensor]) -> Tensor:
    """The ``unimodal_blend`` logits: a weighted sum of log-probabilities, each modality's term only where that
    modality is present, the weights renormalised over the terms taken (an item whose only weighted term is
    absent keeps the fused log-probabilities).

    Args:
        weights (Tensor): 3 = (w_fused, w_image, w_text), each >= 0.
        fused (Tensor): B x C logits of the fused classifier.
        image, text (tuple[Tensor, Tensor]): (B x C logits of that modality's classifier, B bool present).

    Returns:
        Tensor: B x C = Σ_k w_k·m_k·log_softmax(z_k) / Σ_k w_k·m_k (m_fused = 1).
    """
    terms = torch.stack([F.log_softmax(z.float(), dim=-1) for z in (fused, image[0], text[0])])  # 3 x B x C
    taken = torch.stack([torch.ones_like(image[1]), image[1], text[1]]).to(terms.dtype)  # 3 x B
    w = weights.to(terms.dtype)[:, None] * taken  # 3 x B
    total = w.sum(dim=0)  # B
    fused_only = torch.tensor(FUSED_ONLY, dtype=w.dtype, device=w.device)[:, None]
    w = torch.where(total > 0, w / total.clamp_min(1e-12), fused_only)
    return (w[:, :, None] * terms).sum(dim=0).to(fused.dtype)


def _encoders_detached(tokens: Tensor, present: Tensor) -> Tensor:
    """``tokens`` (B x L x D) detached where they come from the encoder (``present``, B bool); the rows standing
    in for an absent modality keep their graph, so the missing-modality token still learns from the fused path."""
    return torch.where(present[:, None, None], tokens.detach(), tokens)


def _requires_grad(*tokens: Tensor | None) -> bool:
    """Whether any encoder output carries a gradient (i.e. some encoder is being trained)."""
    return any(t is not None and t.requires_grad for t in tokens)
