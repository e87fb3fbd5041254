"""``fluid synth``: the built-in synthetic catalogue."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from fluid.cli.common import app, console, fail


@app.command()
def synth(out: Path = typer.Option(..., help="Folder to write the catalogue into (GLAMI-1M layout)."),
          items: int = typer.Option(3000, help="Number of products (train + test)."),
          seed: int = typer.Option(0, help="Random seed; the same seed writes the same files."),
          noise: float = typer.Option(0.1, help="Share of training labels that are wrong (machine-labelled)."),
          mode: str = typer.Option("realistic", help="realistic: class evidence on both sides, each noisy; "
                                                     "complementary: the type only in the text, the pattern only "
                                                     "in the image.")):
    """Write the built-in synthetic catalogue in the GLAMI-1M layout."""
    from fluid.data.synthetic import write_synthetic

    started = time.perf_counter()
    try:
        folder = write_synthetic(out, items=items, seed=seed, noise=noise, mode=mode)
    except (ValueError, FileExistsError) as error:
        fail(str(error))
    console.print(f"wrote {items} items to [bold]{folder}[/] in {time.perf_counter() - started:.1f} s")
