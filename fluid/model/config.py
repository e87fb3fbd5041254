"""One plain config dataclass per head family.

Every value the paper gives is a default here; every value it leaves open is a documented, overridable
field (see docs/model.md, "Deviations and silent choices"). Configs hold only plain types (int, float, bool,
str, None) so ``dataclasses.asdict`` gives something YAML/JSON can store, and

    build_head(head.name, head.num_classes, head.image_dim, head.text_dim, **dataclasses.asdict(head.config))

rebuilds the same architecture. ``num_classes``, ``image_dim`` and ``text_dim`` are arguments of
``build_head``, not config fields (they come from the data and the encoders).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "QUERY_INIT_STD",
    "HeadConfig",
    "FluidConfig",
    "EarlyFusionConfig",
    "ImprovedAttentionConfig",
    "Blip2Config",
    "UnimodalConfig",
    "MoltConfig",
]


#: Default std of the normal init of Q-Transform / Q-Bottleneck queries (see FluidConfig.query_init_std).
QUERY_INIT_STD = 0.3


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    _check(value in choices, f"{name}={value!r} is not one of {list(choices)}")


@dataclass
class HeadConfig:
    """Fields every head has.

    Modality dropout is not a head option: it is the run's (``RunConfig.modality_dropout``, applied once, by
    ``fluid.training.network.MultimodalNetwork``); :func:`fluid.model.build_head` rejects the key.

    Attributes:
        hidden_dim: width d of the head's internal representation (paper: 768). Token dims of the encoders
            may differ; input projections map them to d.
        num_heads: attention heads in every attention layer of the head (paper: silent).
        dropout: dropout on attention weights, residual branches and MLP hidden layers.
        ffn_dim: hidden width of the feed-forward sublayers; None = 4 * hidden_dim (Transformer convention).
        ce_weight: weight of the cross-entropy term in ``head.loss`` (λ1 for FLUID, α for MoLT).
        missing_token_std: std of the normal init of the learned "missing modality" token.
        encoder_layers: how many of the encoder's last hidden states the head reads (1 except MoLT).
    """

    hidden_dim: int = 768
    num_heads: int = 8
    dropout: float = 0.1
    ffn_dim: int | None = None
    ce_weight: float = 1.0
    missing_token_std: float = 0.02
    encoder_layers: int = 1

    def __post_init__(self) -> None:
        _check(self.hidden_dim > 0, f"hidden_dim must be > 0, got {self.hidden_dim}")
        _check(self.num_heads > 0, f"num_heads must be > 0, got {self.num_heads}")
        _check(
            self.hidden_dim % self.num_heads == 0,
            f"hidden_dim={self.hidden_dim} must be divisible by num_heads={self.num_heads}",
        )
        _check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        _check(self.ffn_dim is None or self.ffn_dim > 0, f"ffn_dim must be > 0 or None, got {self.ffn_dim}")
        _check(self.encoder_layers >= 1, f"encoder_layers must be >= 1, got {self.encoder_layers}")
        _check(self.missing_token_std > 0, f"missing_token_std must be > 0, got {self.missing_token_std}")

    @property
    def ffn_hidden(self) -> int:
        """The resolved feed-forward width (``ffn_dim`` or 4 * hidden_dim)."""
        return self.ffn_dim if self.ffn_dim is not None else 4 * self.hidden_dim


@dataclass
class FluidConfig(HeadConfig):
    """FLUID (paper section 4) and its five ablations (Table 3) as switches.

    Paper values: hidden_dim=768, num_queries l=32, num_bottleneck_queries=2 (Q3 is 2 x d), num_experts=16,
    top_k=2, ce/contrastive/moe weights λ1=λ2=λ3=1/3, gate = MLP with one ReLU hidden layer + sigmoid.

    Attributes (the ones the paper leaves open are marked *):
        num_queries: l, queries per Q-Transform (Q1, Q2).
        num_bottleneck_queries: queries of the Q-Bottleneck (Q3).
        qtransform_layers*: cross-attention blocks per Q-Transform (pre-LN, residual, FFN; Q-Former style).
        bottleneck_layers*: the same for the Q-Bottleneck.
        query_init_std*: std of the normal init of Q1, Q2, Q3 (never zeros). The queries enter the residual
            stream of pre-LN blocks as they are, next to an attention update of RMS about 0.2-0.25 per
            coordinate on encoder tokens at init (the keys/values and the queries are LayerNorm'd inside the
            block): 0.3 keeps the queries about as large as that update, so an item's query outputs start
            distinct (docs/model.md, "Query init").
        gate_hidden_dim*: width of the gate MLP's hidden layer; None = hidden_dim.
        contrastive_pooling*: how I_n / T_n become one vector for the contrastive loss: "mean" of the
            queries, or the "first" query.
        contrastive_projection*: False (paper) = contrast the pooled I_n / T_n themselves (the tokens that
            feed the gate); True = contrast a learned linear projection of each (one per modality, no bias, to
            ``contrastive_dim``), as CLIP and BLIP-2 do, so the alignment has its own space.
        contrastive_dim*: output width of that projection; None = hidden_dim.
        contrastive_mask_same_label*: False (paper) = every other item of the batch is a negative; True =
            off-diagonal pairs whose items share a label are left out of the InfoNCE softmax (they are not
            negatives). Needs the labels, so the term is then computed by ``head.loss`` (not in forward).
        init_temperature*: initial contrastive temperature T (CLIP: 0.07); stored as log(1/T).
        max_logit_scale*: clamp on 1/T (CLIP: 100).
        learnable_temperature*: whether log(1/T) is trained.
        contrastive_trains_encoders*: False (default) = L_contrast trains the Q-Transforms and the temperature
            but sends no gradient into trainable encoders (its Q-Transform pass then reads detached tokens).
            With frozen encoders — the paper's setting — both values give the same model. Measured on the
            synthetic catalogue with encoders trained from scratch: at init the weighted contrastive
            gradient into the encoders is 16-18x the weighted CE's (docs/model.md, "Deviations").
        num_experts, top_k: MoE size and experts per routed vector.
        expert_hidden_dim*: hidden width of each expert MLP (and of the ``use_moe=False`` MLP); None =
            hidden_dim.
        moe_input*: how F' (num_bottleneck_queries x d) reaches the MoE: "flatten" to one vector and route
            it, or "per-token": route each token, average the experts' logits.
        balance_loss_trains_input*: False (default) = the load-balancing loss trains the router only: it is
            computed on router logits of a detached input, so it cannot reshape the representation that the
            classifier reads. True = Switch-Transformer behaviour (its gradient also reaches F', the
            Q-Bottleneck, the Q-Transforms and any trainable encoder). Measured on the synthetic catalogue
            with encoders trained from scratch: with True, the balance loss's gradient into the encoders
            exceeds the weighted CE's and FLUID barely learns.
        moe_dispatch*: "auto" (dense on a GPU, sparse on a CPU); "sparse" runs each expert only on its routed
            vectors; "dense" runs every expert on every vector and masks (same numbers; no host round trip per
            expert and a static graph, e.g. for ONNX and CUDA; k/E of the arithmetic is wasted).
        router_z_loss_weight*: weight of the optional router z-loss (ST-MoE); 0 = off.
        use_contrastive / use_qtransform / use_gating / use_bottleneck / use_moe: the Table 3 ablations.
        pooled_shortcut*: False (paper) = the logits are the MoE's alone. True = a linear map of the
            layer-normalised masked means of the image and text tokens is added to the logits (a logistic probe
            on the pooled encoder features trained with the head), so the head can always fall back on what a
            linear probe reads; the ``auto`` recipe turns it on (docs/model.md, "Deviations").
        unimodal_weight*: λu, 0 (paper) = off. > 0 = during training each modality's layer-normalised masked
            mean of encoder tokens also feeds a linear classifier of its own, and λu · the mean of their two
            cross-entropies (items whose modality is absent left out) joins the loss. The classifiers serve
            training only (as in Gradient Blending, Wang et al. 2020): every encoder keeps learning from its
            own modality after the other has fitted the training labels (docs/model.md, "Deviations").
        unimodal_blend*: False (paper) = the logits are the fused classifier's. True (needs unimodal_weight > 0) =
            at inference the logits are w_f·log p_fused + w_i·log p_image + w_t·log p_text, the per-modality
            classifiers' terms taken only where their modality is present and the weights renormalised over the
            terms taken; (w_f, w_i, w_t) is the buffer ``blend_weights`` of the head, (1, 0, 0) until
            ``fluid.training.blend`` fits it on the validation split after training (a weighted ensemble of the
            fused and per-modality classifiers; docs/model.md, "Deviations").
        fusion_trains_encoders*: True (paper) = the fused path's losses (cross-entropy, contrastive, MoE
            balance) train the encoders too. False (needs unimodal_weight > 0 and contrastive_trains_encoders
            False) = the fused path (Q-Transforms, pooled shortcut and all that follows) reads detached encoder
            tokens: trainable encoders learn only from their own modality's classifier, and the fused head learns
            on top of what they read (as Du et al. 2023 find uni-modal features under-learned in joint training).
            Forward values are the same either way; with frozen encoders so is training. The ``auto`` recipe sets
            False for encoders trained from scratch on more than 750 training items (docs/model.md,
            "Deviations").
        unimodal_input*: what each per-modality classifier (``unimodal_weight`` > 0) reads: "tokens" (the
            layer-normalised masked mean of that modality's encoder tokens) or "queries" (the layer-normalised
            mean of that modality's Q-Transform outputs, I_n or T_n, so the classifier pools the tokens by
            attention as the single-modality heads do; needs use_qtransform). With fusion_trains_encoders=False
            the Q-Transforms run a second time on the encoders' own tokens for these classifiers, so their loss
            still trains the encoders. The ``auto`` recipe sets "queries" exactly where it detaches the fused
            path (docs/model.md, "Deviations").
        no_qtransform_pooling*: with use_qtransform=False, the 1-token summary of each encoder sequence:
            "cls" (first valid token), "mean" (masked mean) or "auto": "cls" for a modality whose sequences
            start with a CLS token, "mean" for one without (``build_head(..., image_has_cls=, text_has_cls=)``;
            e.g. EfficientNet's grid tokens have none); projected to d.
    """

    num_queries: int = 32
    num_bottleneck_queries: int = 2
    qtransform_layers: int = 1
    bottleneck_layers: int = 1
    query_init_std: float = QUERY_INIT_STD
    gate_hidden_dim: int | None = None
    contrastive_pooling: str = "mean"
    contrastive_projection: bool = False
    contrastive_dim: int | None = None
    contrastive_mask_same_label: bool = False
    contrastive_trains_encoders: bool = False
    init_temperature: float = 0.07
    max_logit_scale: float = 100.0
    learnable_temperature: bool = True
    num_experts: int = 16
    top_k: int = 2
    expert_hidden_dim: int | None = None
    moe_input: str = "flatten"
    moe_dispatch: str = "auto"
    balance_loss_trains_input: bool = False
    router_z_loss_weight: float = 0.0
    ce_weight: float = 1.0 / 3.0
    contrastive_weight: float = 1.0 / 3.0
    moe_weight: float = 1.0 / 3.0
    use_contrastive: bool = True
    use_qtransform: bool = True
    use_gating: bool = True
    use_bottleneck: bool = True
    use_moe: bool = True
    no_qtransform_pooling: str = "auto"
    pooled_shortcut: bool = False
    unimodal_weight: float = 0.0
    unimodal_blend: bool = False
    fusion_trains_encoders: bool = True
    unimodal_input: str = "tokens"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.unimodal_input in ("tokens", "queries"),
               f"unimodal_input must be 'tokens' or 'queries', got {self.unimodal_input!r}")
        _check(self.unimodal_input == "tokens" or self.use_qtransform,
               "unimodal_input='queries' needs use_qtransform: the classifiers read the Q-Transform's queries")
        _check(self.unimodal_weight >= 0, f"unimodal_weight must be >= 0, got {self.unimodal_weight}")
        _check(not self.unimodal_blend or self.unimodal_weight > 0,
               "unimodal_blend needs unimodal_weight > 0: the per-modality classifiers it blends are trained by that term")
        _check(self.fusion_trains_encoders or self.unimodal_weight > 0,
               "fusion_trains_encoders=False needs unimodal_weight > 0: otherwise nothing would train the encoders")
        _check(self.fusion_trains_encoders or not self.contrastive_trains_encoders,
               "contrastive_trains_encoders=True needs fusion_trains_encoders=True: the contrastive term is part "
               "of the fused path")
        for name in ("num_queries", "num_bottleneck_queries", "qtransform_layers", "bottleneck_layers", "num_experts"):
            _check(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        _check(1 <= self.top_k <= self.num_experts, f"top_k must be in [1, num_experts={self.num_experts}], got {self.top_k}")
        _check(self.query_init_std > 0, f"query_init_std must be > 0 (queries are never zero), got {self.query_init_std}")
        _check(0 < self.init_temperature, f"init_temperature must be > 0, got {self.init_temperature}")
        _check(
            self.max_logit_scale >= 1.0 / self.init_temperature,
            f"max_logit_scale={self.max_logit_scale} must be >= 1/init_temperature={1.0 / self.init_temperature:g}",
        )
        _check_choice("contrastive_pooling", self.contrastive_pooling, ("mean", "first"))
        _check_choice("moe_input", self.moe_input, ("flatten", "per-token"))
        _check_choice("moe_dispatch", self.moe_dispatch, ("auto", "sparse", "dense"))
        _check_choice("no_qtransform_pooling", self.no_qtransform_pooling, ("auto", "cls", "mean"))
        for name in ("gate_hidden_dim", "expert_hidden_dim", "contrastive_dim"):
            v = getattr(self, name)
            _check(v is None or v > 0, f"{name} must be > 0 or None, got {v}")
        for name in ("ce_weight", "contrastive_weight", "moe_weight", "router_z_loss_weight"):
            _check(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class EarlyFusionConfig(HeadConfig):
    """Early fusion baseline: pooled image and text features concatenated -> MLP.

    Attributes:
        pooling*: "mean" (masked mean over real tokens) or "cls" (first valid token).
        mlp_hidden_dim*: MLP hidden width; None = hidden_dim.
    """

    pooling: str = "mean"
    mlp_hidden_dim: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice("pooling", self.pooling, ("mean", "cls"))


@dataclass
class ImprovedAttentionConfig(HeadConfig):
    """Improved-attention baseline: cross-modal attention in both directions, pooled -> MLP.

    Attributes:
        num_layers*: bidirectional cross-attention blocks.
        mlp_hidden_dim*: classifier MLP hidden width; None = hidden_dim.
    """

    num_layers: int = 1
    mlp_hidden_dim: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.num_layers >= 1, f"num_layers must be >= 1, got {self.num_layers}")


@dataclass
class Blip2Config(HeadConfig):
    """Modified BLIP-2 baseline: one Q-Former-style query set over image tokens, conditioned on text.

    Attributes:
        num_queries: query count (BLIP-2 and FLUID: 32).
        num_layers*: Q-Former layers (joint query/text self-attention, query->image cross-attention, FFN).
        query_init_std*: std of the normal init of the queries.
    """

    num_queries: int = 32
    num_layers: int = 2
    query_init_std: float = 0.02

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.num_queries >= 1, f"num_queries must be >= 1, got {self.num_queries}")
        _check(self.num_layers >= 1, f"num_layers must be >= 1, got {self.num_layers}")
        _check(self.query_init_std > 0, f"query_init_std must be > 0, got {self.query_init_std}")


@dataclass
class UnimodalConfig(HeadConfig):
    """Image-only / text-only: one modality + Q-Transform + MLP head (paper Table 2).

    Attributes:
        modality: "image" or "text" (set by the registry entry).
        num_queries, qtransform_layers, query_init_std: as in FluidConfig.
        mlp_hidden_dim*: classifier MLP hidden width; None = hidden_dim.
    """

    modality: str = "text"
    num_queries: int = 32
    qtransform_layers: int = 1
    query_init_std: float = QUERY_INIT_STD
    mlp_hidden_dim: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice("modality", self.modality, ("image", "text"))
        _check(self.num_queries >= 1, f"num_queries must be >= 1, got {self.num_queries}")
        _check(self.qtransform_layers >= 1, f"qtransform_layers must be >= 1, got {self.qtransform_layers}")
        _check(self.query_init_std > 0, f"query_init_std must be > 0, got {self.query_init_std}")


@dataclass
class MoltConfig(HeadConfig):
    """MoLT (robust latent representation tuning; see docs/molt.md). Nearly everything here is our choice.

    Attributes:
        hidden_dim: d_c, width of the shared latent space (256).
        num_heads: cross-attention heads (4).
        encoder_layers: k, the last k encoder layers read (4).
        mfb_factor: k_f of MFB pooling (4); MFB output width is hidden_dim.
        cca_weight: β (0.1); ce_weight is α (1).
        cca_decorrelation: weight of the within-view decorrelation term of the soft-CCA loss.
        fusion_hidden_dim: hidden width of the fusion MLP; None = 2 * hidden_dim.
    """

    hidden_dim: int = 256
    num_heads: int = 4
    encoder_layers: int = 4
    mfb_factor: int = 4
    cca_weight: float = 0.1
    cca_decorrelation: float = 1.0
    ce_weight: float = 1.0
    fusion_hidden_dim: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.mfb_factor >= 1, f"mfb_factor must be >= 1, got {self.mfb_factor}")
        _check(self.cca_weight >= 0, f"cca_weight must be >= 0, got {self.cca_weight}")
        _check(self.cca_decorrelation >= 0, f"cca_decorrelation must be >= 0, got {self.cca_decorrelation}")
