"""The base class every head derives from: name, config, dims, the weighted loss, input checks."""

from __future__ import annotations

import numbers
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import HeadConfig
from ..missing import MissingModalityToken, default_mask
from ..output import HeadOutput

__all__ = ["Head", "HeadInputs", "ModalityTokens"]

TokenInput = Tensor | Sequence[Tensor] | None


class ModalityTokens(NamedTuple):
    """One modality of a batch, safe for attention (what :class:`~fluid.model.missing.MissingModalityToken`
    returns).

    Attributes:
        tokens (Tensor): B x L' x D, masked positions zeroed; a row whose modality is absent holds the learned
            missing-modality token at position 0 (L' = 1 when the modality is absent for the whole batch).
        mask (Tensor): B x L' bool, True = real token (or that missing token); at least one True per row.
        present (Tensor): B bool, False where the modality was absent.
    """

    tokens: Tensor
    mask: Tensor
    present: Tensor


class HeadInputs(NamedTuple):
    """A batch as a multimodal head reads it (:meth:`Head.prepare_inputs`).

    Attributes:
        batch_size (int): B.
        image (ModalityTokens): tokens B x L_i x image_dim, mask B x L_i, present B.
        text (ModalityTokens): tokens B x L_t x text_dim, mask B x L_t, present B.
    """

    batch_size: int
    image: ModalityTokens
    text: ModalityTokens


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

    A multimodal head creates ``self.image_missing`` and ``self.text_missing`` (one
    :class:`~fluid.model.missing.MissingModalityToken` per modality, of width image_dim / text_dim) and opens its
    ``forward`` with :meth:`prepare_inputs` (or :meth:`prepare_layer_inputs` when it reads several encoder layers).
    """

    config_class: type[HeadConfig] = HeadConfig
    image_missing: MissingModalityToken
    text_missing: MissingModalityToken

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

    @staticmethod
    def _layer_slots(tokens: TokenInput, layers: int, what: str) -> list[Tensor | None]:
        """``layers`` per-layer inputs (oldest first): None repeated, one tensor repeated, or the last
        ``layers`` of a sequence (a one-element sequence is repeated)."""
        if tokens is None:
            return [None] * layers
        if isinstance(tokens, Tensor):
            return [tokens] * layers
        given = list(tokens)
        if len(given) == 1:
            return given * layers
        if len(given) < layers:
            raise ValueError(
                f"{what}: got {len(given)} layers, the head reads encoder_layers={layers} "
                "(pass one tensor, or at least k per-layer tensors)"
            )
        return given[-layers:]

    # -- input preparation (the opening of every multimodal forward) -------------------------------------

    def prepare_inputs(
        self,
        image_tokens: Tensor | None,
        text_tokens: Tensor | None,
        image_mask: Tensor | None = None,
        text_mask: Tensor | None = None,
    ) -> HeadInputs:
        """Both modalities made safe for attention: the batch size, the masks (all True where only tokens are
        given) and ``self.image_missing`` / ``self.text_missing`` standing in for an absent modality.

        Args:
            image_tokens (Tensor | None): B x L_i x image_dim; None = image absent for the batch.
            text_tokens (Tensor | None): B x L_t x text_dim; None = text absent for the batch.
            image_mask, text_mask (Tensor | None): B x L bool, True = real token; a row all False = that
                sample's modality is absent.

        Returns:
            HeadInputs: ``(batch_size, image, text)``, each modality a :class:`ModalityTokens`
            ``(tokens, mask, present)``.

        Raises:
            ValueError: both token inputs are None.
        """
        b = self._batch_size(image_tokens, text_tokens)
        image_mask, text_mask = self._masks(image_tokens, text_tokens, image_mask, text_mask)
        image = ModalityTokens(*self.image_missing(image_tokens, image_mask, b))
        text = ModalityTokens(*self.text_missing(text_tokens, text_mask, b))
        return HeadInputs(b, image, text)

    def prepare_layer_inputs(
        self,
        image_tokens: TokenInput,
        text_tokens: TokenInput,
        image_mask: Tensor | None,
        text_mask: Tensor | None,
        layers: int,
    ) -> list[HeadInputs]:
        """:meth:`prepare_inputs` for a head that reads ``layers`` encoder layers: one :class:`HeadInputs` per
        layer slot, oldest first.

        Args:
            image_tokens: one tensor B x L_i x image_dim (used for every slot), a sequence of per-layer tensors
                (oldest first; the last ``layers`` are used), or None (image absent).
            text_tokens: likewise for the text.
            image_mask, text_mask (Tensor | None): B x L bool, shared by all layers of a modality.
            layers (int): k, the layer slots.

        Raises:
            ValueError: both token inputs are None, or a sequence holds fewer than k (and more than one) layers.
        """
        b = self._batch_size(image_tokens, text_tokens)
        image_layers = self._layer_slots(image_tokens, layers, "image_tokens")
        text_layers = self._layer_slots(text_tokens, layers, "text_tokens")
        image_mask, text_mask = self._masks(image_tokens, text_tokens, image_mask, text_mask)
        return [HeadInputs(b, ModalityTokens(*self.image_missing(image, image_mask, b)),
                           ModalityTokens(*self.text_missing(text, text_mask, b)))
                for image, text in zip(image_layers, text_layers)]

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
