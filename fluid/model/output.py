"""The one output type every head returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

__all__ = ["HeadOutput"]


@dataclass
class HeadOutput:
    """What a head returns.

    Attributes:
        logits (Tensor): B x C class scores (before softmax).
        aux_losses (dict[str, Tensor]): name -> scalar auxiliary loss, **already multiplied by its weight**
            from the head's config (e.g. ``"contrastive"`` = λ2·L_contrast, ``"moe_balance"`` = λ3·L_MoE,
            ``"cca"`` = β·L_CCA). May be empty. The classification loss is not in here (the head has no
            labels); use ``head.loss(output, labels)`` for the weighted total.
        embedding (Tensor): B x E fused representation right before the classifier / MoE (for retrieval,
            ``Classifier.embed``).
        gate (Tensor | None): B x l gate values a in [0, 1] (weight of the image side per query position),
            FLUID family only; a constant 0.5 for ``fluid-no-gating`` (F = (I_n + T_n)/2 is that gate).
        expert_load (Tensor | None): E vector, fraction of the batch's top-k routing assignments that went
            to each expert (sums to 1; detached). FLUID family with the MoE only.
        routing (Tensor | None): B x E per-item routing weights G (detached): the chosen experts' gate values,
            0 for the experts not chosen; each row sums to 1 when top_k > 1 (with top_k = 1 it holds the router's
            raw top probability). With per-token routing, the mean over the item's routed vectors. FLUID family
            with the MoE only.
        contrastive_logits (Tensor | None): B' x B' scaled image-text similarities of the B' items with both
            modalities, left for ``head.loss`` to turn into the contrastive term when that term needs the labels
            (FLUID with ``contrastive_mask_same_label``; then ``aux_losses`` has no ``"contrastive"``). Else None.
        contrastive_pairs (Tensor | None): B bool, which items those B' rows are (with ``contrastive_logits``).
        unimodal_logits (dict[str, tuple[Tensor, Tensor]] | None): modality -> (B x C logits of that modality's
            own classifier, B bool: the modality is present), for ``head.loss`` and for fitting the blend (FLUID
            with ``unimodal_weight`` > 0, when ``aux_losses`` or, in eval mode, ``unimodal_blend``). Else None.
    """

    logits: Tensor
    aux_losses: dict[str, Tensor] = field(default_factory=dict)
    embedding: Tensor | None = None
    gate: Tensor | None = None
    expert_load: Tensor | None = None
    routing: Tensor | None = None
    contrastive_logits: Tensor | None = None
    contrastive_pairs: Tensor | None = None
    unimodal_logits: dict[str, tuple[Tensor, Tensor]] | None = None
