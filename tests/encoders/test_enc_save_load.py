"""encoder.save(dir) -> load_*_encoder(dir): architecture + preprocessing, never weights for pretrained sources."""

import json
from pathlib import Path

import pytest
import torch

from fluid.encoders import (
    build_image_encoder,
    build_text_encoder,
    load_image_encoder,
    load_text_encoder,
)

TEXTS = ["Червена рокля с дантела", None, "Šaty Κόκκινο φόρεμα, ženska haljina", "rochie"]


def _no_weights(d: Path) -> None:
    assert not list(d.glob("*.safetensors")) and not list(d.glob("*.bin")) and not list(d.glob("*.pt"))


def test_tiny_text_round_trip(tmp_path, corpus):
    enc = build_text_encoder("tiny", corpus=corpus, max_length=32, hidden_size=64, layers=1, heads=2)
    enc.save(tmp_path)
    spec = json.loads((tmp_path / "encoder.json").read_text())
    assert spec["kind"] == "text" and spec["source"] == "tiny" and spec["max_length"] == 32
    assert spec["overrides"]["hidden_size"] == 64
    assert (tmp_path / "tokenizer.json").is_file() and (tmp_path / "config.json").is_file()
    _no_weights(tmp_path)

    again = load_text_encoder(tmp_path)
    assert again.dim == 64 and again.max_length == 32 and again.trainable
    b1, b2 = enc.prepare(TEXTS), again.prepare(TEXTS)
    assert set(b1) == set(b2) and all(torch.equal(b1[k], b2[k]) for k in b1)
    again.load_state_dict(enc.state_dict())
    enc.eval(), again.eval()
    torch.testing.assert_close(again(b2).tokens, enc(b1).tokens)


@pytest.mark.parametrize("preset, options", [("tiny", {"image_size": 32, "widths": [8, 8, 16]}),
                                              ("tiny-vit", {"image_size": 32, "patch_size": 8})])
def test_tiny_image_round_trip(tmp_path, images, preset, options):
    enc = build_image_encoder(preset, **options)
    enc.save(tmp_path)
    _no_weights(tmp_path)
    again = load_image_encoder(tmp_path)
    assert again.pixel_shape == (3, 32, 32) and again.source == preset and type(again.model) is type(enc.model)
    again.load_state_dict(enc.state_dict())
    enc.eval(), again.eval()
    b1, b2 = enc.prepare(images + [None]), again.prepare(images + [None])
    assert torch.equal(b1["pixel_values"], b2["pixel_values"])
    torch.testing.assert_close(again(b2).tokens, enc(b1).tokens)


def test_run_saved_when_tiny_was_a_vit_loads_as_tiny_vit(tmp_path, images):
    """encoder.json says source 'tiny' but config.json is a ViTConfig: a run written before the tiny convnet."""
    import json

    enc = build_image_encoder("tiny-vit", image_size=32, patch_size=8)
    enc.save(tmp_path)
    spec = json.loads((tmp_path / "encoder.json").read_text())
    (tmp_path / "encoder.json").write_text(json.dumps({**spec, "source": "tiny"}))
    again = load_image_encoder(tmp_path)
    assert again.source == "tiny-vit" and again.num_tokens == 17 and again.trainable


def test_pretrained_round_trip_reloads_weights_from_source(tmp_path, hf_bert_dir):
    enc = build_text_encoder(str(hf_bert_dir), train_top_layers=1)
    enc.save(tmp_path / "run")
    _no_weights(tmp_path / "run")
    again = load_text_encoder(tmp_path / "run")
    assert again.source == enc.source and again.train_top_layers == 1
    assert [p.requires_grad for p in again.parameters()] == [p.requires_grad for p in enc.parameters()]
    enc.eval(), again.eval()
    b = enc.prepare(["červené šaty", None])
    torch.testing.assert_close(again(b).tokens, enc(b).tokens)  # weights came from the source dir


def test_load_wrong_kind(tmp_path, tiny_image):
    tiny_image.save(tmp_path)
    with pytest.raises(ValueError, match="image encoder"):
        load_text_encoder(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_image_encoder(tmp_path / "missing")


def test_no_forbidden_imports():
    """fluid.encoders must not import fluid.model, fluid.data or fluid.training, nor pickle."""
    import ast

    root = Path(__file__).resolve().parents[2] / "fluid" / "encoders"
    for f in root.rglob("*.py"):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level <= 1, (f.name, "relative import outside fluid.encoders")
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert not name.startswith(("fluid.model", "fluid.data", "fluid.training", "pickle")), (f.name, name)
        # torch.load only with the restricted (tensors-only) unpickler: weights_only=True in the same call
        for call in f.read_text(encoding="utf-8").split("torch.load(")[1:]:
            assert "weights_only=True" in call.split(")")[0], (f.name, "torch.load without weights_only=True")
