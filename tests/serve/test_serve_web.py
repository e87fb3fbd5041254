"""The browser pages of the server (``/``, ``/review``), the per-item experts in predictions, and the page driven
by a real headless Chromium (Playwright) against a real uvicorn process."""

import io
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
from fastapi.testclient import TestClient  # noqa: E402

from fluid import Classifier  # noqa: E402
from fluid.config import SMOKE_TEST_OVERRIDES  # noqa: E402
from fluid.serve import create_app  # noqa: E402
from fluid.serve.web import STATIC_FILES  # noqa: E402

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}
CLASSES = ["cat-blue", "cat-green", "cat-red"]
TOP_K_EXPERTS = 2  # FluidConfig.top_k, the default of the smoke configuration
CHROMIUM = "/usr/bin/chromium"
SCREENSHOT_DIR_ENV = "FLUID_SCREENSHOT_DIR"  # set to docs/img to refresh the README's screenshots


def _png(colour="red", size=32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), COLOURS[colour]).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def run_dir(trained_run_dir):
    return trained_run_dir


@pytest.fixture(scope="module")
def client(run_dir):
    with TestClient(create_app(run_dir)) as test_client:
        yield test_client


def _write_gallery(run_dir: Path) -> Path:
    """A small review gallery in RUN_DIR/review, as `fluid review` writes it (no training needed)."""
    from fluid.review.gallery import render_gallery

    issues = pd.DataFrame({"id": ["p3", "p7"], "given_label": ["cat-red", "cat-blue"],
                           "suggested_label": ["cat-green", "cat-red"], "score": [0.93, 0.71],
                           "language": ["cz", None], "label_source": ["machine", None]})
    noise = pd.DataFrame({"label": CLASSES, "n_items": [16, 16, 16], "estimated_label_issues": [1, 1, 0],
                          "noise_rate": [1 / 16, 1 / 16, 0.0]})
    page = render_gallery(issues, pd.Series([_png("green"), None]), pd.Series(["green shirt 3", None]),
                          {"n_items": 48, "n_flagged": 2, "folds": 3}, noise)
    path = run_dir / "review" / "gallery.html"
    path.parent.mkdir(exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------- experts
def test_head_routing_rows_are_top_k_weights_summing_to_one(run_dir):
    classifier = Classifier.load(run_dir)
    head = classifier.network.head
    torch.manual_seed(0)
    out = head(torch.randn(5, 3, 32), torch.randn(5, 4, 32))
    assert out.routing.shape == (5, head.config.num_experts)
    assert torch.allclose(out.routing.sum(dim=1), torch.ones(5), atol=1e-5)
    assert ((out.routing > 0).sum(dim=1) == TOP_K_EXPERTS).all()
    assert not out.routing.requires_grad


def test_predict_returns_the_chosen_experts(client):
    response = client.post("/predict", data={"text": "red shirt", "top_k": "2"},
                           files={"image": ("x.png", _png("red"), "image/png")})
    assert response.status_code == 200, response.text
    experts = response.json()["experts"]
    assert len(experts) == TOP_K_EXPERTS
    assert len({e["expert"] for e in experts}) == TOP_K_EXPERTS
    assert all(0 <= e["expert"] < SMOKE_TEST_OVERRIDES["head"]["num_experts"] for e in experts)
    assert sum(e["weight"] for e in experts) == pytest.approx(1.0, abs=1e-6)
    assert [e["weight"] for e in experts] == sorted((e["weight"] for e in experts), reverse=True)


def test_predict_top_k_experts_match_the_head_routing(run_dir):
    classifier = Classifier.load(run_dir)
    rows = [{"title": "blue shirt", "img": _png("blue")}, {"title": "green shirt", "img": None}]
    results = classifier.predict_top_k(rows, k=3)
    frame = classifier.read(rows, split="test", require_label=False).frame
    routing = classifier.learner.score(frame, None).routing
    for result, weights in zip(results, routing):
        chosen = np.flatnonzero(weights > 0)
        assert sorted(e["expert"] for e in result["experts"]) == sorted(chosen.tolist())
        expected = {int(i): weights[i] / weights[chosen].sum() for i in chosen}
        for e in result["experts"]:
            assert e["weight"] == pytest.approx(expected[e["expert"]], rel=1e-5)


def test_heads_without_experts_return_null(tmp_path):
    frame = pd.DataFrame({"text": ["red shirt", "blue shirt"] * 8, "label": ["r", "b"] * 8})
    classifier = Classifier("text-only", path=str(tmp_path / "run"), image=None,
                            **{**SMOKE_TEST_OVERRIDES, "epochs": 1, "head": {"hidden_dim": 32}})
    classifier.fit(frame, progress=False)
    assert classifier.predict_top_k({"text": "red shirt"}, k=1)[0]["experts"] is None


# ----------------------------------------------------------------------------------------------- pages
def test_index_page_is_accessible_and_offline(client):
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    for control in ("image", "text", "top_k"):
        assert f'<label for="{control}">' in html and f'id="{control}"' in html
    assert 'role="status"' in html and 'aria-live="polite"' in html
    assert '<html lang="en">' in html
    for name, media_type in STATIC_FILES.items():
        response = client.get(f"/static/{name}")
        assert response.status_code == 200
        assert response.headers["content-type"] == media_type
        assert "http://" not in response.text and "https://" not in response.text, f"{name} loads remote assets"


def test_static_route_serves_only_known_files(client):
    assert client.get("/static/app.py").status_code == 404
    assert client.get("/static/..%2Fapp.py").status_code == 404


def test_pages_are_not_in_the_api_schema(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and "/review" not in paths and "/predict" in paths


def test_review_page_without_a_review_says_how_to_make_one(tmp_path, run_dir):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("review"))
    with TestClient(create_app(copy)) as test_client:
        page = test_client.get("/review")
    assert page.status_code == 200
    assert "No label review for this run yet" in page.text
    assert "fluid review RUN_DIR --data CATALOGUE" in page.text
    assert str(tmp_path) not in page.text  # the server's own paths are never shown (#24)


def test_review_page_serves_the_run_gallery_with_navigation(tmp_path, run_dir):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    _write_gallery(copy)
    with TestClient(create_app(copy)) as test_client:
        page = test_client.get("/review")
    assert page.status_code == 200
    assert '<a href="/">Try the model</a>' in page.text
    assert page.text.count("class=card") == 2
    assert "data:image/jpeg;base64," in page.text and "no image" in page.text


# ----------------------------------------------------------------------------------------------- a real browser

def _chromium() -> str:
    """The Debian chromium binary; installed with apt-get once when missing, running as root in CI."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.environ.get("CI") and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
        if Path(CHROMIUM).exists():
            return CHROMIUM
    pytest.skip(f"no browser: {CHROMIUM} is missing (install Debian's `chromium` package; in CI as root the test "
                "runs `apt-get install -y chromium` itself)")


@pytest.fixture(scope="module")
def server(run_dir, serve_process):
    with serve_process(run_dir) as base:
        yield base


@pytest.fixture(scope="module")
def browser_page():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    executable = _chromium()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        try:
            yield page
        finally:
            browser.close()


def _not_blank(png: bytes) -> None:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)
    assert pixels.std() > 10, "the screenshot is (nearly) one colour"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, "the screenshot has almost no colours"


def _save_screenshot(png: bytes, name: str, tmp_path: Path) -> None:
    target = Path(os.environ.get(SCREENSHOT_DIR_ENV) or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    (target / name).write_bytes(png)


@pytest.mark.slow
def test_browser_uploads_a_product_and_shows_predictions(server, browser_page, tmp_path):
    import httpx

    page = browser_page
    remote = []
    page.on("request", lambda request: remote.append(request.url)
            if not request.url.startswith((server, "data:", "blob:")) else None)
    page.goto(f"{server}/")
    page.wait_for_function("document.getElementById('model-info').textContent.includes('3 labels')")
    page.set_input_files("#image", files=[{"name": "red.png", "mimeType": "image/png", "buffer": _png("red", 64)}])
    page.fill("#text", "red shirt")
    page.fill("#top_k", "3")
    page.locator("#submit").focus()
    page.keyboard.press("Enter")  # the form works from the keyboard
    page.wait_for_selector("#results:not([hidden]) #labels li")

    rows = page.locator("#labels li")
    shown = [(rows.nth(i).get_attribute("data-label"), float(rows.nth(i).get_attribute("data-probability")))
             for i in range(rows.count())]
    expected = httpx.post(f"{server}/predict", data={"text": "red shirt", "top_k": "3"},
                          files={"image": ("red.png", _png("red", 64), "image/png")}, timeout=30).json()
    assert [label for label, _ in shown] == [item["label"] for item in expected["labels"]]
    assert [p for _, p in shown] == pytest.approx([item["probability"] for item in expected["labels"]], abs=1e-6)
    assert sorted(label for label, _ in shown) == CLASSES
    assert float(page.locator("#gate").get_attribute("data-gate-mean")) == pytest.approx(expected["gate_mean"])
    assert page.locator("#experts li").count() == TOP_K_EXPERTS
    assert "Top label" in page.locator("#status").text_content()
    assert remote == [], f"the page fetched something outside the server: {remote}"

    png = page.screenshot(full_page=True)
    _not_blank(png)
    _save_screenshot(png, "serve-predict.png", tmp_path)


@pytest.mark.slow
def test_browser_shows_an_error_without_input(server, browser_page):
    page = browser_page
    page.goto(f"{server}/")
    page.click("#submit")
    assert "Give an image, a text, or both" in page.locator("#status").text_content()
    assert page.locator("#results").is_hidden()


@pytest.mark.slow
def test_browser_review_page(server, browser_page, run_dir, tmp_path):
    page = browser_page
    gallery = run_dir / "review" / "gallery.html"
    if gallery.exists():
        gallery.unlink()
    page.goto(f"{server}/review")
    assert "No label review for this run yet" in page.locator("#no-review").text_content()
    _write_gallery(run_dir)
    try:
        page.goto(f"{server}/review")
        assert page.locator("li.card").count() == 2
        assert page.locator("li.card .given").first.text_content() == "cat-red"
        assert page.locator("li.card img").first.evaluate("img => img.complete && img.naturalWidth > 0")
        page.click("text=Try the model")
        page.wait_for_selector("#predict-form")
        page.goto(f"{server}/review")
        png = page.screenshot(full_page=True)
        _not_blank(png)
        _save_screenshot(png, "serve-review.png", tmp_path)
    finally:
        shutil.rmtree(run_dir / "review", ignore_errors=True)
