"""Scoring: ``fluid predict`` (one product) and ``fluid predict-batch`` (a whole catalogue)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from fluid.cli.common import USER_ERRORS, app, console, fail, load_run, show_progress, warning_line


@app.command()
def predict(run_dir: Path = typer.Argument(..., help="A run directory written by `fluid train`."),
            image: Optional[Path] = typer.Option(None, help="Product image file."),
            text: Optional[str] = typer.Option(None, help="Product text (name and description)."),
            top_k: int = typer.Option(5, help="How many labels to print.")):
    """Predict one product; prints JSON with the top-k labels, probabilities and the modality gate."""
    if image is None and not text:
        fail("give --image, --text, or both")
    if image is not None and not image.is_file():
        fail(f"image file not found: {image}")
    classifier = load_run(run_dir)
    item = {"text": text, "image": image.read_bytes() if image is not None else None}
    result = classifier.predict_items([item], k=top_k)[0]
    print(json.dumps(result, indent=2))
    if result.get("error"):
        fail(f"{image}: {result['error']}" if result.get("image_problem") else result["error"])
    if result.get("image_problem"):
        warning_line(f"{image}: the image could not be read ({result['image_problem']}); predicted from the text "
                     "alone")

@app.command("predict-batch")
def predict_batch(run_dir: Path = typer.Argument(..., help="A run directory written by `fluid train`."),
                  data: str = typer.Option(..., help="Catalogue to score (labels not needed)."),
                  out: Path = typer.Option(..., help="Output file: .csv or .parquet."),
                  top_k: int = typer.Option(5, help="Labels per item."),
                  chunk_size: int = typer.Option(2048, help="Items scored per chunk.")):
    """Score a whole catalogue into a CSV/Parquet file (top-k labels with probabilities per item)."""
    classifier = load_run(run_dir)
    try:
        summary = classifier.predict_to_file(data, out, top_k=top_k, chunk_size=chunk_size,
                                             progress=show_progress())
    except USER_ERRORS as error:
        fail(str(error))
    console.print(f"wrote {summary['n_items']} rows to [bold]{out}[/]; {summary['n_unscorable']} without text or "
                  f"image (marked in the error column); {summary['n_unreadable_images']} with an image that could "
                  "not be read, scored without it (the image_problem column says why); "
                  f"{summary['n_dropped_by_reader']} rows of the input could not be read and are not in the file",
                  soft_wrap=True)
    if summary["n_dropped_by_reader"]:
        console.print(json.dumps(summary["bad_rows"], indent=2, default=str), soft_wrap=True)
