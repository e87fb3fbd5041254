"""``fluid synth``: the built-in synthetic catalogue; ``fluid data fetch``: download a dataset (GLAMI-1M)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from fluid.cli.common import app, console, fail, show_progress


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


data_app = typer.Typer(no_args_is_help=True, help="Datasets: download them (`fluid data fetch glami-1m --to DIR`).")
app.add_typer(data_app, name="data")


@data_app.command()
def fetch(dataset: str = typer.Argument(..., help="What to download: glami-1m."),
          to: Path = typer.Option(..., "--to", help="Folder to download into (created if missing); the archive "
                                                    "lands in TO/GLAMI-1M-dataset.zip."),
          url: Optional[str] = typer.Option(None, help="Download from this address instead of the official one "
                                                       "(a mirror)."),
          sha256: Optional[str] = typer.Option(None, help="Expected SHA-256 of the archive (64 hex digits); "
                                                          "checked before the file is kept."),
          force: bool = typer.Option(False, "--force", help="Download again even if TO already holds a copy "
                                                            "(replaced once the new one is verified)."),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or messages; print only the "
                                                                   "archive's path.")):
    """Download a dataset's official archive, resuming an interrupted download, and verify it (size, SHA-256
    when given, the zip and its layout) before keeping it. Rerun the same command after an interruption."""
    import shlex

    from rich.markup import escape

    from fluid.data.fetch import DATASETS, GLAMI_URL, FetchError, fetch_glami, human_size, part_path

    if dataset.lower() not in DATASETS:
        fail(f"unknown dataset {dataset!r}: choose from {', '.join(DATASETS)}")
    source = url or GLAMI_URL

    def on_start(resumed_from: int, total: Optional[int]) -> None:
        size = human_size(total) if total is not None else "size unknown"
        resuming = f", resuming at {human_size(resumed_from)}" if resumed_from else ""
        console.print(f"downloading GLAMI-1M ({size}{resuming}) from {escape(source)} to "
                      f"{escape(str(part_path(to)))}", highlight=False, soft_wrap=True)

    started = time.perf_counter()
    try:
        result = fetch_glami(to, url=source, sha256=sha256, force=force, console=console,
                             progress=not quiet and console.is_terminal and show_progress(),
                             on_start=None if quiet else on_start)
    except (FetchError, ValueError, OSError) as error:
        fail(str(error))
    if quiet:
        typer.echo(str(result.path))
        return
    if not result.downloaded:
        what = "an extracted copy" if result.existing == "dir" else "a good copy"
        console.print(f"{escape(str(to))} already holds {what} of GLAMI-1M: [bold]{escape(str(result.path))}[/] "
                      f"(nothing downloaded; --force downloads it again)", highlight=False, soft_wrap=True)
    else:
        resumed = f", resumed at {result.resumed_from:,} bytes" if result.resumed_from else ""
        console.print(f"downloaded and verified [bold]{escape(str(result.path))}[/] ({result.size:,} bytes"
                      f"{resumed}) in {time.perf_counter() - started:.0f} s; SHA-256 {result.sha256}",
                      highlight=False, soft_wrap=True)
    data = shlex.quote(str(result.path))
    from_zip = " straight from the zip (nothing to extract)" if result.path.suffix == ".zip" else ""
    console.print(f"next: read it{from_zip}, e.g.\n"
                  f"  fluid experiment paper --data {data} --out glami-experiment\n"
                  f"  fluid train --data {data} --out runs/glami", highlight=False, soft_wrap=True, markup=False)
