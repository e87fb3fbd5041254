"""The registry's contracts: every entry declares what it reads and outputs, and each deep head keeps its word."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from fluid.model import (
    KINDS,
    MODALITIES,
    FluidHead,
    Head,
    HeadConfig,
    HeadOutput,
    available_heads,
    available_models,
    build_head,
    head_config,
    head_spec,
    is_classical,
    register_classical_model,
    register_head,
    unregister_head,
)

B, C = 3, 4
DIMS = {"image": 12, "text": 20}
LENGTHS = {"image": 5, "text": 6}
CLASSICAL = {"tfidf-logreg": ("text",), "image-logreg": ("image",), "tfidf-image-logreg": ("image", "text")}


def small_config(name: str):
    """The entry's config (preset included) at test size, built from the spec alone: the options are chosen by
    the config fields the entry declares, never by its name."""
    spec = head_spec(name)
    wanted = {"hidden_dim": 16, "num_heads": 2, "dropout": 0.0, "ffn_dim": 32, "num_queries": 2,
              "num_experts": 4, "top_k": 2, "expert_hidden_dim": 16, "gate_hidden_dim": 8, "fusion_hidden_dim": 16,
              "encoder_layers": 2 if spec.multi_layer else 1}
    options = {k: v for k, v in wanted.items() if k in spec.config_fields and k not in spec.preset}
    return spec.config_class(**{**spec.preset, **options})


def random_inputs(spec, layers: int, seed: int = 0) -> dict:
    """Tokens (B x L x D, or ``layers`` of them) and masks for the declared modalities only; None for the rest.
    Item 0 has padding in every modality."""
    generator = torch.Generator().manual_seed(seed)
    inputs = {}
    for modality in MODALITIES:
        tokens = mask = None
        if modality in spec.modalities:
            shape = (B, LENGTHS[modality], DIMS[modality])
            stack = [torch.randn(*shape, generator=generator) for _ in range(layers)]
            tokens = stack[0] if layers == 1 else stack
            mask = torch.ones(B, LENGTHS[modality], dtype=torch.bool)
            mask[0, 2:] = False
        inputs[f"{modality}_tokens"], inputs[f"{modality}_mask"] = tokens, mask
    return inputs


@pytest.mark.parametrize("name", available_models())
def test_every_entry_declares_a_valid_contract(name):
    spec = head_spec(name)
    assert spec.name == name and spec.kind in KINDS and spec.description
    assert spec.modalities and spec.modalities == tuple(m for m in MODALITIES if m in spec.modalities)
    assert (spec.reads_image, spec.reads_text) == ("image" in spec.modalities, "text" in spec.modalities)
    assert is_classical(name) == (spec.kind == "classical")
    assert (name in available_heads()) == (spec.kind == "deep")
    if spec.kind == "classical":
        assert spec.head_class is None and spec.config_class is None and spec.config_fields == ()
        assert not (spec.multi_layer or spec.experts or spec.gate)
    else:
        assert issubclass(spec.head_class, Head) and issubclass(spec.config_class, HeadConfig)
        assert set(spec.preset) <= set(spec.config_fields)


@pytest.mark.parametrize("name", available_heads())
def test_every_deep_head_built_from_its_spec_keeps_its_contract(name):
    """Built from the spec alone and fed only its declared modalities (at its declared encoder layers), a head
    gives B x C logits, and a gate / expert routing exactly where its entry declares one."""
    spec = head_spec(name)
    config = small_config(name)
    layers = spec.encoder_layers(config)
    assert layers == (config.encoder_layers if spec.multi_layer else 1)
    torch.manual_seed(0)
    head = spec.head_class(C, DIMS["image"], DIMS["text"], config, name=name).eval()
    with torch.no_grad():
        out = head(**random_inputs(spec, layers), aux_losses=False)
    assert isinstance(out, HeadOutput)
    assert out.logits.shape == (B, C) and bool(torch.isfinite(out.logits).all())
    assert out.aux_losses == {}
    assert (out.gate is not None) == spec.gate
    if spec.gate:
        assert out.gate.shape[0] == B and out.gate.dim() == 2
    assert (out.routing is not None) == (out.expert_load is not None) == spec.experts
    if spec.experts:
        assert out.routing.shape == (B, config.num_experts)
        assert bool(((out.routing > 0).sum(dim=1) == config.top_k).all())


@pytest.mark.parametrize("name", [n for n in available_heads() if head_spec(n).modalities != MODALITIES])
def test_a_modality_a_head_does_not_declare_never_changes_its_output(name):
    spec = head_spec(name)
    undeclared = [m for m in MODALITIES if m not in spec.modalities]
    config = small_config(name)
    head = spec.head_class(C, DIMS["image"], DIMS["text"], config, name=name).eval()
    inputs = random_inputs(spec, spec.encoder_layers(config))
    with torch.no_grad():
        alone = head(**inputs, aux_losses=False).logits
        for modality in undeclared:  # the other modality given anyway, even absurd values, is ignored
            inputs[f"{modality}_tokens"] = torch.full((B, 4, DIMS[modality]), 1e3)
            inputs[f"{modality}_mask"] = torch.ones(B, 4, dtype=torch.bool)
        given = head(**inputs, aux_losses=False).logits
    assert torch.equal(alone, given)


def test_the_registry_declares_the_systems_of_the_paper():
    assert head_spec("image-only").modalities == ("image",)
    assert head_spec("text-only").modalities == ("text",)
    both = [n for n in available_heads() if n not in ("image-only", "text-only")]
    assert all(head_spec(n).modalities == MODALITIES for n in both)
    assert [n for n in available_heads() if head_spec(n).multi_layer] == ["molt"]
    fluid_family = [n for n in available_heads() if n.startswith("fluid")]
    assert [n for n in available_heads() if head_spec(n).gate] == fluid_family
    assert [n for n in available_heads() if head_spec(n).experts] == [n for n in fluid_family if n != "fluid-no-moe"]


def test_classical_models_are_listed_in_the_same_table():
    models = available_models()
    assert models == [*available_heads(), *available_models("classical")]
    assert available_models("classical") == list(CLASSICAL)
    for name, modalities in CLASSICAL.items():
        spec = head_spec(name)
        assert (spec.kind, spec.modalities) == ("classical", modalities)
    assert available_models("deep") == available_heads() and "fluid" in models
    with pytest.raises(ValueError, match="kind must be one of"):
        available_models("shallow")


def test_the_baselines_views_read_the_one_table():
    from fluid.baselines import CLASSICAL_MODELS, DESCRIPTIONS, ClassicalModel
    from fluid.baselines import is_classical as baselines_is_classical

    assert dict(CLASSICAL_MODELS) == CLASSICAL
    assert DESCRIPTIONS["image-logreg"] == head_spec("image-logreg").description
    assert baselines_is_classical("tfidf-logreg") and not baselines_is_classical("fluid")
    assert "fluid" not in CLASSICAL_MODELS and not baselines_is_classical("nope")
    register_classical_model("test-text-logreg", ("text",), "classical: a test entry")
    try:  # a classical model registered later is seen by every view, and fitted from its declared modalities
        assert CLASSICAL_MODELS["test-text-logreg"] == ("text",) and baselines_is_classical("test-text-logreg")
        assert ClassicalModel("test-text-logreg", ["a", "b"]).modalities == ("text",)
    finally:
        unregister_head("test-text-logreg")
    assert "test-text-logreg" not in CLASSICAL_MODELS and "test-text-logreg" not in available_models()


def test_unknown_names_give_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown model 'nope'; available models: fluid, .*molt, tfidf-logreg"):
        head_spec("nope")
    with pytest.raises(ValueError, match=r"unknown head 'nope'; available heads: fluid, .*molt$"):
        build_head("nope", C)
    with pytest.raises(ValueError, match=r"unknown head 'nope'"):
        head_config("nope")
    with pytest.raises(ValueError, match=r"'tfidf-logreg' is a classical model .*not a head"):
        build_head("tfidf-logreg", C)
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        unregister_head("nope")
    assert not is_classical("nope")


def test_a_single_layer_head_refuses_several_encoder_layers():
    assert head_config("molt", encoder_layers=3).encoder_layers == 3
    with pytest.raises(ValueError, match="'fluid' reads the last encoder layer only; got encoder_layers=2"):
        head_config("fluid", encoder_layers=2)


@dataclasses.dataclass
class ProbeConfig(HeadConfig):
    scale: float = 1.0


class ProbeHead(Head):
    """Mean of the image tokens -> linear; B x C."""

    config_class = ProbeConfig

    def __init__(self, num_classes, image_dim, text_dim, config, name, **cls_tokens):
        super().__init__(num_classes, image_dim, text_dim, config, name, **cls_tokens)
        self.classifier = torch.nn.Linear(image_dim, num_classes)

    def forward(self, image_tokens, text_tokens, image_mask=None, text_mask=None, *, aux_losses=True):
        return HeadOutput(logits=self.classifier(image_tokens.mean(dim=1)) * self.config.scale)


def test_register_head_declares_and_checks_the_contract():
    spec = register_head("test-probe", ProbeHead, ProbeConfig, {"scale": 2.0}, "a probe", modalities=["image"])
    try:
        assert head_spec("test-probe") is spec and spec.modalities == ("image",) and spec.kind == "deep"
        assert available_models()[-1] == "test-probe" and "test-probe" in available_heads()
        head = build_head("test-probe", C, DIMS["image"], DIMS["text"])
        assert head.config.scale == 2.0 and head(torch.ones(B, 2, DIMS["image"]), None).logits.shape == (B, C)
        with pytest.raises(ValueError, match="already registered"):
            register_head("test-probe", ProbeHead, ProbeConfig)
    finally:
        assert unregister_head("test-probe") is spec
    assert "test-probe" not in available_models()
    assert register_head("test-probe", ProbeHead, ProbeConfig, modalities=("text", "image")).modalities == MODALITIES
    unregister_head("test-probe")
    with pytest.raises(TypeError, match=r"modalities must be a tuple such as \('image',\)"):
        register_head("test-probe", ProbeHead, ProbeConfig, modalities="image")
    for bad in ((), ("image", "image"), ("audio",)):
        with pytest.raises(ValueError, match="non-empty subset"):
            register_head("test-probe", ProbeHead, ProbeConfig, modalities=bad)
    with pytest.raises(ValueError, match=r"experts needs the config fields \['num_experts', 'top_k'\]"):
        register_head("test-probe", ProbeHead, ProbeConfig, experts=True)
    with pytest.raises(TypeError, match="subclass of fluid.model.Head"):
        register_head("test-probe", torch.nn.Linear, ProbeConfig)
    assert "test-probe" not in available_models()


def test_prepare_inputs_puts_the_missing_token_in_absent_rows_and_modalities():
    torch.manual_seed(0)
    head = FluidHead(C, DIMS["image"], DIMS["text"], small_config("fluid"))
    image = torch.randn(B, 4, DIMS["image"])
    image_mask = torch.tensor([[True, True, False, False], [False] * 4, [True] * 4])
    inputs = head.prepare_inputs(image, None, image_mask, None)
    assert inputs.batch_size == B
    assert inputs.image.tokens.shape == (B, 4, DIMS["image"]) and inputs.image.present.tolist() == [True, False, True]
    assert torch.equal(inputs.image.tokens[1, 0], head.image_missing.token) and bool((inputs.image.tokens[0, 2:] == 0).all())
    assert inputs.image.mask.tolist()[1] == [True, False, False, False]
    assert inputs.text.tokens.shape == (B, 1, DIMS["text"]) and not inputs.text.present.any()
    assert torch.equal(inputs.text.tokens[:, 0], head.text_missing.token.expand(B, -1))
    with pytest.raises(ValueError, match="at least one of image_tokens and text_tokens"):
        head.prepare_inputs(None, None)


def test_prepare_layer_inputs_gives_one_slot_per_layer():
    head = build_head("molt", C, DIMS["image"], DIMS["text"], hidden_dim=16, num_heads=2, encoder_layers=2)
    image, text = torch.randn(B, 4, DIMS["image"]), torch.randn(B, 3, DIMS["text"])
    slots = head.prepare_layer_inputs([image, image + 1, image + 2], text, None, None, layers=2)
    assert len(slots) == 2 and all(slot.batch_size == B for slot in slots)
    assert torch.equal(slots[0].image.tokens, image + 1) and torch.equal(slots[1].image.tokens, image + 2)
    assert all(torch.equal(slot.text.tokens, text) for slot in slots)  # one tensor serves every slot
    with pytest.raises(ValueError, match="image_tokens: got 2 layers, the head reads encoder_layers=3"):
        head.prepare_layer_inputs([image, image], text, None, None, layers=3)
