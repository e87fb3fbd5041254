"""The browser pages of ``fluid serve``: ``/`` (try the model) and ``/review`` (the run's label-review gallery).

Plain HTML/CSS/JS from ``fluid/serve/static/`` (package data), nothing fetched from the internet. The page talks
to the JSON API of :mod:`fluid.serve.app` (``/info``, ``/predict``). The review page shows
``RUN_DIR/review/gallery.html`` written by ``fluid review RUN_DIR --data ...`` (its default output folder).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

__all__ = ["STATIC_FILES", "review_gallery_path", "router"]

#: file name -> media type; only these are served from the static folder.
STATIC_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
                "style.css": "text/css; charset=utf-8"}
_NAV = ('<nav aria-label="pages" style="max-width:1200px;margin:0 auto;padding:.75rem 1.25rem;display:flex;'
        'gap:1rem;font:600 16px system-ui,sans-serif"><a href="/">Try the model</a>'
        '<a href="/review" aria-current="page">Label review</a></nav>')
_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


def _static(name: str) -> bytes:
    return resources.files("fluid.serve").joinpath("static", name).read_bytes()


def review_gallery_path(request: Request) -> Path | None:
    """``RUN_DIR/review/gallery.html`` of the served run, or None (no run directory, or no review yet)."""
    from fluid.review import GALLERY_FILE, REVIEW_DIR

    run_dir = getattr(request.app.state.classifier, "run_dir", None)
    if run_dir is None:
        return None
    path = Path(run_dir) / REVIEW_DIR / GALLERY_FILE
    return path if path.is_file() else None


@router.get("/", response_class=HTMLResponse)
def index() -> Response:
    return Response(_static("index.html"), media_type=STATIC_FILES["index.html"], headers=_CACHE)


@router.get("/static/{name}")
def static(name: str) -> Response:
    if name not in STATIC_FILES:
        raise HTTPException(404, f"no static file {name!r}")
    return Response(_static(name), media_type=STATIC_FILES[name], headers=_CACHE)


@router.get("/review", response_class=HTMLResponse)
def review(request: Request) -> Response:
    from fluid.review.gallery import NAV_MARKER

    path = review_gallery_path(request)
    if path is not None:
        return HTMLResponse(path.read_text(encoding="utf-8").replace(NAV_MARKER, _NAV, 1), headers=_CACHE)
    where = "RUN_DIR"  # the server's own paths are never shown to its clients
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><title>Label review</title>'
        '<link rel="stylesheet" href="/static/style.css"></head><body>'
        '<header><nav aria-label="pages"><a href="/">Try the model</a>'
        '<a href="/review" aria-current="page">Label review</a></nav><h1>Label review</h1></header>'
        '<main><section class="panel" id="no-review"><h2>No label review for this run yet</h2>'
        f"<p>Run <code>fluid review {where} --data CATALOGUE</code> (RUN_DIR: the run directory this server "
        f"serves) to find the products whose label is probably wrong; it writes <code>{where}/review/</code> and "
        "this page shows its gallery.</p>"
        "</section></main></body></html>")
    return HTMLResponse(body, headers=_CACHE)
