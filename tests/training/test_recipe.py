"""Recipes: the paper's numbers exactly, auto's choices from the catalogue and the encoders, the user's options
always winning, and the optimiser's parameter groups."""

import dataclasses

import pytest
import torch

from fluid.config import RunConfig, demo_config
from fluid.model import available_heads, build_head, head_config
from fluid.training.recipe import DETACHED_FUSION_MIN_ITEMS, PAPER, CatalogueStats, EncoderSetup, resolve


def _resolve(cfg: RunConfig, labels, *, separate_validation=False):
    stats = CatalogueStats.from_labels(labels, separate_validation=separate_validation)
    return resolve(cfg, stats, EncoderSetup.from_config(cfg), dataclasses.asdict(head_config(cfg.model)))


def _labels(per_class: list[int]) -> list[str]:
    return [f"c{k}" for k, n in enumerate(per_class) for _ in range(n)]


def test_catalogue_stats_count_classes_and_the_long_tail():
    stats = CatalogueStats.from_labels(["a", "b", "a", None, float("nan"), "a", "c", "c"])
    assert (stats.n_items, stats.n_classes, stats.class_counts) == (6, 3, (3, 2, 1))
    assert stats.imbalance == 3.0


@pytest.mark.parametrize("encoder, mode", [("tiny", "scratch"), ("bert-base-multilingual-cased", "frozen")])
def test_encoder_modes_follow_freeze_and_train_top_layers(encoder, mode):
    assert EncoderSetup.from_config(RunConfig(text_encoder=encoder, image_encoder=encoder)).text == mode
    pretrained = RunConfig(text_encoder="minilm", image_encoder="tiny", train_top_layers=2)
    assert EncoderSetup.from_config(pretrained) == EncoderSetup("partly-fine-tuned", "scratch")
    assert EncoderSetup.from_config(RunConfig(text_encoder="minilm", freeze=False)).text == "fine-tuned"
    assert EncoderSetup.from_config(RunConfig(), uses_image=False).image == "unused"


def test_paper_recipe_is_the_papers_numbers_and_the_heads_paper_defaults():
    cfg, recipe = _resolve(RunConfig(recipe="paper"), _labels([50] * 10))
    for key, value in PAPER.items():
        assert getattr(cfg, key) == value, key
    assert (cfg.lr, cfg.batch_size, cfg.epochs, cfg.schedule, cfg.warmup_steps) == (2e-5, 128, 15, "constant", 0)
    assert cfg.head == {}  # the head configs' own defaults are the paper's: width 768, 32 queries, 16 experts
    head = build_head("fluid", 10, image_dim=768, text_dim=768, **cfg.head)
    assert (head.config.hidden_dim, head.config.num_queries, head.config.num_experts) == (768, 32, 16)
    assert all(c.source == "recipe paper" for c in recipe.choices)


def test_auto_sizes_a_small_catalogue_with_scratch_encoders():
    """~250 items, 10 classes, tiny encoders: the case where the paper's numbers gave 30 optimiser steps."""
    cfg, recipe = _resolve(demo_config("fluid"), _labels([25] * 10))
    assert cfg.val_fraction == 0.15 and cfg.batch_size == 16
    steps_per_epoch = -(-round(250 * 0.85) // 16)
    assert cfg.epochs * steps_per_epoch >= 400  # enough optimiser steps, unlike 15 epochs x 2 steps
    assert cfg.lr == 1e-3 and cfg.encoder_lr == cfg.lr  # scratch encoders learn at the head's rate
    assert cfg.schedule == "cosine" and cfg.warmup_steps >= 10 and cfg.patience >= 4
    assert cfg.head["hidden_dim"] == 64 and cfg.head["num_experts"] == 4 and cfg.head["contrastive_weight"] == 0.0
    assert cfg.max_text_length == 256 and cfg.monitor == "val_accuracy"  # balanced classes
    assert "250 labelled items, 10 classes" in recipe.summary()
    assert all(c.reason for c in recipe.choices)


def test_auto_on_a_large_long_tailed_catalogue_with_frozen_pretrained_encoders():
    stats = CatalogueStats(1_000_000, (200_000,) + (800,) * 1000)
    cfg = RunConfig(text_encoder="minilm", image_encoder="efficientnet-lite0")
    resolved, _ = resolve(cfg, stats, EncoderSetup.from_config(cfg), dataclasses.asdict(head_config("fluid")))
    assert resolved.batch_size == 128 and resolved.epochs == 5 and resolved.val_fraction == 0.1
    assert resolved.head["hidden_dim"] == 768 and resolved.head["num_queries"] == 32
    assert resolved.monitor == "val_macro_f1"  # long tail
    assert resolved.max_text_length == 512


def test_fine_tuned_pretrained_layers_get_a_smaller_rate_than_the_head():
    cfg, _ = _resolve(RunConfig(text_encoder="minilm", image_encoder="efficientnet-lite0", train_top_layers=1),
                      _labels([30] * 10))
    assert cfg.encoder_lr == 2e-5 and cfg.lr == 1e-3


def test_explicit_options_win_over_every_recipe():
    user = RunConfig(recipe="auto", epochs=3, lr=0.01, patience=0, head={"hidden_dim": 32, "num_experts": 2},
                     text_encoder="tiny", image_encoder="tiny")
    cfg, recipe = _resolve(user, _labels([25] * 10))
    assert (cfg.epochs, cfg.lr, cfg.patience) == (3, 0.01, 0)
    assert cfg.head["hidden_dim"] == 32 and cfg.head["num_experts"] == 2
    sources = {c.key: c.source for c in recipe.choices}
    assert sources["epochs"] == sources["lr"] == sources["head.hidden_dim"] == "you"
    assert sources["batch_size"] == "recipe auto"


def test_only_the_keys_a_head_has_are_set_and_molt_fits_the_tiny_encoders():
    for name in available_heads():
        cfg, _ = _resolve(demo_config(name), _labels([25] * 10))
        head = build_head(name, 10, image_dim=64, text_dim=64, **cfg.head)  # unknown keys would raise
        assert head.config.encoder_layers <= 2, name
    assert "num_experts" not in _resolve(demo_config("image-only"), _labels([25] * 10))[0].head
    assert "encoder_layers" not in _resolve(demo_config("fluid"), _labels([25] * 10))[0].head


@pytest.mark.parametrize("name, expected", [("fluid", None), ("molt", 1)])
def test_a_tiny_text_encoder_without_hidden_layers_still_gives_the_head_one_layer_to_read(name, expected):
    """A 0-layer tiny encoder (embeddings only) has one hidden state: MoLT reads it, and no head is asked to read
    none (this used to set encoder_layers=0, which every head refused)."""
    user = dataclasses.replace(demo_config(name), encoder_overrides={"text": {"layers": 0}})
    cfg, _ = _resolve(user, _labels([25] * 10))
    assert cfg.head.get("encoder_layers") == expected
    head = build_head(name, 10, image_dim=64, text_dim=64, **cfg.head)
    assert head.config.encoder_layers == 1


def test_parameter_groups_split_head_and_encoders_and_skip_decay_on_norms_biases_and_tokens():
    from fluid.training.module import parameter_groups
    from fluid.training.network import MultimodalNetwork

    head = build_head("fluid", 3, image_dim=8, text_dim=8, hidden_dim=16, num_heads=2, num_queries=2,
                      num_experts=2)
    encoder = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8))
    network = MultimodalNetwork(head, None, None)
    network.text_encoder = encoder  # a trainable stand-in: only its parameters' names matter here
    groups = {g["name"]: g for g in parameter_groups(network, lr=1e-3, encoder_lr=2e-5, weight_decay=0.01)}
    assert set(groups) == {"head", "head-no-decay", "encoders", "encoders-no-decay"}
    assert groups["head"]["lr"] == 1e-3 and groups["encoders"]["lr"] == 2e-5
    assert groups["head-no-decay"]["weight_decay"] == 0.0 and groups["head"]["weight_decay"] == 0.01
    names = {id(p): n for n, p in network.named_parameters()}
    no_decay = {names[id(p)] for p in groups["head-no-decay"]["params"]}
    assert any(n.endswith("queries") for n in no_decay)
    assert any(n.endswith("logit_scale") for n in no_decay)
    assert any(n.endswith("token") for n in no_decay)
    assert any(n.endswith(".b1") for n in no_decay)
    assert not any(n.endswith("queries") or n.endswith("bias") for n in
                   (names[id(p)] for p in groups["head"]["params"]))
    total = sum(len(g["params"]) for g in groups.values())
    assert total == sum(1 for p in network.parameters() if p.requires_grad)


def test_auto_keeps_the_fused_path_off_encoders_trained_from_scratch_on_larger_catalogues_only():
    large = _labels([150] * 10)  # 1,275 training items after the 15 % validation share
    scratch, recipe = _resolve(demo_config("fluid"), large)
    assert scratch.head["fusion_trains_encoders"] is False
    assert "own modality's classifier" in {c.key: c.reason for c in recipe.choices}["head.fusion_trains_encoders"]
    build_head("fluid", 10, image_dim=8, text_dim=8, **scratch.head)  # a valid head config
    small, recipe = _resolve(demo_config("fluid"), _labels([25] * 10))
    assert small.head["fusion_trains_encoders"] is True
    assert "212 training items" in {c.key: c.reason for c in recipe.choices}["head.fusion_trains_encoders"]
    pretrained, _ = _resolve(RunConfig(text_encoder="minilm", image_encoder="efficientnet-lite0"), large)
    assert pretrained.head["fusion_trains_encoders"] is True
    per_class = DETACHED_FUSION_MIN_ITEMS // 10  # validation given: n_train is every labelled item
    at, above = (_resolve(demo_config("fluid"), _labels([k] * 10), separate_validation=True)[0]
                 for k in (per_class, per_class + 1))
    assert at.head["fusion_trains_encoders"] is True and above.head["fusion_trains_encoders"] is False
    for own in ({"unimodal_weight": 0.0}, {"contrastive_trains_encoders": True}):
        cfg = dataclasses.replace(demo_config("fluid"), head={**demo_config("fluid").head, **own})
        resolved, _ = _resolve(cfg, large)
        assert resolved.head["fusion_trains_encoders"] is True, own
        build_head("fluid", 10, image_dim=8, text_dim=8, **resolved.head)
    mine = dataclasses.replace(demo_config("fluid"), head={**demo_config("fluid").head, "fusion_trains_encoders": True})
    assert _resolve(mine, large)[0].head["fusion_trains_encoders"] is True
    paper, _ = _resolve(RunConfig(recipe="paper"), large)
    assert build_head("fluid", 10, image_dim=8, text_dim=8, **paper.head).config.fusion_trains_encoders is True


def test_the_per_modality_classifiers_read_the_queries_exactly_where_the_fused_path_is_detached():
    large, small = _labels([150] * 10), _labels([25] * 10)
    for labels, head_options, expected in (
            (large, {}, "queries"),  # the recipe detaches the fused path here
            (small, {}, "tokens"),
            (large, {"fusion_trains_encoders": True}, "tokens"),  # the user's choice of the fused path decides
            (small, {"fusion_trains_encoders": False}, "queries")):
        cfg = dataclasses.replace(demo_config("fluid"), head={**demo_config("fluid").head, **head_options})
        resolved, recipe = _resolve(cfg, labels)
        assert resolved.head["unimodal_input"] == expected, head_options
        assert build_head("fluid", 10, image_dim=8, text_dim=8, **resolved.head).config.unimodal_input == expected
    reason = {c.key: c.reason for c in _resolve(demo_config("fluid"), large)[1].choices}["head.unimodal_input"]
    assert "Q-Transform queries" in reason
    mine = dataclasses.replace(demo_config("fluid"), head={**demo_config("fluid").head, "unimodal_input": "tokens"})
    assert _resolve(mine, large)[0].head["unimodal_input"] == "tokens"
    frozen, recipe = _resolve(RunConfig(text_encoder="minilm", image_encoder="efficientnet-lite0"), large)
    assert frozen.head["unimodal_input"] == "tokens"
    assert "no encoder trains" in {c.key: c.reason for c in recipe.choices}["head.unimodal_input"]
    ablation, _ = _resolve(demo_config("fluid-no-qtransform"), large)  # no Q-Transform: the tokens, still detached
    assert ablation.head["unimodal_input"] == "tokens" and ablation.head["fusion_trains_encoders"] is False
    build_head("fluid-no-qtransform", 10, image_dim=8, text_dim=8, **ablation.head)
    paper, _ = _resolve(RunConfig(recipe="paper"), large)
    assert build_head("fluid", 10, image_dim=8, text_dim=8, **paper.head).config.unimodal_input == "tokens"


def test_auto_turns_on_the_measured_head_options_and_paper_leaves_them_off():
    scratch, _ = _resolve(demo_config("fluid"), _labels([25] * 10))
    assert scratch.head["pooled_shortcut"] is True and "contrastive_projection" not in scratch.head
    assert scratch.head["unimodal_weight"] == 1.0  # trained encoders learn from each modality's own classifier
    assert scratch.head["unimodal_blend"] is True  # ... and the classifiers are blended, fitted on validation
    pretrained, _ = _resolve(RunConfig(text_encoder="minilm", image_encoder="efficientnet-lite0"), _labels([30] * 10))
    assert pretrained.head["pooled_shortcut"] is True and pretrained.head["contrastive_weight"] == 0.1
    assert pretrained.head["unimodal_weight"] == 0.0  # frozen encoders: the classifiers would change nothing
    assert pretrained.head["unimodal_blend"] is False  # measured: the fitted blend kept the fused classifier
    assert "contrastive_projection" not in pretrained.head  # measured no better: the head's default (off)
    paper, _ = _resolve(RunConfig(recipe="paper"), _labels([30] * 10))
    head = build_head("fluid", 10, image_dim=768, text_dim=768, **paper.head)
    assert not head.config.pooled_shortcut and not head.config.contrastive_projection
    assert not head.config.unimodal_blend and head.blend_weights is None
