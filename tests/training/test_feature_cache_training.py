"""The feature cache wired into training: frozen encoders are encoded once, trainable ones never cached."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from fluid import Classifier
from fluid.config import SMOKE_TEST_OVERRIDES
from fluid.encoders import FeatureCache, LengthBucketSampler
from fluid.training.features import cache_root, item_keys
from fluid.training.network import Collator
from PIL import Image

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}


@pytest.fixture()
def catalogue(tmp_path):
    rows = []
    for i in range(48):
        colour = list(COLOURS)[i % 3]
        path = tmp_path / f"p{i}.png"
        Image.new("RGB", (24, 24), COLOURS[colour]).save(path)
        rows.append({"text": f"{colour} shirt {'long description ' * (i % 5)}", "image": str(path),
                     "label": colour})
    rows[5]["image"] = None
    return pd.DataFrame(rows)


def _frozen(tmp_path, name, cache, **extra):
    params = copy.deepcopy(SMOKE_TEST_OVERRIDES) | {"epochs": 1, "freeze": True, "feature_cache": str(cache)}
    return Classifier(path=str(tmp_path / name), **(params | extra))


def _shards(cache):
    return sorted(p.name for p in cache.rglob("shard-*"))


def test_frozen_encoders_are_cached_once_and_reused(tmp_path, catalogue):
    cache = tmp_path / "cache"
    first = _frozen(tmp_path, "a", cache).fit(catalogue, progress=False)
    entries = FeatureCache(cache).entries()
    assert sorted(e["kind"] for e in entries) == ["image", "text"]
    texts = catalogue["text"].nunique()
    assert {e["kind"]: e["items"] for e in entries}["text"] == texts  # equal texts are encoded once
    shards = _shards(cache)
    second = _frozen(tmp_path, "b", cache).fit(catalogue, progress=False)
    assert _shards(cache) == shards  # a hit: nothing new written
    # same seed, same data, same cached features -> the same model
    np.testing.assert_allclose(first.predict_proba(catalogue).to_numpy(), second.predict_proba(catalogue).to_numpy(),
                               atol=1e-6)


@pytest.mark.parametrize("cache", ["cache", "off"])
def test_images_that_fail_to_decode_in_training_are_counted_in_bad_rows(tmp_path, catalogue, cache):
    """With the cache the build decodes the images (and a later hit reports the same); without it the
    training loop does. Either way bad_rows.json counts each broken image once, in its split."""
    import json

    broken = {7: b"not an image at all", 20: b""}
    for row, payload in broken.items():
        (tmp_path / f"p{row}.png").write_bytes(payload)
    catalogue = catalogue.set_axis([f"row{i}" for i in range(len(catalogue))])
    cache_dir = tmp_path / cache if cache == "cache" else "off"
    for run in ("first", "second"):
        clf = _frozen(tmp_path, f"{cache}-{run}", cache_dir, epochs=2).fit(catalogue, progress=False)
        found = json.loads((clf.run_dir / "bad_rows.json").read_text())["unreadable_images"]
        examples = {e["row"]: e["problem"] for stage in ("train", "val") for e in found[stage]["examples"]}
        assert found["train"]["count"] + found["val"]["count"] == 2, (run, found)
        assert set(examples) == {"row7", "row20"}
        assert "p7.png" in examples["row7"] and "0x" not in examples["row7"]
        assert "empty file" in examples["row20"]
        assert clf.metrics_["n_unreadable_image"] == {s: found[s]["count"] for s in ("train", "val")}


def test_cached_training_matches_uncached_up_to_fp16(tmp_path, catalogue):
    # without bucketing both see the same batches (bucketing needs the text encoder to run)
    cached = _frozen(tmp_path, "cached", tmp_path / "cache", length_bucketing=False).fit(catalogue, progress=False)
    uncached = _frozen(tmp_path, "uncached", "off", length_bucketing=False).fit(catalogue, progress=False)
    assert not (tmp_path / "uncached-cache").exists()
    a, b = cached.predict_proba(catalogue).to_numpy(), uncached.predict_proba(catalogue).to_numpy()
    assert np.abs(a - b).max() < 5e-3  # features stored in fp16, otherwise the same computation


def test_trainable_encoders_and_multi_layer_heads_are_not_cached(tmp_path, catalogue):
    cache = tmp_path / "cache"
    params = copy.deepcopy(SMOKE_TEST_OVERRIDES) | {"epochs": 1, "feature_cache": str(cache)}
    Classifier(path=str(tmp_path / "trainable"), **params).fit(catalogue, progress=False)  # tiny: trained
    assert not _shards(cache)
    molt = _frozen(tmp_path, "molt", cache, model="molt",
                   head={"hidden_dim": 32, "num_heads": 2, "encoder_layers": 2})
    molt.fit(catalogue, progress=False)
    assert not _shards(cache)


def test_content_keys_tell_different_files_apart(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.new("RGB", (4, 4), (1, 2, 3)).save(a)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(b)
    frame = pd.DataFrame({"text": ["x", "x", None, "  "], "image": [str(a), str(b), None, str(tmp_path / "gone.png")]})
    texts = item_keys(frame, "text")
    assert texts[0] == texts[1] and texts[2] == texts[3] == "text:none"
    images = item_keys(frame, "image")
    assert len(set(images)) == 4 and images[2] == "image:none" and images[3].startswith("image:unreadable")


def test_cache_root_settings(monkeypatch, tmp_path):
    assert cache_root("off") is None
    assert cache_root(str(tmp_path)) == tmp_path
    monkeypatch.setenv("FLUID_CACHE_DIR", str(tmp_path / "env"))
    assert cache_root("auto") == tmp_path / "env"
    monkeypatch.delenv("FLUID_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root("auto") == tmp_path / "xdg" / "fluid" / "features"


def test_collator_serves_cached_features_and_drops_them():
    class Features:
        def collate(self, indices):
            from fluid.encoders import EncoderOutput

            return EncoderOutput(tokens=torch.ones(len(indices), 3, 2), mask=torch.ones(len(indices), 3, dtype=bool),
                                 layers=None)

    samples = [{"index": i, "text": "t", "image": None, "label": 0} for i in range(2)]
    batch = Collator(None, None, features={"image": Features()})(samples)
    assert batch["image"] is None and batch["image_features"].tokens.shape == (2, 3, 2)
    assert batch["image_features"].mask.all()
    dropped = Collator(None, None, drop_modality="image", features={"image": Features()})(samples)
    assert not dropped["image_features"].mask.any()


def test_length_buckets_reshuffle_when_lightning_sets_the_epoch():
    from lightning.fabric.utilities.data import _set_sampler_epoch
    from torch.utils.data import DataLoader

    sampler = LengthBucketSampler(list(range(64)), batch_size=8, shuffle=True, seed=0, bucket_batches=2)
    loader = DataLoader(list(range(64)), batch_sampler=sampler)
    _set_sampler_epoch(loader, 0)
    epoch0 = list(sampler)
    _set_sampler_epoch(loader, 1)
    epoch1 = list(sampler)
    assert epoch0 != epoch1
    early = iter(sampler)  # Lightning makes the next epoch's iterator before it sets the epoch when resuming
    _set_sampler_epoch(loader, 0)
    assert list(early) == epoch0
    for batch in epoch0:  # a batch comes from one bucket of 16 consecutive-in-shuffle items, sorted by length
        assert batch == sorted(batch, reverse=True)
