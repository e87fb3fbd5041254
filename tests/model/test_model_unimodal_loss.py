"""``unimodal_weight``: per-modality classifiers on the pooled encoder tokens, trained by λu · their mean CE."""

import pytest
import torch
from torch.nn import functional as F

from fluid.model import build_head
from fluid.model.missing import masked_mean


def _head(**overrides):
    torch.manual_seed(0)
    return build_head("fluid", 5, image_dim=12, text_dim=10, hidden_dim=16, num_heads=2, num_queries=4,
                      num_experts=2, **overrides)


def test_unimodal_term_is_the_weighted_mean_of_each_modalitys_cross_entropy_on_present_items():
    head = _head(unimodal_weight=0.5).eval()
    image, text = torch.randn(4, 7, 12), torch.randn(4, 5, 10)
    image_mask = torch.ones(4, 7, dtype=torch.bool)
    image_mask[1] = False  # item 1: no image
    text_mask = torch.ones(4, 5, dtype=torch.bool)
    labels = torch.tensor([0, 3, -1, 4])  # item 2: no label
    out = head(image, text, image_mask, text_mask)
    losses = head.loss(out, labels)
    u = head.unimodal
    image_logits = u.image(masked_mean(image, image_mask))
    text_logits = u.text(masked_mean(text, text_mask))
    expected = 0.5 * (F.cross_entropy(image_logits[[0, 3]], labels[[0, 3]])
                      + F.cross_entropy(text_logits[[0, 1, 3]], labels[[0, 1, 3]])) / 2
    torch.testing.assert_close(losses["unimodal"], expected)
    others = head.config.ce_weight * losses["ce"] + sum(v for k, v in losses.items() if k not in ("loss", "ce", "unimodal"))
    torch.testing.assert_close(losses["loss"], others + expected)


def test_unimodal_classifiers_leave_the_logits_alone_and_are_off_by_default_and_at_inference():
    assert _head().unimodal is None
    head = _head(unimodal_weight=1.0).eval()
    image, text = torch.randn(3, 7, 12), torch.randn(3, 5, 10)
    with torch.no_grad():
        with_u = head(image, text)
        head_off = _head().eval()
        head_off.load_state_dict({k: v for k, v in head.state_dict().items() if not k.startswith("unimodal.")})
        torch.testing.assert_close(with_u.logits, head_off(image, text).logits)
        assert head(image, text, aux_losses=False).unimodal_logits is None


def test_unimodal_term_trains_the_encoder_tokens_of_each_modality():
    head = _head(unimodal_weight=1.0).train()
    image = torch.randn(4, 7, 12, requires_grad=True)
    text = torch.randn(4, 5, 10, requires_grad=True)
    out = head(image, text)
    head.loss(out, torch.tensor([0, 1, 2, 3]))["unimodal"].backward()
    assert image.grad.abs().sum() > 0 and text.grad.abs().sum() > 0
    assert head.unimodal.image[1].weight.grad.abs().sum() > 0


def test_a_batch_without_any_present_item_of_a_modality_gives_zero_for_it():
    head = _head(unimodal_weight=1.0).eval()
    out = head(None, torch.randn(2, 5, 10))  # no image in the batch
    losses = head.loss(out, torch.tensor([1, 2]))
    assert not out.unimodal_logits["image"][1].any()
    text_only = F.cross_entropy(out.unimodal_logits["text"][0], torch.tensor([1, 2]))
    torch.testing.assert_close(losses["unimodal"], text_only / 2)


def test_negative_weight_is_refused():
    with pytest.raises(ValueError, match="unimodal_weight"):
        _head(unimodal_weight=-1.0)
