"""``MultimodalNetwork`` runs what the head's registry entry declares: its modalities, its encoder layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fluid.encoders import EncoderOutput
from fluid.model import FluidHead, FluidConfig, Head, HeadConfig, HeadOutput, build_head, register_head, unregister_head
from fluid.training.network import Collator, MultimodalNetwork

B, C, IMAGE_DIM, TEXT_DIM = 4, 3, 8, 6


class StubEncoder(nn.Module):
    """Returns the batch's tokens as they are (and k scaled copies as the last k layers); counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.trainable = False
        self.frozen = True
        self.preprocessor = object()

    def forward(self, inputs: dict, num_layers: int = 1) -> EncoderOutput:
        self.calls += 1
        tokens = inputs["tokens"]
        layers = tuple(tokens * (j + 1) for j in range(num_layers)) if num_layers > 1 else None
        return EncoderOutput(tokens, inputs["mask"], layers)


class RecordingImageHead(Head):
    """A user's image-only head: mean of the image tokens -> linear; records which modalities it was given."""

    config_class = HeadConfig

    def __init__(self, num_classes, image_dim, text_dim, config, name, **cls_tokens):
        super().__init__(num_classes, image_dim, text_dim, config, name, **cls_tokens)
        self.classifier = nn.Linear(image_dim, num_classes)
        self.seen: list[tuple[bool, bool]] = []

    def forward(self, image_tokens, text_tokens, image_mask=None, text_mask=None, *, aux_losses=True):
        self.seen.append((image_tokens is not None, text_tokens is not None))
        return HeadOutput(logits=self.classifier(image_tokens.mean(dim=1)))


@pytest.fixture
def image_recorder():
    register_head("test-image-recorder", RecordingImageHead, HeadConfig, modalities=("image",))
    yield "test-image-recorder"
    unregister_head("test-image-recorder")


def batch(seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {"image": {"tokens": torch.randn(B, 5, IMAGE_DIM, generator=generator),
                      "mask": torch.ones(B, 5, dtype=torch.bool)},
            "text": {"tokens": torch.randn(B, 7, TEXT_DIM, generator=generator),
                     "mask": torch.ones(B, 7, dtype=torch.bool)}}


def test_a_user_registered_image_only_head_is_fed_only_images(image_recorder):
    head = build_head(image_recorder, C, IMAGE_DIM, TEXT_DIM)
    image_encoder, text_encoder = StubEncoder(), StubEncoder()
    network = MultimodalNetwork(head, text_encoder, image_encoder, modality_dropout=1.0)
    assert network.image_encoder is image_encoder and network.text_encoder is None
    assert network.spec.modalities == ("image",) and network.encoder_layers == 1
    assert Collator.for_network(network).text_preprocessor is None
    network.train()  # modality dropout needs both modalities: the only one the head reads is never dropped
    image_tokens, image_mask, text_tokens, text_mask = network.encode(batch())
    assert text_tokens is None and text_mask is None and bool(image_mask.all())
    out = network(batch())
    assert out.logits.shape == (B, C)
    assert head.seen == [(True, False)]
    assert (image_encoder.calls, text_encoder.calls) == (2, 0)


def test_the_built_in_text_only_head_gets_no_image_encoder():
    head = build_head("text-only", C, IMAGE_DIM, TEXT_DIM, hidden_dim=8, num_heads=2, num_queries=2)
    image_encoder, text_encoder = StubEncoder(), StubEncoder()
    network = MultimodalNetwork(head, text_encoder, image_encoder).eval()
    assert network.image_encoder is None and network.text_encoder is text_encoder
    assert network(batch()).logits.shape == (B, C) and image_encoder.calls == 0


def test_the_encoder_layers_come_from_the_heads_declared_contract():
    molt = build_head("molt", C, IMAGE_DIM, TEXT_DIM, hidden_dim=8, num_heads=2, encoder_layers=3)
    image_encoder, text_encoder = StubEncoder(), StubEncoder()
    network = MultimodalNetwork(molt, text_encoder, image_encoder).eval()
    assert network.encoder_layers == 3
    image_tokens, _, text_tokens, _ = network.encode(batch())
    assert len(image_tokens) == len(text_tokens) == 3  # the last 3 layers of each encoder reach the head
    assert network(batch()).logits.shape == (B, C)
    fluid = build_head("fluid", C, IMAGE_DIM, TEXT_DIM, hidden_dim=8, num_heads=2, num_queries=2, num_experts=2)
    assert MultimodalNetwork(fluid, text_encoder, image_encoder).encoder_layers == 1
    # a single-layer head reads one layer whatever its config says (build_head refuses more; this one is direct)
    direct = FluidHead(C, IMAGE_DIM, TEXT_DIM, FluidConfig(hidden_dim=8, num_heads=2, num_queries=2, num_experts=2,
                                                           encoder_layers=2))
    assert MultimodalNetwork(direct, text_encoder, image_encoder).encoder_layers == 1


def test_a_head_whose_name_is_not_registered_is_refused():
    head = FluidHead(C, IMAGE_DIM, TEXT_DIM, FluidConfig(hidden_dim=8, num_heads=2, num_queries=2, num_experts=2),
                     name="not-registered")
    with pytest.raises(ValueError, match="unknown model 'not-registered'; available models: fluid, "):
        MultimodalNetwork(head, None, None)
