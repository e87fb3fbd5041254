"""The offline ``tiny`` preset: small randomly initialised BERT / ViT built locally, no download.

* text: BERT (hidden 128, 2 layers, 4 heads, intermediate 256, 512 positions) with a WordPiece tokenizer
  trained on the caller's corpus (the catalogue texts) by :func:`train_tiny_tokenizer`.
* image: ViT (64x64 input, patch 8 -> 64 patches + [CLS] = 65 tokens, hidden 128, 2 layers, 4 heads) with a
  locally built ViT image processor (resize to the configured size, rescale 1/255, mean = std = 0.5).

Every default can be overridden by keyword (``hidden_size``, ``layers``/``num_hidden_layers``,
``heads``/``num_attention_heads``, ``intermediate_size``, ``image_size``, ``patch_size``, ``vocab_size``,
``max_position_embeddings``, ``lowercase``, ``seed``, or any other BertConfig/ViTConfig field).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from typing import Any, Iterable, TypeVar

import numpy as np
import torch
from transformers import BertConfig, PreTrainedTokenizerFast, ViTConfig

from fluid.errors import OptionError

T = TypeVar("T")

TINY = "tiny"
TINY_VIT = "tiny-vit"  # the image preset before the tiny convnet (fluid.encoders.tinyconv)
PRESETS = (TINY, TINY_VIT)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

TINY_TEXT_DEFAULTS: dict[str, Any] = {
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 256,
    "max_position_embeddings": 512,
}
TINY_TEXT_TOKENIZER_DEFAULTS: dict[str, Any] = {"vocab_size": 6000, "lowercase": False, "min_frequency": 2,
                                                "max_texts": 20_000}

TINY_IMAGE_DEFAULTS: dict[str, Any] = {
    "image_size": 64,
    "patch_size": 8,
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 256,
}

ALIASES = {"layers": "num_hidden_layers", "heads": "num_attention_heads"}

# Unicode ranges whose letters every tiny tokenizer knows (single characters and ##-continuations), so that a
# word in any of the 13 GLAMI languages never becomes [UNK] because one letter was absent from the corpus.
_ALPHABET_RANGES = [
    (0x21, 0x7E),  # ASCII
    (0xA1, 0xFF),  # Latin-1 supplement (es, hu, ee, ...)
    (0x100, 0x17F),  # Latin extended-A (cz, sk, si, hr, hu, lt, lv, tr, ro, ee)
    (0x218, 0x21B),  # Romanian s/t with comma below
    (0x386, 0x3CE),  # Greek (gr)
    (0x400, 0x45F),  # Cyrillic (bg)
    (0x20AC, 0x20AC),  # euro sign
]


def seed_alphabet() -> list[str]:
    chars = []
    for lo, hi in _ALPHABET_RANGES:
        for cp in range(lo, hi + 1):
            c = chr(cp)
            if not c.isprintable() or c.isspace() or unicodedata.category(c).startswith("C"):
                continue
            if unicodedata.normalize("NFKC", c) != c:
                continue  # never seen after NFKC normalisation
            chars.append(c)
    return chars


def _split_overrides(overrides: dict[str, Any], defaults: dict[str, Any], extra: dict[str, Any], config_cls):
    overrides = {ALIASES.get(k, k): v for k, v in overrides.items()}
    known = set(config_cls().to_dict()) | set(extra) | {"seed"}
    unknown = sorted(k for k in overrides if k not in known)
    if unknown:
        raise OptionError(
            f"unknown tiny preset option(s) {unknown}; use {sorted(set(defaults) | set(extra) | {'seed'} | set(ALIASES))}"
            f" or a {config_cls.__name__} field"
        )
    cfg = dict(defaults)
    own = dict(extra)
    for k, v in overrides.items():
        if k in extra:
            own[k] = v
        elif k != "seed":
            cfg[k] = v
    return cfg, own, overrides.get("seed")


def train_tiny_tokenizer(
    corpus: Iterable[str | None],
    *,
    vocab_size: int = 6000,
    lowercase: bool = False,
    min_frequency: int = 2,
    max_length: int = 512,
    max_texts: int | None = 20_000,
) -> PreTrainedTokenizerFast:
    """Train a small cased WordPiece tokenizer on ``corpus`` and wrap it as a ``PreTrainedTokenizerFast``.

    Pipeline: NFKC -> BERT normaliser (clean control chars, split CJK, keep accents, lowercase only if asked)
    -> BERT pre-tokeniser (whitespace + punctuation) -> WordPiece with ``##`` continuations ->
    ``[CLS] ... [SEP]``. The vocabulary always contains every letter of :func:`seed_alphabet` both as a word
    start and as a ``##`` continuation, so any word made of Latin (with diacritics), Greek or Cyrillic letters
    tokenises at worst character by character; only a word containing a character outside the alphabet and
    the corpus (e.g. an emoji) becomes ``[UNK]``. Training is deterministic for a given corpus.

    The WordPiece merges are learnt from at most ``max_texts`` texts, evenly spaced over the corpus (None: all):
    6,000 pieces are settled long before that, and the trainer's memory and time grow with the texts it sees
    (7 s and ~13 MiB more at 100k texts than at 10k). Every text still contributes its characters.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    if not isinstance(corpus, Sequence):
        corpus = list(corpus)
    usable = np.flatnonzero(np.fromiter((isinstance(t, str) and bool(t.strip()) for t in corpus), dtype=bool,
                                        count=len(corpus)))
    if not len(usable):
        raise ValueError("the tiny tokenizer needs a non-empty corpus of texts to train on")

    normalizer = normalizers.Sequence(
        [
            normalizers.NFKC(),
            normalizers.BertNormalizer(
                clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=bool(lowercase)
            ),
        ]
    )
    alphabet = seed_alphabet()
    if lowercase:
        alphabet = sorted(set(c.lower() for c in alphabet if len(c.lower()) == 1))

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # Determinism: tokenizers (<= 0.23) gives "##x" continuation pieces ids in hash-map order while training,
    # and those ids break ties between equally frequent merges (huggingface/tokenizers#1794). Registering every
    # continuation piece up front, in sorted order, fixes their ids and so the whole vocabulary.
    chars = set(alphabet)
    for i in usable:
        chars.update(normalizer.normalize_str(corpus[i]))
    continuations = ["##" + c for c in sorted(chars) if not c.isspace()]
    trainer = trainers.WordPieceTrainer(
        vocab_size=int(vocab_size),
        min_frequency=int(min_frequency),
        special_tokens=list(SPECIAL_TOKENS) + continuations,
        initial_alphabet=alphabet,
        continuing_subword_prefix="##",
        show_progress=False,
    )
    if max_texts is not None and len(usable) > max_texts:
        usable = usable[np.linspace(0, len(usable) - 1, int(max_texts)).round().astype(np.int64)]
    texts = [corpus[i] for i in usable]
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))

    # char-level fallback: every alphabet letter as a word start and as a continuation
    vocab = dict(tok.get_vocab())
    for c in alphabet:
        for piece in (c, "##" + c):
            if piece not in vocab:
                vocab[piece] = len(vocab)
    final = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    final.normalizer = normalizer
    final.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    final.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    final.decoder = decoders.WordPiece(prefix="##")

    return PreTrainedTokenizerFast(
        tokenizer_object=final,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=int(max_length),
        padding_side="right",
        truncation_side="right",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def tiny_text_parts(corpus: Iterable[str | None] | None, overrides: dict[str, Any]):
    """``(BertConfig, tokenizer, seed)`` for the tiny text preset."""
    if corpus is None:
        raise ValueError(
            "the 'tiny' text encoder's tokenizer is trained on the catalogue: pass corpus=<the training texts> "
            "to build_text_encoder('tiny', corpus=...)"
        )
    cfg_kwargs, tok_kwargs, seed = _split_overrides(
        overrides, TINY_TEXT_DEFAULTS, TINY_TEXT_TOKENIZER_DEFAULTS, BertConfig
    )
    max_pos = int(cfg_kwargs["max_position_embeddings"])
    tokenizer = train_tiny_tokenizer(corpus, max_length=max_pos, **tok_kwargs)
    cfg_kwargs = {**cfg_kwargs, "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    return BertConfig(**cfg_kwargs), tokenizer, seed


def tiny_image_parts(overrides: dict[str, Any]):
    """``(ViTConfig, image_processor, seed)`` for the tiny image preset."""
    cfg_kwargs, _, seed = _split_overrides(overrides, TINY_IMAGE_DEFAULTS, {}, ViTConfig)
    cfg_kwargs.setdefault("num_channels", 3)
    config = ViTConfig(**cfg_kwargs)
    size = int(config.image_size)
    return config, make_vit_processor(size), seed


def make_vit_processor(size: int):
    """A ViT image processor built locally: bilinear resize to size x size, rescale 1/255, mean = std = 0.5."""
    try:  # transformers 5: the PIL backend class (torchvision is optional)
        from transformers import ViTImageProcessorPil as cls  # type: ignore[attr-defined]
    except ImportError:  # transformers 4
        from transformers import ViTImageProcessor as cls
    from transformers.image_utils import PILImageResampling

    return cls(
        do_resize=True,
        size={"height": size, "width": size},
        resample=PILImageResampling.BILINEAR,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


def init_model(config, kind: str, seed: int | None):
    """Randomly initialised backbone; with ``seed`` the global RNG is left untouched."""
    from .hub import model_from_config

    return seeded(lambda: model_from_config(config, kind), seed)


def seeded(build: Callable[[], T], seed: int | None) -> T:
    """``build()`` (which draws random weights) from ``seed`` without touching the global RNG; with None, from
    the global RNG."""
    if seed is None:
        return build()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return build()
