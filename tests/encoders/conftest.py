"""Fixtures for fluid.encoders tests: everything is built locally; nothing may reach the Hugging Face hub."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

# A few product texts in the 13 GLAMI languages (plus English), diacritics, Greek and Cyrillic included.
CORPUS = [
    "Červené šaty s krajkou a dlouhým rukávem",  # cz
    "Čierne topánky na podpätku, veľkosť 38",  # sk
    "Rochie roșie de seară din dantelă, mărimea M",  # ro
    "Κόκκινο φόρεμα με δαντέλα και μακριά μανίκια",  # gr
    "Črni čevlji z visoko peto",  # si
    "Piros csipkés ruha hosszú ujjal, női",  # hu
    "Crvena haljina od čipke, ženska",  # hr
    "Vestido rojo de encaje con manga larga, señora",  # es
    "Raudona nėriniuota suknelė ilgomis rankovėmis",  # lt
    "Sarkana kleita ar mežģīnēm un garām piedurknēm",  # lv
    "Uzun kollu kırmızı dantel elbise, kadın",  # tr
    "Punane pitsiline kleit pikkade varrukatega, õhtune",  # ee
    "Червена рокля с дантела и дълги ръкави",  # bg
    "Red lace dress with long sleeves",
] * 8


@pytest.fixture(scope="session")
def corpus():
    return list(CORPUS)


@pytest.fixture(scope="session")
def tiny_text(corpus):
    from fluid.encoders import build_text_encoder

    enc = build_text_encoder("tiny", corpus=corpus, seed=0)
    enc.eval()
    return enc


@pytest.fixture(scope="session")
def tiny_image():
    from fluid.encoders import build_image_encoder

    enc = build_image_encoder("tiny", seed=0)
    enc.eval()
    return enc


@pytest.fixture()
def images():
    from PIL import Image

    return [
        Image.new("RGB", (90, 70), (200, 30, 30)),
        Image.linear_gradient("L").resize((40, 40)),  # grayscale: must be converted to RGB
        Image.new("RGB", (64, 64), (10, 120, 240)),
    ]


@pytest.fixture(scope="session")
def hf_bert_dir(tmp_path_factory):
    """A tiny BertModel + BertTokenizer saved with save_pretrained, as a user would have on disk."""
    from transformers import BertConfig, BertModel, BertTokenizer

    d = tmp_path_factory.mktemp("hf_bert")
    words = sorted({w for t in CORPUS for w in t.replace(",", " ").lower().split()})
    chars = sorted({c for t in CORPUS for c in t.lower() if not c.isspace()})
    vocab_list = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words + chars + ["##" + c for c in chars]
    vocab = {}
    for tok in vocab_list:
        vocab.setdefault(tok, len(vocab))
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=64)
    torch.manual_seed(1)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    model = BertModel(config).eval()
    model.save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def hf_vit_dir(tmp_path_factory):
    """A tiny ViTModel + ViT image processor saved with save_pretrained."""
    from transformers import ViTConfig, ViTModel

    from fluid.encoders.presets import make_vit_processor

    d = tmp_path_factory.mktemp("hf_vit")
    torch.manual_seed(2)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64)
    model = ViTModel(config).eval()
    processor = make_vit_processor(32)
    processor.image_mean = [0.485, 0.456, 0.406]  # not 0.5: proves the saved processor is the one used
    processor.image_std = [0.229, 0.224, 0.225]
    model.save_pretrained(d)
    processor.save_pretrained(d)
    return d
