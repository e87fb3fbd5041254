"""The base class every head derives from: name, config, dims, the weighted loss, input checks."""

from __future__ import annotations

import numbers
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import HeadConfig
from ..missing import default_mask
from ..output import HeadOutput

__all__ = ["Head"]

TokenInput = Tensor | Sequence[Tensor] | None


class Head(nn.Module):
    """A classification head on encoder token sequences.

    Subclasses implement ``forward(image_tokens, text_tokens, image_mask=None, text_mask=None, *,
    aux_losses=True) -> HeadOutput``; ``aux_losses=False`` (inference: prediction, serving, export) skips the
    training-only auxiliary losses and leaves ``HeadOutput.aux_losses`` empty, with every other output unchanged.
    The head knows nothing of training: :meth:`loss` only combines its outputs (and the terms that need the
    labels, :meth:`label_losses`). Modality dropout is the training loop's (the run's), never the head's.

    Args:
        num_classes (int): C.
        image_dim (int): token width of the image encoder.
        text_dim (int): token width of the text encoder.
        config (HeadConfig): the head's config (kept as ``self.config``).
        name (str): registry name (kept as ``self.name``).
        image_has_cls (bool): whether the image encoder's sequences start with a CLS token (ViT) or not
            (EfficientNet grid tokens); kept as ``self.image_has_cls``.
        text_has_cls (bool): the same for the text encoder (BERT: True); kept as ``self.text_has_cls``.
    """

    config_class: type[HeadConfig] = HeadConfig

    def __init__(self, num_classes: int, image_dim: int, text_dim: int, config: HeadConfig, name: str, *,
                 image_has_cls: bool = True, text_has_cls: bool = True) -> None:
        super().__init__()
        for arg, value in (("num_classes", num_classes), ("image_dim", image_dim), ("text_dim", text_dim)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{arg} must be a positive int, got {value!r}")
        num_classes, image_dim, text_dim = int(num_classes), int(image_dim), int(text_dim)
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.num_classes = num_classes
        self.image_dim = image_dim
        self.text_dim = text_dim
        self.config = config
        self.name = name
        self.image_has_cls = bool(image_has_cls)
        self.text_has_cls = bool(text_has_cls)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, num_classes={self.num_classes}, image_dim={self.image_dim}, text_dim={self.text_dim}"

    # -- helpers for subclasses -------------------------------------------------------------------------

    @staticmethod
    def _first(x: TokenInput) -> Tensor | None:
        if x is None or isinstance(x, Tensor):
            return x
        return x[0] if len(x) else None

    def _batch_size(self, image_tokens: TokenInput, text_tokens: TokenInput) -> int:
        for x in (self._first(image_tokens), self._first(text_tokens)):
            if x is not None:
                return x.shape[0]
        raise ValueError("at least one of image_tokens and text_tokens must be given")

    def _masks(
        self,
        image_tokens: TokenInput,
        text_tokens: TokenInput,
        image_mask: Tensor | None,
        text_mask: Tensor | None,
    ) -> tuple[Tensor | None, Tensor | None]:
        """Resolve the masks: all True when only tokens are given, None for an absent modality."""
        image_mask = default_mask(self._first(image_tokens), image_mask) if image_tokens is not None else None
        text_mask = default_mask(self._first(text_tokens), text_mask) if text_tokens is not None else None
        return image_mask, text_mask

    # -- loss -------------------------------------------------------------------------------------------

    def loss(self, output: HeadOutput, labels: Tensor) -> dict[str, Tensor]:
        """The weighted training objective of this head.

        total = ce_weight · CE(logits, labels) + Σ output.aux_losses + Σ label_losses(output, labels)
        (all auxiliary terms are already weighted).

        Args:
            output (HeadOutput): this head's output.
            labels (Tensor): B int64 class indices; -1 = no label (ignored).

        Returns:
            dict: ``"loss"`` (the total), ``"ce"`` (unweighted cross-entropy), and each auxiliary loss by name.
        """
        valid = labels >= 0
        if bool(valid.any()):
            ce = F.cross_entropy(output.logits, labels, ignore_index=-1)
        else:
            ce = output.logits.sum() * 0.0
        aux = {**output.aux_losses, **self.label_losses(output, labels)}
        total = self.config.ce_weight * ce
        for value in aux.values():
            total = total + value
        return {"loss": total, "ce": ce, **aux}

    def label_losses(self, output: HeadOutput, labels: Tensor) -> dict[str, Tensor]:
        """Weighted auxiliary terms that need the labels, which ``forward`` does not get (none by default).

        Args:
            output (HeadOutput): this head's output. labels (Tensor): B int64; -1 = no label.

        Returns:
            dict: name -> weighted scalar, added to the total by :meth:`loss`.
        """
        return {}

    def forward(  # pragma: no cover - abstract
        self,
        image_tokens: TokenInput,
        text_tokens: TokenInput,
        image_mask: Tensor | None = None,
        text_mask: Tensor | None = None,
        *,
        aux_losses: bool = True,
    ) -> HeadOutput:
        raise NotImplementedError


def full_gate(batch_size: int, length: int, like: Tensor) -> Tensor:
    """A constant 0.5 gate, B x l (what F = (I_n + T_n)/2 amounts to)."""
    return torch.full((batch_size, length), 0.5, dtype=like.dtype, device=like.device)
