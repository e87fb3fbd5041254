"""Which fused attention kernels PyTorch may use when sequence lengths change from batch to batch.

On Hopper GPUs PyTorch can route fp16/bf16 ``scaled_dot_product_attention`` to cuDNN, which builds an execution
plan for every new input shape. With dynamic padding every batch has a new text length, so a plan is built for
nearly every batch, which slowed base-size training under bf16 autocast about twentyfold (BENCHMARKS.md,
"Reading the GPU numbers"). So every attention call in FLUID (the HF encoders and the heads) runs with cuDNN's
kernel excluded; flash, memory-efficient and math kernels remain, chosen by PyTorch as usual. CPUs are not
affected, nor is fp32 attention outside autocast: cuDNN's kernel takes fp16/bf16 only, so there is nothing to
exclude, and setting the backends costs host time on every call, which counts at batch 1.
"""

from __future__ import annotations

import contextlib

import torch

try:
    from torch.nn.attention import SDPBackend, sdpa_kernel
except ImportError:  # pragma: no cover - torch < 2.3
    sdpa_kernel = None

__all__ = ["varying_length_attention"]


def varying_length_attention(device: torch.device, dtype: torch.dtype | None = None):
    """A context manager for attention over ``device`` with batch-dependent lengths: on CUDA, PyTorch's SDPA
    backends without cuDNN's; elsewhere (or on a PyTorch without ``torch.nn.attention``) nothing changes.

    ``dtype``: the attention inputs' dtype, if known. fp32/fp64 inputs outside CUDA autocast cannot reach cuDNN's
    kernel, so nothing is set for them."""
    if device.type != "cuda" or sdpa_kernel is None:
        return contextlib.nullcontext()
    if dtype in (torch.float32, torch.float64) and not torch.is_autocast_enabled("cuda"):
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])
