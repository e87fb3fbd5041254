"""Fitting the blend of the fused and per-modality classifiers on validation scores."""

import pytest
import torch

from fluid.model import build_head
from fluid.training.blend import EVIDENCE_Z, blends, choose_weights, evidence, fit_blend, weight_grid
from fluid.training.network import MultimodalNetwork


def test_weight_grid_is_the_simplex_at_step_one_tenth_with_the_fused_classifier_first():
    grid = weight_grid()
    assert grid.shape == (66, 3)
    torch.testing.assert_close(grid.sum(dim=1), torch.ones(66))
    assert (grid >= 0).all() and grid[0].tolist() == [1.0, 0.0, 0.0]
    assert len({tuple(row.tolist()) for row in grid}) == 66


def _scores(n=200, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    informative = 4.0 * F_one_hot(labels, classes) + torch.randn(n, classes, generator=g)
    noise = torch.randn(n, classes, generator=g)
    present = torch.ones(n, dtype=torch.bool)
    return labels, informative, noise, present


def F_one_hot(labels, classes):
    return torch.nn.functional.one_hot(labels, classes).float()


def test_the_member_that_predicts_held_out_labels_gets_the_weight():
    labels, informative, noise, present = _scores()
    fit = choose_weights(noise, (informative, present), (noise.flip(0), present), labels)
    assert fit.weights[1] >= 0.8 and fit.accuracy_blended > 0.9 > fit.accuracy_fused
    assert fit.nll_blended < fit.nll_fused and fit.n_items == len(labels)
    fused_good = choose_weights(informative, (noise, present), (noise.flip(0), present), labels)
    assert fused_good.weights[0] >= 0.8


def test_unlabelled_items_are_left_out_of_the_fit():
    labels, informative, noise, present = _scores()
    labels[:50] = -1
    fit = choose_weights(noise, (informative, present), (noise, present), labels)
    assert fit.n_items == 150


def test_evidence_is_the_mean_gain_in_standard_errors():
    gain = torch.tensor([0.5, 1.5, 1.0, 0.0, 2.0])
    assert evidence(gain) == pytest.approx(1.0 / (gain.std().item() / 5 ** 0.5))
    assert evidence(torch.tensor([0.3])) == 0.0 and evidence(torch.zeros(7)) == 0.0
    assert evidence(-gain) < 0


def _two_members(n, seed, classes=4):
    """A fused classifier and an image classifier of the same skill, and a member that is pure chance."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    signal = 1.5 * F_one_hot(labels, classes)
    fused, image = signal + torch.randn(n, classes, generator=g), signal + torch.randn(n, classes, generator=g)
    return labels, fused, image, torch.randn(n, classes, generator=g)


def test_a_blend_that_wins_by_chance_on_few_items_keeps_the_fused_classifier():
    labels, fused, _, chance = _two_members(12, seed=21)
    present = torch.ones(12, dtype=torch.bool)
    unguarded = choose_weights(fused, (chance, present), (chance.flip(0), present), labels, evidence_z=-1e9)
    assert unguarded.weights != (1.0, 0.0, 0.0) and unguarded.nll_blended < unguarded.nll_fused  # chance "won"
    fit = choose_weights(fused, (chance, present), (chance.flip(0), present), labels)
    assert 0 < fit.evidence_z == unguarded.evidence_z <= EVIDENCE_Z
    assert fit.weights == (1.0, 0.0, 0.0)
    assert fit.nll_blended == fit.nll_fused and fit.accuracy_blended == fit.accuracy_fused
    assert "the fused classifier alone" in fit.summary()


def test_a_real_gain_on_enough_items_keeps_the_blend():
    labels, fused, image, chance = _two_members(300, seed=0)
    present = torch.ones(300, dtype=torch.bool)
    fit = choose_weights(fused, (image, present), (chance, present), labels)
    assert fit.evidence_z > EVIDENCE_Z and fit.weights == (0.5, 0.5, 0.0)
    assert fit.accuracy_blended > fit.accuracy_fused + 0.1
    assert fit.to_dict()["evidence_z"] == fit.evidence_z and "standard errors" in fit.summary()


class _Tokens(torch.nn.Module):
    """An 'encoder' whose tokens are the batch's precomputed features (enough for MultimodalNetwork)."""

    trainable = False


def test_fit_blend_sets_the_heads_weights_from_a_loader():
    torch.manual_seed(0)
    head = build_head("fluid", 3, image_dim=6, text_dim=6, hidden_dim=8, num_heads=2, num_queries=2, num_experts=2,
                      unimodal_weight=1.0, unimodal_blend=True)
    network = MultimodalNetwork(head, _Tokens(), _Tokens())  # cached features: the encoders never run
    assert blends(network.head)
    from fluid.encoders import EncoderOutput

    labels = torch.arange(60) % 3
    image = torch.zeros(60, 4, 6)
    image[torch.arange(60), :, labels] = 5.0  # the image tokens say the class; the text tokens are noise
    text = torch.randn(60, 4, 6)
    mask = torch.ones(60, 4, dtype=torch.bool)
    with torch.no_grad():  # make the image classifier read the class, leave the fused classifier untrained
        head.unimodal.image[1].weight.copy_(torch.eye(3, 6) * 3)
    loader = [{"image_features": EncoderOutput(image[i:i + 20], mask[i:i + 20]),
               "text_features": EncoderOutput(text[i:i + 20], mask[i:i + 20]), "image": None, "text": None,
               "label": labels[i:i + 20]} for i in range(0, 60, 20)]
    fit = fit_blend(network, loader)
    assert head.blend_weights.tolist() == list(fit.weights) and fit.weights[1] > 0.5
    assert fit.accuracy_blended == 1.0 and fit.to_dict()["weights"]["image"] == fit.weights[1]


def test_fit_blend_refuses_a_head_without_blending():
    head = build_head("fluid", 3, image_dim=6, text_dim=6, hidden_dim=8, num_heads=2, num_queries=2, num_experts=2)
    with pytest.raises(ValueError, match="does not blend"):
        fit_blend(MultimodalNetwork(head, None, None), [])
