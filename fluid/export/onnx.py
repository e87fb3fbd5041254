"""ONNX export of a fitted :class:`fluid.Classifier`, checked against PyTorch with onnxruntime.

Two parts can be exported:

* ``"head"``: the classification head alone. Inputs: ``image_tokens`` (B x L_i x D_i float32), ``image_mask``
  (B x L_i bool), ``text_tokens`` (B x L_t x D_t float32), ``text_mask`` (B x L_t bool) — a unimodal head
  takes only its own pair; MoLT takes the last k encoder layers stacked, k x B x L x D. A mask row all False =
  that modality is missing for that item.
* ``"full"``: encoders + head. Inputs: what the encoders' ``prepare`` returns — ``input_ids`` and
  ``attention_mask`` (B x L_t int64; a row of zeros = no text; plus ``token_type_ids`` when the tokenizer makes
  them) and ``pixel_values`` (B x 3 x H x W float32) with ``image_present`` (B bool; False = no image).

Outputs: ``logits`` and ``probabilities`` (B x C), plus ``gate`` (B x l) for heads whose registry entry declares a
modality gate. The inputs, the gate and the encoder layers follow the head's entry (``fluid.model.head_spec``).
Batch (and the token/sequence lengths) are dynamic axes.

The graph is captured with the ``torch.export``-based (dynamo) exporter; if that fails, the TorchScript
exporter (``dynamo=False``) is tried. Either way the file is only written when onnxruntime reproduces the
PyTorch outputs on the export batch and on two batches of other sizes and lengths. Training-only auxiliary
losses (FLUID's contrastive loss, MoLT's soft-CCA loss) are not computed in the graph (``aux_losses=False``, as
prediction runs the head): they do not change the logits, and their data-dependent shapes (``x[present]``,
``if n < 2``) cannot be captured. onnxruntime has
no bool ``Where`` kernel, so such nodes are rewritten to compute on uint8.

:func:`export_head` exports a bare head from :func:`fluid.model.build_head` the same way (no classifier).

A JSON sidecar ``<file>.json`` records the classes, input/output names, the preprocessing (where the
tokenizer and image processor live, max_length, pixel shape), the opset and the exporter used.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from fluid.atomic import atomic_path, write_json_atomic
from fluid.model import HeadSpec, head_spec

__all__ = ["DEFAULT_OPSET", "EXPORT_PARTS", "SIDECAR_FORMAT", "ExportError", "export_head", "export_onnx",
           "sidecar_path"]

EXPORT_PARTS = ("head", "full")
EXPORTERS = ("auto", "dynamo", "torchscript")
SIDECAR_FORMAT = "fluid.onnx/1"
DEFAULT_OPSET = 18


class ExportError(RuntimeError):
    """The model could not be exported, or the exported graph does not reproduce PyTorch."""


def sidecar_path(onnx_path: str | os.PathLike) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    return Path(str(onnx_path) + ".json")


# ----------------------------------------------------------------------------------------------- graphs
class _Graph(nn.Module):
    """Base of the exported modules: ``forward(*tensors)`` in the order of ``input_names``; returns
    ``(logits, probabilities[, gate])``."""

    input_names: list[str]
    with_gate: bool

    def _outputs(self, output) -> tuple[Tensor, ...]:
        logits = output.logits.float()
        result = (logits, torch.softmax(logits, dim=-1))
        return (*result, output.gate.float()) if self.with_gate else result


class _HeadGraph(_Graph):
    """The head alone: ``image_tokens, image_mask, text_tokens, text_mask`` (the ones the head reads)."""

    def __init__(self, head: nn.Module, *, uses_image: bool, uses_text: bool, layers: int, with_gate: bool):
        super().__init__()
        self.head = head
        self.layers = layers
        self.with_gate = with_gate
        self.input_names = ([*(["image_tokens", "image_mask"] if uses_image else []),
                             *(["text_tokens", "text_mask"] if uses_text else [])])

    def _tokens(self, tokens: Tensor | None):
        if tokens is None or self.layers == 1:
            return tokens
        return tuple(tokens.unbind(0))  # k x B x L x D -> k tensors B x L x D (MoLT)

    def forward(self, *tensors: Tensor):
        named = dict(zip(self.input_names, tensors))
        output = self.head(self._tokens(named.get("image_tokens")), self._tokens(named.get("text_tokens")),
                           image_mask=named.get("image_mask"), text_mask=named.get("text_mask"), aux_losses=False)
        return self._outputs(output)


class _FullGraph(_Graph):
    """Encoders + head: ``input_ids, attention_mask[, token_type_ids], pixel_values, image_present``."""

    def __init__(self, network: nn.Module, *, text_keys: list[str], with_gate: bool):
        super().__init__()
        self.network = network
        self.with_gate = with_gate
        self.text_keys = text_keys
        uses_image = network.image_encoder is not None
        self.input_names = [*text_keys, *(["pixel_values", "image_present"] if uses_image else [])]

    def batch(self, *tensors: Tensor) -> dict[str, Any]:
        """The network's batch dict from the graph inputs."""
        named = dict(zip(self.input_names, tensors))
        batch: dict[str, Any] = {"text": None, "image": None}
        if self.text_keys:
            text = {key: named[key] for key in self.text_keys}
            text["present"] = named["attention_mask"].sum(dim=1) > 0  # the preprocessor zeroes absent rows
            batch["text"] = text
        if "pixel_values" in named:
            batch["image"] = {"pixel_values": named["pixel_values"], "present": named["image_present"].bool()}
        return batch

    def forward(self, *tensors: Tensor):
        return self._outputs(self.network(self.batch(*tensors), aux_losses=False))


# ----------------------------------------------------------------------------------------------- inputs
def _head_inputs(graph: _HeadGraph, head: nn.Module, batch: int, image_length: int, text_length: int,
                 seed: int) -> tuple[Tensor, ...]:
    """Random tokens with realistic masks: item 1 has no image, item 2 has no text, the text is padded."""
    generator = torch.Generator().manual_seed(seed)
    lead = (graph.layers,) if graph.layers > 1 else ()
    values: dict[str, Tensor] = {}
    image_mask = torch.ones(batch, image_length, dtype=torch.bool)
    text_mask = torch.ones(batch, text_length, dtype=torch.bool)
    if batch > 1:
        image_mask[1] = False
        text_mask[0, max(1, text_length // 2):] = False
    if batch > 2:
        text_mask[2] = False
    values["image_tokens"] = torch.randn(*lead, batch, image_length, head.image_dim, generator=generator)
    values["text_tokens"] = torch.randn(*lead, batch, text_length, head.text_dim, generator=generator)
    values["image_mask"], values["text_mask"] = image_mask, text_mask
    return tuple(values[name] for name in graph.input_names)


_EXAMPLE_TEXTS = ["red cotton shirt with long sleeves", None, "blue dress", "a pair of green running shoes, size 42",
                  "shirt"]
_EXAMPLE_COLOURS = [(220, 30, 30), (30, 30, 220), None, (30, 200, 30), (240, 240, 240)]


def _full_inputs(graph: _FullGraph, network: nn.Module, texts: list, colours: list) -> tuple[Tensor, ...]:
    """The encoders' own preprocessing of a few products (some without text or image)."""
    values: dict[str, Tensor] = {}
    if graph.text_keys:
        prepared = network.text_encoder.prepare(texts)
        values.update({key: prepared[key] for key in graph.text_keys})
    if network.image_encoder is not None:
        images = [Image.new("RGB", (48, 40), colour) if colour else None for colour in colours]
        prepared = network.image_encoder.prepare(images)
        values["pixel_values"], values["image_present"] = prepared["pixel_values"], prepared["present"]
    return tuple(values[name] for name in graph.input_names)


def _dynamic_axes(graph: _Graph, part: str) -> dict[str, dict[int, str]]:
    """Axis names per input: batch everywhere; token/sequence lengths where they vary."""
    lead = 1 if isinstance(graph, _HeadGraph) and graph.layers > 1 else 0
    axes: dict[str, dict[int, str]] = {}
    for name in graph.input_names:
        if part == "head":
            first = lead if name.endswith("_tokens") else 0  # MoLT: tokens k x B x L x D, masks B x L
            axes[name] = {first: "batch", first + 1: "image_length" if name.startswith("image") else "text_length"}
        elif name in ("pixel_values", "image_present"):
            axes[name] = {0: "batch"}
        else:
            axes[name] = {0: "batch", 1: "sequence"}
    return axes


# ----------------------------------------------------------------------------------------------- export
@contextlib.contextmanager
def _captured_output(log: io.StringIO) -> Iterator[None]:
    """The exporters print progress and, on failure, whole graphs: keep them for the error message."""
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        yield


def _export_dynamo(graph: _Graph, inputs: tuple[Tensor, ...], out: Path, output_names: list[str],
                   axes: dict[str, dict[int, str]], opset: int) -> None:
    dims: dict[str, Any] = {}
    specs = tuple({axis: dims.setdefault(label, torch.export.Dim(label)) for axis, label in axes[name].items()}
                  for name in graph.input_names)
    torch.onnx.export(graph, inputs, str(out), input_names=graph.input_names, output_names=output_names,
                      dynamic_shapes=(specs,), opset_version=opset, dynamo=True, external_data=False,
                      verbose=False)


def _export_torchscript(graph: _Graph, inputs: tuple[Tensor, ...], out: Path, output_names: list[str],
                        axes: dict[str, dict[int, str]], opset: int) -> None:
    output_axes = {name: {0: "batch"} for name in output_names}
    torch.onnx.export(graph, inputs, str(out), input_names=graph.input_names, output_names=output_names,
                      dynamic_axes={**axes, **output_axes}, opset_version=opset, dynamo=False)


def _cast_bool_where(path: Path) -> int:
    """onnxruntime has no ``Where`` kernel for bool values (the text encoder's ``torch.where`` on masks):
    rewrite each such node as Cast(uint8) -> Where -> Cast(bool). Returns how many nodes were rewritten."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {value.name: value.type.tensor_type.elem_type
             for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    for tensor in inferred.graph.initializer:
        types[tensor.name] = tensor.data_type
    nodes, rewritten = [], 0
    for node in model.graph.node:
        if node.op_type != "Where" or types.get(node.output[0]) != TensorProto.BOOL:
            nodes.append(node)
            continue
        rewritten += 1
        prefix = f"{node.name or 'where'}_u8_{rewritten}"
        condition, x, y = node.input
        nodes += [helper.make_node("Cast", [x], [f"{prefix}_x"], to=TensorProto.UINT8, name=f"{prefix}_cast_x"),
                  helper.make_node("Cast", [y], [f"{prefix}_y"], to=TensorProto.UINT8, name=f"{prefix}_cast_y"),
                  helper.make_node("Where", [condition, f"{prefix}_x", f"{prefix}_y"], [f"{prefix}_out"],
                                   name=f"{prefix}_where"),
                  helper.make_node("Cast", [f"{prefix}_out"], [node.output[0]], to=TensorProto.BOOL,
                                   name=f"{prefix}_cast_out")]
    if rewritten:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        onnx.save(model, str(path))
    return rewritten


def _max_differences(session, graph: _Graph, inputs: tuple[Tensor, ...], output_names: list[str]) -> dict:
    """Largest |onnxruntime - PyTorch| per output on one batch."""
    with torch.no_grad():
        expected = [t.numpy() for t in graph(*inputs)]
    feeds = {name: tensor.numpy() for name, tensor in zip(graph.input_names, inputs)}
    got = session.run(output_names, feeds)
    differences = {}
    for name, want, have in zip(output_names, expected, got):
        if want.shape != have.shape:
            raise ExportError(f"output {name!r}: onnxruntime gives shape {have.shape}, PyTorch {want.shape}")
        differences[name] = float(np.max(np.abs(want - have))) if want.size else 0.0
    return differences


def export_onnx(classifier, out: str | os.PathLike, *, part: str = "head", opset: int = DEFAULT_OPSET,
                atol: float = 1e-4, exporter: str = "auto") -> dict:
    """Writes ``out`` (an ONNX file) and its sidecar ``out + ".json"``; returns the sidecar's content.

    Args:
        classifier: a fitted :class:`fluid.Classifier` (``fit`` or ``Classifier.load``).
        out: the ONNX file to write (written to a temporary name, checked, then renamed).
        part: ``"head"`` or ``"full"`` (see the module docstring).
        opset: ONNX opset version.
        atol: largest accepted |onnxruntime - PyTorch| difference on logits and probabilities.
        exporter: ``"auto"`` (dynamo, then TorchScript), ``"dynamo"`` or ``"torchscript"``.

    Raises:
        ExportError: neither exporter produced a graph that onnxruntime runs with the PyTorch numbers.
        ValueError: a bad ``part``/``exporter``.
    """
    from fluid.training.network import MultimodalNetwork

    if part not in EXPORT_PARTS:
        raise ValueError(f"part must be one of {EXPORT_PARTS}, got {part!r}")
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    classifier.check_fitted()
    network = classifier.network.cpu().eval()  # traced and checked on the CPU, wherever it last scored items
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    head = network.head
    with atomic_path(out) as tmp:
        if part == "head":
            image_length = network.image_encoder.num_tokens if network.image_encoder is not None else 8
            graph, example, checks = _head_graph(head, network.spec, network.encoder_layers, image_length)
        else:
            if network.encoder_layers > 1:
                raise ExportError(f"part='full' is not supported for {network.head.name!r}: it reads several "
                                  "encoder layers; export part='head' and run the encoders yourself")
            inference = MultimodalNetwork(head, network.text_encoder, network.image_encoder).eval()
            text_keys = []
            if inference.text_encoder is not None:
                text_keys = [k for k in inference.text_encoder.prepare(["a"]) if k != "present"]
            graph = _FullGraph(inference, text_keys=text_keys, with_gate=network.spec.gate)
            example = _full_inputs(graph, inference, _EXAMPLE_TEXTS[:3], _EXAMPLE_COLOURS[:3])
            checks = [_full_inputs(graph, inference, _EXAMPLE_TEXTS[::-1], _EXAMPLE_COLOURS),
                      _full_inputs(graph, inference, ["green"], [(30, 200, 30)])]
        result = _export_verified(graph, example, checks, tmp, part=part, opset=opset, atol=atol, exporter=exporter,
                                  what=f"{network.head.name!r} (part={part!r})")
        sidecar = _sidecar(classifier, graph, part, result["outputs"], _dynamic_axes(graph, part), opset,
                           result["exporter"], result["max_abs_diff"], result["exporter_failures"], out)
        sidecar["graph_fixes"] = result["graph_fixes"]
    write_json_atomic(sidecar_path(out), sidecar)
    return sidecar


def export_head(head: nn.Module, out: str | os.PathLike, *, image_length: int = 17, opset: int = DEFAULT_OPSET,
                atol: float = 1e-4, exporter: str = "auto") -> dict:
    """Exports a bare head from :func:`fluid.model.build_head` (no classifier, no sidecar) and checks it
    with onnxruntime like :func:`export_onnx`; its inputs, gate output and encoder layers are those its registry
    entry declares. Returns ``{"exporter", "outputs", "inputs", "max_abs_diff", "exporter_failures",
    "graph_fixes"}``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    spec = head_spec(head.name)
    inference = copy.deepcopy(head).eval()  # the caller's head keeps its mode
    with atomic_path(out) as tmp:
        graph, example, checks = _head_graph(inference, spec, spec.encoder_layers(head.config), image_length)
        result = _export_verified(graph, example, checks, tmp, part="head", opset=opset, atol=atol,
                                  exporter=exporter, what=repr(head.name))
    return {**result, "inputs": list(graph.input_names)}


def _head_graph(head: nn.Module, spec: HeadSpec, layers: int, image_length: int):
    """The head graph (inputs for the modalities ``spec`` declares, a ``gate`` output when it declares one, ``layers``
    encoder layers), its export batch and two check batches."""
    graph = _HeadGraph(head, uses_image=spec.reads_image, uses_text=spec.reads_text, layers=layers,
                       with_gate=spec.gate)
    example = _head_inputs(graph, head, 3, image_length, 7, seed=0)
    checks = [_head_inputs(graph, head, 5, image_length, 11, seed=1),
              _head_inputs(graph, head, 1, image_length, 4, seed=2)]
    return graph, example, checks


def _export_verified(graph: _Graph, example: tuple[Tensor, ...], checks: list[tuple[Tensor, ...]], tmp: Path, *,
                     part: str, opset: int, atol: float, exporter: str, what: str) -> dict:
    """Exports ``graph`` to ``tmp`` (the caller's :func:`~fluid.atomic.atomic_path`) with the first exporter whose
    graph onnxruntime runs with the PyTorch numbers (on ``example`` and every ``checks`` batch). Returns what the
    sidecar records."""
    import onnxruntime

    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    graph.eval()
    output_names = ["logits", "probabilities", *(["gate"] if graph.with_gate else [])]
    axes = _dynamic_axes(graph, part)
    attempts = {"auto": ("dynamo", "torchscript"), "dynamo": ("dynamo",), "torchscript": ("torchscript",)}
    failures: list[str] = []
    for name in attempts[exporter]:
        log = io.StringIO()
        try:
            with _captured_output(log), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the exporters' notes on axis names and training mode
                (_export_dynamo if name == "dynamo" else _export_torchscript)(
                    graph, example, tmp, output_names, axes, opset)
            rewritten = _cast_bool_where(tmp)
            session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
            differences: dict[str, float] = {}
            for inputs in (example, *checks):
                for key, value in _max_differences(session, graph, inputs, output_names).items():
                    differences[key] = max(differences.get(key, 0.0), value)
            worst = max(differences["logits"], differences["probabilities"])
            if worst > atol:
                raise ExportError(f"onnxruntime differs from PyTorch by up to {worst:.3g} (> atol {atol})")
        except Exception as error:  # noqa: BLE001 - collected and reported below
            detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            failures.append(f"{name}: {type(error).__name__}: {detail}")
            tmp.unlink(missing_ok=True)
            continue
        fixes = ([f"{rewritten} bool Where node(s) computed on uint8 (onnxruntime has no bool Where kernel)"]
                 if rewritten else [])
        return {"exporter": name, "outputs": output_names, "max_abs_diff": differences,
                "exporter_failures": failures, "graph_fixes": fixes}
    raise ExportError(f"could not export {what} to ONNX: " + "; ".join(failures))


def _sidecar(classifier, graph: _Graph, part: str, output_names: list[str], axes: dict, opset: int,
             exporter: str, differences: dict, failures: list[str], out: Path) -> dict:
    import onnx

    network = classifier.network
    run_dir = Path(classifier.run_dir).resolve() if classifier.run_dir is not None else None
    preprocessing: dict[str, Any] = {}
    if network.text_encoder is not None:
        preprocessing["text"] = {
            "tokenizer_dir": str(run_dir / "encoders" / "text") if run_dir else None,
            "max_length": network.text_encoder.max_length, "padding": "longest", "truncation": True,
            "text_prefix": network.text_encoder.text_prefix,
            "missing_text": "tokenise \"\" and set its attention_mask row to 0",
            "encoder_source": network.text_encoder.source}
    if network.image_encoder is not None:
        preprocessing["image"] = {
            "image_processor_dir": str(run_dir / "encoders" / "image") if run_dir else None,
            "pixel_shape": list(network.image_encoder.pixel_shape), "convert": "RGB",
            "missing_image": "zeros in pixel_values and image_present False",
            "num_tokens": network.image_encoder.num_tokens, "encoder_source": network.image_encoder.source}
    dtypes = {"image_mask": "bool", "text_mask": "bool", "image_present": "bool", "input_ids": "int64",
              "attention_mask": "int64", "token_type_ids": "int64"}
    inputs = [{"name": name, "dtype": dtypes.get(name, "float32"),
               "dynamic_axes": {str(axis): label for axis, label in axes[name].items()}}
              for name in graph.input_names]
    return {
        "format": SIDECAR_FORMAT,
        "onnx_file": out.name,
        "part": part,
        "model": network.head.name,
        "classes": list(classifier.classes_),
        "inputs": inputs,
        "outputs": output_names,
        "encoder_layers": network.encoder_layers,
        "preprocessing": preprocessing,
        "opset": opset,
        "exporter": exporter,
        "exporter_failures": failures,
        "verification": {"runtime": "onnxruntime", "max_abs_diff": differences},
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        "run_dir": str(run_dir) if run_dir else None,
    }
