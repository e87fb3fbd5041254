"""fluid.data.corruptions: deterministic per item, severity-ordered, each touching only its own modality."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fluid.data.corruptions import CORRUPTIONS, Corruption, parse_corruption
from fluid.data.dataset import CatalogueDataset

TEXT = "Brand red cotton t-shirt\nsoft summer shirt with short sleeves made of organic cotton in Portugal"
IMAGE_NAMES = [n for n, (m, _) in CORRUPTIONS.items() if m == "image"]
TEXT_NAMES = [n for n, (m, _) in CORRUPTIONS.items() if m == "text"]


def striped(width=120, height=90) -> Image.Image:
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, :] = (220, 40, 40)
    pixels[:, ::6] = (20, 20, 20)
    return Image.fromarray(pixels, "RGB")


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, float) - np.asarray(b, float)).mean())


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_same_item_same_result_other_item_or_seed_may_differ(name):
    value = striped() if name in IMAGE_NAMES else TEXT
    first, again = Corruption(name, 3, seed=1)(value, "item-7"), Corruption(name, 3, seed=1)(value, "item-7")
    if name in IMAGE_NAMES:
        assert np.array_equal(np.asarray(first), np.asarray(again))
        assert first.size == value.size and first.mode == "RGB"
        assert mean_abs_diff(first, value) > 1.0  # it does change the image
    else:
        assert first == again and first != " ".join(TEXT.split())
    if name in ("image-noise", "image-occlusion", "text-shuffle", "text-typos", "text-drop-words"):
        others = [Corruption(name, 3, seed=s)(value, k) for s, k in ((1, "item-8"), (2, "item-7"))]
        for other in others:
            if name in IMAGE_NAMES:
                assert not np.array_equal(np.asarray(other), np.asarray(first))
            else:
                assert other != first


@pytest.mark.parametrize("name", ["image-blur", "image-noise", "image-jpeg", "image-occlusion"])
def test_image_damage_grows_with_severity(name):
    image = striped()
    damage = [mean_abs_diff(Corruption(name, s)(image, "x"), image) for s in (1, 3, 5)]
    assert damage[0] < damage[1] < damage[2], damage


@pytest.mark.parametrize("severity, share", [(1, 0.10), (3, 0.30), (5, 0.60)])
def test_occlusion_covers_its_share_of_the_image(severity, share):
    image = Image.new("RGB", (200, 100), (250, 10, 10))
    out = np.asarray(Corruption("image-occlusion", severity)(image, "k"))
    grey = (out == 128).all(axis=2).mean()
    assert grey == pytest.approx(share, abs=0.02)


def test_noise_has_its_sigma():
    image = Image.new("RGB", (200, 200), (128, 128, 128))
    out = np.asarray(Corruption("image-noise", 2)(image, "k"), float)
    assert out.std() == pytest.approx(16.0, rel=0.05)


def test_text_corruptions_by_formula():
    words = TEXT.split()
    n = len(words)
    for severity, share in ((1, 0.8), (3, 0.4), (5, 0.1)):
        kept = Corruption("text-truncate", severity)(TEXT, "k").split()
        assert kept == words[: max(1, int(np.ceil(share * n)))]
    shuffled = Corruption("text-shuffle", 5)(TEXT, "k").split()
    assert sorted(shuffled) == sorted(words) and shuffled != words
    dropped = Corruption("text-drop-words", 5)(TEXT, "k").split()
    assert 1 <= len(dropped) < n and all(w in words for w in dropped)
    assert Corruption("text-drop-words", 5)("single", "k") == "single"  # at least one word survives
    mild, severe = (Corruption("text-typos", s)(TEXT * 20, "k") for s in (1, 5))
    changed = [sum(a != b for a, b in zip(t, " ".join((TEXT * 20).split()))) for t in (mild, severe)]
    assert changed[0] < changed[1]


def test_parse_and_errors():
    assert parse_corruption("image-blur") == Corruption("image-blur", 3)
    assert parse_corruption("text-typos:5", seed=4) == Corruption("text-typos", 5, 4)
    assert parse_corruption("text-typos:5").label == "text-typos:5"
    with pytest.raises(ValueError, match="unknown corruption 'image-blurry'; available: image-blur"):
        parse_corruption("image-blurry:2")
    with pytest.raises(ValueError, match="severity must be one of"):
        parse_corruption("image-blur:9")
    with pytest.raises(ValueError, match="must be an integer 1-5"):
        parse_corruption("image-blur:high")
    assert Corruption("image-blur")(None, "k") is None  # a missing modality stays missing


def test_dataset_corrupts_only_its_modality():
    frame = pd.DataFrame({"id": ["a", "b"], "text": [TEXT, TEXT], "image": [striped(), striped()],
                          "label": ["x", "y"]})
    clean = CatalogueDataset(frame)
    blurred = CatalogueDataset(frame, corruption=Corruption("image-blur", 4))
    truncated = CatalogueDataset(frame, corruption=Corruption("text-truncate", 5))
    assert blurred[0]["text"] == clean[0]["text"]
    assert mean_abs_diff(blurred[0]["image"], clean[0]["image"]) > 5
    assert truncated[0]["text"] == "Brand red" and np.array_equal(np.asarray(truncated[0]["image"]),
                                                                   np.asarray(clean[0]["image"]))


def test_report_robustness_table_shows_the_drop_against_full_input():
    from fluid.training.report import robustness_table

    full = {"accuracy": 0.80, "macro_f1": 0.50, "n_items": 100, "drop_modality": None, "corruption": None}
    evaluations = {
        "validation": {"accuracy": 0.9, "macro_f1": 0.9, "n_items": 10},
        "test": full,
        "test-without-image": {**full, "accuracy": 0.55, "macro_f1": 0.30, "drop_modality": "image"},
        "test-corrupt-text-typos-4": {**full, "accuracy": 0.805, "macro_f1": 0.45, "corruption": "text-typos:4"},
    }
    lines = robustness_table(evaluations).splitlines()
    assert lines[2] == "| full input (`test`) | 80.0 | 50.0 | | | 100 |"
    assert lines[3] == "| without image (`test-without-image`) | 55.0 | 30.0 | -25.0 | -20.0 | 100 |"
    assert lines[4] == "| corrupted text-typos:4 (`test-corrupt-text-typos-4`) | 80.5 | 45.0 | +0.5 | -5.0 | 100 |"
    assert len(lines) == 5  # validation is not a degraded input
    assert robustness_table({"test": full}) == ""  # nothing to compare
