"""The server decodes each uploaded image once, with a bounded memory cost (issue #24 item 1): images needing more
than max_image_pixels decoded pixels are refused (400 / per-item error) from their header, the others are
downscaled to MAX_DECODED_SIDE while decoded, and the model gets that decoded image."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
from fastapi.testclient import TestClient

from fluid.data.images import MAX_DECODED_PIXELS, MAX_DECODED_SIDE
from fluid.serve import create_app
from fluid.serve.app import ENV_MAX_IMAGE_PIXELS, ENV_RUN_DIR, app_from_env


def _encode(im: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt)
    return buffer.getvalue()


BOMB = _encode(Image.new("1", (9000, 9000)), "PNG")  # 81 MP, about 10 KB: the image


def _big_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    return _encode(small.resize((8000, 6000), Image.Resampling.BILINEAR), "JPEG")


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    return _big_jpeg()


@pytest.fixture(scope="module")
def app(trained_run_dir):
    return create_app(trained_run_dir, max_batch=8)


@pytest.fixture
def seen(app, monkeypatch) -> list:
    """The image cells the model is given, per call."""
    classifier = app.state.classifier
    calls = []
    original = classifier.predict_items

    def spy(rows, k=5):
        calls.append([row.get("image") for row in rows])
        return original(rows, k=k)

    monkeypatch.setattr(classifier, "predict_items", spy)
    return calls


def test_huge_png_is_refused_with_its_size_and_the_limit(app, seen):
    assert len(BOMB) < 20_000
    with TestClient(app) as client:
        response = client.post("/predict", files={"image": ("bomb.png", BOMB, "image/png")},
                               data={"text": "red shirt"})
        assert response.status_code == 400, response.text
        detail = response.json()["detail"]
        assert detail.startswith("image too large")
        assert "9000x9000" in detail and str(MAX_DECODED_PIXELS) in detail and "--max-image-pixels" in detail
        info = client.get("/info").json()
        assert info["max_image_pixels"] == MAX_DECODED_PIXELS and info["max_decoded_side"] == MAX_DECODED_SIDE
    assert seen == []


def test_the_model_gets_the_decoded_downscaled_image(app, seen, big_jpeg, monkeypatch):
    import fluid.serve.app as server

    releases = []
    monkeypatch.setattr(server, "release_decoding_memory", lambda: releases.append(1))
    with TestClient(app) as client:
        response = client.post("/predict", files={"image": ("big.jpg", big_jpeg, "image/jpeg")},
                               data={"text": "red shirt", "top_k": "2"})
        assert response.status_code == 200, response.text
        small = _encode(Image.new("RGB", (32, 32), (220, 30, 30)), "PNG")
        response = client.post("/predict", files={"image": ("x.png", small, "image/png")}, data={"top_k": "2"})
        assert response.status_code == 200, response.text
    assert len(releases) == 2  # after each decode, the memory a large one freed may go back to the OS
    (jpeg_cell,), (png_cell,) = seen
    assert isinstance(jpeg_cell, Image.Image) and jpeg_cell.size == (1024, 768)
    assert png_cell.size == (32, 32) and png_cell.tobytes() == Image.open(io.BytesIO(small)).convert("RGB").tobytes()
    # same answer as the classifier given the bytes (it decodes them with the same function)
    classifier = app.state.classifier
    direct = type(classifier).predict_top_k(classifier, {"title": None, "img": small}, k=2)[0]
    assert response.json()["labels"] == direct["labels"]


def test_a_raised_limit_accepts_and_downscales_the_huge_png(trained_run_dir, monkeypatch):
    with TestClient(create_app(trained_run_dir, max_image_pixels=90_000_000)) as client:
        classifier = client.app.state.classifier
        cells = []
        original = classifier.predict_items
        monkeypatch.setattr(classifier, "predict_items",
                            lambda rows, k=5: cells.extend(row["image"] for row in rows) or original(rows, k=k))
        response = client.post("/predict", files={"image": ("bomb.png", BOMB, "image/png")})
        assert response.status_code == 200, response.text
        assert client.get("/info").json()["max_image_pixels"] == 90_000_000
    assert [cell.size for cell in cells] == [(MAX_DECODED_SIDE, MAX_DECODED_SIDE)]


def test_batch_refuses_per_item_and_keeps_only_downscaled_images(app, seen, big_jpeg, monkeypatch):
    import fluid.serve.app as server

    releases = []
    monkeypatch.setattr(server, "release_decoding_memory", lambda min_bytes=None: releases.append(min_bytes))
    monkeypatch.setattr(server, "TRIM_AFTER_BYTES", 3 * 1024 * 1024)  # the batch holds 1024 x 768 x 4 bytes
    items = [{"text": "red shirt", "image_base64": base64.b64encode(BOMB).decode()},
             {"text": "red shirt", "image_base64": base64.b64encode(big_jpeg).decode()},
             {"image_base64": base64.b64encode(BOMB).decode()},
             {"text": "blue shirt"}]
    with TestClient(app) as client:
        response = client.post("/predict/batch?top_k=2", json=items)
    assert response.status_code == 200, response.text
    results = response.json()
    for position in (0, 2):
        assert set(results[position]) == {"error"}
        error = results[position]["error"]
        assert error.startswith("image too large") and "9000x9000" in error and str(MAX_DECODED_PIXELS) in error
    assert len(results[1]["labels"]) == 2 and results[1]["missing"] == []
    assert results[3]["missing"] == ["image"]
    (cells,) = seen
    assert len(cells) == 2 and cells[0].size == (1024, 768) and cells[1] is None
    assert all(max(cell.size) <= MAX_DECODED_SIDE for cell in cells if cell is not None)
    # after each of the 3 decodes, then once more (now) for the decoded images the batch held
    assert releases == [None, None, None, 0]


def test_option_is_validated_and_read_from_the_environment(trained_run_dir, monkeypatch):
    with pytest.raises(ValueError, match="max_image_pixels"):
        create_app(trained_run_dir, max_image_pixels=0)
    monkeypatch.setenv(ENV_RUN_DIR, str(trained_run_dir))
    monkeypatch.setenv(ENV_MAX_IMAGE_PIXELS, "12345")
    with TestClient(app_from_env()) as client:
        assert client.get("/info").json()["max_image_pixels"] == 12345
        png = _encode(Image.new("RGB", (200, 100)), "PNG")  # 20000 pixels
        response = client.post("/predict", files={"image": ("x.png", png, "image/png")})
        assert response.status_code == 400 and "200x100 = 20000 pixels" in response.json()["detail"]


def test_cli_option(trained_run_dir):
    from typer.testing import CliRunner

    from fluid.cli import app as cli

    result = CliRunner().invoke(cli, ["serve", str(trained_run_dir), "--max-image-pixels", "0"])
    assert result.exit_code != 0 and "--max-image-pixels must be >= 1" in result.output
