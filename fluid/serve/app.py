"""The HTTP prediction server: a thin FastAPI layer over :meth:`fluid.Classifier.predict_items` (one forward
pass per request or micro-batch, without the catalogue reader; the same results as ``predict_top_k``).

* The model is loaded once, when the app is created (``Classifier.load``, read-only).
* Micro-batching (:mod:`fluid.serve.batching`): concurrent ``/predict`` requests are queued and gathered into
  one ``predict_items`` call (up to ``micro_batch`` items, waiting at most ``max_wait_ms`` for requests still being
  received, and not at all when none is); one
  PyTorch forward pass at a time runs (torch already uses all cores inside one call), guarded by a
  ``threading.Lock`` that ``/predict/batch`` (already a batch) shares.
* Bad input is answered with JSON ``{"detail": ...}`` and 400/413/415/422, never 500: bodies are read strictly
  (:mod:`fluid.serve.strict`: the media type, then strict JSON — UTF-8, no NaN/Infinity, no lone surrogates).
* Images arrive only as uploaded bytes or base64; URLs are never fetched. Each is decoded once, here, with a
  bounded memory cost (:func:`fluid.data.load_image`): an image needing more than ``max_image_pixels`` decoded
  pixels is refused (400) from its header before decoding (a JPEG counts the pixels of the 1/2-1/8 scale libjpeg
  decodes it at), and every image is downscaled while decoding to at most
  :data:`~fluid.data.images.MAX_DECODED_SIDE` px on its longer side; the model gets the decoded image. At most
  :data:`DECODE_SLOTS` images are decoded at once per process, so decoding holds at most ``DECODE_SLOTS`` x
  4 bytes x ``max_image_pixels`` for RGB images (up to 9 bytes: see ``MAX_DECODED_PIXELS``), the memory freed by
  large decodes is handed back to the OS every 64 MB (:func:`fluid.data.images.release_decoding_memory`; glibc would
  keep it in each thread's arena), and one ``/predict/batch`` request keeps at most ``max_batch`` x
  ``MAX_DECODED_SIDE`` x ``MAX_DECODED_SIDE`` decoded pixels (4 bytes each), handed back after the request when
  they were 64 MB or more.
"""

from __future__ import annotations

import base64
import binascii
import os
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Optional, Union

from fastapi import FastAPI, File, Form, HTTPException, Query, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

import fluid
from fluid.data import BadImageError, load_image
from fluid.data.images import (
    MAX_DECODED_PIXELS,
    MAX_DECODED_SIDE,
    TRIM_AFTER_BYTES,
    release_decoding_memory,
)
from fluid.serve.batching import (
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_WAIT_MS,
    MicroBatcher,
)
from fluid.serve.strict import (
    StrictBodyRoute,
    find_lone_surrogate,
    lone_surrogate_message,
    validation_error_handler,
)
from fluid.serve.web import router as web_router

__all__ = ["create_app", "app_from_env", "ENV_RUN_DIR", "ENV_MAX_UPLOAD_MB", "ENV_MAX_BATCH", "ENV_MICRO_BATCH",
           "ENV_MAX_WAIT_MS", "ENV_MAX_IMAGE_PIXELS", "DECODE_SLOTS"]

ENV_RUN_DIR = "FLUID_SERVE_RUN_DIR"
ENV_MAX_UPLOAD_MB = "FLUID_SERVE_MAX_UPLOAD_MB"
ENV_MAX_BATCH = "FLUID_SERVE_MAX_BATCH"
ENV_MICRO_BATCH = "FLUID_SERVE_MICRO_BATCH"
ENV_MAX_WAIT_MS = "FLUID_SERVE_MAX_WAIT_MS"
ENV_MAX_IMAGE_PIXELS = "FLUID_SERVE_MAX_IMAGE_PIXELS"

#: Most images decoded at the same time in one server process (the others wait): decoding is CPU work, so more
#: would not be faster, and this bounds the memory that concurrent requests spend on decoding.
DECODE_SLOTS = max(1, min(4, os.cpu_count() or 1))


# ----------------------------------------------------------------------------------------------- schemas
class LabelScore(BaseModel):
    label: str
    probability: float = Field(ge=0.0, le=1.0)


class ExpertWeight(BaseModel):
    expert: int = Field(ge=0)
    weight: float = Field(ge=0.0, le=1.0)


class Prediction(BaseModel):
    labels: list[LabelScore] = Field(description="Top-k labels, most probable first.")
    gate: Optional[list[float]] = Field(
        None, description="FLUID heads: the gate a (image weight, 0..1) per query position; else null.")
    gate_mean: Optional[float] = None
    experts: Optional[list[ExpertWeight]] = Field(
        None, description="FLUID heads with a mixture of experts: the experts the item was routed to, largest "
                          "weight first (weights sum to 1); else null.")
    missing: list[str] = Field(default_factory=list, description="Modalities absent from the input.")


class ItemError(BaseModel):
    error: str


class BatchItem(BaseModel):
    model_config = ConfigDict(extra="forbid")  # e.g. an "image_url" key is refused (422): no URL fetching

    text: Optional[str] = None
    image_base64: Optional[str] = Field(None, description="The image file's bytes, base64 (standard alphabet).")


class Health(BaseModel):
    status: str


class MicroBatching(BaseModel):
    max_batch_size: int = Field(description="Most /predict requests gathered into one model call (1 = off).")
    max_wait_ms: float = Field(description="How long the first request of a batch waits for company.")
    requests: int = Field(description="/predict requests answered through the batcher so far.")
    model_calls: int = Field(description="Model calls the batcher made so far (fewer than requests = batching).")
    largest_batch: int
    mean_batch_size: float


class Info(BaseModel):
    model: str
    classes: list[str]
    text_encoder: str
    image_encoder: str
    fluid_version: str
    max_upload_mb: float
    max_batch: int
    max_image_pixels: int = Field(description="Most decoded pixels per image (larger images are refused, 400).")
    max_decoded_side: int = Field(description="Images are downscaled to at most this many px on the longer side "
                                              "while decoded.")
    micro_batching: MicroBatching


# ----------------------------------------------------------------------------------------------- body limit
class BodySizeLimit:
    """Pure ASGI middleware: 413 when ``Content-Length`` is over the limit; a body without one (chunked) is
    read up to the limit, refused with 413 past it, and replayed to the app otherwise."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send) -> None:
        body = (b'{"detail":"request body too large: the limit is %d bytes"}' % self.max_bytes)
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_large = int(length) > self.max_bytes
            except ValueError:
                too_large = False  # the server's HTTP parser rejects malformed lengths
            if too_large:
                return await self._reject(send)
            return await self.app(scope, receive, send)
        if scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await self._reject(send)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


# ----------------------------------------------------------------------------------------------- the app
def _clean_text(text: Optional[str]) -> Optional[str]:
    return text if text is not None and text.strip() else None


def _check_form_text(text: Optional[str]) -> None:
    """A form field decoded with an exotic ``charset`` (e.g. utf-7) can hold a lone surrogate: refuse it (400),
    as a JSON body would be."""
    surrogate = find_lone_surrogate(text)
    if surrogate is not None:
        raise HTTPException(400, lone_surrogate_message(("text",), surrogate[1]))


def create_app(run_dir_or_classifier: Union[str, os.PathLike, Any], *, max_upload_mb: float = 10,
               max_batch: int = 64, micro_batch: int = DEFAULT_MAX_BATCH_SIZE,
               max_wait_ms: float = DEFAULT_MAX_WAIT_MS, max_image_pixels: int = MAX_DECODED_PIXELS) -> FastAPI:
    """A FastAPI app serving one trained run.

    Args:
        run_dir_or_classifier: a run directory (loaded once here with ``Classifier.load``) or a fitted
            :class:`fluid.Classifier`.
        max_upload_mb: largest request body (413 above it).
        max_batch: most items in one ``/predict/batch`` request (413 above it).
        micro_batch: most concurrent ``/predict`` requests gathered into one model call (1 = no gathering).
        max_wait_ms: how long the first queued ``/predict`` request waits for others to join its batch.
        max_image_pixels: most pixels decoded for one image; an image over it is refused (400, or a per-item error
            in ``/predict/batch``) from its header, before decoding — except a JPEG that decodes within it at a
            reduced scale. See :data:`fluid.data.images.MAX_DECODED_PIXELS`.
    """
    from fluid import Classifier

    if isinstance(run_dir_or_classifier, (str, os.PathLike)):
        classifier = Classifier.load(Path(run_dir_or_classifier))
    else:
        classifier = run_dir_or_classifier
        classifier.check_fitted()
    if max_upload_mb <= 0 or max_batch < 1 or micro_batch < 1 or max_wait_ms < 0 or max_image_pixels < 1:
        raise ValueError("max_upload_mb must be > 0, max_batch >= 1, micro_batch >= 1, max_wait_ms >= 0 and "
                         "max_image_pixels >= 1")
    max_bytes = int(max_upload_mb * 1024 * 1024)
    n_classes = len(classifier.classes_)
    lock = threading.Lock()
    decode_slots = threading.BoundedSemaphore(DECODE_SLOTS)

    def decode(data: bytes):
        """The uploaded bytes as the RGB image the model gets (downscaled while decoded; see the module
        docstring); ``BadImageError`` when it cannot be decoded or is over ``max_image_pixels``."""
        try:
            with decode_slots:
                return load_image(data, max_decoded_pixels=max_image_pixels)
        finally:  # glibc would keep a large decode's memory in this thread's arena (one per thread): hand it back
            release_decoding_memory()

    def image_problem(error: BadImageError) -> str:
        if error.kind == "too large":
            return (f"image too large: {error.reason} (this server decodes at most {max_image_pixels} pixels per "
                    f"image: --max-image-pixels / {ENV_MAX_IMAGE_PIXELS})")
        return f"unreadable image: {error}"

    def check_top_k(top_k: Optional[int]) -> int:
        """The bounds are also declared on the parameters (so a bad top_k is a standard validation 422)."""
        if top_k is None:  # the default: 5, or every class when there are fewer
            return min(5, n_classes)
        if not 1 <= top_k <= n_classes:
            raise HTTPException(422, f"top_k must be between 1 and {n_classes} (the number of classes)")
        return top_k

    def predict_rows(rows: list[dict], top_k: int) -> list[dict]:
        with lock:  # one inference at a time (CPU torch); see the module docstring
            return classifier.predict_items(rows, k=top_k)

    def predict_requests(requests: list[tuple[dict, int]]) -> list[dict]:
        """One model call for several ``(row, top_k)`` requests: the largest k, then each cut to its own k
        (the labels are sorted by probability, so the first k of the top max-k are the top k)."""
        results = predict_rows([row for row, _ in requests], max(top_k for _, top_k in requests))
        return [{**result, "labels": result["labels"][:top_k]} for result, (_, top_k) in zip(results, requests)]

    batcher = MicroBatcher(predict_requests, max_batch_size=micro_batch, max_wait_ms=max_wait_ms)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        await batcher.stop()

    app = FastAPI(title="FLUID prediction server", version=fluid.__version__, lifespan=lifespan,
                  description="Multimodal (image + text) product classification. Images are uploaded, "
                              "never fetched from URLs.")
    app.router.route_class = StrictBodyRoute  # 415 for a wrong media type, 400 for a body that is not strict JSON
    app.add_exception_handler(RequestValidationError, validation_error_handler)  # a 422 that always renders
    app.add_middleware(BodySizeLimit, max_bytes=max_bytes)
    app.state.classifier = classifier
    app.state.batcher = batcher
    app.include_router(web_router)  # the browser pages: / and /review (fluid/serve/web.py)

    @app.get("/health", response_model=Health)
    def health():
        return {"status": "ok"}

    @app.get("/info", response_model=Info)
    def info():
        config = classifier.config
        return {"model": config.model, "classes": list(classifier.classes_), "text_encoder": config.text_encoder,
                "image_encoder": config.image_encoder, "fluid_version": fluid.__version__,
                "max_upload_mb": max_upload_mb, "max_batch": max_batch, "max_image_pixels": max_image_pixels,
                "max_decoded_side": MAX_DECODED_SIDE,
                "micro_batching": {"max_batch_size": micro_batch, "max_wait_ms": max_wait_ms,
                                   **batcher.stats.to_dict()}}

    @app.post("/predict", response_model=Prediction,
              responses={400: {"description": "no modality, an unreadable image, an image over max_image_pixels, "
                                              "or a malformed form body"},
                         413: {"description": "request body or image over the upload limit"},
                         415: {"description": "the body is not multipart/form-data or "
                                              "application/x-www-form-urlencoded"}})
    async def predict(image: Optional[UploadFile] = File(None, description="Product image file."),
                      text: Optional[str] = Form(None, description="Product text (name and description)."),
                      top_k: Optional[int] = Form(None, ge=1, le=n_classes,
                                                  description="How many labels to return (1..number of classes; "
                                                              "default 5 or the number of classes if fewer).")):
        with batcher.arriving():  # a batch being gathered now waits for this request (see batching.py)
            top_k = check_top_k(top_k)
            _check_form_text(text)
            data = None
            if image is not None:
                data = await image.read(max_bytes + 1)  # guard the bytes actually read, whatever the headers said
                if len(data) > max_bytes:
                    raise HTTPException(413, f"image too large: the limit is {max_upload_mb} MB")
                if not data and not image.filename:
                    data = None  # an empty file field (a form with no file chosen)
            text = _clean_text(text)
            if data is None and text is None:
                raise HTTPException(400, "give an image, a text, or both")
            decoded = None
            if data is not None:
                try:
                    decoded = await run_in_threadpool(decode, data)  # CPU work: keep the event loop free
                except BadImageError as error:
                    raise HTTPException(400, image_problem(error)) from None
                del data  # the model gets the decoded (downscaled) image, not the bytes to decode again
            queued = batcher.enqueue(({"text": text, "image": decoded}, top_k))
        result = await queued
        if result.get("error"):  # cannot happen after the checks above; never a 500 for input
            raise HTTPException(400, result["error"])
        return result

    @app.post("/predict/batch", response_model=list[Union[Prediction, ItemError]],
              responses={400: {"description": "the body is not strict JSON: not UTF-8, malformed, NaN/Infinity "
                                              "or an out-of-range number, a lone surrogate in a string"},
                         413: {"description": "too many items, or the body is over the upload limit"},
                         415: {"description": "the body is not application/json"}})
    def predict_batch(items: list[BatchItem],
                      top_k: Optional[int] = Query(None, ge=1, le=n_classes,
                                                   description="How many labels per item (1..number of classes; "
                                                               "default 5 or the number of classes if fewer).")):
        top_k = check_top_k(top_k)
        if len(items) > max_batch:
            raise HTTPException(413, f"too many items: {len(items)} > max_batch {max_batch}")
        results: list[Optional[dict]] = [None] * len(items)
        rows, positions = [], []
        for position, item in enumerate(items):
            text, image = _clean_text(item.text), None
            if item.image_base64 is not None and item.image_base64.strip():
                try:
                    data = base64.b64decode(item.image_base64, validate=True)
                except (binascii.Error, ValueError) as error:
                    results[position] = {"error": f"image_base64 is not valid base64 ({error})"}
                    continue
                try:
                    image = decode(data)  # at most MAX_DECODED_SIDE px a side: max_batch of them are bounded
                except BadImageError as error:
                    results[position] = {"error": image_problem(error)}
                    continue
                finally:
                    del data
            if image is None and text is None:
                results[position] = {"error": "give text, image_base64, or both"}
                continue
            rows.append({"text": text, "image": image})
            positions.append(position)
        if rows:
            held = sum(4 * row["image"].size[0] * row["image"].size[1] for row in rows if row["image"] is not None)
            predictions = predict_rows(rows, top_k)
            del rows  # the decoded images
            for position, result in zip(positions, predictions):
                results[position] = {"error": result["error"]} if result.get("error") else result
            if held >= TRIM_AFTER_BYTES:  # up to max_batch x 4 MiB, freed in this thread's arena: hand it back
                release_decoding_memory(min_bytes=0)
        return results

    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (used by ``fluid serve --workers N``): reads the environment."""
    run_dir = os.environ.get(ENV_RUN_DIR)
    if not run_dir:
        raise RuntimeError(f"set {ENV_RUN_DIR} to a run directory")
    return create_app(run_dir, max_upload_mb=float(os.environ.get(ENV_MAX_UPLOAD_MB, "10")),
                      max_batch=int(os.environ.get(ENV_MAX_BATCH, "64")),
                      micro_batch=int(os.environ.get(ENV_MICRO_BATCH, str(DEFAULT_MAX_BATCH_SIZE))),
                      max_wait_ms=float(os.environ.get(ENV_MAX_WAIT_MS, str(DEFAULT_MAX_WAIT_MS))),
                      max_image_pixels=int(os.environ.get(ENV_MAX_IMAGE_PIXELS, str(MAX_DECODED_PIXELS))))
