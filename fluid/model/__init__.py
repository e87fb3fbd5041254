"""fluid.model - classification heads on encoder token sequences (torch only).

    from fluid.model import build_head, available_heads
    head = build_head("fluid", num_classes=191, image_dim=768, text_dim=768)
    out = head(image_tokens, text_tokens, image_mask, text_mask)   # HeadOutput
    losses = head.loss(out, labels)                                 # {"loss", "ce", *aux}

See docs/model.md for the map from the paper's equations and tables to modules and config switches.
"""

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
from .output import HeadOutput
from .registry import HeadSpec, available_heads, build_head, head_config, register_head

__all__ = [
    "build_head",
    "available_heads",
    "head_config",
    "register_head",
    "HeadSpec",
    "HeadOutput",
    "Head",
    "HeadConfig",
    "FluidConfig",
    "EarlyFusionConfig",
    "ImprovedAttentionConfig",
    "Blip2Config",
    "UnimodalConfig",
    "MoltConfig",
    "FluidHead",
    "EarlyFusionHead",
    "ImprovedAttentionHead",
    "Blip2Head",
    "UnimodalHead",
    "MoltHead",
]
