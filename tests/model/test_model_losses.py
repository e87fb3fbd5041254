"""Losses against their formulas on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fluid.model.cca import soft_cca_loss
from fluid.model.contrastive import ContrastiveLoss, contrastive_loss, info_nce, same_label_negatives
from fluid.model.moe import expert_usage, load_balancing_loss, router_z_loss


# -- load balancing -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("top_k", [1, 2])
def test_load_balancing_is_one_for_uniform_router(top_k):
    assert float(load_balancing_loss(torch.zeros(10, 4), top_k)) == pytest.approx(1.0)


def test_load_balancing_is_one_for_perfectly_balanced_assignments():
    # circulant logits: token n prefers expert n; every expert chosen equally, mean probs uniform
    e = 4
    logits = torch.stack([torch.roll(torch.tensor([3.0, 1.0, 0.0, -1.0]), n) for n in range(e)])
    assert float(load_balancing_loss(logits, 1)) == pytest.approx(1.0, abs=1e-6)
    assert float(load_balancing_loss(logits, 2)) == pytest.approx(1.0, abs=1e-6)


def test_load_balancing_hand_computed_skewed_case():
    # 2 tokens, 2 experts, top-1; both pick expert 0 -> f = [1, 0]
    logits = torch.tensor([[2.0, 0.0], [1.0, 0.0]])
    s = lambda z: 1 / (1 + math.exp(-z))  # softmax([z, 0])[0]
    p0 = (s(2.0) + s(1.0)) / 2
    assert float(load_balancing_loss(logits, 1)) == pytest.approx(2 * (1.0 * p0), rel=1e-6)
    # top-2 with 2 experts: every expert gets half the assignments; E * sum(0.5 * P_i) = 1
    assert float(load_balancing_loss(logits, 2)) == pytest.approx(1.0, rel=1e-6)


def test_load_balancing_hand_computed_three_experts_top2():
    logits = torch.tensor([[2.0, 1.0, 0.0], [2.0, 0.0, 1.0], [0.0, 2.0, 1.0]])
    probs = torch.softmax(logits, -1).numpy()
    # top-2 sets: {0,1}, {0,2}, {1,2} -> counts 2, 2, 2 of 6
    f = np.array([2, 2, 2]) / 6
    expected = 3 * float((f * probs.mean(0)).sum())
    assert float(load_balancing_loss(logits, 2)) == pytest.approx(expected, rel=1e-6)
    # collapse: everything to expert 0 with near-one-hot probs -> about E
    collapsed = torch.tensor([[20.0, 0.0, 0.0]] * 5)
    assert float(load_balancing_loss(collapsed, 1)) == pytest.approx(3.0, rel=1e-4)


def test_load_balancing_has_gradient_through_probabilities():
    logits = torch.randn(6, 4, requires_grad=True)
    load_balancing_loss(logits, 2).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_router_z_loss_formula_and_expert_usage():
    logits = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    expected = (math.log(math.e + math.e**2) ** 2 + math.log(2.0) ** 2) / 2
    assert float(router_z_loss(logits)) == pytest.approx(expected, rel=1e-6)
    usage = expert_usage(torch.tensor([[0, 1], [0, 3]]), 4)
    assert usage.tolist() == [0.5, 0.25, 0.0, 0.25]


# -- contrastive --------------------------------------------------------------------------------------------

def _manual_infonce(img: np.ndarray, txt: np.ndarray, t: float) -> float:
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    s = img @ txt.T / t

    def ce(m):
        m = m - m.max(axis=1, keepdims=True)
        logp = m - np.log(np.exp(m).sum(axis=1, keepdims=True))
        return -np.mean(np.diag(logp))

    return 0.5 * (ce(s) + ce(s.T))


def test_contrastive_loss_matches_manual_computation():
    rng = np.random.default_rng(0)
    img, txt = rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
    got = contrastive_loss(torch.tensor(img), torch.tensor(txt), 0.1)
    assert float(got) == pytest.approx(_manual_infonce(img, txt, 0.1), rel=1e-6)
    got_t = contrastive_loss(torch.tensor(img), torch.tensor(txt), torch.tensor(0.5, dtype=torch.float64))
    assert float(got_t) == pytest.approx(_manual_infonce(img, txt, 0.5), rel=1e-6)


def test_contrastive_loss_sanity_values():
    b = 6
    same = torch.ones(b, 4)
    assert float(contrastive_loss(same, same, 0.07)) == pytest.approx(math.log(b), rel=1e-6)
    eye = torch.eye(b)
    assert float(contrastive_loss(eye, eye, 0.01)) < 1e-6  # matched pairs perfectly separated
    # swapping the two sides gives the same symmetric loss
    x, y = torch.randn(b, 4), torch.randn(b, 4)
    assert float(contrastive_loss(x, y, 0.2)) == pytest.approx(float(contrastive_loss(y, x, 0.2)), rel=1e-6)


def test_contrastive_module_skips_incomplete_pairs():
    loss = ContrastiveLoss()
    x, y = torch.randn(4, 8), torch.randn(4, 8)
    valid = torch.tensor([True, False, True, True])
    expected = contrastive_loss(x[valid], y[valid], loss.temperature())
    torch.testing.assert_close(loss(x, y, valid), expected)
    assert (loss(x, y, torch.tensor([True, False, False, False]))).item() == 0.0
    assert (loss(x[:1], y[:1])).item() == 0.0


def test_same_label_negatives_marks_off_diagonal_pairs_of_one_label():
    labels = torch.tensor([0, 0, 1, -1, -1])
    got = same_label_negatives(labels)
    expected = torch.zeros(5, 5, dtype=torch.bool)
    expected[0, 1] = expected[1, 0] = True  # unlabelled items (-1) share their label with nobody
    assert torch.equal(got, expected)


def test_masked_info_nce_on_three_items_matches_the_formula():
    """Items 0 and 1 share a label: S[0, 1] and S[1, 0] leave both softmaxes (they are not negatives)."""
    s = [[2.0, 1.5, -0.5], [0.3, 1.0, 0.2], [-1.0, 0.4, 0.8]]
    exclude = same_label_negatives(torch.tensor([4, 4, 7]))
    got = info_nce(torch.tensor(s, dtype=torch.float64), exclude)

    def ce(positive: float, others: list[float]) -> float:
        return -positive + math.log(sum(math.exp(v) for v in [positive, *others]))

    rows = [ce(s[0][0], [s[0][2]]), ce(s[1][1], [s[1][2]]), ce(s[2][2], [s[2][0], s[2][1]])]
    cols = [ce(s[0][0], [s[2][0]]), ce(s[1][1], [s[2][1]]), ce(s[2][2], [s[0][2], s[1][2]])]
    assert float(got) == pytest.approx(0.5 * (sum(rows) / 3 + sum(cols) / 3), rel=1e-12)
    unmasked = info_nce(torch.tensor(s, dtype=torch.float64))
    assert float(got) < float(unmasked)


def test_info_nce_without_exclusions_is_the_contrastive_loss_bit_for_bit():
    torch.manual_seed(0)
    x, y = torch.randn(6, 8), torch.randn(6, 8)
    logits = torch.nn.functional.normalize(x, dim=-1) @ torch.nn.functional.normalize(y, dim=-1).t() / 0.07
    nothing = torch.zeros(6, 6, dtype=torch.bool)
    assert torch.equal(info_nce(logits, nothing), contrastive_loss(x, y, 0.07))
    assert torch.equal(info_nce(logits), contrastive_loss(x, y, 0.07))


def test_contrastive_module_split_form_equals_forward():
    loss = ContrastiveLoss()
    x, y = torch.randn(4, 8), torch.randn(4, 8)
    valid = torch.tensor([True, False, True, True])
    torch.testing.assert_close(loss.loss(loss.similarities(x, y, valid)), loss(x, y, valid), rtol=0, atol=0)
    one = loss.similarities(x, y, torch.tensor([True, False, False, False]))
    assert one.shape == (1, 1) and loss.loss(one).item() == 0.0


def test_temperature_init_and_clamp():
    loss = ContrastiveLoss(init_temperature=0.07, max_logit_scale=100.0)
    assert loss.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert loss.scale().item() == pytest.approx(1 / 0.07, rel=1e-6)
    with torch.no_grad():
        loss.logit_scale.fill_(math.log(1000.0))
    assert loss.scale().item() == pytest.approx(100.0)
    assert loss.temperature().item() == pytest.approx(0.01)
    assert isinstance(loss.logit_scale, torch.nn.Parameter)
    fixed = ContrastiveLoss(learnable=False)
    assert not any(True for _ in fixed.parameters())


# -- soft CCA -----------------------------------------------------------------------------------------------

def test_soft_cca_alignment_term():
    x = torch.randn(16, 5)
    # y an affine copy of x: perfectly correlated per feature -> only the decorrelation term remains
    y = 3 * x + 1
    assert float(soft_cca_loss(x, y, decorrelation=0.0)) == pytest.approx(0.0, abs=1e-6)
    # anti-correlated: standardised difference 2 everywhere -> mean square 4
    assert float(soft_cca_loss(x, -x, decorrelation=0.0)) == pytest.approx(4.0, rel=1e-3)
    assert float(soft_cca_loss(x, y, decorrelation=1.0)) > 0.0
    assert float(soft_cca_loss(x[:1], y[:1])) == 0.0
