"""Where ``Classifier`` builds its feature cache and scores items (training itself runs where Lightning's
``devices`` put it)."""

from __future__ import annotations

import os

import torch

from fluid.config import DEVICE_PATTERN

__all__ = ["resolve_device"]


def resolve_device(name: str) -> torch.device:
    """The device a ``RunConfig.device`` value means.

    "auto": the GPU when PyTorch sees one (``cuda:<LOCAL_RANK>`` in a multi-process run, so that every process
    uses its own GPU), else the CPU. "cpu", "cuda", "cuda:N", "mps": that device, if this PyTorch can use it.

    Raises:
        ValueError: an unknown name, or a device this machine's PyTorch cannot use (with what to do instead).
    """
    if not DEVICE_PATTERN.fullmatch(name):
        raise ValueError(f"device={name!r} is not one of 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={name!r}, but this PyTorch sees no GPU (torch {torch.__version__}, "
                             "torch.cuda.is_available() is False): use device='cpu' or 'auto'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device={name!r}, but this machine has {torch.cuda.device_count()} GPU(s) "
                             f"(cuda:0 … cuda:{torch.cuda.device_count() - 1})")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={name!r}, but this PyTorch cannot use Apple's MPS: use device='cpu' or 'auto'")
    return device
