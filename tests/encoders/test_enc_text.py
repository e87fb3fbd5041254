"""Text encoder: dynamic padding, masks, missing texts, num_layers, tiny tokenizer."""

import pytest
import torch

from fluid.encoders import build_text_encoder, train_tiny_tokenizer


def test_dynamic_padding_to_longest(tiny_text):
    texts = ["Červené šaty", "Κόκκινο φόρεμα με δαντέλα και μακριά μανίκια", "dress"]
    lengths = tiny_text.lengths(texts)
    batch = tiny_text.prepare(texts)
    assert batch["input_ids"].shape == (3, max(lengths))
    assert max(lengths) < 64
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert batch["present"].tolist() == [True, True, True]
    assert set(batch) >= {"input_ids", "attention_mask", "present"}


def test_truncation_at_max_length(corpus):
    enc = build_text_encoder("tiny", corpus=corpus, max_length=16, seed=0)
    batch = enc.prepare([" ".join(corpus[:5]), "short"])
    assert batch["input_ids"].shape[1] == 16
    assert enc.lengths([" ".join(corpus[:5])]) == [16]


def test_mask_and_padding_invariance(tiny_text):
    short, long = "Piros ruha", "Червена рокля с дантела и дълги ръкави, Červené šaty s krajkou"
    alone = tiny_text(tiny_text.prepare([short]))
    both = tiny_text(tiny_text.prepare([short, long]))
    n = int(alone.mask[0].sum())
    assert both.mask.shape[1] > n
    assert both.mask[0, :n].all() and not both.mask[0, n:].any()
    torch.testing.assert_close(both.tokens[0, :n], alone.tokens[0, :n], atol=1e-5, rtol=1e-5)
    assert torch.all(both.tokens[0, n:] == 0)


def test_missing_text_rows(tiny_text):
    texts = ["Rochie roșie", None, "", "   ", "Punane kleit"]
    batch = tiny_text.prepare(texts)
    assert batch["present"].tolist() == [True, False, False, False, True]
    assert not batch["attention_mask"][1:4].any()
    assert (batch["input_ids"][1:4, :2] != tiny_text.tokenizer.pad_token_id).all()  # [CLS] [SEP] kept
    out = tiny_text(batch)
    assert torch.isfinite(out.tokens).all()
    assert not out.mask[1:4].any() and out.mask[0].any() and out.mask[4].any()
    assert torch.all(out.tokens[1:4] == 0)
    ref = tiny_text(tiny_text.prepare(["Rochie roșie"]))
    n = int(ref.mask[0].sum())
    torch.testing.assert_close(out.tokens[0, :n], ref.tokens[0, :n], atol=1e-5, rtol=1e-5)


def test_all_missing_batch(tiny_text):
    out = tiny_text(tiny_text.prepare([None, None]))
    assert not out.mask.any() and torch.isfinite(out.tokens).all()


def test_num_layers(tiny_text):
    batch = tiny_text.prepare(["Raudona suknelė", None])
    out1 = tiny_text(batch)
    assert out1.layers is None
    out = tiny_text(batch, num_layers=3)  # 2 blocks + embeddings
    assert len(out.layers) == 3 and all(h.shape == out.tokens.shape for h in out.layers)
    torch.testing.assert_close(out.layers[-1], out.tokens)
    assert not out.layers[0][1].any()  # missing row masked in every layer
    with pytest.raises(ValueError, match="num_layers"):
        tiny_text(batch, num_layers=4)


def test_tiny_tokenizer_multilingual_no_unk(tiny_text):
    tok = tiny_text.tokenizer
    unseen = ["Ψάρι θάλασσας", "Щастливо жълто", "Žluťoučký kůň úpěl ďábelské ódy", "Ölçü ğüşiöç", "Ąžuolas ėglė",
              "Şapcă țesută", "Őszi gyümölcs"]
    for text in unseen:
        pieces = tok.tokenize(text)
        assert pieces and "[UNK]" not in pieces, (text, pieces)
        assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True).replace(" ", "") == text.replace(" ", "")
    # cased, accents kept
    assert tok.tokenize("Šaty") != tok.tokenize("šaty")
    # trained pieces: corpus words need far fewer pieces than characters
    for word in ("dantela", "Červené", "φόρεμα", "рокля"):
        assert len(tok.tokenize(word)) <= len(word) // 2, word
    assert 1000 < len(tok) <= 6000


def test_tiny_tokenizer_deterministic(corpus):
    a = train_tiny_tokenizer(corpus, vocab_size=3000)
    b = train_tiny_tokenizer(list(corpus), vocab_size=3000)
    assert a.get_vocab() == b.get_vocab()


def test_tiny_tokenizer_and_lengths_read_a_string_column_lazily(tiny_text, corpus):
    """A STRING column read through ColumnCells (what Classifier.fit passes) gives the same tokenizer and
    lengths as the plain list of its texts."""
    import pandas as pd

    from fluid.data.dataset import ColumnCells
    from fluid.data.schema import STRING

    texts = [None, *corpus, "  "]
    cells = ColumnCells(pd.Series(texts, dtype=STRING), "text")
    assert not isinstance(cells, list) and cells[0] is None and cells[-1] is None
    lazy = train_tiny_tokenizer(cells, vocab_size=3000, max_texts=5)
    eager = train_tiny_tokenizer(texts, vocab_size=3000, max_texts=5)
    assert lazy.get_vocab() == eager.get_vocab()
    assert tiny_text.preprocessor.lengths(cells, chunk=4) == tiny_text.preprocessor.lengths(texts)


def test_tiny_tokenizer_learns_from_an_evenly_spaced_sample_of_at_most_max_texts(corpus):
    import numpy as np

    texts = [t for t in corpus if isinstance(t, str) and t.strip()] * 2
    n, sample_size = len(texts), len(texts) // 3
    picked = set(np.linspace(0, n - 1, sample_size).round().astype(int).tolist())  # evenly spaced positions
    assert len(picked) == sample_size and min(picked) == 0 and max(picked) == n - 1
    # a word that occurs only in texts the sample skips never becomes a piece; one in sampled texts does
    skipped = [f"{t} yyxxkept" if i in picked else f"{t} zzqqskipped" for i, t in enumerate(texts)]
    sampled = train_tiny_tokenizer(skipped, vocab_size=3000, max_texts=sample_size)
    everything = train_tiny_tokenizer(skipped, vocab_size=3000, max_texts=None)
    assert "yyxxkept" in sampled.get_vocab() and "zzqqskipped" not in sampled.get_vocab()
    assert "zzqqskipped" in everything.get_vocab()
    # its characters are still registered (as continuations), so the skipped word tokenises without [UNK]
    assert "[UNK]" not in sampled.tokenize("zzqqskipped")
    # the preset's default bound
    from fluid.encoders.presets import TINY_TEXT_TOKENIZER_DEFAULTS

    assert TINY_TEXT_TOKENIZER_DEFAULTS["max_texts"] == 20_000


def test_tiny_overrides(corpus):
    enc = build_text_encoder("tiny", corpus=corpus, hidden_size=64, layers=1, heads=2, intermediate_size=96,
                             vocab_size=2000, lowercase=True)
    assert enc.dim == 64 and enc.num_hidden_layers == 1
    assert enc.tokenizer.tokenize("ŠATY") == enc.tokenizer.tokenize("šaty")
    assert enc.trainable


def test_prepare_is_picklable(tiny_text):
    import pickle

    batch = tiny_text.prepare(["a", None])
    again = pickle.loads(pickle.dumps(batch))
    assert all(torch.equal(again[k], batch[k]) for k in batch)


def test_preprocessor_is_light_and_picklable(tiny_text, tiny_image, images):
    import pickle

    blob = pickle.dumps(tiny_text.preprocessor)
    assert len(blob) < 2_000_000  # the tokenizer only, no weights
    pre = pickle.loads(blob)
    texts = ["Rochie roșie", None]
    assert all(torch.equal(pre(texts)[k], tiny_text.prepare(texts)[k]) for k in pre(texts))
    ipre = pickle.loads(pickle.dumps(tiny_image.preprocessor))
    assert torch.equal(ipre.pixel_values(ipre(images)), tiny_image.prepare(images)["pixel_values"])


def test_lengths_in_chunks_match_one_text_at_a_time(tiny_text, corpus):
    texts = [None, *corpus[:7], "", "   ", " ".join(corpus[:3]) * 40]
    one_by_one = [0 if t is None or not t.strip() else len(tiny_text.prepare([t])["input_ids"][0]) for t in texts]
    assert tiny_text.lengths(texts) == one_by_one
    assert tiny_text.preprocessor.lengths(texts, chunk=3) == one_by_one
    assert max(one_by_one) == tiny_text.preprocessor.max_length  # the long text is truncated
