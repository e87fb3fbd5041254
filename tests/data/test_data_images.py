from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

import fluid.data.images as images
from fluid.data import BadImageError, load_image
from fluid.data.images import zip_ref


def _save(im: Image.Image, path, fmt: str, **kw):
    im.save(path, fmt, **kw)
    return path


def test_mode_conversions(tmp_path):
    cmyk = _save(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", "JPEG")
    out = load_image(cmyk)
    assert out.mode == "RGB" and out.getpixel((4, 4))[0] > 200 and out.getpixel((4, 4))[1] < 60

    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    out = load_image(_save(pal, tmp_path / "p.png", "PNG"))
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (10, 200, 30)

    pal_t = Image.new("P", (8, 8), 0)
    pal_t.putpalette([0, 0, 0] * 256)
    pal_t.info["transparency"] = 0
    assert load_image(_save(pal_t, tmp_path / "pt.png", "PNG", transparency=0)).getpixel((0, 0)) == (255, 255, 255)

    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    rgba.putpixel((1, 1), (0, 0, 255, 255))
    out = load_image(_save(rgba, tmp_path / "rgba.png", "PNG"))
    assert out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((1, 1)) == (0, 0, 255)

    la = Image.new("LA", (4, 4), (0, 255))
    assert load_image(la).getpixel((0, 0)) == (0, 0, 0)

    a16 = np.full((6, 6), 65535, dtype=np.uint16)
    a16[0, 0] = 0
    im16 = Image.fromarray(a16)
    assert im16.mode.startswith("I;16")
    out = load_image(_save(im16, tmp_path / "g16.png", "PNG"))
    assert out.mode == "RGB" and out.getpixel((1, 1)) == (255, 255, 255) and out.getpixel((0, 0)) == (0, 0, 0)


def test_bytes_pil_and_relative_paths(tmp_path, make_jpeg):
    data = make_jpeg((0, 0, 250))
    assert load_image(data).size == (12, 16)
    pil = Image.new("L", (3, 3), 7)
    out = load_image(pil)
    assert out.mode == "RGB" and out is not pil
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.jpg").write_bytes(data)
    assert load_image("d\\x.jpg", tmp_path).size == (12, 16)
    with pytest.raises(BadImageError, match="outside root"):
        load_image("../x.jpg", tmp_path / "d")


@pytest.mark.parametrize(
    "content, kind, reason",
    [
        (None, "missing", "no such file"),
        (b"", "empty", "0 bytes"),
        (b"this is not an image at all", "unreadable", ""),
    ],
)
def test_bad_files(tmp_path, content, kind, reason):
    path = tmp_path / "bad.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BadImageError) as e:
        load_image(path)
    assert e.value.kind == kind and str(path) in str(e.value) and reason in str(e.value)


def test_truncated_jpeg(tmp_path):
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    path = tmp_path / "trunc.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(BadImageError) as e:
        load_image(path)
    assert e.value.kind == "unreadable" and "trunc" in str(e.value) and "truncated" in e.value.reason


def test_decompression_bomb_guard(tmp_path, monkeypatch):
    path = _save(Image.new("RGB", (40, 30)), tmp_path / "big.png", "PNG")
    with pytest.raises(BadImageError, match="decompression-bomb") as e:
        load_image(path, max_pixels=1000)
    assert e.value.kind == "too large"
    monkeypatch.setattr(images, "MAX_PIXELS", 1199)
    with pytest.raises(BadImageError, match="1200 pixels"):
        load_image(path)
    monkeypatch.setattr(images, "MAX_PIXELS", 1200)
    assert load_image(path).size == (40, 30)
    # PIL's own (2x) bomb error is turned into BadImageError too, never a warning
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(BadImageError, match="decompression-bomb"):
        load_image(path)


def test_zip_references(tmp_path, make_jpeg):
    zpath = tmp_path / "a.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("d/images/1.jpg", make_jpeg())
        zf.writestr("d/images/empty.jpg", b"")
    assert load_image(zip_ref(zpath, "d/images/1.jpg")).size == (12, 16)
    with pytest.raises(BadImageError) as e:
        load_image(zip_ref(zpath, "d/images/2.jpg"))
    assert e.value.kind == "missing" and "2.jpg" in str(e.value)
    with pytest.raises(BadImageError, match="0 bytes"):
        load_image(zip_ref(zpath, "d/images/empty.jpg"))


def test_unsupported_cell_type():
    with pytest.raises(BadImageError, match="unsupported"):
        load_image(3.5)
    with pytest.raises(BadImageError, match="no image"):
        load_image(None)
