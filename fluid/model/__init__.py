"""fluid.model - classification heads on encoder token sequences (torch only), and the registry of every model.

    from fluid.model import build_head, available_heads, head_spec
    head = build_head("fluid", num_classes=191, image_dim=768, text_dim=768)
    out = head(image_tokens, text_tokens, image_mask, text_mask)   # HeadOutput
    losses = head.loss(out, labels)                                 # {"loss", "ce", *aux}
    head_spec("image-only").modalities                              # ("image",): what the model reads

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
from .heads import (
    Blip2Head,
    EarlyFusionHead,
    FluidHead,
    Head,
    HeadInputs,
    ImprovedAttentionHead,
    ModalityTokens,
    MoltHead,
    UnimodalHead,
)
from .output import HeadOutput
from .registry import (
    KINDS,
    MODALITIES,
    HeadSpec,
    available_heads,
    available_models,
    build_head,
    head_config,
    head_spec,
    is_classical,
    register_classical_model,
    register_head,
    unregister_head,
)

__all__ = [
    "build_head",
    "available_heads",
    "available_models",
    "head_config",
    "head_spec",
    "is_classical",
    "register_head",
    "register_classical_model",
    "unregister_head",
    "HeadSpec",
    "MODALITIES",
    "KINDS",
    "HeadOutput",
    "Head",
    "HeadInputs",
    "ModalityTokens",
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
