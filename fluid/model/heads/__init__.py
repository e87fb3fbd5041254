"""Heads built from the modules of ``fluid.model``: FLUID (+ ablations), baselines, unimodal, MoLT."""

from .base import Head, HeadInputs, ModalityTokens
from .baselines import Blip2Head, EarlyFusionHead, ImprovedAttentionHead
from .fluid import FluidHead
from .molt import MoltHead
from .unimodal import UnimodalHead

__all__ = ["Head", "HeadInputs", "ModalityTokens", "FluidHead", "EarlyFusionHead", "ImprovedAttentionHead", "Blip2Head", "UnimodalHead", "MoltHead"]
