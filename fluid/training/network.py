"""The whole classifier network: text encoder + image encoder + head, and the batch collation for it.

``MultimodalNetwork`` knows nothing of files or training loops: it maps a collated batch to a
:class:`fluid.model.HeadOutput`. ``Collator`` turns raw samples (``fluid.data`` sample dicts) into that batch
by calling each encoder's own preprocessing, so it runs inside DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from fluid.model import head_spec
from fluid.training.augment import augment_image_batch


@dataclass
class Collator:
    """Collates ``fluid.data`` samples into encoder inputs.

    Holds only the encoders' preprocessors (tokenizer / image processor, no weights) and, for modalities whose
    features are cached, the memory-mapped :class:`~fluid.encoders.CachedFeatures` (row ``i`` = dataset item
    ``i``), so it is cheap to send to DataLoader workers. Output batch: ``{"text": dict|None, "image":
    dict|None, "text_features": EncoderOutput|None, "image_features": EncoderOutput|None, "label": LongTensor
    B, "index": LongTensor B, "problems": list[list[str]]}``; a modality the head does not use is ``None``, a
    cached one comes as ``*_features`` (B x L x D tokens + mask) instead of encoder inputs.
    ``drop_modality`` ("image" or "text") removes one modality from every item (robustness evaluation).
    """

    text_preprocessor: Callable | None
    image_preprocessor: Callable | None
    drop_modality: str | None = None
    features: dict = field(default_factory=dict)

    @classmethod
    def for_network(cls, network: "MultimodalNetwork", drop_modality: str | None = None,
                    features: dict | None = None) -> "Collator":
        features = features or {}
        text, image = network.text_encoder, network.image_encoder
        return cls(text.preprocessor if text is not None and "text" not in features else None,
                   image.preprocessor if image is not None and "image" not in features else None,
                   drop_modality, features)

    def _cached(self, modality: str, indices: list[int]):
        cached = self.features.get(modality)
        if cached is None:
            return None
        out = cached.collate(indices)
        if self.drop_modality == modality:
            out = out._replace(mask=torch.zeros_like(out.mask))
        return out

    def collate_items(self, texts: list, images: list) -> dict:
        """One batch of raw items, without a dataset: ``texts`` (str or None) and ``images`` (decoded PIL images
        or None), as :meth:`__call__` collates them (labels unknown: -1)."""
        return self([{"text": t, "image": im, "label": -1, "index": i} for i, (t, im) in enumerate(zip(texts, images))])

    def __call__(self, samples: list[dict]) -> dict:
        texts = [None if self.drop_modality == "text" else s["text"] for s in samples]
        images = [None if self.drop_modality == "image" else s["image"] for s in samples]
        indices = [s["index"] for s in samples]
        return {
            "text": self.text_preprocessor(texts) if self.text_preprocessor is not None else None,
            "image": self.image_preprocessor(images) if self.image_preprocessor is not None else None,
            "text_features": self._cached("text", indices),
            "image_features": self._cached("image", indices),
            "label": torch.tensor([s["label"] for s in samples], dtype=torch.long),
            "index": torch.tensor(indices, dtype=torch.long),
            "problems": [s.get("problems", []) for s in samples],
        }


class MultimodalNetwork(nn.Module):
    """Encoders + head.

    What the network runs follows the head's registry entry (``fluid.model.head_spec(head.name)``, kept as
    ``self.spec``): only the encoders of the modalities it declares, for as many layers as it reads.

    Args:
        head: a head from :func:`fluid.model.build_head` (its ``.name`` is a registered deep head).
        text_encoder / image_encoder: ``fluid.encoders`` encoders; one the head does not read is dropped (and
            may be None).
        modality_dropout: during training, each sample loses its image with probability p/2 or else its text
            with probability p/2 (never both), so the missing-modality path is trained.
        token_dropout: during training, a trainable text encoder reads each real input token as [UNK] with this
            probability (:meth:`~fluid.encoders.TextEncoder.drop_tokens`); a frozen one reads its input as given.
        image_augment: during training, a trainable image encoder sees each image mirrored left-right at random and
            shifted by up to this share of its side (:func:`~fluid.training.augment.flip_and_shift`); 0 = off.
        colour_augment: during training, a trainable image encoder sees each image with its colour channels in a
            random order at this probability (:func:`~fluid.training.augment.permute_colours`); 0 = off.
    """

    def __init__(self, head: nn.Module, text_encoder: nn.Module | None, image_encoder: nn.Module | None,
                 modality_dropout: float = 0.0, token_dropout: float = 0.0, image_augment: float = 0.0,
                 colour_augment: float = 0.0):
        super().__init__()
        if not 0.0 <= modality_dropout <= 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1], got {modality_dropout}")
        if not 0.0 <= token_dropout < 1.0:
            raise ValueError(f"token_dropout must be in [0, 1), got {token_dropout}")
        if not 0.0 <= image_augment < 0.5:
            raise ValueError(f"image_augment must be in [0, 0.5), got {image_augment}")
        if not 0.0 <= colour_augment <= 1.0:
            raise ValueError(f"colour_augment must be in [0, 1], got {colour_augment}")
        self.token_dropout = token_dropout
        self.image_augment = image_augment
        self.colour_augment = colour_augment
        self.spec = head_spec(head.name)
        self.head = head
        self.text_encoder = text_encoder if self.spec.reads_text else None
        self.image_encoder = image_encoder if self.spec.reads_image else None
        self.modality_dropout = modality_dropout

    @property
    def encoder_layers(self) -> int:
        """How many of each encoder's last hidden states the head reads (its entry's ``encoder_layers``)."""
        return self.spec.encoder_layers(self.head.config)

    def encode(self, batch: dict) -> tuple:
        """Runs the encoders. Returns (image_tokens, image_mask, text_tokens, text_mask); tokens are a tensor
        B x L x D, or a tuple of per-layer tensors when the head reads several encoder layers."""
        layers = self.encoder_layers
        image_tokens = image_mask = text_tokens = text_mask = None
        if self.image_encoder is not None:
            augments = self.image_augment > 0 or self.colour_augment > 0
            if self.training and augments and self.image_encoder.trainable and batch.get("image"):
                batch = {**batch, "image": augment_image_batch(batch["image"], self.image_augment,
                                                               self.colour_augment)}
            out = self._encoder_output(self.image_encoder, batch, "image", layers)
            if out is not None:
                image_tokens, image_mask = (out.layers if layers > 1 else out.tokens), out.mask
        if self.text_encoder is not None:
            if self.training and self.token_dropout > 0 and self.text_encoder.trainable and batch.get("text"):
                batch = {**batch, "text": self.text_encoder.drop_tokens(batch["text"], self.token_dropout)}
            out = self._encoder_output(self.text_encoder, batch, "text", layers)
            if out is not None:
                text_tokens, text_mask = (out.layers if layers > 1 else out.tokens), out.mask
        if self.training and self.modality_dropout > 0 and image_mask is not None and text_mask is not None:
            image_mask, text_mask = self._drop_modalities(image_mask, text_mask)
        return image_tokens, image_mask, text_tokens, text_mask

    @staticmethod
    def _encoder_output(encoder: nn.Module, batch: dict, modality: str, layers: int):
        """Cached features when the batch carries them (last layer only), else the encoder run on the inputs."""
        cached = batch.get(f"{modality}_features")
        if cached is not None:
            if layers > 1:
                raise ValueError(f"cached {modality} features hold the last layer only; this head reads {layers}")
            return cached
        if batch.get(modality) is None:
            return None
        return encoder(batch[modality], num_layers=layers)

    def _drop_modalities(self, image_mask: torch.Tensor, text_mask: torch.Tensor):
        draw = torch.rand(image_mask.shape[0], device=image_mask.device)
        has_both = image_mask.any(dim=1) & text_mask.any(dim=1)
        drop_image = has_both & (draw < self.modality_dropout / 2)
        drop_text = has_both & (draw >= self.modality_dropout / 2) & (draw < self.modality_dropout)
        return image_mask & ~drop_image[:, None], text_mask & ~drop_text[:, None]

    def forward(self, batch: dict, *, aux_losses: bool = True):
        """Encoders then head; ``aux_losses=False`` (inference) skips the head's training-only losses."""
        image_tokens, image_mask, text_tokens, text_mask = self.encode(batch)
        return self.head(image_tokens, text_tokens, image_mask=image_mask, text_mask=text_mask,
                         aux_losses=aux_losses)
