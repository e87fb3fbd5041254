"""Decoding costs memory in proportion to what the encoders need (issue #24 item 1): images over
MAX_DECODED_SIDE are downscaled while decoded (JPEG through libjpeg's reduced scales), images needing more than
MAX_DECODED_PIXELS decoded pixels are refused from their header, and images that fit are decoded as before."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFile, ImageOps, JpegImagePlugin

from fluid.data import BadImageError, CatalogueDataset, images, load_image
from fluid.data.images import MAX_DECODED_PIXELS, MAX_DECODED_SIDE


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **kw)
    return buffer.getvalue()


def _noise(width: int, height: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """Smooth-ish noise (blown up from a small random image) so JPEG stays small and resizing is not trivial."""
    rng = np.random.default_rng(seed)
    channels = len(Image.new(mode, (1, 1)).getbands())
    small = rng.integers(0, 256, (max(1, height // 50), max(1, width // 50), channels), dtype=np.uint8)
    im = Image.fromarray(small.squeeze(-1) if channels == 1 else small, "L" if channels == 1 else mode)
    return im.resize((width, height), Image.Resampling.BILINEAR)


@pytest.fixture(scope="module")
def bomb_png() -> bytes:
    """The issue's image: a 9000x9000 1-bit PNG (81 megapixels, under PIL's 89.5 MP guard) in about 10 KB."""
    data = _encode(Image.new("1", (9000, 9000)), "PNG")
    assert len(data) < 20_000
    return data


@pytest.fixture
def draft_sizes(monkeypatch) -> list:
    """Records ``(requested size, size after draft)`` of every ``JpegImageFile.draft`` call."""
    calls = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = original(self, mode, size)
        calls.append((size, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return calls


def test_defaults():
    assert MAX_DECODED_SIDE == 1024 and MAX_DECODED_PIXELS == 40_000_000
    assert MAX_DECODED_PIXELS < images.MAX_PIXELS


def test_huge_png_is_refused_before_decoding_by_default(bomb_png, tmp_path, monkeypatch):
    def no_decoding(self):  # the header says too large: no pixel may be decoded
        raise AssertionError("decoded an image over the budget")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png)
    for cell, name in ((bomb_png, "<bytes>"), (path, str(path))):
        with pytest.raises(BadImageError) as error:
            load_image(cell)
        assert error.value.kind == "too large" and name in str(error.value)
        message = error.value.reason
        assert "9000x9000" in message and "81000000" in message and "40000000" in message, message
        assert "PNG" in message


def test_huge_png_within_a_raised_budget_is_downscaled(bomb_png):
    out = load_image(bomb_png, max_decoded_pixels=90_000_000)
    assert out.mode == "RGB" and out.size == (MAX_DECODED_SIDE, MAX_DECODED_SIDE)
    assert out.getextrema() == ((0, 0), (0, 0), (0, 0))  # all black, as the 1-bit image
    assert load_image(bomb_png, max_decoded_pixels=90_000_000, max_side=300).size == (300, 300)


def test_budget_counts_header_pixels_and_can_be_set(tmp_path):
    data = _encode(Image.new("RGB", (300, 200), (10, 20, 30)), "PNG")
    with pytest.raises(BadImageError, match=r"300x200 = 60000 pixels .* budget of 59999 pixels"):
        load_image(data, max_decoded_pixels=59_999)
    assert load_image(data, max_decoded_pixels=60_000).size == (300, 200)
    with pytest.raises(ValueError, match="max_decoded_pixels"):
        load_image(data, max_decoded_pixels=0)


def test_large_jpeg_is_decoded_at_a_reduced_scale(draft_sizes):
    big = _noise(6000, 4000)
    data = _encode(big, "JPEG", quality=90)
    out = load_image(data)
    assert out.mode == "RGB" and out.size == (1024, 683)
    # libjpeg decoded at 1/4 scale: the 24-megapixel image never existed in memory, only 1500x1000
    assert draft_sizes == [((1024, 683), (1500, 1000))]
    # the same picture as a full decode resized by PIL (different resampling path: close, not equal)
    with Image.open(io.BytesIO(data)) as full:
        reference = np.asarray(full.convert("RGB").resize((1024, 683), Image.Resampling.LANCZOS), dtype=np.int16)
    assert np.abs(np.asarray(out, dtype=np.int16) - reference).mean() < 3.0


def test_jpeg_budget_counts_the_reduced_scale(draft_sizes):
    data = _encode(_noise(6000, 4000), "JPEG", quality=80)
    # 24 MP in the header, 1.5 MP decoded at 1/4 scale: within a 2 MP budget; a PNG of that size is not
    assert load_image(data, max_decoded_pixels=2_000_000).size == (1024, 683)
    with pytest.raises(BadImageError, match=r"6000x4000: 1500x1000 = 1500000 pixels to decode at the smallest"):
        load_image(data, max_decoded_pixels=1_000_000)
    png = _encode(Image.new("L", (6000, 4000)), "PNG")
    with pytest.raises(BadImageError, match=r"6000x4000 = 24000000 pixels to decode \(a PNG image"):
        load_image(png, max_decoded_pixels=2_000_000)


def test_exif_orientation_is_kept_when_downscaling():
    picture = _noise(3000, 2000, seed=3)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show it upright
    for fmt in ("JPEG", "TIFF", "PNG"):
        data = _encode(picture, fmt, exif=exif.tobytes())
        out = load_image(data)
        assert out.size == (683, 1024), fmt
        with Image.open(io.BytesIO(data)) as full:
            upright = ImageOps.exif_transpose(full).convert("RGB").resize((683, 1024), Image.Resampling.LANCZOS)
        diff = np.abs(np.asarray(out, dtype=np.int16) - np.asarray(upright, dtype=np.int16)).mean()
        assert diff < 3.0, (fmt, diff)


@pytest.mark.parametrize("mode", ["1", "L", "P", "LA", "RGBA", "I;16", "I", "F", "CMYK"])
def test_every_mode_is_downscaled_to_rgb(mode):
    im = Image.new(mode, (3000, 1000))
    out = load_image(im)  # a PIL cell is downscaled too (same pixels as the same image sent as bytes)
    assert out.mode == "RGB" and out.size == (1024, 341)
    if mode in ("L", "RGBA", "I;16", "CMYK"):
        assert out.tobytes() == load_image(_encode(im, "TIFF")).tobytes()


def test_transparency_is_composited_after_downscaling():
    rgba = Image.new("RGBA", (2048, 2048), (255, 0, 0, 0))  # fully transparent red: white once composited
    rgba.paste((0, 0, 255, 255), (0, 0, 1024, 2048))  # left half opaque blue
    out = load_image(_encode(rgba, "PNG"))
    assert out.size == (1024, 1024)
    assert out.getpixel((100, 500)) == (0, 0, 255) and out.getpixel((900, 500)) == (255, 255, 255)


@pytest.mark.parametrize("fmt, size", [("PNG", (640, 480)), ("JPEG", (1024, 768)), ("WEBP", (300, 1024)),
                                       ("GIF", (200, 100)), ("BMP", (33, 17))])
def test_images_that_fit_give_exactly_the_same_pixels(fmt, size, draft_sizes):
    data = _encode(_noise(*size, seed=1), fmt, **({"quality": 85} if fmt in ("JPEG", "WEBP") else {}))
    with Image.open(io.BytesIO(data)) as plain:
        expected = plain.convert("RGB")
    out = load_image(data)
    assert out.size == size and out.tobytes() == expected.tobytes()
    assert draft_sizes == []  # no reduced-scale decoding for an image that fits


def test_pil_cell_that_fits_is_an_unchanged_copy():
    pil = _noise(1024, 700, seed=2)
    out = load_image(pil)
    assert out is not pil and out.tobytes() == pil.tobytes()


def test_catalogue_dataset_reports_an_over_budget_image_as_missing(bomb_png, tmp_path, monkeypatch):
    (tmp_path / "bomb.png").write_bytes(bomb_png)
    (tmp_path / "big.jpg").write_bytes(_encode(_noise(4000, 3000), "JPEG"))
    frame = pd.DataFrame({"id": ["a", "b"], "text": ["x", "y"],
                          "image": [str(tmp_path / "bomb.png"), str(tmp_path / "big.jpg")], "label": ["p", "q"]})
    dataset = CatalogueDataset(frame)
    item = dataset[0]
    assert item["image"] is None and len(item["problems"]) == 1
    assert item["problems"][0].reason == "too large" and "9000x9000" in item["problems"][0].detail
    assert dataset[1]["image"].size == (1024, 768) and dataset[1]["problems"] == []
    monkeypatch.setattr(images, "MAX_DECODED_PIXELS", 100_000_000)  # the module default is read at call time
    assert dataset[0]["image"].size == (1024, 1024)


def test_memory_freed_by_decoding_is_released_every_64_mib(monkeypatch):
    trims = []
    monkeypatch.setattr(images, "_malloc_trim", lambda pad: trims.append(pad))
    monkeypatch.setattr(images, "_freed_since_trim", 0)
    load_image(_encode(Image.new("RGB", (1000, 1000)), "PNG"))  # fits: the image as decoded counts
    assert images._freed_since_trim == 4 * 1000 * 1000
    big = _encode(Image.new("L", (4200, 2000)), "PNG")  # 8.4 MP decoded, then downscaled to 1024 x 488
    load_image(big)
    assert images._freed_since_trim == 4 * (1000 * 1000 + 4200 * 2000 + 1024 * 488)
    assert images.release_decoding_memory() is False and trims == []  # under TRIM_AFTER_BYTES (64 MiB)
    load_image(big)
    assert images.release_decoding_memory() is True and trims == [0] and images._freed_since_trim == 0
    assert images.release_decoding_memory() is False and trims == [0]
    monkeypatch.setattr(images, "_malloc_trim", None)  # no glibc: a no-op
    load_image(big)
    assert images.release_decoding_memory(min_bytes=1) is False
