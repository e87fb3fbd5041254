"""What every ``fluid`` command shares: the typer app, the console, error exits and result tables."""

from __future__ import annotations

import os
from pathlib import Path

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fluid.errors import OptionError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="FLUID: multimodal (image + text) product classification.")
console = Console()
error_console = Console(stderr=True)

#: Errors a command reports as a one-line message on stderr (what is wrong and where) with exit code 2 instead
#: of a traceback: bad values and files, unknown options, what the operating system refused (a missing or
#: unreadable file, a full disk, an encoder that cannot be loaded: ``EncoderLoadError``, ``SpillError``), and
#: YAML that is not plain data. A plain ``TypeError`` or ``KeyError`` is a bug in FLUID and keeps its traceback.
USER_ERRORS = (ValueError, OptionError, OSError, yaml.YAMLError)


TABLE_KEYS = (("accuracy", "Acc"), ("macro_precision", "Macro P"), ("macro_recall", "Macro R"),
              ("macro_f1", "Macro F1"), ("top5_accuracy", "Top-5"))


def fail(message: object) -> None:
    """Print ``error: <message>`` (its first line) on stderr and exit with code 2."""
    error_line(message)
    raise typer.Exit(code=2)


def warning_line(message: object, *showwarning_details) -> None:
    """``warning: <message>`` on stderr, no source line; also the ``warnings.showwarning`` of the ``fluid``
    executable (which passes the category, file and line too)."""
    error_console.print(f"[yellow]warning:[/] {escape(str(message))}", soft_wrap=True, highlight=False)


def error_line(message: object) -> None:
    """``error: <the first line of message>`` on stderr."""
    first = (str(message).strip().splitlines() or [type(message).__name__])[0]
    error_console.print(f"[bold red]error:[/] {escape(first)}", soft_wrap=True, highlight=False)


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
    from fluid.atomic import write_json

    eval_dir = run_dir / "eval"
    eval_dir.mkdir(parents=True, exist_ok=True)
    path = eval_dir / f"{name}.json"
    write_json(path, metrics)
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
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            fail(f"--head expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            fail(f"--head {pair!r}: the value is not a plain YAML value ({str(error).splitlines()[0]})")
    return overrides


def show_progress() -> bool:
    """Progress bars on a terminal, plain logs in CI."""
    return not os.environ.get("CI")
