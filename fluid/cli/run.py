"""Training and evaluation: ``fluid demo``, ``train``, ``evaluate``, ``report``, ``models``."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Optional

import typer

from fluid.cli.common import (USER_ERRORS, app, console, fail, load_run, parse_devices, parse_overrides, results_table,
                              show_progress, write_eval)


DEMO_SYSTEMS = ("fluid", "image-only", "text-only", "tfidf-image-logreg")  # the last: the classical floor
QUICK_EPOCHS = 5  # `fluid demo --quick`: the epoch budget; the auto recipe chooses everything else


@app.command()
def demo(out: Path = typer.Option(Path("fluid-demo"), help="Output folder: DIR/<system>/ runs, results.json."),
         items: Optional[int] = typer.Option(None, help="Catalogue size (default 2000; 1200 with --quick)."),
         epochs: Optional[int] = typer.Option(None, help="Epochs per system (default: the auto recipe's; 5 with "
                                                         "--quick)."),
         quick: bool = typer.Option(False, "--quick", help="A smaller, faster run (for CI)."),
         mode: str = typer.Option("realistic", help="Synthetic catalogue: realistic or complementary (see "
                                                    "`fluid synth --help`)."),
         seed: int = typer.Option(0)):
    """The main job: synthetic catalogue → train FLUID, image-only, text-only and the classical floor → test-set
    table and report."""
    from fluid import Classifier
    from fluid.config import demo_config
    from fluid.data.synthetic import write_synthetic
    from fluid.training.report import metrics_table, write_report

    items = items or (1200 if quick else 2000)
    out.mkdir(parents=True, exist_ok=True)
    console.rule("[bold]FLUID demo")
    data = write_synthetic(out / "data", items=items, seed=seed, overwrite=True, mode=mode)
    console.print(f"synthetic catalogue ({mode}): {items} items in {data}")
    results, timings = {}, {}
    for system in DEMO_SYSTEMS:
        console.rule(f"training [bold]{system}[/]")
        config = demo_config(system, seed=seed, epochs=epochs or (QUICK_EPOCHS if quick else None), floor=False)
        classifier = Classifier.from_config(config, path=out / system)
        started = time.perf_counter()
        classifier.fit(data, progress=show_progress())
        timings[system] = time.perf_counter() - started
        metrics = classifier.evaluate(data)
        write_eval(out / system, "test", metrics)
        write_report(out / system)
        results[system] = metrics
    summary = {name: {k: m[k] for k in ("accuracy", "macro_precision", "macro_recall", "macro_f1",
                                         "weighted_f1", "top5_accuracy", "n_items", "n_skipped")}
               | {"train_seconds": round(timings[name], 1)} for name, m in results.items()}
    (out / "results.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out / "results.md").write_text("# FLUID demo: synthetic catalogue, test split (%)\n\n"
                                    + metrics_table(results), encoding="utf-8")
    console.print(results_table("Test split of the synthetic catalogue (%)", results))
    console.print(f"results: {out / 'results.json'}; reports: {out}/<system>/report.md")

@app.command()
def train(
    data: str = typer.Option(..., help="Training data: CSV/TSV/Parquet/JSONL catalogue or GLAMI-1M folder/zip."),
    model: str = typer.Option("fluid", help="Head name (see `fluid models`)."),
    out: Path = typer.Option(..., help="Run directory to write."),
    recipe: Optional[str] = typer.Option(None, help="auto (default: settings fitted to the catalogue and "
                                                    "encoders) or paper (the paper's numbers); options win."),
    val_data: Optional[str] = typer.Option(None, help="Validation data; default: a stratified split of --data."),
    config: Optional[Path] = typer.Option(None, help="YAML config file (keys of config.yaml); options win."),
    epochs: Optional[int] = typer.Option(None), batch_size: Optional[int] = typer.Option(None),
    lr: Optional[float] = typer.Option(None),
    text_encoder: Optional[str] = typer.Option(None, help="Hub name, local dir, 'tiny', or a packaged preset "
                                                         "(minilm: English; e5-small: ~100 languages)."),
    image_encoder: Optional[str] = typer.Option(None, help="Hub name, local dir, 'tiny', or a packaged preset "
                                                           "(efficientnet-lite0, efficientnet-lite2)."),
    freeze: Optional[bool] = typer.Option(None, "--freeze/--no-freeze",
                                          help="Freeze encoders (default: pretrained frozen, tiny trained)."),
    modality_dropout: Optional[float] = typer.Option(None, help="Drop image or text per sample in training."),
    token_dropout: Optional[float] = typer.Option(None, help="Share of a trained text encoder's input tokens read "
                                                             "as [UNK] in training (auto: 0.3 from scratch)."),
    image_augment: Optional[float] = typer.Option(None, help="A trained image encoder's training images are mirrored "
                                                             "at random and shifted by up to this share of their "
                                                             "side (auto: 0.125 when it trains, 0 = off)."),
    colour_augment: Optional[float] = typer.Option(None, help="Probability that a trained image encoder sees a "
                                                              "training image with its colour channels in a random "
                                                              "order (default 0: off; for catalogues where colour "
                                                              "says nothing about the class)."),
    devices: str = typer.Option("auto", help="Devices for Lightning: auto, or a number (DDP for several)."),
    precision: Optional[str] = typer.Option(None, help="32-true, bf16-mixed, 16-mixed, ..."),
    time_limit: Optional[float] = typer.Option(None, help="Seconds; stops at an epoch boundary."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out."),
    seed: Optional[int] = typer.Option(None),
    text_col: list[str] = typer.Option(["text"], help="Text column(s); repeat to join several."),
    image_col: str = typer.Option("image"), label_col: str = typer.Option("label"),
    id_col: Optional[str] = typer.Option(None), language_col: Optional[str] = typer.Option(None),
    label_source_col: Optional[str] = typer.Option(None),
    image_root: Optional[str] = typer.Option(None, help="Folder image paths are relative to (default: file's)."),
    encoding: Optional[str] = typer.Option(None, help="Text encoding of the file (default: detected)."),
    delimiter: Optional[str] = typer.Option(None, help="CSV/TSV field separator: one character, or tab, comma, "
                                                       "semicolon, pipe (default: detected from the header)."),
    on_bad_row: Optional[str] = typer.Option(None, help="skip | missing-modality | fail"),
    head: list[str] = typer.Option([], help="Head override KEY=VALUE (e.g. num_experts=8); repeatable."),
    floor: Optional[bool] = typer.Option(None, "--floor/--no-floor",
                                         help="Fit the classical baseline on the same split and compare (default on)."),
    candidate: list[str] = typer.Option([], help="With --model auto: a head to train (repeatable; default fluid, "
                                                  "plus text-only and image-only when every encoder is frozen)."),
):
    """Train a model and write its run directory."""
    from fluid import Classifier
    from fluid.config import RunConfig
    from fluid.training.report import write_report

    params = {}
    if config is not None:
        params.update(RunConfig.load(config).keywords())
    options = dict(model=model, recipe=recipe, epochs=epochs, batch_size=batch_size, lr=lr, text_encoder=text_encoder,
                   image_encoder=image_encoder, freeze=freeze, modality_dropout=modality_dropout,
                   token_dropout=token_dropout, image_augment=image_augment, colour_augment=colour_augment,
                   precision=precision, seed=seed, on_bad_row=on_bad_row, text=text_col, image=image_col,
                   label=label_col, id=id_col, language=language_col, label_source=label_source_col,
                   image_root=image_root, encoding=encoding, delimiter=delimiter, floor=floor,
                   candidates=candidate or None)
    params.update({k: v for k, v in options.items() if v is not None})
    if head:
        params["head"] = {**params.get("head", {}), **parse_overrides(head)}
    created = not out.exists()
    try:
        classifier = Classifier(path=str(out), **params)
        classifier.fit(data, val_data, devices=parse_devices(devices), resume=resume, time_limit=time_limit,
                       progress=show_progress())
    except USER_ERRORS as error:
        if created:
            remove_unless_resumable(out)
        fail(str(error))
    if classifier.metrics_ is None:
        return  # a secondary process of a multi-device (DDP) run: the first one writes the report
    write_report(out)
    console.print(results_table("Validation (%)", validation_rows(classifier)))
    selection = classifier.metrics_.get("selection")
    if selection:
        console.print(f"model auto: kept {selection['reason']}")
    console.print(f"run directory: [bold]{out}[/] (report: {out / 'report.md'})")


def remove_unless_resumable(directory: Path) -> None:
    """Delete ``directory`` (which this command created) unless it holds a checkpoint that ``--resume`` could
    continue: a run that failed before training leaves nothing behind."""
    if directory.is_dir() and not any(directory.rglob("*.ckpt")):
        shutil.rmtree(directory)


def validation_rows(classifier) -> dict[str, dict]:
    """The trained model's validation metrics, and its classical floor's when it has one."""
    rows = {classifier.config.model: classifier.metrics_["validation"]}
    floor = classifier.metrics_.get("floor")
    if floor:
        rows[f"floor: {floor['model']}"] = floor["validation"]
    return rows


@app.command()
def evaluate(run_dir: Path = typer.Argument(..., help="A run directory written by `fluid train`."),
             data: str = typer.Option(..., help="Labelled data (a GLAMI-1M folder uses its test split)."),
             drop_modality: Optional[str] = typer.Option(None, help="Remove 'image' or 'text' from every item."),
             corrupt: Optional[str] = typer.Option(
                 None, help="Corrupt every item's image or text: NAME[:SEVERITY 1-5], e.g. image-blur:2, "
                            "text-typos:4 (names: image-blur, image-noise, image-jpeg, image-occlusion, "
                            "text-shuffle, text-truncate, text-typos, text-drop-words)."),
             json_out: Optional[Path] = typer.Option(None, "--json", help="Write the metrics to this file.")):
    """Evaluate a trained run on labelled data (optionally without a modality or with corrupted input)."""
    from fluid.atomic import write_json
    from fluid.data.corruptions import parse_corruption
    from fluid.training.report import write_report

    try:
        classifier = load_run(run_dir)
        corruption = parse_corruption(corrupt, seed=classifier.config.seed) if corrupt is not None else None
        metrics = classifier.evaluate(data, drop_modality=drop_modality, corrupt=corruption,
                                      progress=show_progress())
    except USER_ERRORS as error:
        fail(str(error))
    name = "test" if drop_modality is None else f"test-without-{drop_modality}"
    if corruption is not None:
        name += f"-corrupt-{corruption.name}-{corruption.severity}"
    write_eval(run_dir, name, metrics)
    write_report(run_dir)
    if json_out is not None:
        write_json(json_out, metrics)
    console.print(results_table(f"{run_dir} on {data} (%)", {classifier.config.model: metrics}))
    if metrics.get("n_skipped") or metrics.get("n_unknown_label"):
        console.print(f"skipped items: {metrics['n_skipped']}; unknown labels: {metrics['n_unknown_label']} "
                      f"{metrics.get('unknown_labels', [])[:10]}")

@app.command()
def report(run_dir: Path = typer.Argument(..., help="A run directory.")):
    """(Re)build report.md and its plots for a run."""
    from fluid.training.report import write_report

    try:
        path = write_report(run_dir)
    except FileNotFoundError as error:
        fail(str(error))
    console.print(f"wrote {path}")

@app.command()
def models():
    """List the available model heads and the classical baselines."""
    from fluid.model import available_models

    for name in available_models():
        console.print(name)
