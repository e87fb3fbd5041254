"""Whether a forward pass is being captured into a graph, for the few places that choose how to compute by
reading values or shapes on the host (capture needs the same operations for every input)."""

from __future__ import annotations

import torch

__all__ = ["capturing"]


def capturing() -> bool:
    """True under ``torch.compile``, ``torch.export`` (and the dynamo ONNX exporter) and TorchScript."""
    return torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling()
