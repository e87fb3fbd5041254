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
    assert out.tokens.shape == (3, 65, 128) and tiny_image.dim == 128 and tiny_image.num_tokens == 65
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
    assert len(out.layers) == 2 and out.layers[0].shape == (3, 65, 128)


def test_tiny_image_overrides():
    enc = build_image_encoder("tiny", image_size=32, patch_size=16, hidden_size=64, layers=1, heads=2)
    assert enc.pixel_shape == (3, 32, 32) and enc.dim == 64 and enc.num_tokens == 5


def test_rejects_non_images(tiny_image):
    with pytest.raises(TypeError, match="PIL"):
        tiny_image.prepare(["/path/to/image.jpg"])
