"""Every registered head: shapes, padding invariance, missing modalities, one optimisation, round trip."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from fluid.model import HeadOutput, available_heads, build_head
from fluid.model.cca import soft_cca_loss
from fluid.model.contrastive import contrastive_loss, info_nce, same_label_negatives
from fluid.model.missing import masked_mean

IMAGE_DIM, TEXT_DIM, C = 24, 40, 3
HEADS = available_heads()
FLUID_FAMILY = [n for n in HEADS if n.startswith("fluid")]


def tiny(name: str, **extra) -> dict:
    """Small dims for fast tests (d=32, l=4, 4 experts), no dropout."""
    over = dict(hidden_dim=32, num_heads=4, dropout=0.0, ffn_dim=64)
    if name.startswith("fluid"):
        over.update(num_queries=4, num_experts=4, top_k=2, expert_hidden_dim=32, gate_hidden_dim=16)
    elif name in ("blip2", "image-only", "text-only"):
        over.update(num_queries=4)
    elif name == "molt":
        over.update(encoder_layers=2, fusion_hidden_dim=32)
    over.update(extra)
    return over


def make(name: str, seed: int = 0, **extra):
    torch.manual_seed(seed)
    return build_head(name, C, IMAGE_DIM, TEXT_DIM, **tiny(name, **extra))


def batch(b: int = 4, li: int = 5, lt: int = 7, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(b, li, IMAGE_DIM, generator=g)
    text = torch.randn(b, lt, TEXT_DIM, generator=g)
    image_mask = torch.ones(b, li, dtype=torch.bool)
    image_mask[1, 3:] = False
    text_mask = torch.ones(b, lt, dtype=torch.bool)
    text_mask[0, 4:] = False
    text_mask[2, 1:] = False
    return image, text, image_mask, text_mask


def inputs_for(head, image, text):
    """MoLT reads several layers: give it a per-layer list (the others take the tensor)."""
    if head.name == "molt" and image is not None and text is not None:
        k = head.config.encoder_layers
        return [image * (1 + 0.1 * j) for j in range(k)], [text * (1 - 0.1 * j) for j in range(k)]
    return image, text


def finite(out: HeadOutput) -> bool:
    ok = bool(torch.isfinite(out.logits).all()) and bool(torch.isfinite(out.embedding).all())
    return ok and all(bool(torch.isfinite(v).all()) for v in out.aux_losses.values())



@pytest.mark.parametrize("name", HEADS)
def test_without_aux_losses_every_other_output_is_the_same(name):
    head = make(name).eval()
    image, text, im, tm = batch()
    tokens = inputs_for(head, image, text)
    with torch.no_grad():
        full = head(*tokens, im, tm)
        inference = head(*tokens, im, tm, aux_losses=False)
    assert inference.aux_losses == {}
    if name in ("fluid", "molt"):
        assert full.aux_losses  # the default computes them (validation loss, training)
    for field in ("logits", "embedding", "gate", "expert_load", "routing"):
        expected, got = getattr(full, field), getattr(inference, field)
        assert (expected is None) == (got is None), field
        if expected is not None:
            torch.testing.assert_close(got, expected, rtol=0, atol=0, msg=field)

@pytest.mark.parametrize("name", HEADS)
def test_shapes_and_output_fields(name):
    head = make(name)
    image, text, im, tm = batch()
    out = head(*inputs_for(head, image, text), im, tm)
    assert isinstance(out, HeadOutput)
    assert out.logits.shape == (4, C)
    assert out.embedding.dim() == 2 and out.embedding.shape[0] == 4
    assert out.embedding.shape[1] == head.embedding_dim
    for key, value in out.aux_losses.items():
        assert value.dim() == 0, key
    assert head.name == name and head.config.encoder_layers == (2 if name == "molt" else 1)
    if name.startswith("fluid"):
        assert out.gate.shape == (4, 1 if name == "fluid-no-qtransform" else 4)
        gate = out.gate.detach()
        assert float(gate.min()) >= 0.0 and float(gate.max()) <= 1.0
        if name == "fluid-no-moe":
            assert out.expert_load is None
        else:
            assert out.expert_load.shape == (4,)
            assert torch.isclose(out.expert_load.sum(), torch.tensor(1.0))
            assert set(out.aux_losses) >= {"moe_balance"}
        assert ("contrastive" in out.aux_losses) == (name != "fluid-no-contrastive")
    else:
        assert out.gate is None and out.expert_load is None
    assert finite(out)


@pytest.mark.parametrize("name", HEADS)
def test_padding_values_do_not_leak(name):
    head = make(name).eval()
    image, text, im, tm = batch()
    with torch.no_grad():
        ref = head(*inputs_for(head, image, text), im, tm)
        image2 = torch.where(im.unsqueeze(-1), image, torch.randn_like(image) * 100)
        text2 = torch.where(tm.unsqueeze(-1), text, torch.randn_like(text) * 100)
        out = head(*inputs_for(head, image2, text2), im, tm)
    torch.testing.assert_close(out.logits, ref.logits)
    torch.testing.assert_close(out.embedding, ref.embedding)
    for key in ref.aux_losses:
        torch.testing.assert_close(out.aux_losses[key], ref.aux_losses[key])


@pytest.mark.parametrize("name", HEADS)
def test_padding_length_does_not_matter(name):
    """A padded row gives the same logits as the same sample alone, unpadded (masks really reach attention)."""
    head = make(name).eval()
    image, text, im, tm = batch()
    with torch.no_grad():
        ref = head(*inputs_for(head, image, text), im, tm)
        for i in range(image.shape[0]):
            li, lt = int(im[i].sum()), int(tm[i].sum())
            out = head(*inputs_for(head, image[i : i + 1, :li], text[i : i + 1, :lt]))
            torch.testing.assert_close(out.logits, ref.logits[i : i + 1], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", HEADS)
@pytest.mark.parametrize("case", ["image-none", "text-none", "image-all-false", "text-all-false", "mixed"])
def test_missing_modality_is_finite(name, case):
    head = make(name)
    image, text, im, tm = batch()
    if case == "image-none":
        image, im = None, None
    elif case == "text-none":
        text, tm = None, None
    elif case == "image-all-false":
        im = torch.zeros_like(im)
    elif case == "text-all-false":
        tm = torch.zeros_like(tm)
    else:
        im[0] = False
        tm[1] = False
    out = head(*inputs_for(head, image, text), im, tm)
    assert out.logits.shape == (4, C)
    assert finite(out)
    losses = head.loss(out, torch.tensor([0, 1, 2, 0]))
    losses["loss"].backward()
    assert all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in head.parameters())
    if "contrastive" in out.aux_losses and case != "mixed":
        assert out.aux_losses["contrastive"].item() == 0.0  # no complete pair left


def test_both_modalities_absent_is_an_error():
    head = make("fluid")
    with pytest.raises(ValueError, match="at least one"):
        head(None, None)


@pytest.mark.parametrize("name", HEADS)
def test_a_few_adamw_steps_reduce_the_loss(name):
    head = make(name)
    image, text, im, tm = batch(b=8, seed=3)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    args = (*inputs_for(head, image, text), im, tm)
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=0.01)
    head.train()
    with torch.no_grad():
        before = float(head.loss(head(*args), labels)["loss"])
    for _ in range(5):
        opt.zero_grad()
        head.loss(head(*args), labels)["loss"].backward()
        opt.step()
    with torch.no_grad():
        after = float(head.loss(head(*args), labels)["loss"])
    assert after < before, (before, after)


@pytest.mark.parametrize("name", HEADS)
def test_config_round_trip_rebuilds_the_same_head(name):
    head = make(name).eval()
    config = dataclasses.asdict(head.config)
    for key, value in config.items():
        assert value is None or isinstance(value, (int, float, bool, str)), key
    torch.manual_seed(123)
    rebuilt = build_head(head.name, head.num_classes, head.image_dim, head.text_dim, **config).eval()
    assert rebuilt.config == head.config
    rebuilt.load_state_dict(head.state_dict(), strict=True)
    image, text, im, tm = batch()
    with torch.no_grad():
        torch.testing.assert_close(
            rebuilt(*inputs_for(head, image, text), im, tm).logits, head(*inputs_for(head, image, text), im, tm).logits
        )


@pytest.mark.parametrize("name,ignored", [("image-only", "text"), ("text-only", "image")])
def test_unimodal_heads_ignore_the_other_modality(name, ignored):
    head = make(name).eval()
    image, text, im, tm = batch()
    with torch.no_grad():
        ref = head(image, text, im, tm).logits
        if ignored == "text":
            other = head(image, None, im, None).logits
            other2 = head(image, torch.randn_like(text), im, None).logits
        else:
            other = head(None, text, None, tm).logits
            other2 = head(torch.randn_like(image), text, None, tm).logits
    torch.testing.assert_close(other, ref)
    torch.testing.assert_close(other2, ref)


def test_fluid_no_qtransform_pooling_options_differ():
    image, text, im, tm = batch()
    cls = make("fluid-no-qtransform", no_qtransform_pooling="cls").eval()
    mean = make("fluid-no-qtransform", no_qtransform_pooling="mean").eval()
    mean.load_state_dict(cls.state_dict())
    with torch.no_grad():
        a, b = cls(image, text, im, tm).logits, mean(image, text, im, tm).logits
        # CLS reads the first token only: changing the others does not move it.
        text2 = text.clone()
        text2[:, 1:] += 1.0
        c = cls(image, text2, im, tm).logits
    assert not torch.allclose(a, b)
    torch.testing.assert_close(a, c)


def test_fluid_no_gating_is_the_plain_average():
    head = make("fluid-no-gating").eval()
    out = head(*batch()[:2])
    assert torch.all(out.gate == 0.5)
    assert head.gating is None


def test_fluid_per_token_routing_and_dense_dispatch():
    image, text, im, tm = batch()
    per_token = make("fluid", moe_input="per-token").eval()
    out = per_token(image, text, im, tm)
    assert out.logits.shape == (4, C) and torch.isclose(out.expert_load.sum(), torch.tensor(1.0))
    dense = make("fluid", moe_input="per-token", moe_dispatch="dense").eval()
    dense.load_state_dict(per_token.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(dense(image, text, im, tm).logits, per_token(image, text, im, tm).logits)


def test_fluid_router_z_loss_is_optional():
    image, text, im, tm = batch()
    assert "router_z" not in make("fluid")(image, text, im, tm).aux_losses
    out = make("fluid", router_z_loss_weight=0.01)(image, text, im, tm)
    assert out.aux_losses["router_z"].item() > 0


def test_fluid_aux_losses_are_weighted_once():
    image, text, im, tm = batch()
    a = make("fluid", moe_weight=1.0, contrastive_weight=1.0).eval()
    b = make("fluid", moe_weight=0.25, contrastive_weight=0.5).eval()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        oa, ob = a(image, text, im, tm), b(image, text, im, tm)
    torch.testing.assert_close(ob.aux_losses["moe_balance"], 0.25 * oa.aux_losses["moe_balance"])
    torch.testing.assert_close(ob.aux_losses["contrastive"], 0.5 * oa.aux_losses["contrastive"])


def test_loss_total_combines_ce_and_aux():
    head = make("fluid").eval()
    out = head(*batch()[:2])
    labels = torch.tensor([0, 1, -1, 2])
    parts = head.loss(out, labels)
    ce = torch.nn.functional.cross_entropy(out.logits[[0, 1, 3]], labels[[0, 1, 3]])
    torch.testing.assert_close(parts["ce"], ce)
    expected = head.config.ce_weight * ce + out.aux_losses["contrastive"] + out.aux_losses["moe_balance"]
    torch.testing.assert_close(parts["loss"], expected)
    assert torch.isfinite(head.loss(out, torch.full((4,), -1))["loss"])


def test_molt_layer_inputs():
    head = make("molt").eval()  # encoder_layers = 2
    image, text, im, tm = batch()
    layers_i = [image + j for j in range(3)]
    layers_t = [text - j for j in range(3)]
    with torch.no_grad():
        single = head(image, text, im, tm).logits
        repeated = head([image, image], [text, text], im, tm).logits
        last_two = head(layers_i[1:], layers_t[1:], im, tm).logits
        three = head(layers_i, layers_t, im, tm).logits
        one_item = head([image], [text], im, tm).logits
    torch.testing.assert_close(single, repeated)
    torch.testing.assert_close(single, one_item)
    torch.testing.assert_close(three, last_two)
    with pytest.raises(ValueError, match="encoder_layers=3"):
        make("molt", encoder_layers=3)(layers_i[:2], layers_t[:2], im, tm)


def test_molt_cca_skips_samples_missing_a_side():
    head = make("molt").eval()
    image, text, im, tm = batch()
    im[0] = False
    tm[1] = False
    tm[2] = False
    with torch.no_grad():
        out = head(image, text, im, tm)  # only sample 3 complete -> no CCA
        assert float(out.aux_losses["cca"]) == 0.0
        im[0] = True
        out = head(image, text, im, tm)  # samples 0 and 3 complete
        assert float(out.aux_losses["cca"]) > 0.0


@pytest.mark.parametrize("name", HEADS)
def test_heads_have_no_modality_dropout_of_their_own(name):
    """Modality dropout is set once, for the run (MultimodalNetwork): a head never hides a modality in training
    (MoLT used to, at 0.1 by default, on top of the run's), and a head-level key names the run-level option."""
    with pytest.raises(ValueError, match="RunConfig.modality_dropout"):
        build_head(name, C, IMAGE_DIM, TEXT_DIM, modality_dropout=0.1)
    head = make(name)  # no dropout: training and evaluation mode compute the same function
    image, text, im, tm = batch(b=32)
    tokens = inputs_for(head, image, text)
    with torch.no_grad():
        training = head.train()(*tokens, im, tm).logits
        evaluation = head.eval()(*tokens, im, tm).logits
    torch.testing.assert_close(training, evaluation)


def test_molt_cca_reads_the_translated_streams_before_cross_attention():
    head = make("molt").eval()
    with torch.no_grad():  # make the cross-attention mix hard: each stream then mostly holds the other modality
        for block in [*head.image_to_text, *head.text_to_image]:
            block.attn.out_proj.weight.mul_(20.0)
    translated: dict[str, list[torch.Tensor]] = {"image": [], "text": []}
    for key, projections in (("image", head.image_proj), ("text", head.text_proj)):
        for projection in projections:
            projection.register_forward_hook(lambda module, args, out, key=key: translated[key].append(out))
    image, text, im, tm = batch(b=6)
    tm[2] = False  # no text: left out of the CCA
    with torch.no_grad():
        out = head(*inputs_for(head, image, text), im, tm)
    both = im.any(1) & tm.any(1)
    per_layer = [soft_cca_loss(masked_mean(i, im)[both], masked_mean(t, tm)[both], head.config.cca_decorrelation)
                 for i, t in zip(translated["image"], translated["text"])]
    assert len(per_layer) == head.config.encoder_layers
    torch.testing.assert_close(out.aux_losses["cca"], head.config.cca_weight * torch.stack(per_layer).mean())


def test_fluid_no_qtransform_auto_pooling_follows_the_cls_token():
    """"auto": the first token where the encoder puts a CLS token there (ViT, BERT), the masked mean where it
    does not (EfficientNet's grid tokens: token 0 is the top-left cell)."""
    image, text, im, tm = batch()
    auto_cls = make("fluid-no-qtransform").eval()
    auto_grid = make("fluid-no-qtransform", image_has_cls=False, text_has_cls=False).eval()
    cls = make("fluid-no-qtransform", no_qtransform_pooling="cls").eval()
    mean = make("fluid-no-qtransform", no_qtransform_pooling="mean").eval()
    assert auto_cls.config.no_qtransform_pooling == "auto"
    for head in (auto_grid, cls, mean):
        head.load_state_dict(auto_cls.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(auto_cls(image, text, im, tm).logits, cls(image, text, im, tm).logits)
        torch.testing.assert_close(auto_grid(image, text, im, tm).logits, mean(image, text, im, tm).logits)
        summary = auto_grid.image_summary
        expected = summary.norm(summary.proj(masked_mean(image, im))).unsqueeze(1)
        torch.testing.assert_close(summary(image, im), expected)
        corner = summary.norm(summary.proj(image[:, 0])).unsqueeze(1)
        assert not torch.allclose(summary(image, im), corner)
    mixed = make("fluid-no-qtransform", image_has_cls=False)
    assert (mixed.image_summary.pooling, mixed.text_summary.pooling) == ("mean", "cls")
    assert (mixed.image_has_cls, mixed.text_has_cls) == (False, True)


# -- contrastive switches -------------------------------------------------------------------------------------

def test_fluid_contrastive_defaults_are_the_plain_loss_bit_for_bit():
    """Both switches off (the paper): no new parameters, and the term is λ2 · CLIP InfoNCE of the query means."""
    head = make("fluid", contrastive_weight=0.5).eval()
    assert not any("contrastive_projection" in k for k in head.state_dict())
    image, text, im, tm = batch()
    with torch.no_grad():
        out = head(image, text, im, tm)
        image_n = head.image_summary(*head.image_missing(image, im, 4)[:2]).mean(dim=1)
        text_n = head.text_summary(*head.text_missing(text, tm, 4)[:2]).mean(dim=1)
        logits = (torch.nn.functional.normalize(image_n, dim=-1) @ torch.nn.functional.normalize(text_n, dim=-1).t()
                  / head.contrastive.temperature())
        target = torch.arange(4)
        plain = 0.5 * (torch.nn.functional.cross_entropy(logits, target)
                       + torch.nn.functional.cross_entropy(logits.t(), target))
    assert torch.equal(out.aux_losses["contrastive"], 0.5 * plain)
    assert out.contrastive_logits is None and out.contrastive_pairs is None


def test_fluid_contrastive_mask_same_label_is_finished_by_the_loss():
    image, text, im, tm = batch()
    plain = make("fluid").eval()
    masked = make("fluid", contrastive_mask_same_label=True).eval()
    masked.load_state_dict(plain.state_dict())  # same parameters: the switch adds none
    with torch.no_grad():
        a, b = plain(image, text, im, tm), masked(image, text, im, tm)
    assert "contrastive" not in b.aux_losses and b.contrastive_logits.shape == (4, 4)
    distinct = torch.tensor([0, 1, 2, -1])
    assert torch.equal(masked.loss(b, distinct)["contrastive"], plain.loss(a, distinct)["contrastive"])
    shared = torch.tensor([0, 0, 2, 0])
    exclude = same_label_negatives(shared)
    expected = masked.config.contrastive_weight * info_nce(b.contrastive_logits, exclude)
    parts = masked.loss(b, shared)
    torch.testing.assert_close(parts["contrastive"], expected)
    assert float(parts["contrastive"]) < float(plain.loss(a, shared)["contrastive"])
    torch.testing.assert_close(parts["loss"], masked.config.ce_weight * parts["ce"] + parts["contrastive"]
                               + parts["moe_balance"])
    im[0] = False  # item 0 loses its image: the similarities cover items 1-3, and so do the labels
    with torch.no_grad():
        c = masked(image, text, im, tm)
    assert c.contrastive_logits.shape == (3, 3) and c.contrastive_pairs.tolist() == [False, True, True, True]
    torch.testing.assert_close(masked.loss(c, shared)["contrastive"], masked.config.contrastive_weight
                               * info_nce(c.contrastive_logits, same_label_negatives(shared[1:])))
    assert masked(image, text, im, tm, aux_losses=False).contrastive_logits is None


def test_fluid_contrastive_projection_is_contrasted_and_trained():
    image, text, im, tm = batch()
    head = make("fluid", contrastive_projection=True, contrastive_dim=12)
    assert head.contrastive_projection.image.weight.shape == (12, 32)
    out = head(image, text, im, tm)
    with torch.no_grad():
        image_vec = head.image_summary(*head.image_missing(image, im, 4)[:2]).mean(dim=1)
        text_vec = head.text_summary(*head.text_missing(text, tm, 4)[:2]).mean(dim=1)
        projected = contrastive_loss(*head.contrastive_projection(image_vec, text_vec), head.contrastive.temperature())
        unprojected = contrastive_loss(image_vec, text_vec, head.contrastive.temperature())
    torch.testing.assert_close(out.aux_losses["contrastive"], head.config.contrastive_weight * projected)
    assert not torch.allclose(projected, unprojected)
    head.loss(out, torch.tensor([0, 1, 2, 0]))["loss"].backward()
    for weight in (head.contrastive_projection.image.weight, head.contrastive_projection.text.weight):
        assert weight.grad is not None and weight.grad.abs().sum() > 0
    assert make("fluid", contrastive_projection=True).contrastive_projection.text.weight.shape == (32, 32)
    assert make("fluid-no-contrastive", contrastive_projection=True).contrastive_projection is None


def test_fluid_with_both_contrastive_switches_uses_every_parameter():
    head = make("fluid", contrastive_projection=True, contrastive_mask_same_label=True)
    image, text, im, tm = batch()
    head.loss(head(image, text, im, tm), torch.tensor([0, 0, 1, 2]))["loss"].backward()
    unused = [n for n, p in head.named_parameters() if p.grad is None]
    assert not unused, unused


@pytest.mark.parametrize("name", HEADS)
def test_every_parameter_gets_a_gradient(name):
    """No unused parameters on a full batch (DistributedDataParallel needs this without find_unused_parameters)."""
    head = make(name)
    image, text, im, tm = batch()
    out = head(*inputs_for(head, image, text), im, tm)
    head.loss(out, torch.tensor([0, 1, 2, 0]))["loss"].backward()
    unused = [n for n, p in head.named_parameters() if p.grad is None]
    assert not unused, unused


def test_moe_auto_dispatch_is_dense_on_accelerators_only():
    from fluid.model.moe import dense_dispatch

    assert make("fluid").moe.dispatch == "auto"
    assert dense_dispatch("auto", torch.device("cuda")) and dense_dispatch("auto", torch.device("mps"))
    assert not dense_dispatch("auto", torch.device("cpu"))
    assert dense_dispatch("dense", torch.device("cpu")) and not dense_dispatch("sparse", torch.device("cuda"))
    with pytest.raises(ValueError, match="moe_dispatch"):
        make("fluid", moe_dispatch="fast")
