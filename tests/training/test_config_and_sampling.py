import pytest

from fluid.config import RunConfig, demo_config
from fluid.training.sampling import EpochShuffleSampler


def test_paper_defaults():
    cfg = RunConfig()
    assert (cfg.lr, cfg.weight_decay, cfg.epochs, cfg.batch_size) == (2e-5, 0.01, 15, 128)
    assert cfg.text_encoder == "bert-base-multilingual-cased"
    assert cfg.image_encoder == "google/vit-base-patch16-224"


def test_yaml_round_trip(tmp_path):
    cfg = demo_config(seed=3, head={"hidden_dim": 64, "num_experts": 4})
    cfg.columns.text = ["name", "description"]
    cfg.save(tmp_path / "config.yaml")
    assert RunConfig.load(tmp_path / "config.yaml") == cfg


def test_unknown_keys_and_bad_policy_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown config keys \\['epochz'\\]"):
        RunConfig.from_dict({"epochz": 3})
    with pytest.raises(ValueError, match="on_bad_row must be one of"):
        RunConfig(on_bad_row="ignore")


def test_epoch_shuffle_depends_only_on_seed_and_epoch():
    a, b = EpochShuffleSampler(50, seed=1), EpochShuffleSampler(50, seed=1)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(4)
    assert list(a) != first and sorted(a) == list(range(50))


def test_lr_schedule_warmup_then_cosine():
    from fluid.training.module import lr_factor

    assert lr_factor(0, warmup=10, total=110, schedule="cosine") == pytest.approx(0.1)
    assert lr_factor(9, warmup=10, total=110, schedule="cosine") == pytest.approx(1.0)
    assert lr_factor(60, warmup=10, total=110, schedule="cosine") == pytest.approx(0.5)
    assert lr_factor(110, warmup=10, total=110, schedule="cosine") == pytest.approx(0.0)
    assert lr_factor(60, warmup=10, total=110, schedule="constant") == 1.0


def test_demo_config_applies_only_the_keys_a_head_has():
    assert demo_config("fluid").head["contrastive_weight"] == 0.0
    assert "num_experts" not in demo_config("image-only").head
    assert demo_config("image-only").head["num_queries"] == 8


def test_demo_config_fits_every_head_to_the_demo_encoders():
    """MoLT reads the last 4 encoder layers by default; the demo's tiny encoders have 2, so the demo config
    caps it (the experiment runner trains every head with this config)."""
    from fluid.config import DEMO_ENCODER, demo_config
    from fluid.model import available_heads, build_head

    for name in available_heads():
        config = demo_config(name)
        head = build_head(name, 5, image_dim=64, text_dim=64, **config.head)
        assert getattr(head.config, "encoder_layers", 1) <= DEMO_ENCODER["num_hidden_layers"], name
    assert demo_config("molt").head["encoder_layers"] == DEMO_ENCODER["num_hidden_layers"]
    assert "encoder_layers" not in demo_config("fluid").head
