"""FeatureCache: hit/miss, invalidation, budget skip, atomic writes."""

import json
import pickle

import numpy as np
import pytest
import torch

from fluid.encoders import FeatureCache, build_image_encoder, build_text_encoder

TEXTS = ["Červené šaty s krajkou", None, "Κόκκινο φόρεμα", "Червена рокля с дантела и дълги ръкави", "a", ""]
IDS = [f"item-{i}" for i in range(len(TEXTS))]


@pytest.fixture(scope="module")
def frozen_text(corpus):
    return build_text_encoder("tiny", corpus=corpus, freeze=True, seed=3)


class CountingForward:
    def __init__(self, enc, monkeypatch, fail_at=None):
        self.calls = 0
        self.fail_at = fail_at
        orig = enc.forward

        def fwd(batch, num_layers=1):
            self.calls += 1
            if self.fail_at is not None and self.calls >= self.fail_at:
                raise RuntimeError("boom")
            return orig(batch, num_layers)

        monkeypatch.setattr(enc, "forward", fwd)


def test_build_matches_encoder_and_collates(tmp_path, frozen_text):
    cache = FeatureCache(tmp_path)
    feats = cache.build(frozen_text, IDS, TEXTS, batch_size=4, progress=False)
    assert len(feats) == len(IDS) and feats.ids == IDS
    live = frozen_text(frozen_text.prepare(TEXTS))
    for i in range(len(TEXTS)):
        tokens, mask = feats[i]
        assert tokens.dtype == torch.float16 and mask.dtype == torch.bool
        n = int(live.mask[i].sum())
        assert tokens.shape == (n, frozen_text.dim) and mask.all()
        torch.testing.assert_close(tokens.float(), live.tokens[i, :n], atol=2e-2, rtol=1e-2)
    out = feats.collate([0, 1, 4])
    lens = [int(live.mask[i].sum()) for i in (0, 1, 4)]
    assert out.tokens.shape == (3, max(lens), frozen_text.dim) and out.tokens.dtype == torch.float32
    assert out.mask.sum(1).tolist() == lens and not out.mask[1].any()
    assert feats.collate([1, 5]).mask.shape == (2, 1)  # all missing: one masked position
    assert feats.index("item-3") == 3
    again = pickle.loads(pickle.dumps(feats))
    assert torch.equal(again[3][0], feats[3][0])


def test_cache_hit_and_partial_miss(tmp_path, frozen_text, monkeypatch):
    cache = FeatureCache(tmp_path)
    first = cache.build(frozen_text, IDS[:3], TEXTS[:3], batch_size=2, progress=False)
    counter = CountingForward(frozen_text, monkeypatch)
    hit = cache.build(frozen_text, IDS[:3], TEXTS[:3], progress=False)
    assert counter.calls == 0 and torch.equal(hit[0][0], first[0][0])
    both = cache.build(frozen_text, IDS, TEXTS, batch_size=100, progress=False)  # only the 3 new ids
    assert counter.calls == 1 and len(both) == len(IDS)
    assert cache.lookup(frozen_text, list(reversed(IDS))).ids == list(reversed(IDS))
    assert cache.lookup(frozen_text, ["unknown"]) is None
    [entry] = cache.entries()
    assert entry["items"] == len(IDS) and entry["kind"] == "text" and entry["bytes"] > 0


def test_invalidation_on_fingerprint_change(tmp_path, corpus, frozen_text, monkeypatch):
    cache = FeatureCache(tmp_path)
    cache.build(frozen_text, IDS, TEXTS, progress=False)
    other_len = build_text_encoder("tiny", corpus=corpus, freeze=True, seed=3, max_length=8)
    other_weights = build_text_encoder("tiny", corpus=corpus, freeze=True, seed=4)
    fps = {cache.fingerprint(e) for e in (frozen_text, other_len, other_weights)}
    assert len(fps) == 3
    assert cache.lookup(other_len, IDS) is None and cache.lookup(other_weights, IDS) is None
    counter = CountingForward(other_len, monkeypatch)
    feats = cache.build(other_len, IDS, TEXTS, progress=False)
    assert counter.calls == 1 and feats[3][0].shape[0] == 8
    assert len(cache.entries()) == 2


def test_budget_skip(tmp_path, frozen_text, capsys):
    cache = FeatureCache(tmp_path / "c", budget_bytes=1000)
    est = FeatureCache.estimate_bytes(len(IDS), 5.0, frozen_text.dim)
    assert est == len(IDS) * 5 * frozen_text.dim * 2 + 9 * len(IDS) + 8
    assert cache.build(frozen_text, IDS, TEXTS, progress=True) is None
    err = capsys.readouterr().err
    assert "estimated" in err and "skipped" in err and "budget" in err
    assert not any((tmp_path / "c").rglob("shard-*"))


def payload_bytes(shard) -> int:
    """Bytes of a shard's arrays, without the .npy headers and index.json: what estimate_bytes counts."""
    arrays = [np.load(shard / name, allow_pickle=False) for name in ("offsets.npy", "present.npy")]
    return (shard / "tokens.f16").stat().st_size + sum(a.nbytes for a in arrays)


def test_text_estimate_is_exact_and_tokenises_once(tmp_path, frozen_text, monkeypatch, capsys):
    monkeypatch.setattr("fluid.encoders.cache.ESTIMATE_SAMPLE", 2)  # a sample would now skip 2 of every 3 items
    texts = TEXTS + ["x " * 30, "Rochie roșie de seară din dantelă, mărimea M"]
    ids = IDS + ["item-6", "item-3"]  # item-3 twice: encoded (and counted) once
    root = tmp_path / "c"
    FeatureCache(root).build(frozen_text, ids[:2], texts[:2], progress=False)  # already cached: not counted
    todo = [2, 3, 4, 5, 6]
    lengths = frozen_text.lengths(texts)
    exact = sum(lengths[k] for k in todo) * frozen_text.dim * 2 + 9 * len(todo) + 8
    calls = {"lengths": [], "estimate_tokens": 0}
    real_lengths = frozen_text.lengths

    def counting_lengths(items):
        calls["lengths"].append(len(items))
        return real_lengths(items)

    def no_sample(items):
        calls["estimate_tokens"] += 1
        raise AssertionError("the token counts are known: no sample is tokenised")

    monkeypatch.setattr(frozen_text, "lengths", counting_lengths)
    monkeypatch.setattr(frozen_text, "estimate_tokens", no_sample)
    assert FeatureCache(root, budget_bytes=exact - 1).build(frozen_text, ids, texts, progress=False) is None
    assert "skipped" in capsys.readouterr().err and len(list(root.rglob("shard-*"))) == 1
    assert calls == {"lengths": [len(todo)], "estimate_tokens": 0}  # one tokenisation for order and size
    feats = FeatureCache(root, budget_bytes=exact).build(frozen_text, ids, texts, progress=True)
    assert feats is not None and feats.ids == ids
    assert "estimated" in capsys.readouterr().err
    [new_shard] = [s for s in root.rglob("shard-*") if len(json.loads((s / "index.json").read_text())["ids"]) == 5]
    assert payload_bytes(new_shard) == exact


def test_atomic_write_on_failure(tmp_path, frozen_text, monkeypatch):
    cache = FeatureCache(tmp_path)
    CountingForward(frozen_text, monkeypatch, fail_at=2)
    with pytest.raises(RuntimeError, match="boom"):
        cache.build(frozen_text, IDS, TEXTS, batch_size=2, progress=False)
    assert not list(tmp_path.rglob("shard-*")) and not list(tmp_path.rglob(".tmp-*"))
    assert cache.lookup(frozen_text, IDS) is None


def test_successful_build_leaves_no_temp(tmp_path, frozen_text):
    FeatureCache(tmp_path).build(frozen_text, IDS, TEXTS, progress=False)
    assert not list(tmp_path.rglob(".tmp-*")) and not list(tmp_path.rglob("*.tmp"))
    assert len(list(tmp_path.rglob("index.json"))) == 1


def test_image_cache_and_trainable_refused(tmp_path, images):
    enc = build_image_encoder("tiny", freeze=True, seed=0)
    feats = FeatureCache(tmp_path).build(enc, ["a", "b", "c"], [images[0], None, images[1]], progress=False)
    assert feats[0][0].shape == (64, 128) and feats[1][0].shape == (0, 128)
    with pytest.raises(ValueError, match="frozen"):
        FeatureCache(tmp_path).build(build_image_encoder("tiny"), ["a"], [images[0]], progress=False)


def test_progress_bar_builds_the_same_cache_and_reports_on_stderr(tmp_path, frozen_text, capsys):
    quiet = FeatureCache(tmp_path / "quiet").build(frozen_text, IDS, TEXTS, batch_size=2, progress=False)
    shown = FeatureCache(tmp_path / "shown").build(frozen_text, IDS, TEXTS, batch_size=2, progress=True)
    for a, b in zip(quiet.collate(list(range(len(IDS)))), shown.collate(list(range(len(IDS))))):
        if isinstance(a, torch.Tensor):
            torch.testing.assert_close(a, b)
    err = capsys.readouterr().err
    assert "items to encode" in err  # the estimate line; the bar itself is transient
