"""Image encoder: processor-based preprocessing, masks, missing images."""

import pytest
import torch
from PIL import Image

from fluid.encoders import build_image_encoder


def test_tiny_image_shapes_and_masks(tiny_image, images):
    batch = tiny_image.prepare([images[0], None, images[1]])
    assert batch["pixel_values"].shape == (3, 3, 64, 64)
    assert batch["present"].tolist() == [True, False, True]
    assert torch.all(batch["pixel_values"][1] == 0)
    out = tiny_image(batch)
    assert out.tokens.shape == (3, 64, 128) and tiny_image.dim == 128 and tiny_image.num_tokens == 64
    assert out.mask[0].all() and out.mask[2].all() and not out.mask[1].any()
    assert torch.all(out.tokens[1] == 0) and torch.isfinite(out.tokens).all()


def test_processor_normalisation(tiny_image):
    """Normalisation comes from the encoder's processor: mean = std = 0.5 for tiny, so white -> 1, black -> -1."""
    batch = tiny_image.prepare([Image.new("RGB", (10, 10), (255, 255, 255)), Image.new("RGB", (10, 10))])
    torch.testing.assert_close(batch["pixel_values"][0], torch.ones(3, 64, 64))
    torch.testing.assert_close(batch["pixel_values"][1], -torch.ones(3, 64, 64))


def test_missing_image_does_not_change_others(tiny_image, images):
    alone = tiny_image(tiny_image.prepare([images[0]]))
    mixed = tiny_image(tiny_image.prepare([None, images[0]]))
    torch.testing.assert_close(mixed.tokens[1], alone.tokens[0], atol=1e-5, rtol=1e-5)


def test_num_layers_image(tiny_image, images):
    out = tiny_image(tiny_image.prepare(images), num_layers=2)
    assert len(out.layers) == 2 and out.layers[0].shape == (3, 64, 128)


def test_tiny_image_overrides():
    enc = build_image_encoder("tiny", image_size=32, hidden_size=64, widths=[8, 8, 16])
    assert enc.pixel_shape == (3, 32, 32) and enc.dim == 64 and enc.num_tokens == 16
    assert [m.out_channels for m in enc.model.modules() if isinstance(m, torch.nn.Conv2d)] == [8, 8, 16, 64]


def test_tiny_image_is_a_trainable_convnet_without_class_token():
    enc = build_image_encoder("tiny", seed=0)
    assert enc.is_preset and enc.trainable and not enc.has_cls_token and enc.num_hidden_layers == 3
    with pytest.raises(TypeError, match=r"unknown tiny image preset option\(s\) \['patch_size'\].*tiny-vit"):
        build_image_encoder("tiny", patch_size=8)
    with pytest.raises(ValueError, match="multiple of 8"):
        build_image_encoder("tiny", image_size=60)


def test_tiny_image_seed_fixes_the_weights_without_touching_the_global_rng():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b = build_image_encoder("tiny", seed=3), build_image_encoder("tiny", seed=3)
    assert torch.rand(1) == before
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = build_image_encoder("tiny", seed=4)
    assert not torch.equal(a.model.stem[0].weight, c.model.stem[0].weight)


def test_tiny_vit_preset_overrides():
    enc = build_image_encoder("tiny-vit", image_size=32, patch_size=16, hidden_size=64, layers=1, heads=2)
    assert enc.pixel_shape == (3, 32, 32) and enc.dim == 64 and enc.num_tokens == 5
    assert enc.is_preset and enc.trainable and enc.has_cls_token


def test_rejects_non_images(tiny_image):
    with pytest.raises(TypeError, match="PIL"):
        tiny_image.prepare(["/path/to/image.jpg"])


# ------------------------------------------------------------------ normalisation deferred to the encoder's device
def _noisy(size, seed):
    g = torch.Generator().manual_seed(seed)
    return Image.fromarray(torch.randint(0, 256, (size[1], size[0], 3), generator=g, dtype=torch.uint8).numpy())


def test_batches_carry_uint8_pixels_that_normalise_to_the_processors_own_output(tiny_image):
    """The DataLoader-side preprocessor resizes only; its uint8 pixels, normalised, are the processor's output."""
    images = [_noisy((91, 57), 1), None, _noisy((30, 200), 2), Image.new("RGB", (5, 5), (255, 0, 128))]
    batch = tiny_image.preprocessor(images)
    assert set(batch) == {"pixels", "present"} and batch["pixels"].dtype == torch.uint8
    assert batch["pixels"].shape == (4, 3, 64, 64) and batch["present"].tolist() == [True, False, True, True]
    assert not batch["pixels"][1].any()
    real = [images[0], images[2], images[3]]
    own = torch.as_tensor(tiny_image.processor(images=real, return_tensors="pt")["pixel_values"])
    pixel_values = tiny_image.preprocessor.pixel_values(batch)
    torch.testing.assert_close(pixel_values[[0, 2, 3]], own, rtol=0, atol=1e-6)
    assert torch.all(pixel_values[1] == 0)  # a missing image is zeros after normalisation, as before
    torch.testing.assert_close(tiny_image.prepare(images)["pixel_values"], pixel_values, rtol=0, atol=0)


def test_forward_takes_uint8_pixels_or_float_pixel_values_alike(tiny_image, images):
    tiny_image.eval()
    with torch.inference_mode():
        from_pixels = tiny_image(tiny_image.preprocessor([images[0], None, images[1]]), num_layers=2)
        from_values = tiny_image(tiny_image.prepare([images[0], None, images[1]]), num_layers=2)
    torch.testing.assert_close(from_pixels.tokens, from_values.tokens, rtol=0, atol=0)
    assert torch.equal(from_pixels.mask, from_values.mask)
    assert not from_pixels.tokens[1].any()


def test_a_processor_that_does_not_end_in_rescale_and_normalise_keeps_float_pixel_values():
    from fluid.encoders.image import ImagePreprocessor

    class Squash:
        """Resizes in float (values stop being whole numbers): deferring would change the pixels."""

        do_rescale, rescale_factor, do_normalize, image_mean, image_std = True, 1 / 255, False, None, None

        def __call__(self, images, return_tensors="pt", do_rescale=True, do_normalize=True):
            pixels = torch.stack([torch.as_tensor(list(im.resize((8, 8)).getdata()), dtype=torch.float32)
                                  .T.reshape(3, 8, 8) for im in images])
            return {"pixel_values": pixels.sqrt() if do_rescale else pixels.sqrt() + 0.5}

    pre = ImagePreprocessor(Squash())
    assert not pre.deferred
    batch = pre([_noisy((20, 20), 3), None])
    assert set(batch) == {"pixel_values", "present"} and batch["pixel_values"].dtype == torch.float32
    assert pre.pixel_values(batch) is batch["pixel_values"]
    with pytest.raises(ValueError, match="does not defer"):
        pre.pixel_values({"pixels": torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "present": torch.ones(1).bool()})


def test_the_efficientnet_style_transform_is_not_deferred_and_a_vit_processor_is():
    from fluid.encoders.image import ImagePreprocessor
    from fluid.encoders.presets import make_vit_processor

    class NoSwitches:
        def __call__(self, images, return_tensors="pt"):
            return {"pixel_values": torch.zeros(len(images), 3, 4, 4)}

    assert not ImagePreprocessor(NoSwitches()).deferred
    vit = ImagePreprocessor(make_vit_processor(224))
    assert vit.deferred and vit.normalisation == (1 / 255, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def test_a_fixed_size_resize_calls_pil_directly_and_gives_the_processors_pixels(tiny_image):
    """ViT-style processors (resize to H x W, nothing else before the rescale) skip the processor's per-image
    conversions; the uint8 pixels are the processor's own, bit for bit, for any aspect ratio."""
    pre = tiny_image.preprocessor
    assert pre.plain_resize == (64, 64, int(tiny_image.processor.resample))
    images = [_noisy(size, seed) for seed, size in enumerate([(96, 128), (228, 298), (7, 300), (640, 33), (64, 64)])]
    assert torch.equal(pre(images)["pixels"], pre._resized_by_processor(images))


def test_a_cropping_processor_is_deferred_without_the_plain_resize():
    transformers = pytest.importorskip("transformers")
    clip = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    from fluid.encoders.image import ImagePreprocessor

    processor = clip(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32})
    pre = ImagePreprocessor(processor)
    assert pre.deferred and pre.plain_resize is None and pre.pixel_shape == (3, 32, 32)
    images = [_noisy((90, 50), 4), None, _noisy((33, 77), 5)]
    own = torch.as_tensor(processor(images=[images[0], images[2]], return_tensors="pt")["pixel_values"])
    values = pre.pixel_values(pre(images))
    torch.testing.assert_close(values[[0, 2]], own, rtol=0, atol=1e-6)
    assert not values[1].any()


@pytest.mark.parametrize("ask_host", [True, False])
def test_missing_images_are_zeroed_with_or_without_asking_the_host(ask_host):
    from fluid.encoders.image import _zero_missing

    values = torch.randn(4, 3, 5, 5)
    expected = values.clone()
    expected[[1, 3]] = 0
    present = torch.tensor([True, False, True, False])
    torch.testing.assert_close(_zero_missing(values.clone(), present, ask_host=ask_host), expected, rtol=0, atol=0)
    full = torch.ones(4, dtype=torch.bool)
    torch.testing.assert_close(_zero_missing(values.clone(), full, ask_host=ask_host), values, rtol=0, atol=0)
