import pytest

from fluid.config import RunConfig, demo_config
from fluid.training.sampling import EpochShuffleSampler


def test_training_settings_are_left_to_the_recipe_and_encoders_default_to_the_papers():
    cfg = RunConfig()
    assert cfg.recipe == "auto"
    assert (cfg.lr, cfg.weight_decay, cfg.epochs, cfg.batch_size, cfg.patience) == (None, None, None, None, None)
    assert cfg.text_encoder == "bert-base-multilingual-cased"
    assert cfg.image_encoder == "google/vit-base-patch16-224"
    with pytest.raises(ValueError, match="recipe must be one of"):
        RunConfig(recipe="fast")


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


def test_demo_config_chooses_only_the_tiny_encoders_and_leaves_the_rest_to_the_recipe():
    from fluid.config import DEMO_ENCODER

    cfg = demo_config("fluid", epochs=4)
    assert (cfg.text_encoder, cfg.image_encoder, cfg.recipe, cfg.epochs) == ("tiny", "tiny", "auto", 4)
    assert cfg.encoder_overrides == {"text": DEMO_ENCODER}
    assert cfg.head == {} and cfg.lr is None and cfg.batch_size is None
