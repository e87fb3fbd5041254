"""The HTTP server over a tiny trained run: endpoints, limits and bad input, and one real uvicorn process."""

import base64
import io

import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
from fastapi.testclient import TestClient

from fluid.serve import create_app

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}
CLASSES = ["cat-blue", "cat-green", "cat-red"]


def _png(colour="red", size=32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), COLOURS[colour]).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def run_dir(trained_run_dir):  # the session-wide tiny run of tests/serve/conftest.py
    return trained_run_dir


@pytest.fixture(scope="module")
def client(run_dir):
    with TestClient(create_app(run_dir, max_batch=4)) as test_client:
        yield test_client


def _check_prediction(result, k=5, missing=()):
    assert set(result) >= {"labels", "gate", "missing"}
    assert len(result["labels"]) == k
    probabilities = [item["probability"] for item in result["labels"]]
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    assert probabilities == sorted(probabilities, reverse=True)
    assert {item["label"] for item in result["labels"]} <= set(CLASSES)
    assert result["missing"] == list(missing)


def test_health_info_and_openapi(client):
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/info").json()
    assert info["model"] == "fluid" and info["classes"] == CLASSES
    assert info["text_encoder"] == "tiny" and info["image_encoder"] == "tiny"
    assert info["max_upload_mb"] == 10 and info["max_batch"] == 4 and info["fluid_version"]
    schema = client.get("/openapi.json").json()
    assert {"/health", "/info", "/predict", "/predict/batch"} <= set(schema["paths"])
    assert "Prediction" in schema["components"]["schemas"]


def test_predict_image_text_image_only_text_only(client):
    both = client.post("/predict", files={"image": ("x.png", _png("red"), "image/png")},
                       data={"text": "red shirt", "top_k": "3"})
    assert both.status_code == 200, both.text
    _check_prediction(both.json(), k=3)
    assert both.json()["gate"] is not None and all(0 <= g <= 1 for g in both.json()["gate"])
    image_only = client.post("/predict", files={"image": ("x.png", _png("blue"), "image/png")}, data={"top_k": "2"})
    assert image_only.status_code == 200, image_only.text
    _check_prediction(image_only.json(), k=2, missing=["text"])
    text_only = client.post("/predict", data={"text": "green shirt", "top_k": "1"})
    assert text_only.status_code == 200, text_only.text
    _check_prediction(text_only.json(), k=1, missing=["image"])
    # the server is the Classifier: same numbers as predict_top_k
    direct = client.app.state.classifier.predict_top_k({"title": "green shirt", "img": None}, k=1)[0]
    assert text_only.json()["labels"] == direct["labels"]


def test_predict_bad_input(client):
    neither = client.post("/predict", data={"text": "  "})
    assert neither.status_code == 400 and "image" in neither.json()["detail"], neither.text
    corrupt = client.post("/predict", files={"image": ("x.png", b"\x89PNG not really an image", "image/png")},
                          data={"text": "red shirt"})
    assert corrupt.status_code == 400 and "unreadable image" in corrupt.json()["detail"]
    for bad in ("0", "4", "abc"):
        response = client.post("/predict", data={"text": "red shirt", "top_k": bad})
        assert response.status_code == 422, (bad, response.text)
        assert "detail" in response.json()


def test_upload_limit(run_dir):
    with TestClient(create_app(run_dir, max_upload_mb=0.01)) as small:  # 10 KiB
        big = _png("red", size=32) + b"\0" * 20_000
        response = small.post("/predict", files={"image": ("x.png", big, "image/png")})
        assert response.status_code == 413 and "too large" in response.json()["detail"]
        # a body without Content-Length (chunked) is counted too
        response = small.post("/predict/batch", content=iter([b"[" + b" " * 20_000, b"]"]),
                              headers={"content-type": "application/json"})
        assert response.status_code == 413
        assert small.post("/predict", data={"text": "red shirt"}).status_code == 200
        # a small chunked body is replayed to the app intact
        response = small.post("/predict/batch", content=iter([b'[{"text": ', b'"red shirt"}]']),
                              headers={"content-type": "application/json"})
        assert response.status_code == 200, response.text
        _check_prediction(response.json()[0], k=3, missing=["image"])  # default top_k: min(5, 3 classes)


def test_batch(client):
    items = [{"text": "red shirt", "image_base64": base64.b64encode(_png("red")).decode()},
             {"text": "blue shirt", "image_base64": "%%% not base64 %%%"},
             {"text": None, "image_base64": base64.b64encode(b"garbage bytes").decode()},
             {"text": "green shirt"}]
    response = client.post("/predict/batch?top_k=2", json=items)
    assert response.status_code == 200, response.text
    results = response.json()
    assert len(results) == 4
    _check_prediction(results[0], k=2)
    assert set(results[1]) == {"error"} and "base64" in results[1]["error"]
    assert set(results[2]) == {"error"} and "unreadable image" in results[2]["error"]
    _check_prediction(results[3], k=2, missing=["image"])
    neither = client.post("/predict/batch", json=[{}]).json()
    assert set(neither[0]) == {"error"}
    assert client.post("/predict/batch", json=[]).json() == []


def test_batch_limits_and_no_urls(client):
    too_many = client.post("/predict/batch", json=[{"text": "red shirt"}] * 5)
    assert too_many.status_code == 413 and "max_batch" in too_many.json()["detail"]
    url = client.post("/predict/batch", json=[{"image_url": "http://127.0.0.1/x.png"}])
    assert url.status_code == 422
    assert client.post("/predict/batch?top_k=9", json=[{"text": "red shirt"}]).status_code == 422
    assert client.post("/predict/batch", json={"text": "not a list"}).status_code == 422



@pytest.mark.slow
def test_real_server_process(run_dir, serve_process):
    with serve_process(run_dir) as base:
        import httpx

        response = httpx.post(f"{base}/predict", data={"text": "red shirt", "top_k": "2"},
                              files={"image": ("x.png", _png("red"), "image/png")}, timeout=30)
        assert response.status_code == 200, response.text
        _check_prediction(response.json(), k=2)


def test_a_body_that_is_not_json_is_a_documented_400(client):
    """Found by schemathesis in CI: a non-JSON body gets 400, which the OpenAPI schema must list."""
    response = client.post("/predict/batch", content=b"\xff", headers={"content-type": "application/json"})
    assert response.status_code == 400 and "detail" in response.json()
    documented = client.get("/openapi.json").json()["paths"]["/predict/batch"]["post"]["responses"]
    assert "400" in documented
