"""What every ``fluid`` command shares: the typer app, the console, error exits and result tables."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from fluid.data.errors import SpillError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="FLUID: multimodal (image + text) product classification.")
console = Console()

#: Errors a command reports as a one-line message (what is wrong and where) instead of a traceback.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, KeyError, SpillError)


TABLE_KEYS = (("accuracy", "Acc"), ("macro_precision", "Macro P"), ("macro_recall", "Macro R"),
              ("macro_f1", "Macro F1"), ("top5_accuracy", "Top-5"))


def fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code=2)


def results_table(title: str, results: dict[str, dict]) -> Table:
    table = Table(title=title)
    table.add_column("system")
    for _, name in TABLE_KEYS:
        table.add_column(name, justify="right")
    table.add_column("n", justify="right")
    for system, metrics in results.items():
        table.add_row(system, *[f"{100 * metrics[k]:.1f}" for k, _ in TABLE_KEYS], str(metrics["n_items"]))
    return table


def write_eval(run_dir: Path, name: str, metrics: dict) -> Path:
    from fluid.api import _write_json

    eval_dir = run_dir / "eval"
    eval_dir.mkdir(parents=True, exist_ok=True)
    path = eval_dir / f"{name}.json"
    _write_json(path, metrics)
    return path


def load_run(run_dir: Path):
    from fluid import Classifier

    try:
        return Classifier.load(run_dir)
    except FileNotFoundError as error:
        fail(str(error))

def parse_devices(value: str):
    return int(value) if value.isdigit() else value


def parse_overrides(pairs: list[str]) -> dict:
    import yaml

    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            fail(f"--head expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def show_progress() -> bool:
    """Progress bars on a terminal, plain logs in CI."""
    return not os.environ.get("CI")
