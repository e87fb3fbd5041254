"""The registry of named heads (timm-style): one entry per system of the paper and MoLT.

Ablations are presets on ``FluidConfig`` (switches), not copies of the model.
"""

from __future__ import annotations

import dataclasses
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

__all__ = ["HeadSpec", "register_head", "available_heads", "head_config", "build_head"]


@dataclass(frozen=True)
class HeadSpec:
    """A registry entry: head class, config class, fixed config values (the preset), one-line summary."""

    name: str
    head_class: type[Head]
    config_class: type[HeadConfig]
    preset: dict[str, Any] = field(default_factory=dict)
    description: str = ""


_REGISTRY: dict[str, HeadSpec] = {}


def register_head(
    name: str,
    head_class: type[Head],
    config_class: type[HeadConfig],
    preset: dict[str, Any] | None = None,
    description: str = "",
) -> HeadSpec:
    """Add a head to the registry (also usable by third-party code).

    Args:
        name: registry name.
        head_class: a :class:`Head` subclass taking (num_classes, image_dim, text_dim, config, name) and the
            keywords ``image_has_cls``, ``text_has_cls`` (passed on to :class:`Head`).
        config_class: its config dataclass.
        preset: config values this entry fixes (e.g. ``{"use_gating": False}``).
        description: one line for listings.
    """
    if name in _REGISTRY:
        raise ValueError(f"head {name!r} is already registered")
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(preset or {}) - fields)
    if unknown:
        raise ValueError(f"preset keys {unknown} are not fields of {config_class.__name__}")
    spec = HeadSpec(name, head_class, config_class, dict(preset or {}), description)
    _REGISTRY[name] = spec
    return spec


def available_heads() -> list[str]:
    """Names accepted by :func:`build_head`, in registration order."""
    return list(_REGISTRY)


def _spec(name: str) -> HeadSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown head {name!r}; available heads: {', '.join(available_heads())}") from None


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
        ValueError: unknown head name, a bad value, an override that contradicts the entry's preset, or
            ``modality_dropout`` (a run-level option, not a head's).
        TypeError: an override key that is not a config field (the message lists the valid keys).
    """
    spec = _spec(name)
    _reject_head_modality_dropout(overrides)
    valid = [f.name for f in dataclasses.fields(spec.config_class)]
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
    return spec.config_class(**{**spec.preset, **overrides})


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
        ``loss(output, labels)``.
    """
    spec = _spec(name)
    config = head_config(name, **overrides)
    return spec.head_class(num_classes, image_dim, text_dim, config, name=name, image_has_cls=image_has_cls,
                           text_has_cls=text_has_cls)


register_head("fluid", FluidHead, FluidConfig, {}, "FLUID: Q-Transform, contrastive, gating, Q-Bottleneck, MoE")
register_head("fluid-no-contrastive", FluidHead, FluidConfig, {"use_contrastive": False}, "FLUID without the contrastive loss")
register_head("fluid-no-qtransform", FluidHead, FluidConfig, {"use_qtransform": False}, "FLUID with the CLS token instead of queries")
register_head("fluid-no-gating", FluidHead, FluidConfig, {"use_gating": False}, "FLUID with F = (I_n + T_n)/2")
register_head("fluid-no-bottleneck", FluidHead, FluidConfig, {"use_bottleneck": False}, "FLUID with mean-pooled F instead of Q3")
register_head("fluid-no-moe", FluidHead, FluidConfig, {"use_moe": False}, "FLUID with one MLP instead of the MoE")
register_head("early-fusion", EarlyFusionHead, EarlyFusionConfig, {}, "pooled image ⊕ pooled text -> MLP")
register_head("improved-attention", ImprovedAttentionHead, ImprovedAttentionConfig, {}, "bidirectional cross-modal attention -> MLP")
register_head("blip2", Blip2Head, Blip2Config, {}, "Q-Former-style queries over the image, conditioned on text")
register_head("image-only", UnimodalHead, UnimodalConfig, {"modality": "image"}, "image + Q-Transform + MLP")
register_head("text-only", UnimodalHead, UnimodalConfig, {"modality": "text"}, "text + Q-Transform + MLP")
register_head("molt", MoltHead, MoltConfig, {}, "MoLT: latent translation, cross-attention, CCA, MFB, fusion")
