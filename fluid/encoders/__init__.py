"""Hugging Face text and image encoders for FLUID: hub name, local directory, or the offline ``tiny`` preset.

Public API::

    build_text_encoder(name, *, freeze=None, train_top_layers=0, max_length=512, corpus=None, **overrides)
    build_image_encoder(name, *, freeze=None, train_top_layers=0, **overrides)   # also "efficientnet-lite0"/"-lite2"
    load_text_encoder(dir, *, source=None) / load_image_encoder(dir, *, source=None)
    enc.prepare(items) -> dict[str, Tensor];  enc(batch, num_layers=1) -> EncoderOutput(tokens, mask, layers)
    FeatureCache(root, budget_bytes).build(encoder, ids, items) -> CachedFeatures | None
    LengthBucketSampler(lengths, batch_size, shuffle=True, seed=0)

This package never imports ``fluid.model``, ``fluid.data`` or ``fluid.training``.
"""

from .backbone import (
    IMAGE_BACKBONES,
    BackboneConfig,
    BackboneOutput,
    ImageBackbone,
    ImageTransform,
)
from .base import Encoder, EncoderOutput
from .cache import CachedFeatures, FeatureCache
from .hub import EncoderLoadError
from .image import ImageEncoder, build_image_encoder, load_image_encoder
from .presets import train_tiny_tokenizer
from .sampler import LengthBucketSampler
from .text import TextEncoder, build_text_encoder, load_text_encoder

__all__ = [
    "IMAGE_BACKBONES",
    "BackboneConfig",
    "BackboneOutput",
    "CachedFeatures",
    "Encoder",
    "EncoderLoadError",
    "EncoderOutput",
    "FeatureCache",
    "ImageBackbone",
    "ImageEncoder",
    "ImageTransform",
    "LengthBucketSampler",
    "TextEncoder",
    "build_image_encoder",
    "build_text_encoder",
    "load_image_encoder",
    "load_text_encoder",
    "train_tiny_tokenizer",
]
