"""The one table of every model FLUID trains (timm-style): each entry declares what the model is.

Deep heads (one entry per system of the paper, and MoLT) are built here; ablations are presets on
``FluidConfig`` (switches), not copies of the model. Classical models are declared in the same table as plain
data (name, modalities, description): one table lists every model and says what each reads, while their code
(scikit-learn) lives in ``fluid.baselines``, which this package never imports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fluid.errors import OptionError

from .config import (
    Blip2Config,
    EarlyFusionConfig,
    FluidConfig,
    HeadConfig,
    ImprovedAttentionConfig,
    MoltConfig,
    UnimodalConfig,
)
from .heads import Blip2Head, EarlyFusionHead, FluidHead, Head, ImprovedAttentionHead, MoltHead, UnimodalHead

__all__ = [
    "MODALITIES",
    "KINDS",
    "HeadSpec",
    "register_head",
    "register_classical_model",
    "unregister_head",
    "head_spec",
    "available_models",
    "available_heads",
    "is_classical",
    "head_config",
    "build_head",
]

#: The modalities a model can read, in the order every ``modalities`` tuple keeps.
MODALITIES: tuple[str, ...] = ("image", "text")
#: "deep": a torch head on encoder tokens (:func:`build_head`); "classical": a scikit-learn model of
#: ``fluid.baselines`` (no encoders, no head).
KINDS: tuple[str, ...] = ("deep", "classical")


@dataclass(frozen=True)
class HeadSpec:
    """A registry entry: what the model is and what it reads.

    Attributes:
        name: the registry name (``Classifier(model=name)``; saved runs store it in ``config.yaml``).
        head_class: the :class:`Head` subclass; None for a classical model.
        config_class: its config dataclass; None for a classical model.
        preset: config values this entry fixes (e.g. ``{"use_gating": False}``).
        description: one line for listings.
        modalities: what the model reads, a non-empty subset of :data:`MODALITIES` in that order. Only these
            encoders are built and run; the head is called with None for any other modality.
        kind: "deep" or "classical" (see :data:`KINDS`).
        multi_layer: True = the head reads the last ``config.encoder_layers`` hidden states of each encoder
            (MoLT); False = the last hidden state only, and ``encoder_layers`` must stay 1.
        experts: True = a mixture of experts: ``HeadOutput.routing`` (B x E) and ``expert_load`` (E) are set,
            each item routed to ``config.top_k`` of ``config.num_experts`` experts (an override
            ``use_moe=False`` on a FLUID entry still turns the MoE off; the ``fluid-no-moe`` entry fixes it).
        gate: True = ``HeadOutput.gate`` (B x l, the image side's weight per query position) is set.
    """

    name: str
    head_class: type[Head] | None
    config_class: type[HeadConfig] | None
    preset: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    modalities: tuple[str, ...] = MODALITIES
    kind: str = "deep"
    multi_layer: bool = False
    experts: bool = False
    gate: bool = False

    @property
    def reads_image(self) -> bool:
        return "image" in self.modalities

    @property
    def reads_text(self) -> bool:
        return "text" in self.modalities

    @property
    def config_fields(self) -> tuple[str, ...]:
        """The keys the head's config has (what ``head=`` / :func:`head_config` accept); () for a classical
        model, whose options are ``fluid.baselines``'."""
        if self.config_class is None:
            return ()
        return tuple(f.name for f in dataclasses.fields(self.config_class))

    def encoder_layers(self, config: HeadConfig) -> int:
        """How many of each encoder's last hidden states a head with this ``config`` reads (1 unless
        ``multi_layer``)."""
        return config.encoder_layers if self.multi_layer else 1


_REGISTRY: dict[str, HeadSpec] = {}


def _modalities(name: str, modalities: Iterable[str]) -> tuple[str, ...]:
    """``modalities`` checked and put in :data:`MODALITIES` order."""
    if isinstance(modalities, str):
        raise TypeError(f"{name}: modalities must be a tuple such as ({modalities!r},), got the string "
                        f"{modalities!r}")
    given = list(modalities)
    unknown = sorted(set(given) - set(MODALITIES))
    if unknown or not given or len(set(given)) != len(given):
        raise ValueError(f"{name}: modalities must be a non-empty subset of {MODALITIES} without repeats, "
                         f"got {tuple(given)}")
    return tuple(m for m in MODALITIES if m in given)


def _add(spec: HeadSpec) -> HeadSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"{_REGISTRY[spec.name].kind} model {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def register_head(
    name: str,
    head_class: type[Head],
    config_class: type[HeadConfig],
    preset: dict[str, Any] | None = None,
    description: str = "",
    *,
    modalities: Iterable[str] = MODALITIES,
    multi_layer: bool = False,
    experts: bool = False,
    gate: bool = False,
) -> HeadSpec:
    """Add a deep head to the registry (also usable by third-party code).

    Args:
        name: registry name.
        head_class: a :class:`Head` subclass taking (num_classes, image_dim, text_dim, config, name) and the
            keywords ``image_has_cls``, ``text_has_cls`` (passed on to :class:`Head`).
        config_class: its config dataclass.
        preset: config values this entry fixes (e.g. ``{"use_gating": False}``).
        description: one line for listings.
        modalities: what the head reads, e.g. ``("image",)``; default both. ``MultimodalNetwork`` builds and
            runs only these encoders and passes None (tokens and mask) for any other modality.
        multi_layer: the head reads the last ``config.encoder_layers`` encoder hidden states (a sequence of
            B x L x D tensors per modality) rather than the last one (one B x L x D tensor).
        experts: the head's output has ``routing`` and ``expert_load`` (a mixture of experts; its config has
            ``top_k`` and ``num_experts``).
        gate: the head's output has ``gate``.

    Returns:
        HeadSpec: the new entry.
    """
    if not (isinstance(head_class, type) and issubclass(head_class, Head)):
        raise TypeError(f"{name}: head_class must be a subclass of fluid.model.Head, got {head_class!r}")
    if not (dataclasses.is_dataclass(config_class) and issubclass(config_class, HeadConfig)):
        raise TypeError(f"{name}: config_class must be a HeadConfig dataclass, got {config_class!r}")
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(preset or {}) - fields)
    if unknown:
        raise ValueError(f"preset keys {unknown} are not fields of {config_class.__name__}")
    missing = sorted({"top_k", "num_experts"} - fields) if experts else []
    if missing:
        raise ValueError(f"{name}: a head with experts needs the config fields {missing} in {config_class.__name__}")
    return _add(HeadSpec(name, head_class, config_class, dict(preset or {}), description,
                         _modalities(name, modalities), "deep", bool(multi_layer), bool(experts), bool(gate)))


def register_classical_model(name: str, modalities: Iterable[str], description: str = "") -> HeadSpec:
    """Declare a classical model (kind "classical"): ``fluid.baselines.ClassicalModel`` fits and runs it from
    the modalities it reads (TF-IDF for text, image features for images, logistic regression on both).

    Args:
        name: registry name. modalities: e.g. ``("text",)``. description: one line for listings.
    """
    return _add(HeadSpec(name, None, None, {}, description, _modalities(name, modalities), "classical"))


def unregister_head(name: str) -> HeadSpec:
    """Remove an entry (a head registered for a test or in a notebook) and return it."""
    spec = head_spec(name)
    del _REGISTRY[name]
    return spec


def available_models(kind: str | None = None) -> list[str]:
    """Every registered name (deep heads, then classical models, in registration order), or those of one kind."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} or None, got {kind!r}")
    return [name for name, spec in _REGISTRY.items() if kind is None or spec.kind == kind]


def available_heads() -> list[str]:
    """Names accepted by :func:`build_head` (the deep entries), in registration order."""
    return available_models("deep")


def head_spec(name: str) -> HeadSpec:
    """The registry entry of ``name`` (a deep head or a classical model).

    Raises:
        ValueError: an unknown name (the message lists the available models).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available models: {', '.join(available_models())}") from None


def is_classical(name: str) -> bool:
    """True for a classical model of the registry; False for a deep head and for a name it does not hold."""
    spec = _REGISTRY.get(name)
    return spec is not None and spec.kind == "classical"


def _deep_spec(name: str) -> HeadSpec:
    """The entry of a deep head (what :func:`build_head` builds)."""
    spec = _REGISTRY.get(name)
    if spec is None:
        raise ValueError(f"unknown head {name!r}; available heads: {', '.join(available_heads())}")
    if spec.kind != "deep":
        raise ValueError(f"{name!r} is a {spec.kind} model (fluid.baselines), not a head; available heads: "
                         f"{', '.join(available_heads())}")
    return spec


def _reject_head_modality_dropout(overrides: dict[str, Any]) -> None:
    """Heads once took ``modality_dropout`` (MoLT defaulted to 0.1) and stacked it on the run's own; now the run
    level is the only place, so a head-level key (e.g. in an old ``config.yaml``'s ``head:``) is an error."""
    if "modality_dropout" in overrides:
        raise ValueError(
            f"modality_dropout={overrides['modality_dropout']!r} is not a head option any more: modality dropout "
            "is set once, for the run (RunConfig.modality_dropout, Classifier(modality_dropout=...), "
            "`fluid train --modality-dropout`); remove it from the head options"
        )


def head_config(name: str, **overrides: Any) -> HeadConfig:
    """The config :func:`build_head` would use for ``name`` with these overrides.

    Raises:
        ValueError: unknown head name (or a classical model's), a bad value, an override that contradicts the
            entry's preset, ``modality_dropout`` (a run-level option, not a head's), or ``encoder_layers`` other
            than 1 for a head that reads one encoder layer.
        TypeError: an override key that is not a config field (the message lists the valid keys).
    """
    spec = _deep_spec(name)
    _reject_head_modality_dropout(overrides)
    valid = spec.config_fields
    unknown = [k for k in overrides if k not in valid]
    if unknown:
        raise OptionError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for head {name!r} "
            f"({spec.config_class.__name__}); valid options: {', '.join(valid)}"
        )
    for key, value in spec.preset.items():
        if key in overrides and overrides[key] != value:
            raise ValueError(
                f"head {name!r} fixes {key}={value!r}; got {key}={overrides[key]!r} "
                f"(build the head whose name matches the setting instead)"
            )
    config = spec.config_class(**{**spec.preset, **overrides})
    if not spec.multi_layer and config.encoder_layers != 1:
        raise ValueError(f"head {name!r} reads the last encoder layer only; got encoder_layers="
                         f"{config.encoder_layers} (a multi-layer head such as molt reads several)")
    return config


def build_head(
    name: str,
    num_classes: int,
    image_dim: int = 768,
    text_dim: int = 768,
    *,
    image_has_cls: bool = True,
    text_has_cls: bool = True,
    **overrides: Any,
) -> Head:
    """Build a registered head.

    Args:
        name: one of :func:`available_heads`.
        num_classes: C.
        image_dim: token width of the image encoder.
        text_dim: token width of the text encoder.
        image_has_cls: whether the image encoder's sequences start with a CLS token (ViT: True; EfficientNet
            grid tokens: False); the encoder's ``has_cls_token``. Read by ``no_qtransform_pooling="auto"``.
        text_has_cls: the same for the text encoder (BERT: True).
        **overrides: config fields (see the head's config class); ``dataclasses.asdict(head.config)``
            round-trips (with ``head.image_has_cls`` / ``head.text_has_cls`` passed back as given).

    Returns:
        Head: an ``nn.Module`` with ``.name``, ``.config``, ``.num_classes``, ``.image_dim``, ``.text_dim``,
        ``forward(image_tokens, text_tokens, image_mask=None, text_mask=None) -> HeadOutput`` and
        ``loss(output, labels)``. What it reads and outputs is declared by :func:`head_spec` ``(name)``.
    """
    spec = _deep_spec(name)
    config = head_config(name, **overrides)
    return spec.head_class(num_classes, image_dim, text_dim, config, name=name, image_has_cls=image_has_cls,
                           text_has_cls=text_has_cls)


# The FLUID family outputs a gate (a constant 0.5 in fluid-no-gating) and, but for fluid-no-moe, routes to experts.
register_head("fluid", FluidHead, FluidConfig, {}, "FLUID: Q-Transform, contrastive, gating, Q-Bottleneck, MoE", experts=True, gate=True)
register_head("fluid-no-contrastive", FluidHead, FluidConfig, {"use_contrastive": False}, "FLUID without the contrastive loss", experts=True, gate=True)
register_head("fluid-no-qtransform", FluidHead, FluidConfig, {"use_qtransform": False}, "FLUID with the CLS token instead of queries", experts=True, gate=True)
register_head("fluid-no-gating", FluidHead, FluidConfig, {"use_gating": False}, "FLUID with F = (I_n + T_n)/2", experts=True, gate=True)
register_head("fluid-no-bottleneck", FluidHead, FluidConfig, {"use_bottleneck": False}, "FLUID with mean-pooled F instead of Q3", experts=True, gate=True)
register_head("fluid-no-moe", FluidHead, FluidConfig, {"use_moe": False}, "FLUID with one MLP instead of the MoE", gate=True)
register_head("early-fusion", EarlyFusionHead, EarlyFusionConfig, {}, "pooled image ⊕ pooled text -> MLP")
register_head("improved-attention", ImprovedAttentionHead, ImprovedAttentionConfig, {}, "bidirectional cross-modal attention -> MLP")
register_head("blip2", Blip2Head, Blip2Config, {}, "Q-Former-style queries over the image, conditioned on text")
register_head("image-only", UnimodalHead, UnimodalConfig, {"modality": "image"}, "image + Q-Transform + MLP", modalities=("image",))
register_head("text-only", UnimodalHead, UnimodalConfig, {"modality": "text"}, "text + Q-Transform + MLP", modalities=("text",))
register_head("molt", MoltHead, MoltConfig, {}, "MoLT: latent translation, cross-attention, CCA, MFB, fusion", multi_layer=True)

# Classical models: declared here, fitted by fluid.baselines.ClassicalModel (scikit-learn).
register_classical_model("tfidf-logreg", ("text",),
                         "classical: TF-IDF word 1-2-grams + char 2-4-grams -> logistic regression")
register_classical_model("image-logreg", ("image",),
                         "classical: colour histograms + grayscale thumbnail + gradient histograms -> logistic regression")
register_classical_model("tfidf-image-logreg", ("text", "image"),
                         "classical: both feature sets concatenated -> logistic regression")
