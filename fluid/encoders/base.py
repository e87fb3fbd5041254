"""Common encoder interface: :class:`EncoderOutput` and the :class:`Encoder` base module.

An encoder wraps one Hugging Face backbone plus its preprocessing (tokenizer or image processor):

* ``encoder.prepare(items) -> dict[str, Tensor]`` turns a list of raw items (str/None or PIL/None) into CPU
  tensors. It is cheap, picklable and meant to run in DataLoader workers (inside the collate function).
* ``encoder(batch, num_layers=1) -> EncoderOutput`` runs the backbone.

Freezing (see :meth:`Encoder._apply_freezing`):

* fully frozen encoders have ``requires_grad=False`` everywhere, stay in eval mode even when a parent module
  calls ``.train()``, and run their forward under :func:`torch.no_grad` (not ``inference_mode``: an
  inference-mode tensor cannot be saved for backward by a trainable head that consumes it). Their outputs are
  therefore ordinary tensors that carry no graph; no ``.clone()`` is needed. Feature-cache building wraps the
  whole loop in :func:`torch.inference_mode` itself.
* ``train_top_layers=N`` keeps the embeddings and the lower blocks frozen (and in eval mode) and makes the top
  N transformer blocks, plus any parameter after the block stack (e.g. ViT's final LayerNorm), trainable.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import torch
from torch import Tensor, nn

from fluid.atomic import write_json_atomic
from fluid.sdpa import varying_length_attention

from .presets import PRESETS

logger = logging.getLogger(__name__)

SPEC_FILE = "encoder.json"
SPEC_FORMAT = "fluid.encoder/1"


class EncoderOutput(NamedTuple):
    """Output of an encoder.

    Args:
        tokens (Tensor): B x L x D float token features (last layer). Positions where ``mask`` is False are 0.
        mask (Tensor): B x L bool, True for real tokens. All False for a missing item (absent text or image).
        layers (tuple[Tensor, ...] | None): the last k hidden states (each B x L x D, oldest first, the last
            one being the final block's output before any final norm) when called with ``num_layers=k > 1``;
            None otherwise.
    """

    tokens: Tensor
    mask: Tensor
    layers: tuple[Tensor, ...] | None = None


def find_layer_stack(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """Return ``(qualified_name, ModuleList)`` of the model's stack of transformer blocks.

    Picks the ``nn.ModuleList`` whose length equals ``config.num_hidden_layers`` (BERT: ``encoder.layer``,
    ViT in transformers 5: ``layers``); falls back to the ModuleList holding the most parameters.
    """
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    candidates = [
        (name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0
    ]
    if not candidates:
        raise ValueError(f"cannot find a stack of layers in {type(model).__name__}")
    exact = [(name, m) for name, m in candidates if n is not None and len(m) == n]
    pool = exact or candidates
    return max(pool, key=lambda nm: sum(p.numel() for p in nm[1].parameters()))


def _is_embedding_param(name: str) -> bool:
    first = name.split(".")[0]
    return "embed" in first or first in {"conv1", "stem"}


def _json_default(o: Any) -> Any:
    if isinstance(o, (torch.dtype,)):
        return str(o)
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, tuple)):
        return list(o)
    return repr(o)


def stable_hash(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj``."""
    text = json.dumps(obj, sort_keys=True, default=_json_default, ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def weights_digest(module: nn.Module) -> str:
    """Cheap fingerprint of a module's weights (names, shapes, sums and the first/last values of each tensor).

    Reads every parameter once (a sum), so it distinguishes two random initialisations and a fine-tuned
    checkpoint from its source without hashing hundreds of MB byte by byte.
    """
    h = hashlib.sha256()
    with torch.no_grad():
        for name, t in sorted(module.state_dict().items()):
            t = t.detach()
            h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
            if t.numel() == 0:
                continue
            flat = t.reshape(-1)
            if flat.is_floating_point():
                h.update(repr(float(flat.double().sum())).encode())
            edge = torch.cat([flat[:16], flat[-16:]]).cpu()
            h.update(edge.numpy().tobytes())
    return h.hexdigest()


class Encoder(nn.Module):
    """Base class of :class:`~fluid.encoders.text.TextEncoder` and :class:`~fluid.encoders.image.ImageEncoder`.

    Attributes:
        model (nn.Module): the Hugging Face backbone (``AutoModel``), pooler removed where possible.
        source (str): hub name, absolute local path, or ``"tiny"``.
        kind (str): ``"text"`` or ``"image"``.
    """

    kind: str = "?"

    def __init__(
        self,
        model: nn.Module,
        *,
        source: str,
        freeze: bool | None,
        train_top_layers: int,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.source = source
        self.overrides = dict(overrides or {})
        self._freeze_arg = freeze
        self._train_top_layers = int(train_top_layers)
        self._eval_modules: list[nn.Module] = []
        self._apply_freezing(freeze, self._train_top_layers)

    # ------------------------------------------------------------------ properties
    @property
    def is_preset(self) -> bool:
        """True for the offline presets built with random weights (``tiny``, ``tiny-vit``): trained by default."""
        return self.source in PRESETS

    @property
    def config(self):
        return self.model.config

    @property
    def dim(self) -> int:
        """Feature size D of the returned tokens."""
        cfg = self.model.config
        if getattr(cfg, "hidden_size", None):
            return int(cfg.hidden_size)
        if getattr(cfg, "hidden_sizes", None):
            return int(cfg.hidden_sizes[-1])
        raise AttributeError(f"cannot tell the feature size of {type(self.model).__name__}")

    @property
    def num_hidden_layers(self) -> int:
        return len(find_layer_stack(self.model)[1])

    @property
    def has_cls_token(self) -> bool:
        """Whether position 0 of every present item's tokens is a summary token ([CLS] of BERT, the class token
        of ViT) rather than one of the content tokens (a word piece, a grid cell of a CNN's feature map). A head
        that pools "the first token" needs this; pass it to ``fluid.model.build_head`` as ``text_has_cls`` /
        ``image_has_cls``."""
        raise NotImplementedError  # pragma: no cover - TextEncoder and ImageEncoder answer

    @property
    def trainable(self) -> bool:
        """True when at least one parameter requires grad."""
        return any(p.requires_grad for p in self.parameters())

    @property
    def frozen(self) -> bool:
        """True when no parameter requires grad (the encoder is a fixed feature extractor)."""
        return not self.trainable

    @property
    def train_top_layers(self) -> int:
        return self._train_top_layers

    # ------------------------------------------------------------------ freezing
    def _apply_freezing(self, freeze: bool | None, train_top_layers: int) -> None:
        if train_top_layers < 0:
            raise ValueError("train_top_layers must be >= 0")
        if freeze is False and train_top_layers > 0:
            raise ValueError(
                "freeze=False trains the whole encoder; train_top_layers only applies to a frozen encoder "
                "(use freeze=True or freeze=None with train_top_layers=N)"
            )
        if freeze is None:
            # pretrained weights are frozen by default; randomly initialised (tiny) encoders must train
            freeze = not self.is_preset or train_top_layers > 0
        for p in self.model.parameters():
            p.requires_grad_(not freeze)
        if freeze and train_top_layers > 0:
            stack_name, stack = find_layer_stack(self.model)
            n = len(stack)
            if train_top_layers > n:
                raise ValueError(f"train_top_layers={train_top_layers} but the encoder has only {n} layers")
            for layer in list(stack)[n - train_top_layers:]:
                for p in layer.parameters():
                    p.requires_grad_(True)
            stack_root = stack_name.split(".")[0] + "."  # e.g. "encoder." (BERT) or "layers." (ViT)
            for name, p in self.model.named_parameters():
                # parameters outside the embeddings and the block stack (final norms) follow the top layers
                if not name.startswith(stack_root) and not _is_embedding_param(name):
                    p.requires_grad_(True)
        self._frozen_flag = bool(freeze)
        self._eval_modules = self._collect_frozen_modules()
        self.train(self.training)

    def _collect_frozen_modules(self) -> list[nn.Module]:
        """Maximal submodules whose parameters are all frozen: they are kept in eval mode (dropout off)."""
        out: list[nn.Module] = []

        def visit(m: nn.Module) -> None:
            params = list(m.parameters())
            if params and not any(p.requires_grad for p in params):
                out.append(m)
                return
            for child in m.children():
                visit(child)

        visit(self.model)
        return out

    def train(self, mode: bool = True) -> "Encoder":
        super().train(mode)
        for m in self._eval_modules:
            m.train(False)
        return self

    # ------------------------------------------------------------------ running
    def _grad_context(self):
        if self.frozen and torch.is_grad_enabled():
            return torch.no_grad()
        return contextlib.nullcontext()

    def _run_model(self, inputs: dict[str, Tensor], num_layers: int) -> tuple[Tensor, tuple[Tensor, ...] | None]:
        if num_layers < 1:
            raise ValueError("num_layers must be >= 1")
        want_hidden = num_layers > 1
        device = next(iter(inputs.values())).device
        with self._grad_context(), varying_length_attention(device):
            out = self.model(**inputs, output_hidden_states=want_hidden, return_dict=True)
        tokens = _as_tokens(out.last_hidden_state)
        layers = None
        if want_hidden:
            hidden = out.hidden_states
            if hidden is None or len(hidden) < num_layers:
                raise ValueError(
                    f"num_layers={num_layers} but the encoder returns {0 if hidden is None else len(hidden)} "
                    "hidden states (embeddings + one per layer)"
                )
            layers = tuple(_as_tokens(h) for h in hidden[-num_layers:])
        return tokens, layers

    @staticmethod
    def _mask_outputs(
        tokens: Tensor, layers: tuple[Tensor, ...] | None, mask: Tensor
    ) -> EncoderOutput:
        m = mask.unsqueeze(-1).to(tokens.dtype)
        tokens = tokens * m
        if layers is not None:
            layers = tuple(h * m.to(h.dtype) for h in layers)
        return EncoderOutput(tokens=tokens, mask=mask, layers=layers)

    def prepare(self, items: Sequence[Any]) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, batch: dict[str, Tensor], num_layers: int = 1) -> EncoderOutput:  # pragma: no cover
        raise NotImplementedError

    def estimate_tokens(self, items: Sequence[Any]) -> float:  # pragma: no cover - abstract
        """Average number of real (mask True) tokens per item, for cache size estimates."""
        raise NotImplementedError

    # ------------------------------------------------------------------ fingerprint / save
    def preprocessing_spec(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any]:
        """Everything that determines this encoder's outputs: source, config, preprocessing, weights."""
        cfg = self.model.config.to_dict()
        for k in ("transformers_version", "_name_or_path", "name_or_path", "_commit_hash", "dtype", "torch_dtype"):
            cfg.pop(k, None)
        return {
            "kind": self.kind,
            "source": self.source,
            "model_class": type(self.model).__name__,
            "config": cfg,
            "preprocessing": self.preprocessing_spec(),
            "weights": weights_digest(self.model),
        }

    def fingerprint_hash(self) -> str:
        return stable_hash(self.fingerprint())

    def spec(self) -> dict[str, Any]:
        return {
            "format": SPEC_FORMAT,
            "kind": self.kind,
            "source": self.source,
            "freeze": self._freeze_arg,
            "train_top_layers": self._train_top_layers,
            "overrides": self.overrides,
            "dim": self.dim,
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``encoder.json`` plus config and tokenizer/processor files (never the weights).

        Pretrained sources are rebuilt from their name/path by ``load_*_encoder``; ``tiny`` is rebuilt from
        the saved config with random weights (load the trained state dict afterwards).
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.model.config.save_pretrained(str(d))
        self._save_preprocessing(d)
        write_json_atomic(d / SPEC_FILE, self.spec(), sort_keys=True, default=_json_default)
        return d

    def _save_preprocessing(self, directory: Path) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_repr(self) -> str:
        state = "frozen" if self.frozen else (
            f"top {self._train_top_layers} layers trainable" if self._train_top_layers else "trainable"
        )
        return f"source={self.source!r}, dim={self.dim}, {state}"


def _as_tokens(h: Tensor) -> Tensor:
    """B x L x D tokens; convolutional feature maps B x C x H x W become B x (H*W) x C."""
    if h.dim() == 4:
        return h.flatten(2).transpose(1, 2)
    if h.dim() != 3:
        raise ValueError(f"unexpected hidden state shape {tuple(h.shape)}")
    return h


def read_spec(directory: str | os.PathLike, kind: str) -> dict[str, Any]:
    path = Path(directory) / SPEC_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a directory written by encoder.save()")
    spec = json.loads(path.read_text(encoding="utf-8"))
    if spec.get("format") != SPEC_FORMAT:
        raise ValueError(f"{path}: unsupported encoder spec format {spec.get('format')!r}")
    if spec.get("kind") != kind:
        raise ValueError(f"{path} describes a {spec.get('kind')} encoder, not a {kind} encoder")
    return spec
