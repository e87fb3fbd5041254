"""Which parameters each auxiliary loss may train (docs/model.md, "Deviations")."""

import pytest
import torch

from fluid.model import build_head
from fluid.model.moe import MixtureOfExperts, load_balancing_loss

SMALL = dict(hidden_dim=16, num_heads=2, num_queries=4, num_experts=4)


@pytest.mark.parametrize("trains_input", [False, True])
def test_balance_loss_reaches_the_input_only_when_asked(trains_input):
    torch.manual_seed(0)
    moe = MixtureOfExperts(8, 16, 3, num_experts=4, top_k=2, balance_trains_input=trains_input)
    x = torch.randn(10, 8, requires_grad=True)
    out = moe(x)
    torch.testing.assert_close(out.balance_logits, out.router_logits)  # same values either way
    load_balancing_loss(out.balance_logits, 2).backward()
    assert moe.router.proj.weight.grad.abs().sum() > 0  # the router always learns to balance
    assert (x.grad is not None and x.grad.abs().sum() > 0) == trains_input


@pytest.mark.parametrize("trains_encoders", [False, True])
def test_contrastive_loss_reaches_trainable_encoder_tokens_only_when_asked(trains_encoders):
    torch.manual_seed(0)
    head = build_head("fluid", 3, 8, 8, contrastive_trains_encoders=trains_encoders, **SMALL)
    image = torch.randn(6, 5, 8, requires_grad=True)
    text = torch.randn(6, 7, 8, requires_grad=True)
    out = head(image, text)
    out.aux_losses["contrastive"].backward()
    reached = image.grad is not None and image.grad.abs().sum() > 0
    assert reached == trains_encoders
    assert head.image_summary.queries.grad.abs().sum() > 0  # the Q-Transform is trained either way


def test_frozen_encoders_give_the_same_model_either_way():
    torch.manual_seed(0)
    a = build_head("fluid", 3, 8, 8, contrastive_trains_encoders=False, **SMALL).eval()
    b = build_head("fluid", 3, 8, 8, contrastive_trains_encoders=True, **SMALL).eval()
    b.load_state_dict(a.state_dict())
    image, text = torch.randn(4, 5, 8), torch.randn(4, 7, 8)
    oa, ob = a(image, text), b(image, text)
    torch.testing.assert_close(oa.logits, ob.logits)
    torch.testing.assert_close(oa.aux_losses["contrastive"], ob.aux_losses["contrastive"])


@pytest.mark.parametrize("unimodal_input", ["tokens", "queries"])
@pytest.mark.parametrize("fusion_trains", [True, False])
def test_fused_losses_reach_trainable_encoder_tokens_only_when_fusion_trains_encoders(fusion_trains, unimodal_input):
    torch.manual_seed(0)
    head = build_head("fluid", 3, 8, 8, unimodal_weight=1.0, pooled_shortcut=True, unimodal_input=unimodal_input,
                      fusion_trains_encoders=fusion_trains, **SMALL).train()
    image = torch.randn(6, 5, 8, requires_grad=True)
    text = torch.randn(6, 7, 8, requires_grad=True)
    text_mask = torch.ones(6, 7, dtype=torch.bool)
    text_mask[0] = False  # item 0 has no text: the missing-modality token stands in
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    losses = head.loss(head(image, text, text_mask=text_mask), labels)
    fused = sum(v for k, v in losses.items() if k not in ("loss", "unimodal"))
    fused.backward(retain_graph=True)
    reached = image.grad is not None and image.grad.abs().sum() > 0 and text.grad.abs().sum() > 0
    assert reached == fusion_trains
    assert head.text_missing.token.grad.abs().sum() > 0  # the head's own parameters learn either way
    assert head.image_summary.queries.grad.abs().sum() > 0
    image.grad = text.grad = None
    head.zero_grad()
    losses["unimodal"].backward()  # each modality's own classifier always trains its encoder
    assert image.grad.abs().sum() > 0 and text.grad.abs().sum() > 0
    # with unimodal_input="queries" the classifiers read (and so train) the Q-Transforms; with "tokens" they do not
    query_grads = [head.image_summary.queries.grad, head.text_summary.queries.grad]
    assert all(g is not None and g.abs().sum() > 0 for g in query_grads) == (unimodal_input == "queries")


@pytest.mark.parametrize("unimodal_input", ["tokens", "queries"])
def test_fusion_trains_encoders_changes_no_output_and_needs_another_teacher(unimodal_input):
    torch.manual_seed(0)
    a = build_head("fluid", 3, 8, 8, unimodal_weight=1.0, unimodal_input=unimodal_input, **SMALL).eval()
    b = build_head("fluid", 3, 8, 8, unimodal_weight=1.0, unimodal_input=unimodal_input,
                   fusion_trains_encoders=False, **SMALL).eval()
    b.load_state_dict(a.state_dict())
    image, text = torch.randn(4, 5, 8, requires_grad=True), torch.randn(4, 7, 8, requires_grad=True)
    oa, ob = a(image, text), b(image, text)
    torch.testing.assert_close(oa.logits, ob.logits)
    for modality in ("image", "text"):
        torch.testing.assert_close(oa.unimodal_logits[modality][0], ob.unimodal_logits[modality][0])
    with pytest.raises(ValueError, match="needs unimodal_weight > 0"):
        build_head("fluid", 3, 8, 8, fusion_trains_encoders=False, **SMALL)
    with pytest.raises(ValueError, match="contrastive_trains_encoders=True needs fusion_trains_encoders=True"):
        build_head("fluid", 3, 8, 8, unimodal_weight=1.0, fusion_trains_encoders=False,
                   contrastive_trains_encoders=True, **SMALL)


def test_unimodal_classifiers_on_queries_read_the_mean_of_each_q_transform():
    torch.manual_seed(0)
    head = build_head("fluid", 3, 8, 8, unimodal_weight=1.0, unimodal_input="queries", **SMALL).eval()
    image, text = torch.randn(4, 5, 8), torch.randn(4, 7, 8)
    text_mask = torch.ones(4, 7, dtype=torch.bool)
    text_mask[1, 3:] = False
    out = head(image, text, text_mask=text_mask)
    image_n = head.image_summary(image, torch.ones(4, 5, dtype=torch.bool))  # B x l x d
    text_n = head.text_summary(text, text_mask)
    torch.testing.assert_close(out.unimodal_logits["image"][0], head.unimodal.image(image_n.mean(dim=1)))
    torch.testing.assert_close(out.unimodal_logits["text"][0], head.unimodal.text(text_n.mean(dim=1)))
    assert head.unimodal.image[1].in_features == SMALL["hidden_dim"]
    with pytest.raises(ValueError, match="unimodal_input must be 'tokens' or 'queries'"):
        build_head("fluid", 3, 8, 8, unimodal_weight=1.0, unimodal_input="pooled", **SMALL)
    with pytest.raises(ValueError, match="needs use_qtransform"):
        build_head("fluid", 3, 8, 8, unimodal_weight=1.0, unimodal_input="queries", use_qtransform=False, **SMALL)
