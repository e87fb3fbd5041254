"""``fluid experiment paper``: every system of the paper's Tables 1-3, MoLT and the classical baselines on one
split, with the missing-modality table, the claims table and a plot (see docs/experiments.md)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from fluid.cli.common import USER_ERRORS, app, console, fail, show_progress

experiment_app = typer.Typer(no_args_is_help=True, help="Multi-system experiments (`fluid experiment paper`).")
app.add_typer(experiment_app, name="experiment")


def _split_names(values: list[str]) -> list[str]:
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


@experiment_app.command()
def paper(
    data: Optional[str] = typer.Option(None, help="GLAMI-1M folder/zip or any catalogue; default: the built-in "
                                                  "synthetic catalogue (written to OUT/data)."),
    out: Path = typer.Option(Path("fluid-experiment"), help="Output folder: results.md, results.json, "
                                                              "paper_vs_ours.png, split.csv, rows/, runs/."),
    seeds: Optional[int] = typer.Option(None, help="Seeds per deep system (mean ± std; default 3, 1 with --quick)."),
    models: list[str] = typer.Option([], help="Systems to run (repeat or comma-separate; default: all, see "
                                              "`fluid models`)."),
    quick: bool = typer.Option(False, "--quick", help="Small catalogue, few epochs: a few minutes on 2 CPU cores."),
    items: Optional[int] = typer.Option(None, help="Synthetic catalogue size (default 2000; 1200 with --quick)."),
    epochs: Optional[int] = typer.Option(None, help="Epochs of the deep rows (default 10; 6 with --quick)."),
    text_encoder: str = typer.Option("tiny", help="Text encoder of every deep row (hub name, local dir, tiny)."),
    image_encoder: str = typer.Option("tiny", help="Image encoder of every deep row."),
    modality_dropout: float = typer.Option(0.3, help="Rate of the '+md' (modality dropout) training variant."),
    dropout_models: list[str] = typer.Option([], help="Systems that also get the '+md' variant (default: every "
                                                      "multimodal one; with --quick fluid, molt, "
                                                      "tfidf-image-logreg)."),
    split_seed: int = typer.Option(0, help="Seed of the split (and of the synthetic catalogue)."),
    test_fraction: float = typer.Option(0.2, help="Test share of a catalogue without an official test split."),
    text_col: list[str] = typer.Option([], help="Text column(s) of a table file (default: text)."),
    image_col: Optional[str] = typer.Option(None), label_col: Optional[str] = typer.Option(None),
    id_col: Optional[str] = typer.Option(None), language_col: Optional[str] = typer.Option(None),
    image_root: Optional[str] = typer.Option(None, help="Folder image paths are relative to."),
):
    """Train and evaluate every system of the paper's Tables 1-3, MoLT and the classical baselines on one
    split; write OUT/results.md and OUT/results.json. Rerunning continues where a killed run stopped."""
    from fluid.experiment import ExperimentSettings, run_experiment

    columns = {key: value for key, value in dict(
        text_cols=text_col or None, image_col=image_col, label_col=label_col, id_col=id_col,
        language_col=language_col, image_root=image_root).items() if value is not None}
    settings = ExperimentSettings(
        out=str(out), data=data, seeds=seeds or (1 if quick else 3), models=_split_names(models) or None,
        quick=quick, items=items,
        epochs=epochs, text_encoder=text_encoder, image_encoder=image_encoder, modality_dropout=modality_dropout,
        dropout_models=_split_names(dropout_models) or None, split_seed=split_seed, test_fraction=test_fraction,
        columns=columns)
    started = time.perf_counter()

    def on_row(row, status):
        console.print(f"[{time.perf_counter() - started:6.0f} s] {row.system} (seed {row.seed}): {status}")

    try:
        results = run_experiment(settings, progress=show_progress(), on_row=on_row)
    except USER_ERRORS as error:
        fail(str(error))
    typer.echo((out / "results.md").read_text(encoding="utf-8"))
    console.print(f"results: {out / 'results.md'}, {out / 'results.json'}; "
                  f"{results['wall_seconds']:.0f} s")
