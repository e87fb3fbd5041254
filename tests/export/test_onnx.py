"""ONNX export: onnxruntime reproduces PyTorch (head and full model, every registered head), the sidecar is
enough to serve the file without fluid, and the CLI writes both files."""

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
from typer.testing import CliRunner

from fluid import Classifier
from fluid.cli import app
from fluid.export import ExportError, export_head, export_onnx, sidecar_path
from fluid.model import Head, HeadConfig, HeadOutput, available_heads, build_head, register_head, unregister_head

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}
PRODUCTS = [("red cotton shirt", "red"), ("blue shirt", None), (None, "green"), ("a shirt", "blue"),
            ("green shirt with a very long description of its sleeves and buttons", "red")]


@pytest.fixture(scope="module")
def classifier(export_run_dir):
    return Classifier.load(export_run_dir)


def _image(colour):
    return Image.new("RGB", (40, 36), COLOURS[colour]) if colour else None


DOCS = Path(__file__).resolve().parents[2] / "docs" / "serving.md"


def _docs_onnx_predict():
    """The ``onnx_predict`` example of docs/serving.md, run as written: it serves the full export with
    onnxruntime and the sidecar only (transformers for the preprocessing; no fluid, no PyTorch model)."""
    text = DOCS.read_text(encoding="utf-8")
    blocks = [block.split("\n", 1)[1] for block in text.split("```python")[1:]]
    code = next(block.split("```")[0] for block in blocks if "def onnx_predict" in block)
    namespace: dict = {}
    exec(compile(code, str(DOCS), "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace["onnx_predict"]


@pytest.mark.slow
@pytest.mark.parametrize("text_prefix", ["", "passage: "])
def test_full_export_serves_like_the_classifier(classifier, tmp_path, text_prefix):
    if text_prefix:  # an e5-style encoder: the sidecar must carry the prefix the model was trained with
        classifier = copy.deepcopy(classifier)
        classifier.network.text_encoder.preprocessor.text_prefix = text_prefix
    out = tmp_path / "model.onnx"
    sidecar = export_onnx(classifier, out, part="full")
    assert sidecar["preprocessing"]["text"]["text_prefix"] == text_prefix
    assert out.is_file() and sidecar_path(out).is_file()
    assert json.loads(sidecar_path(out).read_text()) == sidecar
    assert sidecar["part"] == "full" and sidecar["classes"] == classifier.classes_
    assert [item["name"] for item in sidecar["inputs"]] == ["input_ids", "token_type_ids", "attention_mask",
                                                            "pixel_values", "image_present"]
    assert sidecar["outputs"] == ["logits", "probabilities", "gate"] and sidecar["opset"] == 18
    assert sidecar["exporter"] in ("dynamo", "torchscript")
    assert max(sidecar["verification"]["max_abs_diff"].values()) < 1e-4

    texts, images = [t for t, _ in PRODUCTS], [_image(c) for _, c in PRODUCTS]
    labels, probabilities = _docs_onnx_predict()(out, texts, images)
    expected = classifier.predict_proba(pd.DataFrame({"title": texts, "img": images}))
    np.testing.assert_allclose(probabilities, expected.to_numpy(), atol=1e-5)
    assert labels == classifier.predict(pd.DataFrame({"title": texts, "img": images})).tolist()


@pytest.mark.slow
def test_head_export_through_the_cli(classifier, export_run_dir, tmp_path):
    out = tmp_path / "head.onnx"
    result = CliRunner().invoke(app, ["export", str(export_run_dir), "--format", "onnx", "--out", str(out),
                                      "--part", "head"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    sidecar = json.loads(sidecar_path(out).read_text())
    assert [item["name"] for item in sidecar["inputs"]] == ["image_tokens", "image_mask", "text_tokens",
                                                            "text_mask"]
    assert sidecar["inputs"][2]["dynamic_axes"] == {"0": "batch", "1": "text_length"}

    # the head on real encoder tokens of 5 products (one without text, one without image)
    network = classifier.network
    batch = {"text": network.text_encoder.prepare([t for t, _ in PRODUCTS]),
             "image": network.image_encoder.prepare([_image(c) for _, c in PRODUCTS])}
    with torch.no_grad():
        image_tokens, image_mask, text_tokens, text_mask = network.encode(batch)
        expected = network.head(image_tokens, text_tokens, image_mask=image_mask, text_mask=text_mask)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    logits, probabilities, gate = session.run(None, {"image_tokens": image_tokens.numpy(),
                                                     "image_mask": image_mask.numpy(),
                                                     "text_tokens": text_tokens.numpy(),
                                                     "text_mask": text_mask.numpy()})
    np.testing.assert_allclose(logits, expected.logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(probabilities, torch.softmax(expected.logits, -1).numpy(), atol=1e-5)
    np.testing.assert_allclose(gate, expected.gate.numpy(), atol=1e-5)


def test_cli_and_library_refuse_bad_arguments(classifier, export_run_dir, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(export_run_dir), "--format", "tflite", "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "only export format is onnx" in result.output
    result = runner.invoke(app, ["export", str(export_run_dir), "--out", str(tmp_path / "m.onnx"), "--part", "x"])
    assert result.exit_code == 2 and "--part must be head or full" in result.output
    result = runner.invoke(app, ["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2 and "not a FLUID run directory" in result.output
    with pytest.raises(ValueError, match="part must be one of"):
        export_onnx(classifier, tmp_path / "m.onnx", part="encoders")
    with pytest.raises(ValueError, match="exporter must be"):
        export_onnx(classifier, tmp_path / "m.onnx", exporter="magic")
    assert not (tmp_path / "m.onnx").exists()


def test_a_graph_that_disagrees_is_not_written(tmp_path):
    head = build_head("early-fusion", 3, image_dim=16, text_dim=16, hidden_dim=16, num_heads=2)
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_head(head, tmp_path / "h.onnx", atol=-1.0, exporter="dynamo")  # no graph can pass atol < 0
    assert list(tmp_path.iterdir()) == []


class _ImageProbeHead(Head):
    """A user's image-only head: mean of the image tokens -> linear."""

    config_class = HeadConfig

    def __init__(self, num_classes, image_dim, text_dim, config, name, **cls_tokens):
        super().__init__(num_classes, image_dim, text_dim, config, name, **cls_tokens)
        self.classifier = torch.nn.Linear(image_dim, num_classes)

    def forward(self, image_tokens, text_tokens, image_mask=None, text_mask=None, *, aux_losses=True):
        weights = image_mask.unsqueeze(-1).float()
        return HeadOutput(logits=self.classifier((image_tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)))


def test_a_head_graph_has_the_inputs_and_outputs_its_entry_declares(tmp_path):
    register_head("test-image-probe", _ImageProbeHead, HeadConfig, modalities=("image",))
    try:
        head = build_head("test-image-probe", 3, image_dim=8, text_dim=8)
        result = export_head(head, tmp_path / "probe.onnx", exporter="torchscript")
    finally:
        unregister_head("test-image-probe")
    assert result["inputs"] == ["image_tokens", "image_mask"] and result["outputs"] == ["logits", "probabilities"]
    session = ort.InferenceSession(str(tmp_path / "probe.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image_tokens", "image_mask"]


def _tiny_head(name):
    overrides = {"hidden_dim": 16, "num_heads": 2}
    if name.startswith("fluid"):
        overrides.update(num_queries=4, num_experts=4)
    return build_head(name, 4, image_dim=16, text_dim=24, **overrides)


@pytest.mark.slow
@pytest.mark.parametrize("name", available_heads())
def test_every_head_exports_and_matches_pytorch(name, tmp_path):
    torch.manual_seed(0)
    head = _tiny_head(name).eval()
    result = export_head(head, tmp_path / f"{name}.onnx", image_length=9)  # MoLT: its 4 layers, stacked
    assert (tmp_path / f"{name}.onnx").is_file()
    assert result["exporter"] == "dynamo", result["exporter_failures"]
    assert result["max_abs_diff"]["logits"] < 1e-4 and result["max_abs_diff"]["probabilities"] < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("unimodal_input", ["tokens", "queries"])
def test_the_fluid_head_auto_builds_for_larger_catalogues_exports_with_its_blend(unimodal_input, tmp_path):
    """The head as ``auto`` sets it when encoders train from scratch on > 750 items (per-modality classifiers
    blended in, the fused path detached, the classifiers reading ``unimodal_input``) exports and matches."""
    torch.manual_seed(0)
    head = build_head("fluid", 4, image_dim=16, text_dim=24, hidden_dim=16, num_heads=2, num_queries=4,
                      num_experts=4, pooled_shortcut=True, unimodal_weight=1.0, unimodal_blend=True,
                      fusion_trains_encoders=False, unimodal_input=unimodal_input).eval()
    with torch.no_grad():
        head.blend_weights.copy_(torch.tensor([0.2, 0.5, 0.3]))
    result = export_head(head, tmp_path / "fluid.onnx", image_length=9)
    assert result["max_abs_diff"]["logits"] < 1e-4 and result["max_abs_diff"]["probabilities"] < 1e-5
