"""``fluid bench``: the benchmark suite (docs/benchmarks.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from fluid.atomic import write_text_atomic
from fluid.cli.common import app, console, fail

SECTIONS = ("training", "head_share", "quality", "scaling")


@app.command()
def bench(quick: bool = typer.Option(False, "--quick", help="A few minutes on 2 CPU cores (CI); default: full."),
          json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results to this JSON file."),
          markdown: Optional[Path] = typer.Option(None, help="Write the results as markdown (e.g. BENCHMARKS.md)."),
          device: str = typer.Option("auto", help="auto (CUDA when available), cpu, or cuda."),
          section: list[str] = typer.Option([], help=f"Run only these sections (repeatable): {', '.join(SECTIONS)}.")):
    """Benchmark FLUID's defaults and each optimisation against the reference configuration."""
    from fluid.bench import run_suite, write_markdown

    unknown = sorted(set(section) - set(SECTIONS))
    if unknown:
        fail(f"unknown --section {unknown}; choose from {list(SECTIONS)}")
    results = run_suite(quick=quick, device=device, sections=tuple(section) or SECTIONS,
                        log=lambda message: console.print(message, soft_wrap=True))
    text = json.dumps(results, indent=2)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(json_out, text)
    if markdown is not None:
        write_markdown(results, markdown)
    from fluid.bench.report import to_markdown

    console.print(to_markdown(results), soft_wrap=True, markup=False)
