"""``fluid export``: a trained run as an ONNX file (docs/serving.md, "ONNX export")."""

from __future__ import annotations

from pathlib import Path

import typer

from fluid.cli.common import app, console, fail, load_run


@app.command()
def export(run_dir: Path = typer.Argument(..., help="A run directory written by `fluid train`."),
           export_format: str = typer.Option("onnx", "--format", help="Export format (only onnx)."),
           out: Path = typer.Option(..., "--out", help="The file to write, e.g. model.onnx (a sidecar "
                                                        "model.onnx.json is written next to it)."),
           part: str = typer.Option("head", "--part", help="head: the FLUID head on encoder tokens; full: encoders "
                                                           "+ head on tokenizer ids and pixel values."),
           opset: int = typer.Option(18, help="ONNX opset version."),
           exporter: str = typer.Option("auto", help="auto (dynamo, then TorchScript), dynamo or torchscript.")):
    """Export a trained model to ONNX; the file is checked against PyTorch with onnxruntime before it is kept."""
    if export_format != "onnx":
        fail(f"--format {export_format!r} is not supported: the only export format is onnx")
    if part not in ("head", "full"):
        fail(f"--part must be head or full, got {part!r}")
    if exporter not in ("auto", "dynamo", "torchscript"):
        fail(f"--exporter must be auto, dynamo or torchscript, got {exporter!r}")
    try:
        import onnxruntime  # noqa: F401

        from fluid.export import ExportError, export_onnx
    except ImportError as error:
        fail(f"ONNX export needs the export extra (pip install -e \".[export]\"): {error}")
    classifier = load_run(run_dir)
    with console.status(f"exporting {classifier.config.model} ({part}) to ONNX"):
        try:
            sidecar = export_onnx(classifier, out, part=part, opset=opset, exporter=exporter)
        except ExportError as error:
            fail(str(error))
    differences = ", ".join(f"{k} {v:.2g}" for k, v in sidecar["verification"]["max_abs_diff"].items())
    console.print(f"wrote [bold]{out}[/] and {out}.json ({sidecar['exporter']} exporter, opset {opset}); inputs "
                  f"{', '.join(i['name'] for i in sidecar['inputs'])}; outputs {', '.join(sidecar['outputs'])}; "
                  f"onnxruntime vs PyTorch max |diff|: {differences}", soft_wrap=True)
