"""``image_augment`` and ``colour_augment``: a trained image encoder sees its training images mirrored and shifted,
and with their colour channels reordered, at random."""

import pytest
import torch

from fluid.config import RunConfig
from fluid.encoders import build_image_encoder
from fluid.model import build_head
from fluid.training.augment import augment_image_batch, flip_and_shift, permute_colours
from fluid.training.network import MultimodalNetwork


def _reference(image: torch.Tensor, flip: bool, dy: int, dx: int) -> torch.Tensor:
    """One C x H x W image mirrored (when ``flip``) then moved by (dy, dx) with the edge repeated, in plain
    Python loops."""
    c, h, w = image.shape
    src = image.flip(-1) if flip else image
    out = torch.empty_like(image)
    for y in range(h):
        for x in range(w):
            out[:, y, x] = src[:, min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)]
    return out


def test_each_image_is_a_mirrored_and_shifted_copy_of_itself():
    images = torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8)
    out = flip_and_shift(images, 0.25, generator=torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8
    flips = shifts = 0
    for i in range(len(images)):
        matches = [(f, dy, dx) for f in (False, True) for dy in range(-4, 5) for dx in range(-4, 5)
                   if torch.equal(out[i], _reference(images[i], f, dy, dx))]
        assert matches, f"image {i} is not a flip + shift (at most 4 px) of its input"
        flips += matches[0][0]
        shifts += matches[0][1:] != (0, 0)
    assert 0 < flips < len(images) and shifts > len(images) // 2  # random per image, not one draw for all


def test_no_shift_only_flips_and_float_pixels_keep_their_values():
    images = torch.rand(40, 3, 8, 8)
    out = flip_and_shift(images, 0.0)
    for i in range(len(images)):
        assert torch.equal(out[i], images[i]) or torch.equal(out[i], images[i].flip(-1))
    with pytest.raises(ValueError, match="max_shift"):
        flip_and_shift(images, 0.5)
    with pytest.raises(ValueError, match="B x C x H x W"):
        flip_and_shift(images[0], 0.1)


def test_augment_image_batch_leaves_the_input_and_presence_alone():
    batch = {"pixels": torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8), "present": torch.ones(4).bool()}
    before = batch["pixels"].clone()
    out = augment_image_batch(batch, 0.25)
    assert torch.equal(batch["pixels"], before) and out["present"] is batch["present"]
    assert out["pixels"].shape == before.shape


def test_permute_colours_reorders_each_images_channels_at_the_rate():
    images = torch.randint(0, 256, (600, 3, 4, 5), dtype=torch.uint8)
    images[:, 1] = images[:, 0] // 2  # three distinct channels per image, so the order can be read back
    images[:, 2] = images[:, 0] // 2 + 128
    out = permute_colours(images, 0.5, generator=torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == images.dtype
    orders = []
    for i in range(len(images)):
        order = [next(c for c in range(3) if torch.equal(out[i, k], images[i, c])) for k in range(3)]
        assert sorted(order) == [0, 1, 2], f"image {i}: channels are not a reordering of its own"
        orders.append(tuple(order))
    counts = {o: orders.count(o) for o in set(orders)}
    assert len(counts) == 6  # all six orders occur
    # rate 0.5: half the images keep their order, the other half draw one of six (1/6 of those the identity)
    assert 0.5 + 0.5 / 6 - 0.08 < counts[(0, 1, 2)] / len(images) < 0.5 + 0.5 / 6 + 0.08
    assert torch.equal(permute_colours(images, 0.0), images)
    floats = torch.rand(2, 3, 4, 4)
    assert torch.allclose(permute_colours(floats, 1.0).sort(dim=1).values, floats.sort(dim=1).values)
    with pytest.raises(ValueError, match="rate"):
        permute_colours(images, 1.5)
    with pytest.raises(ValueError, match="B x 3 x H x W"):
        permute_colours(images[:, :1], 0.5)


def test_augment_image_batch_applies_only_what_is_switched_on():
    pixels = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    batch = {"pixels": pixels, "present": torch.ones(64).bool()}
    assert torch.equal(augment_image_batch(batch, 0.0, 0.0)["pixels"], pixels)
    coloured = augment_image_batch(batch, 0.0, 1.0)["pixels"]  # no flips or shifts: same values per pixel
    assert torch.equal(coloured.sort(dim=1).values, pixels.sort(dim=1).values)
    assert not torch.equal(coloured, pixels)


def _network(rate, colour=0.0):
    image = build_image_encoder("tiny", seed=0, hidden_size=32, image_size=32, widths=[8, 8, 16])
    head = build_head("image-only", 3, image_dim=image.dim, text_dim=8, hidden_dim=16, num_heads=2,
                      num_queries=2)
    return image, MultimodalNetwork(head, None, image, image_augment=rate, colour_augment=colour)


@pytest.mark.parametrize("rate, colour", [(0.125, 0.0), (0.0, 1.0), (0.125, 0.5)])
def test_the_network_augments_in_training_only_and_not_a_frozen_encoder(monkeypatch, rate, colour):
    import fluid.training.network as network_module

    seen = []
    monkeypatch.setattr(network_module, "augment_image_batch", lambda b, r, c: seen.append((r, c)) or b)
    image, network = _network(rate, colour)
    from PIL import Image

    batch = {"image": image.prepare([Image.new("RGB", (40, 30), (200, 10, 10))] * 2), "text": None}
    network.train()
    network.encode(batch)
    network.eval()
    network.encode(batch)
    assert seen == [(rate, colour)]
    image.requires_grad_(False)
    network.train()
    network.encode(batch)
    assert seen == [(rate, colour)]
    _, off = _network(0.0, 0.0)
    off.train()
    off.encode(batch)
    assert seen == [(rate, colour)]
    with pytest.raises(ValueError, match="image_augment"):
        _network(0.5)
    with pytest.raises(ValueError, match="colour_augment"):
        _network(0.1, 1.5)


def test_auto_recipe_augments_images_where_the_image_encoder_trains():
    from fluid.training.recipe import CatalogueStats, EncoderSetup, resolve

    stats = CatalogueStats.from_labels(["a", "b"] * 100)
    for mode, expected in (("scratch", 0.125), ("fine-tuned", 0.125), ("frozen", 0.0)):
        cfg, recipe = resolve(RunConfig(), stats, EncoderSetup("scratch", mode), {})
        assert cfg.image_augment == expected, mode
        assert any(c.key == "image_augment" and c.reason for c in recipe.choices)
    paper, _ = resolve(RunConfig(recipe="paper"), stats, EncoderSetup("scratch", "scratch"), {})
    assert paper.image_augment == 0.0
    yours, _ = resolve(RunConfig(image_augment=0.2), stats, EncoderSetup("scratch", "scratch"), {})
    assert yours.image_augment == 0.2


def test_colour_augment_is_opt_in_in_both_recipes_and_yours_wins():
    from fluid.training.recipe import CatalogueStats, EncoderSetup, resolve

    stats = CatalogueStats.from_labels(["a", "b"] * 100)
    for recipe_name in ("auto", "paper"):
        cfg, recipe = resolve(RunConfig(recipe=recipe_name), stats, EncoderSetup("scratch", "scratch"), {})
        assert cfg.colour_augment == 0.0
        assert any(c.key == "colour_augment" and c.reason and c.source != "you" for c in recipe.choices)
    yours, recipe = resolve(RunConfig(colour_augment=0.5), stats, EncoderSetup("scratch", "scratch"), {})
    assert yours.colour_augment == 0.5
    assert any(c.key == "colour_augment" and c.source == "you" for c in recipe.choices)
