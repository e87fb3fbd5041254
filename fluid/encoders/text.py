"""Text encoder: any Hugging Face encoder model (``AutoModel`` + ``AutoTokenizer``) or the ``tiny`` preset."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import Tensor

from . import hub
from .base import Encoder, EncoderOutput, read_spec, stable_hash
from .presets import TINY, init_model, tiny_text_parts

logger = logging.getLogger(__name__)


def is_missing_text(t: Any) -> bool:
    """None, NaN, or a string that is empty after stripping."""
    if t is None:
        return True
    if isinstance(t, float) and math.isnan(t):
        return True
    if isinstance(t, str):
        return not t.strip()
    raise TypeError(f"text items must be str or None, got {type(t).__name__}")


class TextPreprocessor:
    """Picklable text preprocessing (tokenizer + max_length only, no weights): use it as, or inside, a
    DataLoader collate function so tokenisation runs in the workers. ``TextEncoder.prepare`` calls it.

    ``text_prefix`` is prepended to every present text before tokenising (e5 models: ``"passage: "``); a missing
    text stays the empty string."""

    text_prefix = ""  # class default: an instance pickled before the attribute existed reads as no prefix

    def __init__(self, tokenizer, max_length: int, padding: str = "longest", text_prefix: str = "") -> None:
        if padding not in ("longest", "max_length"):
            raise ValueError(f"padding must be 'longest' (dynamic) or 'max_length', got {padding!r}")
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.padding = padding  # "max_length": every batch padded to max_length (only for benchmarking)
        self.text_prefix = str(text_prefix or "")

    def _tokenize(self, texts: list[str], padding: bool | str) -> dict[str, Any]:
        if self.text_prefix:
            texts = [self.text_prefix + t if t else t for t in texts]
        return self.tokenizer(
            texts,
            padding=padding,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt" if padding else None,
        )

    def __call__(self, items: Sequence[str | None]) -> dict[str, Tensor]:
        items = list(items)
        if not items:
            raise ValueError("prepare() needs at least one item")
        present = [not is_missing_text(t) for t in items]
        texts = [t if p else "" for t, p in zip(items, present)]
        enc = self._tokenize(texts, padding=self.padding)
        keep = [k for k in self.tokenizer.model_input_names if k in enc] or ["input_ids", "attention_mask"]
        batch = {k: enc[k] for k in keep}
        if "attention_mask" not in batch:  # pragma: no cover - every HF tokenizer returns it
            batch["attention_mask"] = torch.ones_like(batch["input_ids"])
        present_t = torch.tensor(present, dtype=torch.bool)
        batch["attention_mask"] = batch["attention_mask"] * present_t.unsqueeze(1).to(batch["attention_mask"].dtype)
        batch["present"] = present_t
        return batch

    def lengths(self, items: Sequence[str | None], chunk: int = 2048) -> list[int]:
        """Token count of each text after truncation (0 for a missing text), read and tokenised ``chunk`` texts at
        a time so memory stays bounded on a catalogue of a million texts (``items``: any sequence, e.g. a
        :class:`~fluid.data.dataset.ColumnCells`)."""
        out = [0] * len(items)
        for start in range(0, len(items), chunk):
            part = [(i, items[i]) for i in range(start, min(start + chunk, len(items)))]
            part = [(i, t) for i, t in part if not is_missing_text(t)]
            if part:
                enc = self._tokenize([t for _, t in part], padding=False)
                for (i, _), ids in zip(part, enc["input_ids"]):
                    out[i] = len(ids)
        return out


class TextEncoder(Encoder):
    """Hugging Face text encoder with dynamic padding and missing-text handling.

    ``prepare(texts)`` returns ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the tokenizer
    makes them), padded to the longest text of the batch and truncated at ``max_length``, plus ``present``
    (B bool). A missing text (None/""/whitespace) is tokenised as the empty string (``[CLS] [SEP]``) so the
    backbone runs without NaN, but its ``attention_mask`` row and its output mask are all False and its output
    tokens are 0.
    """

    kind = "text"

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        *,
        source: str,
        freeze: bool | None = None,
        train_top_layers: int = 0,
        max_length: int = 512,
        overrides: dict[str, Any] | None = None,
        text_prefix: str = "",
    ) -> None:
        super().__init__(model, source=source, freeze=freeze, train_top_layers=train_top_layers, overrides=overrides)
        self.tokenizer = tokenizer
        if tokenizer.pad_token is None:
            fallback = tokenizer.eos_token or tokenizer.sep_token or tokenizer.unk_token
            if fallback is None:
                raise ValueError(f"the tokenizer of {source!r} has no pad token and nothing to fall back on")
            tokenizer.pad_token = fallback
        self.requested_max_length = int(max_length)
        self.preprocessor = TextPreprocessor(tokenizer, self._clamp_max_length(int(max_length)),
                                             text_prefix=text_prefix)

    def _clamp_max_length(self, max_length: int) -> int:
        if max_length < 2:
            raise ValueError("max_length must be >= 2")
        limits = []
        tml = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tml, int) and 0 < tml < 1_000_000:
            limits.append(tml)
        mpe = getattr(self.model.config, "max_position_embeddings", None)
        if isinstance(mpe, int) and mpe > 0:
            limits.append(mpe)
        if limits and max_length > min(limits):
            logger.info(
                "max_length=%d exceeds what %s supports; using %d", max_length, self.source, min(limits)
            )
            return min(limits)
        return max_length

    @property
    def has_cls_token(self) -> bool:
        """True when the tokenizer puts its CLS (or BOS) token first, as BERT's does ([CLS] ... [SEP])."""
        tok = self.tokenizer
        starts = {t for t in (tok.cls_token_id, tok.bos_token_id) if t is not None}
        ids = tok("a", add_special_tokens=True)["input_ids"]
        return bool(ids) and ids[0] in starts

    # ------------------------------------------------------------------ preprocessing
    @property
    def max_length(self) -> int:
        return self.preprocessor.max_length

    @property
    def text_prefix(self) -> str:
        """Prepended to every present text before tokenising ("" for most encoders, ``"passage: "`` for e5)."""
        return self.preprocessor.text_prefix

    def prepare(self, items: Sequence[str | None]) -> dict[str, Tensor]:
        """Tokenise a batch of texts (str or None) with dynamic padding.

        Returns:
            dict with ``input_ids`` (B x L long), ``attention_mask`` (B x L long, all 0 for missing texts),
            optionally ``token_type_ids`` (B x L), and ``present`` (B bool). L is the longest text of the
            batch (capped at ``max_length``), never a fixed size.
        """
        return self.preprocessor(items)

    def lengths(self, items: Sequence[str | None]) -> list[int]:
        """Token count of each text after truncation (0 for a missing text); e.g. for LengthBucketSampler."""
        return self.preprocessor.lengths(items)

    def estimate_tokens(self, items: Sequence[str | None], sample: int = 2000) -> float:
        if not len(items):
            return 0.0
        step = max(1, len(items) // sample)
        lens = self.lengths([items[i] for i in range(0, len(items), step)])
        return float(sum(lens)) / len(lens)

    # ------------------------------------------------------------------ forward
    def drop_tokens(self, batch: dict[str, Tensor], rate: float) -> dict[str, Tensor]:
        """``batch`` with each real token (not padding, not [CLS]/[SEP] or another special token) replaced by the
        tokenizer's unknown token with probability ``rate`` (global RNG): token dropout, a training-time
        regulariser. The input is left unchanged; ``rate`` 0 returns it as it is."""
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"token dropout must be in [0, 1), got {rate}")
        unk = self.tokenizer.unk_token_id
        if rate == 0.0 or unk is None:
            return batch
        ids = batch["input_ids"]
        special = torch.isin(ids, torch.tensor(self.tokenizer.all_special_ids, device=ids.device))
        real = batch["attention_mask"].bool() & ~special
        drop = real & (torch.rand(ids.shape, device=ids.device) < rate)
        return {**batch, "input_ids": ids.masked_fill(drop, unk)}

    def forward(self, batch: dict[str, Tensor], num_layers: int = 1) -> EncoderOutput:
        """Encode a prepared batch.

        Returns:
            EncoderOutput: tokens B x L x D, mask B x L (False for padding and for missing texts), and the last
            ``num_layers`` hidden states when ``num_layers > 1``.
        """
        device = next(self.model.parameters()).device
        present = batch["present"].to(device)
        attn = batch["attention_mask"].to(device).bool()
        ids = batch["input_ids"].to(device)
        # missing rows: let the backbone attend to their [CLS]/[SEP] so no softmax row is empty
        pad_id = self.tokenizer.pad_token_id
        filler = ids != pad_id if pad_id is not None else torch.ones_like(attn)
        filler[:, 0] = True
        model_mask = torch.where(present.unsqueeze(1), attn, filler)
        inputs = {"input_ids": ids, "attention_mask": model_mask.long()}
        for k, v in batch.items():
            if k not in ("input_ids", "attention_mask", "present"):
                inputs[k] = v.to(device)
        tokens, layers = self._run_model(inputs, num_layers)
        mask = attn & present.unsqueeze(1)
        return self._mask_outputs(tokens, layers, mask)

    # ------------------------------------------------------------------ fingerprint / save
    def preprocessing_spec(self) -> dict[str, Any]:
        tok = self.tokenizer
        backend = getattr(tok, "backend_tokenizer", None)
        spec = {
            "tokenizer_class": type(tok).__name__,
            "vocab_size": len(tok),
            "tokenizer_json": _tokenizer_state_hash(backend) if backend is not None else None,
            "padding_side": getattr(tok, "padding_side", None),
            "truncation_side": getattr(tok, "truncation_side", None),
            "max_length": self.max_length,
        }
        if self.text_prefix:  # only when set: the fingerprints (feature caches) of other encoders stay as they were
            spec["text_prefix"] = self.text_prefix
        return spec

    def spec(self) -> dict[str, Any]:
        spec = {**super().spec(), "max_length": self.requested_max_length}
        if self.text_prefix:
            spec["text_prefix"] = self.text_prefix
        return spec

    def _save_preprocessing(self, directory: Path) -> None:
        self.tokenizer.save_pretrained(str(directory))


def build_text_encoder(
    name: str,
    *,
    freeze: bool | None = None,
    train_top_layers: int = 0,
    max_length: int = 512,
    corpus: Iterable[str | None] | None = None,
    text_prefix: str | None = None,
    **preset_overrides: Any,
) -> TextEncoder:
    """Build a text encoder.

    Args:
        name: a Hugging Face hub name (e.g. ``bert-base-multilingual-cased``), a local directory saved with
            ``save_pretrained`` (model + tokenizer), or ``"tiny"`` (offline preset; needs ``corpus``).
        freeze: True = frozen feature extractor, False = fully trainable, None = frozen for pretrained
            sources and trainable for ``tiny``.
        train_top_layers: when frozen, make the top N transformer blocks (and the final norm) trainable.
        max_length: truncation length in tokens (capped by what the model supports).
        corpus: training texts, used (and required) only to train the ``tiny`` tokenizer.
        text_prefix: prepended to every text before tokenising; None = the preset's own (``e5-small``:
            ``"passage: "``), "" for any other source.
        **preset_overrides: ``tiny``: hidden_size, layers, heads, intermediate_size, max_position_embeddings,
            vocab_size, lowercase, min_frequency, seed, or any BertConfig field. Hub/local: config fields
            (e.g. ``hidden_dropout_prob=0.0``).

    Raises:
        EncoderLoadError: the name is neither a local directory nor loadable from the hub (e.g. offline).
    """
    if text_prefix is None:
        text_prefix = hub.PRESET_TEXT_PREFIXES.get(str(name), "")
    if str(name) == TINY:
        config, tokenizer, seed = tiny_text_parts(corpus, preset_overrides)
        model = init_model(config, "text", seed)
        return TextEncoder(
            model, tokenizer, source=TINY, freeze=freeze, train_top_layers=train_top_layers,
            max_length=max_length, overrides=preset_overrides, text_prefix=text_prefix,
        )
    source = hub.resolve_source(name)
    config = hub.load_config(source, **preset_overrides)
    tokenizer = hub.load_tokenizer(source)
    model = hub.load_model(source, config, "text", **hub.PRESET_MODEL_KWARGS.get(str(name), {}))
    return TextEncoder(
        model, tokenizer, source=_recorded_source(name, source), freeze=freeze,
        train_top_layers=train_top_layers, max_length=max_length, overrides=preset_overrides,
        text_prefix=text_prefix,
    )


def _recorded_source(name: str, resolved: str) -> str:
    """What a saved run records: a packaged preset by its name (its folder moves with the environment)."""
    return str(name) if str(name) in hub.PACKAGED_PRESETS else resolved


def load_text_encoder(directory: str | os.PathLike, *, source: str | None = None) -> TextEncoder:
    """Rebuild a text encoder written by :meth:`TextEncoder.save`.

    ``tiny``: architecture and tokenizer from ``directory``, random weights (load the trained state dict next).
    Pretrained: config and tokenizer from ``directory``, weights from the recorded source (or ``source=`` if
    the model moved).
    """
    d = Path(directory)
    spec = read_spec(d, "text")
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(d))
    tokenizer = hub.load_tokenizer(str(d))
    overrides = spec.get("overrides") or {}
    if spec["source"] == TINY:
        model = init_model(config, "text", overrides.get("seed"))
        src = TINY
    else:
        wanted = source or spec["source"]
        model = hub.load_model(hub.resolve_source(wanted), config, "text",
                               **hub.PRESET_MODEL_KWARGS.get(str(wanted), {}))
        src = _recorded_source(wanted, hub.resolve_source(wanted))
    return TextEncoder(
        model, tokenizer, source=src, freeze=spec.get("freeze"),
        train_top_layers=int(spec.get("train_top_layers", 0)), max_length=int(spec.get("max_length", 512)),
        overrides=overrides, text_prefix=spec.get("text_prefix", ""),
    )


def _tokenizer_state_hash(backend) -> str:
    """Hash of a fast tokenizer's definition, without its ``truncation`` / ``padding`` state: calling the
    tokenizer sets those (they mirror the last call's arguments), which must not change the fingerprint."""
    state = json.loads(backend.to_str())
    state.pop("truncation", None)
    state.pop("padding", None)
    return stable_hash(state)
