"""``pooled_shortcut``: the head's logits plus a linear map of the layer-normalised pooled encoder tokens."""

import torch

from fluid.model import build_head
from fluid.model.missing import masked_mean


def _head(**overrides):
    torch.manual_seed(0)
    return build_head("fluid", 5, image_dim=12, text_dim=10, hidden_dim=16, num_heads=2, num_queries=4,
                      num_experts=2, **overrides).eval()


def test_shortcut_adds_a_linear_probe_of_the_pooled_tokens_to_the_logits():
    head = _head(pooled_shortcut=True)
    image, text = torch.randn(3, 7, 12), torch.randn(3, 5, 10)
    image_mask = torch.ones(3, 7, dtype=torch.bool)
    text_mask = torch.tensor([[True] * 5, [True, True, False, False, False], [False] * 5])  # item 2: no text
    with torch.no_grad():
        out = head(image, text, image_mask, text_mask, aux_losses=False)
        shortcut = head.shortcut
        head.shortcut = None
        without = head(image, text, image_mask, text_mask, aux_losses=False)
        text_in = text.clone()
        text_in[2, 0] = head.text_missing.token  # an absent text reads as the missing-modality token
        text_mask_in = text_mask.clone()
        text_mask_in[2, 0] = True
        pooled = torch.cat([torch.nn.functional.layer_norm(masked_mean(image, image_mask), (12,),
                                                           shortcut.image_norm.weight, shortcut.image_norm.bias),
                            torch.nn.functional.layer_norm(masked_mean(text_in, text_mask_in), (10,),
                                                           shortcut.text_norm.weight, shortcut.text_norm.bias)], 1)
        expected = without.logits + pooled @ shortcut.classifier.weight.T + shortcut.classifier.bias
    torch.testing.assert_close(out.logits, expected)


def test_shortcut_is_off_by_default_and_trains_when_on():
    assert _head().shortcut is None
    head = _head(pooled_shortcut=True).train()
    out = head(torch.randn(4, 7, 12), torch.randn(4, 5, 10))
    head.loss(out, torch.tensor([0, 1, 2, 3]))["loss"].backward()
    assert head.shortcut.classifier.weight.grad is not None and head.shortcut.classifier.weight.grad.abs().sum() > 0
