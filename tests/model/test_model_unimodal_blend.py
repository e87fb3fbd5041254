"""``unimodal_blend``: at inference the logits weigh the fused and per-modality classifiers' log-probabilities."""

import pytest
import torch
from torch.nn import functional as F

from fluid.model import build_head
from fluid.model.heads.fluid import blend_log_probs


def _head(**overrides):
    torch.manual_seed(0)
    return build_head("fluid", 5, image_dim=12, text_dim=10, hidden_dim=16, num_heads=2, num_queries=4,
                      num_experts=2, **{"unimodal_weight": 1.0, "unimodal_blend": True, **overrides})


def test_blend_is_the_renormalised_weighted_sum_of_log_probabilities_of_present_members():
    torch.manual_seed(1)
    fused, image, text = torch.randn(3, 5), torch.randn(3, 5), torch.randn(3, 5)
    image_present = torch.tensor([True, False, True])
    text_present = torch.tensor([True, True, False])
    w = torch.tensor([0.2, 0.5, 0.3])
    out = blend_log_probs(w, fused, (image, image_present), (text, text_present))
    lf, li, lt = (F.log_softmax(z, dim=-1) for z in (fused, image, text))
    torch.testing.assert_close(out[0], 0.2 * lf[0] + 0.5 * li[0] + 0.3 * lt[0])
    torch.testing.assert_close(out[1], (0.2 * lf[1] + 0.3 * lt[1]) / 0.5)  # no image: its weight is left out
    torch.testing.assert_close(out[2], (0.2 * lf[2] + 0.5 * li[2]) / 0.7)


def test_an_item_whose_only_weighted_member_is_absent_keeps_the_fused_log_probabilities():
    fused, image, text = torch.randn(2, 5), torch.randn(2, 5), torch.randn(2, 5)
    out = blend_log_probs(torch.tensor([0.0, 1.0, 0.0]), fused, (image, torch.tensor([True, False])),
                          (text, torch.tensor([True, True])))
    torch.testing.assert_close(out[0], F.log_softmax(image[0], dim=-1))
    torch.testing.assert_close(out[1], F.log_softmax(fused[1], dim=-1))


def test_blend_applies_in_eval_mode_only_and_starts_as_the_fused_classifier():
    head = _head()
    assert head.blend_weights.tolist() == [1.0, 0.0, 0.0] and "blend_weights" in head.state_dict()
    image, text = torch.randn(3, 7, 12), torch.randn(3, 5, 10)
    head.eval()
    with torch.no_grad():
        fused_only = head(image, text, aux_losses=False)
        assert fused_only.unimodal_logits is not None  # computed at inference when blending
        head.blend_weights.copy_(torch.tensor([0.0, 1.0, 0.0]))
        image_only = head(image, text, aux_losses=False)
    image_logits = fused_only.unimodal_logits["image"][0]
    torch.testing.assert_close(image_only.logits, F.log_softmax(image_logits, dim=-1))
    assert not torch.allclose(fused_only.logits, image_only.logits)
    head.train()
    torch.manual_seed(2)
    train_logits = head(image, text).logits  # training: the fused classifier's own logits, whatever the weights
    head.blend_weights.copy_(torch.tensor([1.0, 0.0, 0.0]))
    torch.manual_seed(2)
    torch.testing.assert_close(train_logits, head(image, text).logits)


def test_blend_off_by_default_and_needs_the_per_modality_classifiers():
    plain = build_head("fluid", 5, image_dim=12, text_dim=10, hidden_dim=16, num_heads=2, num_queries=4,
                       num_experts=2)
    assert plain.blend_weights is None and "blend_weights" not in plain.state_dict()
    with pytest.raises(ValueError, match="unimodal_blend needs unimodal_weight"):
        _head(unimodal_weight=0.0)
