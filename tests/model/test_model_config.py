"""Configs: paper defaults, registry names, error messages, serialisation."""

from __future__ import annotations

import dataclasses

import pytest

from fluid.model import (
    FluidConfig,
    MoltConfig,
    available_heads,
    build_head,
    head_config,
)

EXPECTED = [
    "fluid",
    "fluid-no-contrastive",
    "fluid-no-qtransform",
    "fluid-no-gating",
    "fluid-no-bottleneck",
    "fluid-no-moe",
    "early-fusion",
    "improved-attention",
    "blip2",
    "image-only",
    "text-only",
    "molt",
]


def test_available_heads():
    assert available_heads() == EXPECTED


def test_fluid_defaults_are_the_paper_numbers():
    c = FluidConfig()
    assert (c.hidden_dim, c.num_queries, c.num_bottleneck_queries) == (768, 32, 2)
    assert (c.num_experts, c.top_k) == (16, 2)
    assert c.ce_weight == c.contrastive_weight == c.moe_weight == pytest.approx(1 / 3)
    assert (c.num_heads, c.qtransform_layers, c.query_init_std, c.dropout) == (8, 1, 0.3, 0.1)
    assert c.moe_input == "flatten" and c.contrastive_pooling == "mean"
    assert not c.contrastive_projection and not c.contrastive_mask_same_label and c.contrastive_dim is None
    assert c.no_qtransform_pooling == "auto"
    assert c.init_temperature == 0.07 and c.max_logit_scale == 100.0 and c.learnable_temperature
    assert c.router_z_loss_weight == 0.0 and c.encoder_layers == 1
    assert all([c.use_contrastive, c.use_qtransform, c.use_gating, c.use_bottleneck, c.use_moe])


def test_molt_defaults():
    c = MoltConfig()
    assert (c.hidden_dim, c.num_heads, c.encoder_layers, c.mfb_factor) == (256, 4, 4, 4)
    assert (c.ce_weight, c.cca_weight) == (1.0, 0.1)


def test_ablations_are_switches():
    assert head_config("fluid-no-gating") == FluidConfig(use_gating=False)
    assert head_config("fluid-no-moe").use_moe is False
    assert head_config("fluid-no-contrastive").use_contrastive is False
    assert head_config("fluid-no-qtransform").use_qtransform is False
    assert head_config("fluid-no-bottleneck").use_bottleneck is False
    assert head_config("image-only").modality == "image"
    assert all(head_config(n).encoder_layers == (4 if n == "molt" else 1) for n in EXPECTED)


def test_config_asdict_round_trip():
    for name in EXPECTED:
        config = head_config(name)
        again = type(config)(**dataclasses.asdict(config))
        assert again == config
        assert head_config(name, **dataclasses.asdict(config)) == config


def test_unknown_head_lists_names():
    with pytest.raises(ValueError) as err:
        build_head("fluidd", 3)
    assert "fluidd" in str(err.value)
    for name in EXPECTED:
        assert name in str(err.value)


def test_unknown_override_names_key_and_valid_keys():
    with pytest.raises(TypeError) as err:
        build_head("fluid", 3, num_expert=4)
    msg = str(err.value)
    assert "num_expert" in msg and "num_experts" in msg and "hidden_dim" in msg


def test_bad_values_and_preset_conflicts():
    with pytest.raises(ValueError, match="top_k"):
        head_config("fluid", num_experts=2, top_k=3)
    with pytest.raises(ValueError, match="moe_input"):
        head_config("fluid", moe_input="sideways")
    with pytest.raises(ValueError, match="divisible"):
        head_config("fluid", hidden_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="use_gating"):
        head_config("fluid-no-gating", use_gating=True)
    with pytest.raises(ValueError, match="num_classes"):
        build_head("fluid", 0, hidden_dim=32, num_heads=4, num_queries=2, num_experts=2)
    assert head_config("fluid-no-gating", use_gating=False).use_gating is False


def test_small_hidden_dim_with_other_token_dims():
    head = build_head("fluid", 5, image_dim=48, text_dim=20, hidden_dim=16, num_heads=2, num_queries=3, num_experts=4)
    assert head.image_summary.queries.shape == (3, 16)
    assert (head.image_dim, head.text_dim, head.num_classes) == (48, 20, 5)
