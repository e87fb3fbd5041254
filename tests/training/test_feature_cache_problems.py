"""cached_features: unreadable images are encoded as missing and their reasons kept in the cache (issue 4)."""

import json
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fluid.encoders import FeatureCache, build_image_encoder, build_text_encoder
from fluid.training.features import _LazyImages, cached_features

CORPUS = ["red shirt", "blue dress with long sleeves", "green scarf"] * 4


@pytest.fixture(scope="module")
def network():
    """The parts of a MultimodalNetwork that cached_features reads: two frozen tiny encoders, a last-layer head."""
    text = build_text_encoder("tiny", corpus=CORPUS, freeze=True, seed=0)
    image = build_image_encoder("tiny", freeze=True, seed=0)
    return SimpleNamespace(encoder_layers=1, text_encoder=text, image_encoder=image)


@pytest.fixture()
def frame(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    for i, colour in enumerate([(220, 30, 30), (30, 30, 220), (30, 200, 30)]):
        Image.new("RGB", (24, 24), colour).save(root / f"ok{i}.png")
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8 this is not a jpeg " * 8)
    cells = ["ok0.png", "corrupt.jpg", None, "gone.jpg", "ok1.png", "ok2.png"]
    texts = ["red shirt", "blue dress", None, "green scarf", "red shirt", ""]
    return pd.DataFrame({"text": texts, "image": cells}), root


CORRUPT = re.compile(r"^image: unreadable file .*corrupt\.jpg \(cannot identify image file")
GONE = re.compile(r"^image: missing file .*gone\.jpg \(no such file\)$")


def _check(features):
    image = features["image"]
    assert sorted(image.problems) == [1, 3]
    assert CORRUPT.match(image.problems[1]) and GONE.match(image.problems[3])
    present = [bool(image[i][1].numel()) for i in range(len(image))]
    assert present == [True, False, False, False, True, True]  # row 2 has no image: missing, not a problem
    assert features["text"].problems == {}


@pytest.mark.parametrize("workers", [0, 2])
def test_unreadable_images_are_reported_and_reported_again_on_a_hit(tmp_path, network, frame, workers):
    data, root = frame
    cache = FeatureCache(tmp_path / "cache")
    _check(cached_features(network, data, root, cache, batch_size=4, progress=False, workers=workers))
    shards = sorted(p.name for p in (tmp_path / "cache").rglob("shard-*"))
    again = cached_features(network, data, root, cache, batch_size=4, progress=False, workers=workers)
    assert sorted(p.name for p in (tmp_path / "cache").rglob("shard-*")) == shards  # a hit
    _check(again)
    reordered = cached_features(network, data.iloc[::-1].reset_index(drop=True), root, cache, progress=False)
    assert sorted(reordered["image"].problems) == [2, 4]  # positions follow the frame's order
    [image_index] = [json.loads(p.read_text()) for p in (tmp_path / "cache").rglob("index.json")
                     if json.loads(p.read_text())["kind"] == "image"]
    assert sorted(image_index["problems"].values()) == sorted(again["image"].problems.values())


def test_lazy_images_keep_none_for_a_failed_image_and_say_why(frame):
    data, root = frame
    images = _LazyImages(data["image"].tolist(), root)
    assert images[1] is None and images[3] is None and images[2] is None
    assert images[0].size == (24, 24)
    assert images.fetch(2) == (None, None) and images.fetch(0)[1] is None
    image, problem = images.fetch(1)
    assert image is None and (problem.modality, problem.reason) == ("image", "unreadable")
    assert CORRUPT.match(str(problem))
    view = images.estimate_view()  # sizing a build does not decode: cells, None where empty
    assert view == ["ok0.png", "corrupt.jpg", None, "gone.jpg", "ok1.png", "ok2.png"]


def test_workers_and_single_process_write_the_same_features(tmp_path, network, frame):
    data, root = frame
    out = {w: cached_features(network, data, root, FeatureCache(tmp_path / f"w{w}"), batch_size=2, progress=False,
                              workers=w) for w in (0, 2)}
    for modality in ("text", "image"):
        for i in range(len(data)):
            np.testing.assert_array_equal(out[0][modality][i][0].numpy(), out[2][modality][i][0].numpy())
