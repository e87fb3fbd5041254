"""The ``fluid`` command line: a thin layer over :class:`fluid.Classifier` (typer + rich)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="FLUID: multimodal (image + text) product classification.")
console = Console()

DEMO_SYSTEMS = ("fluid", "image-only", "text-only")
TABLE_KEYS = (("accuracy", "Acc"), ("macro_precision", "Macro P"), ("macro_recall", "Macro R"),
              ("macro_f1", "Macro F1"), ("top5_accuracy", "Top-5"))


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code=2)


def _results_table(title: str, results: dict[str, dict]) -> Table:
    table = Table(title=title)
    table.add_column("system")
    for _, name in TABLE_KEYS:
        table.add_column(name, justify="right")
    table.add_column("n", justify="right")
    for system, metrics in results.items():
        table.add_row(system, *[f"{100 * metrics[k]:.1f}" for k, _ in TABLE_KEYS], str(metrics["n_items"]))
    return table


def _write_eval(run_dir: Path, name: str, metrics: dict) -> Path:
    from fluid.api import _write_json

    eval_dir = run_dir / "eval"
    eval_dir.mkdir(parents=True, exist_ok=True)
    path = eval_dir / f"{name}.json"
    _write_json(path, metrics)
    return path


def _load(run_dir: Path):
    from fluid import Classifier

    try:
        return Classifier.load(run_dir)
    except FileNotFoundError as error:
        _fail(str(error))


# --------------------------------------------------------------------------------------------------- synth
@app.command()
def synth(out: Path = typer.Option(..., help="Folder to write the catalogue into (GLAMI-1M layout)."),
          items: int = typer.Option(3000, help="Number of products (train + test)."),
          seed: int = typer.Option(0, help="Random seed; the same seed writes the same files."),
          noise: float = typer.Option(0.1, help="Share of training labels that are wrong (machine-labelled).")):
    """Write the built-in synthetic catalogue in the GLAMI-1M layout."""
    from fluid.data.synthetic import write_synthetic

    started = time.perf_counter()
    folder = write_synthetic(out, items=items, seed=seed, noise=noise)
    console.print(f"wrote {items} items to [bold]{folder}[/] in {time.perf_counter() - started:.1f} s")


# --------------------------------------------------------------------------------------------------- demo
@app.command()
def demo(out: Path = typer.Option(Path("fluid-demo"), help="Output folder: DIR/<system>/ runs, results.json."),
         items: Optional[int] = typer.Option(None, help="Catalogue size (default 2000; 1200 with --quick)."),
         epochs: Optional[int] = typer.Option(None, help="Epochs per system (default 10; 5 with --quick)."),
         quick: bool = typer.Option(False, "--quick", help="A smaller, faster run (for CI)."),
         seed: int = typer.Option(0)):
    """The main job: synthetic catalogue → train FLUID, image-only, text-only → test-set table and report."""
    from fluid import Classifier
    from fluid.config import demo_config
    from fluid.data.synthetic import write_synthetic
    from fluid.training.report import metrics_table, write_report

    items = items or (1200 if quick else 2000)
    out.mkdir(parents=True, exist_ok=True)
    console.rule("[bold]FLUID demo")
    data = write_synthetic(out / "data", items=items, seed=seed, overwrite=True)
    console.print(f"synthetic catalogue: {items} items in {data}")
    results, timings = {}, {}
    for system in DEMO_SYSTEMS:
        console.rule(f"training [bold]{system}[/]")
        config = demo_config(system, seed=seed)
        if epochs is not None or quick:
            config.epochs = epochs or 5
        params = config.to_dict()
        columns = params.pop("columns")
        classifier = Classifier(path=str(out / system), **params,
                                **{k: v for k, v in columns.items() if k in ("label", "image")})
        started = time.perf_counter()
        classifier.fit(data, progress=not os.environ.get("CI"))
        timings[system] = time.perf_counter() - started
        metrics = classifier.evaluate(data)
        _write_eval(out / system, "test", metrics)
        write_report(out / system)
        results[system] = metrics
    summary = {name: {k: m[k] for k in ("accuracy", "macro_precision", "macro_recall", "macro_f1",
                                         "weighted_f1", "top5_accuracy", "n_items", "n_skipped")}
               | {"train_seconds": round(timings[name], 1)} for name, m in results.items()}
    (out / "results.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out / "results.md").write_text("# FLUID demo: synthetic catalogue, test split (%)\n\n"
                                    + metrics_table(results), encoding="utf-8")
    console.print(_results_table("Test split of the synthetic catalogue (%)", results))
    console.print(f"results: {out / 'results.json'}; reports: {out}/<system>/report.md")


# --------------------------------------------------------------------------------------------------- train
@app.command()
def train(
    data: str = typer.Option(..., help="Training data: CSV/TSV/Parquet/JSONL catalogue or GLAMI-1M folder/zip."),
    model: str = typer.Option("fluid", help="Head name (see `fluid models`)."),
    out: Path = typer.Option(..., help="Run directory to write."),
    val_data: Optional[str] = typer.Option(None, help="Validation data; default: a stratified split of --data."),
    config: Optional[Path] = typer.Option(None, help="YAML config file (keys of config.yaml); options win."),
    epochs: Optional[int] = typer.Option(None), batch_size: Optional[int] = typer.Option(None),
    lr: Optional[float] = typer.Option(None),
    text_encoder: Optional[str] = typer.Option(None, help="Hub name, local dir, or 'tiny'."),
    image_encoder: Optional[str] = typer.Option(None, help="Hub name, local dir, or 'tiny'."),
    freeze: Optional[bool] = typer.Option(None, "--freeze/--no-freeze",
                                          help="Freeze encoders (default: pretrained frozen, tiny trained)."),
    modality_dropout: Optional[float] = typer.Option(None, help="Drop image or text per sample in training."),
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
    on_bad_row: Optional[str] = typer.Option(None, help="skip | missing-modality | fail"),
    head: list[str] = typer.Option([], help="Head override KEY=VALUE (e.g. num_experts=8); repeatable."),
):
    """Train a model and write its run directory."""
    from fluid import Classifier
    from fluid.config import RunConfig
    from fluid.training.report import write_report

    params = {}
    if config is not None:
        loaded = RunConfig.load(config).to_dict()
        columns = loaded.pop("columns")
        params.update(loaded)
        params.update({k: v for k, v in columns.items() if k != "encoding"})
    options = dict(model=model, epochs=epochs, batch_size=batch_size, lr=lr, text_encoder=text_encoder,
                   image_encoder=image_encoder, freeze=freeze, modality_dropout=modality_dropout,
                   precision=precision, seed=seed, on_bad_row=on_bad_row, text=text_col, image=image_col,
                   label=label_col, id=id_col, language=language_col, label_source=label_source_col,
                   image_root=image_root, encoding=encoding)
    params.update({k: v for k, v in options.items() if v is not None})
    if head:
        params["head"] = {**params.get("head", {}), **_parse_overrides(head)}
    try:
        classifier = Classifier(path=str(out), **params)
        classifier.fit(data, val_data, devices=_devices(devices), resume=resume, time_limit=time_limit,
                       progress=not os.environ.get("CI"))
    except (ValueError, TypeError, FileNotFoundError, KeyError) as error:
        _fail(str(error))
    if classifier.metrics_ is None:
        return  # a secondary process of a multi-device (DDP) run: the first one writes the report
    write_report(out)
    console.print(_results_table("Validation (%)", {model: classifier.metrics_["validation"]}))
    console.print(f"run directory: [bold]{out}[/] (report: {out / 'report.md'})")


def _devices(value: str):
    return int(value) if value.isdigit() else value


def _parse_overrides(pairs: list[str]) -> dict:
    import yaml

    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            _fail(f"--head expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


# --------------------------------------------------------------------------------------------------- evaluate
@app.command()
def evaluate(run_dir: Path = typer.Argument(..., help="A run directory written by `fluid train`."),
             data: str = typer.Option(..., help="Labelled data (a GLAMI-1M folder uses its test split)."),
             drop_modality: Optional[str] = typer.Option(None, help="Remove 'image' or 'text' from every item."),
             json_out: Optional[Path] = typer.Option(None, "--json", help="Write the metrics to this file.")):
    """Evaluate a trained run on labelled data."""
    from fluid.api import _write_json
    from fluid.training.report import write_report

    classifier = _load(run_dir)
    try:
        metrics = classifier.evaluate(data, drop_modality=drop_modality, progress=not os.environ.get("CI"))
    except (ValueError, TypeError, FileNotFoundError, KeyError) as error:
        _fail(str(error))
    name = "test" if drop_modality is None else f"test-without-{drop_modality}"
    _write_eval(run_dir, name, metrics)
    write_report(run_dir)
    if json_out is not None:
        _write_json(json_out, metrics)
    console.print(_results_table(f"{run_dir} on {data} (%)", {classifier.config.model: metrics}))
    if metrics.get("n_skipped") or metrics.get("n_unknown_label"):
        console.print(f"skipped items: {metrics['n_skipped']}; unknown labels: {metrics['n_unknown_label']} "
                      f"{metrics.get('unknown_labels', [])[:10]}")


# --------------------------------------------------------------------------------------------------- predict
@app.command()
def predict(run_dir: Path = typer.Argument(..., help="A run directory written by `fluid train`."),
            image: Optional[Path] = typer.Option(None, help="Product image file."),
            text: Optional[str] = typer.Option(None, help="Product text (name and description)."),
            top_k: int = typer.Option(5, help="How many labels to print.")):
    """Predict one product; prints JSON with the top-k labels, probabilities and the modality gate."""
    import pandas as pd

    if image is None and not text:
        _fail("give --image, --text, or both")
    if image is not None and not image.is_file():
        _fail(f"image file not found: {image}")
    classifier = _load(run_dir)
    columns = classifier.config.columns
    row = {columns.text[0]: text, columns.image or "image": image.read_bytes() if image is not None else None}
    result = classifier.predict_top_k(pd.DataFrame([row]), k=top_k)[0]
    print(json.dumps(result, indent=2))


# --------------------------------------------------------------------------------------------------- predict-batch
@app.command("predict-batch")
def predict_batch(run_dir: Path = typer.Argument(..., help="A run directory written by `fluid train`."),
                  data: str = typer.Option(..., help="Catalogue to score (labels not needed)."),
                  out: Path = typer.Option(..., help="Output file: .csv or .parquet."),
                  top_k: int = typer.Option(5, help="Labels per item."),
                  chunk_size: int = typer.Option(2048, help="Items scored per chunk.")):
    """Score a whole catalogue into a CSV/Parquet file (top-k labels with probabilities per item)."""
    classifier = _load(run_dir)
    try:
        summary = classifier.predict_to_file(data, out, top_k=top_k, chunk_size=chunk_size,
                                             progress=not os.environ.get("CI"))
    except (ValueError, TypeError, FileNotFoundError, KeyError) as error:
        _fail(str(error))
    console.print(f"wrote {summary['n_items']} rows to [bold]{out}[/]; {summary['n_unscorable']} without text or "
                  f"image (marked in the error column); {summary['n_dropped_by_reader']} rows of the input "
                  "could not be read and are not in the file", soft_wrap=True)
    if summary["n_dropped_by_reader"]:
        console.print(json.dumps(summary["bad_rows"], indent=2, default=str), soft_wrap=True)


# --------------------------------------------------------------------------------------------------- report
@app.command()
def report(run_dir: Path = typer.Argument(..., help="A run directory.")):
    """(Re)build report.md and its plots for a run."""
    from fluid.training.report import write_report

    try:
        path = write_report(run_dir)
    except FileNotFoundError as error:
        _fail(str(error))
    console.print(f"wrote {path}")


# --------------------------------------------------------------------------------------------------- serve
@app.command()
def serve(run_dir: Path = typer.Argument(..., help="A run directory written by `fluid train`."),
          host: str = typer.Option("127.0.0.1", help="Address to bind (default: loopback only)."),
          port: int = typer.Option(8000, help="Port to listen on."),
          workers: int = typer.Option(1, min=1, help="Server processes; each loads its own copy of the model."),
          max_upload_mb: float = typer.Option(10.0, help="Largest request body accepted, in MB (else 413)."),
          max_batch: int = typer.Option(64, help="Most items in one /predict/batch request.")):
    """Serve predictions over HTTP (see docs/serving.md)."""
    try:
        import uvicorn

        from fluid.serve.app import ENV_MAX_BATCH, ENV_MAX_UPLOAD_MB, ENV_RUN_DIR, create_app
    except ImportError as error:
        _fail(f"the server needs the serve extra (pip install -e \".[serve]\"): {error}")
    if max_upload_mb <= 0 or max_batch < 1:
        _fail("--max-upload-mb must be > 0 and --max-batch >= 1")
    if workers == 1:
        classifier = _load(run_dir)
        uvicorn.run(create_app(classifier, max_upload_mb=max_upload_mb, max_batch=max_batch),
                    host=host, port=port, workers=1)
        return
    _load(run_dir)  # fail early and clearly on a bad run directory, before starting the workers
    os.environ.update({ENV_RUN_DIR: str(run_dir.resolve()), ENV_MAX_UPLOAD_MB: str(max_upload_mb),
                       ENV_MAX_BATCH: str(max_batch)})
    uvicorn.run("fluid.serve.app:app_from_env", factory=True, host=host, port=port, workers=workers)


@app.command()
def models():
    """List the available model heads."""
    from fluid.model import available_heads

    for name in available_heads():
        console.print(name)


if __name__ == "__main__":
    app()
