"""Fixtures for fluid.data tests: a tiny GLAMI-1M copy and small image files, all in tmp dirs."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image


def jpeg_bytes(colour=(200, 30, 40), size=(12, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG")
    return buf.getvalue()


GLAMI_TRAIN = pd.DataFrame(
    {
        "item_id": ["007", "8", "9", "10"],
        "image_id": ["0101", "102", "103", "104"],
        "name": ["red shirt", "blue dress", "  green coat ", "socks"],
        "description": ["soft cotton", None, "warm\nwool", ""],
        "geo": ["cz", "sk", "es", "tr"],
        "category": ["12", "34", "12", "56"],
        "category_name": ["CATNAMEshirts", "CATNAMEdresses", "CATNAMEshirts", "CATNAMEsocks"],
        "label_source": ["quality-check", "machine", "quality-check", "quality-check"],
    }
)
GLAMI_TEST = GLAMI_TRAIN.iloc[:2].assign(item_id=["t1", "t2"], image_id=["201", "202"])


def write_glami(parent: Path, *, missing_image: str | None = None) -> Path:
    root = parent / "GLAMI-1M-dataset"
    (root / "images").mkdir(parents=True)
    GLAMI_TRAIN.to_csv(root / "GLAMI-1M-train.csv", index=False)
    GLAMI_TEST.to_csv(root / "GLAMI-1M-test.csv", index=False)
    for i, image_id in enumerate([*GLAMI_TRAIN.image_id, *GLAMI_TEST.image_id]):
        if image_id != missing_image:
            (root / "images" / f"{image_id}.jpg").write_bytes(jpeg_bytes((20 * i, 100, 200)))
    return root


def zip_folder(root: Path, zip_path: Path) -> Path:
    with zipfile.ZipFile(zip_path, "w") as zf:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(root.parent).as_posix())
    return zip_path


@pytest.fixture
def glami_dir(tmp_path: Path) -> Path:
    return write_glami(tmp_path / "data")


@pytest.fixture
def glami_zip(tmp_path: Path) -> Path:
    root = write_glami(tmp_path / "src")
    out = tmp_path / "zipped"
    out.mkdir()
    return zip_folder(root, out / "GLAMI-1M-dataset.zip")


@pytest.fixture
def make_jpeg():
    return jpeg_bytes


@pytest.fixture
def glami_frames():
    return GLAMI_TRAIN.copy(), GLAMI_TEST.copy()


@pytest.fixture
def make_glami():
    """``make_glami(parent, missing_image=None) -> dataset folder``; ``make_glami.zip(root, zip_path)``."""
    write_glami.zip = zip_folder  # type: ignore[attr-defined]
    return write_glami
