"""``fluid serve``: the HTTP server (docs/serving.md)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from fluid.cli.common import app, fail, load_run


@app.command()
def serve(run_dir: Path = typer.Argument(..., help="A run directory written by `fluid train`."),
          host: str = typer.Option("127.0.0.1", help="Address to bind (default: loopback only)."),
          port: int = typer.Option(8000, help="Port to listen on."),
          workers: int = typer.Option(1, min=1, help="Server processes; each loads its own copy of the model."),
          max_upload_mb: float = typer.Option(10.0, help="Largest request body accepted, in MB (else 413)."),
          max_batch: int = typer.Option(64, help="Most items in one /predict/batch request."),
          micro_batch: int = typer.Option(16, "--micro-batch",
                                          help="Most concurrent /predict requests gathered into one model call "
                                               "(1 = no micro-batching)."),
          max_wait_ms: float = typer.Option(5.0, "--max-wait-ms",
                                            help="How long a batch waits, in milliseconds, for /predict requests "
                                                 "still being received (a lone request does not wait)."),
          max_image_pixels: int = typer.Option(40_000_000, "--max-image-pixels",
                                               help="Most pixels decoded for one image (width x height; a JPEG "
                                                    "counts its 1/2-1/8 decoding scale): larger images are "
                                                    "refused with 400 before decoding. Every image is also "
                                                    "downscaled to 1024 px on its longer side while decoded.")):
    """Serve predictions over HTTP (see docs/serving.md)."""
    try:
        import uvicorn

        from fluid.serve.app import (
            ENV_MAX_BATCH,
            ENV_MAX_IMAGE_PIXELS,
            ENV_MAX_UPLOAD_MB,
            ENV_MAX_WAIT_MS,
            ENV_MICRO_BATCH,
            ENV_RUN_DIR,
            create_app,
        )
    except ImportError as error:
        fail(f"the server needs the serve extra (pip install -e \".[serve]\"): {error}")
    if max_upload_mb <= 0 or max_batch < 1:
        fail("--max-upload-mb must be > 0 and --max-batch >= 1")
    if micro_batch < 1 or max_wait_ms < 0:
        fail("--micro-batch must be >= 1 (1 turns micro-batching off) and --max-wait-ms >= 0")
    if max_image_pixels < 1:
        fail("--max-image-pixels must be >= 1")
    if workers == 1:
        classifier = load_run(run_dir)
        uvicorn.run(create_app(classifier, max_upload_mb=max_upload_mb, max_batch=max_batch,
                               micro_batch=micro_batch, max_wait_ms=max_wait_ms,
                               max_image_pixels=max_image_pixels),
                    host=host, port=port, workers=1)
        return
    load_run(run_dir)  # fail early and clearly on a bad run directory, before starting the workers
    os.environ.update({ENV_RUN_DIR: str(run_dir.resolve()), ENV_MAX_UPLOAD_MB: str(max_upload_mb),
                       ENV_MAX_BATCH: str(max_batch), ENV_MICRO_BATCH: str(micro_batch),
                       ENV_MAX_WAIT_MS: str(max_wait_ms), ENV_MAX_IMAGE_PIXELS: str(max_image_pixels)})
    uvicorn.run("fluid.serve.app:app_from_env", factory=True, host=host, port=port, workers=workers)
