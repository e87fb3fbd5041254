"""``token_dropout``: a trained text encoder reads a share of its real input tokens as [UNK] during training."""

import pytest
import torch

from fluid.config import RunConfig
from fluid.encoders import build_image_encoder, build_text_encoder
from fluid.model import build_head
from fluid.training.network import MultimodalNetwork

TEXTS = ["red lace summer dress with long sleeves and a round neck"] * 6 + ["blue cotton shirt", None]


@pytest.fixture(scope="module")
def text_encoder():
    return build_text_encoder("tiny", corpus=TEXTS[:-1] * 5, seed=0, hidden_size=16, layers=1, heads=2,
                              intermediate_size=32)


def test_drop_tokens_replaces_only_real_tokens_at_about_the_rate(text_encoder):
    batch = text_encoder.prepare(TEXTS * 50)
    torch.manual_seed(0)
    dropped = text_encoder.drop_tokens(batch, 0.3)
    ids, new = batch["input_ids"], dropped["input_ids"]
    unk = text_encoder.tokenizer.unk_token_id
    special = torch.isin(ids, torch.tensor(text_encoder.tokenizer.all_special_ids))
    real = batch["attention_mask"].bool() & ~special
    changed = new != ids
    assert not changed[~real].any()  # padding, [CLS], [SEP] untouched
    assert (new[changed] == unk).all()
    assert changed[real].float().mean().item() == pytest.approx(0.3, abs=0.03)
    assert torch.equal(batch["input_ids"], ids) and dropped["attention_mask"] is batch["attention_mask"]
    assert text_encoder.drop_tokens(batch, 0.0) is batch
    with pytest.raises(ValueError, match="token dropout"):
        text_encoder.drop_tokens(batch, 1.0)


def _network(text_encoder, rate):
    head = build_head("fluid", 3, image_dim=32, text_dim=text_encoder.dim, hidden_dim=16, num_heads=2,
                      num_queries=2, num_experts=2)
    image = build_image_encoder("tiny", seed=0, hidden_size=32, image_size=32, widths=[8, 8, 16])
    return MultimodalNetwork(head, text_encoder, image, token_dropout=rate)


def test_the_network_drops_tokens_in_training_only(text_encoder, monkeypatch):
    seen = []
    original = text_encoder.drop_tokens
    monkeypatch.setattr(text_encoder, "drop_tokens", lambda b, r: seen.append(r) or original(b, r))
    network = _network(text_encoder, 0.3)
    batch = {"text": text_encoder.prepare(TEXTS[:2]), "image": None}
    network.train()
    network.encode(batch)
    network.eval()
    network.encode(batch)
    assert seen == [0.3]
    text_encoder.requires_grad_(False)  # a frozen encoder reads its input as given (and can be cached)
    try:
        network.train()
        network.encode(batch)
        assert seen == [0.3]
    finally:
        text_encoder.requires_grad_(True)
    with pytest.raises(ValueError, match="token_dropout"):
        _network(text_encoder, 1.5)


def test_auto_recipe_sets_token_dropout_for_a_text_encoder_trained_from_scratch_only():
    from fluid.training.recipe import CatalogueStats, EncoderSetup, resolve

    stats = CatalogueStats.from_labels(["a", "b"] * 100)
    scratch, _ = resolve(RunConfig(text_encoder="tiny", image_encoder="tiny"), stats,
                         EncoderSetup("scratch", "scratch"), {})
    assert scratch.token_dropout == 0.3
    pretrained, _ = resolve(RunConfig(text_encoder="minilm", image_encoder="tiny"), stats,
                            EncoderSetup("frozen", "scratch"), {})
    assert pretrained.token_dropout == 0.0
    paper, _ = resolve(RunConfig(recipe="paper"), stats, EncoderSetup("scratch", "scratch"), {})
    assert paper.token_dropout == 0.0
    yours, _ = resolve(RunConfig(token_dropout=0.1), stats, EncoderSetup("scratch", "scratch"), {})
    assert yours.token_dropout == 0.1
