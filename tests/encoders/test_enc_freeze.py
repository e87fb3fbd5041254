"""Freezing semantics: pretrained frozen by default, tiny trainable, eval mode kept, train_top_layers."""

import pytest
from torch import nn

from fluid.encoders import build_image_encoder, build_text_encoder


class Parent(nn.Module):
    def __init__(self, enc):
        super().__init__()
        self.enc = enc
        self.head = nn.Linear(enc.dim, 1)

    def forward(self, batch):
        out = self.enc(batch)
        m = out.mask.unsqueeze(-1).float()
        return self.head((out.tokens * m).sum(1) / m.sum(1).clamp(min=1)).sum()


def test_pretrained_frozen_by_default(hf_bert_dir):
    enc = build_text_encoder(str(hf_bert_dir))
    assert enc.frozen and not enc.trainable
    assert not any(p.requires_grad for p in enc.parameters())
    parent = Parent(enc)
    parent.train()
    assert parent.training and parent.head.training
    assert not any(m.training for m in enc.model.modules())  # dropout stays off
    batch = enc.prepare(["červené šaty", None])
    out = enc(batch)
    assert not out.tokens.requires_grad and not out.tokens.is_inference()
    loss = parent(batch)
    loss.backward()  # frozen features feed a trainable head
    assert parent.head.weight.grad is not None
    assert all(p.grad is None for p in enc.parameters())


def test_tiny_trainable_by_default(corpus):
    enc = build_text_encoder("tiny", corpus=corpus, layers=2)
    assert enc.trainable and not enc.frozen
    parent = Parent(enc).train()
    assert enc.model.training
    parent(enc.prepare(["Rochie roșie", "Piros ruha"])).backward()
    assert all(p.grad is not None for n, p in enc.named_parameters() if "token_type" not in n)


def test_freeze_true_on_tiny(tiny_image):
    enc = build_image_encoder("tiny", freeze=True)
    assert enc.frozen
    enc.train()
    assert not enc.model.training


def test_train_top_layers_text(hf_bert_dir):
    enc = build_text_encoder(str(hf_bert_dir), train_top_layers=1)
    assert enc.trainable and not enc.frozen
    for name, p in enc.model.named_parameters():
        assert p.requires_grad == name.startswith("encoder.layer.1."), name
    Parent(enc).train()
    enc.train()
    assert enc.model.encoder.layer[1].training
    assert not enc.model.encoder.layer[0].training and not enc.model.embeddings.training
    parent = Parent(enc)
    parent(enc.prepare(["červené šaty", "red dress"])).backward()
    assert all(p.grad is not None for p in enc.model.encoder.layer[1].parameters())
    assert all(p.grad is None for p in enc.model.encoder.layer[0].parameters())


def test_train_top_layers_image_includes_final_norm():
    enc = build_image_encoder("tiny-vit", train_top_layers=1)
    trainable = {n for n, p in enc.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.split(".")[0] in {"layers", "layernorm", "encoder"} for n in trainable)
    assert any(n.startswith("layernorm") for n in trainable)
    assert not any(n.startswith("embeddings") for n in trainable)


def test_freeze_argument_errors(corpus):
    with pytest.raises(ValueError, match="train_top_layers"):
        build_image_encoder("tiny", freeze=False, train_top_layers=1)
    with pytest.raises(ValueError, match="only 2 layers"):
        build_image_encoder("tiny-vit", train_top_layers=3)
