"""The run configuration: what `config.yaml` in a run directory holds.

Training settings left at ``None`` (and head keys absent from ``head``) are chosen at ``fit`` time by the
run's ``recipe`` (:mod:`fluid.training.recipe`): ``auto`` (the default) fits them to the catalogue and the
encoders, ``paper`` applies the paper's numbers (AdamW, lr 2e-5, weight decay 0.01, 15 epochs, batch 128).
A run directory's ``config.yaml`` holds the resolved values. Head hyper-parameters (l = 32 queries, 16 experts,
top-2, λ = 1/3 …) live in the head's own config (:mod:`fluid.model`) and are overridden through ``head``.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from fluid.errors import OptionError

PAPER_TEXT_ENCODER = "bert-base-multilingual-cased"
PAPER_IMAGE_ENCODER = "google/vit-base-patch16-224"
BAD_ROW_POLICIES = ("skip", "missing-modality", "fail")
RECIPES = ("auto", "paper")
MONITORS = ("val_macro_f1", "val_accuracy", "val_loss")
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?|mps")  # what RunConfig.device accepts


@dataclass
class Columns:
    """Which columns of a user's table hold what. GLAMI-1M folders ignore these (their layout is fixed)."""

    label: str = "label"
    text: list[str] = field(default_factory=lambda: ["text"])
    image: str | None = "image"
    id: str | None = None
    language: str | None = None
    label_source: str | None = None
    image_root: str | None = None
    encoding: str | None = None
    delimiter: str | None = None  # a CSV / TSV file's field separator (None: detected)


def cache_home() -> Path:
    """FLUID's cache folder, under which the feature cache and converted models live by default:
    ``$XDG_CACHE_HOME/fluid``, else ``~/.cache/fluid`` (read at call time)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fluid"


#: The column keywords of ``Classifier`` and ``RunConfig.from_keywords``: the fields of :class:`Columns`.
COLUMN_KEYWORDS = ("label", "text", "image", "image_root", "id", "language", "label_source", "encoding",
                   "delimiter")


@dataclass
class RunConfig:
    """Everything needed to reproduce a run. Every field is a CLI option or a ``Classifier`` keyword."""

    model: str = "fluid"  # a head, a classical model, or "auto" (train `candidates` and the floor, keep the best)
    # the heads model="auto" trains (None: fluid, and with every encoder frozen text-only and image-only too)
    candidates: list[str] | None = None
    recipe: str = "auto"  # chooses every setting left at None below: "auto" or "paper"
    head: dict = field(default_factory=dict)
    text_encoder: str = PAPER_TEXT_ENCODER
    image_encoder: str = PAPER_IMAGE_ENCODER
    freeze: bool | None = None  # None: freeze pretrained encoders, train randomly initialised (tiny) ones
    train_top_layers: int = 0
    max_text_length: int | None = None
    encoder_overrides: dict = field(default_factory=dict)  # e.g. {"text": {"hidden_size": 64}}
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None  # the head's (randomly initialised) learning rate
    encoder_lr: float | None = None  # trainable encoder layers' learning rate
    weight_decay: float | None = None
    warmup_steps: int | None = None
    schedule: str | None = None  # "constant" or "cosine" (decays to 0 after the warm-up)
    modality_dropout: float | None = None
    token_dropout: float | None = None  # share of a trained text encoder's input tokens replaced by [UNK] in training
    # a trained image encoder's training images are mirrored at random and shifted by up to this share of
    # their side (0 = no image augmentation)
    image_augment: float | None = None
    # a trained image encoder sees each training image with its colour channels in a random order at this
    # probability (colour stops being a cue; 0 = off)
    colour_augment: float | None = None
    val_fraction: float | None = None
    monitor: str | None = None  # val_macro_f1, val_accuracy or val_loss
    patience: int | None = None  # early stopping on `monitor` after this many epochs; 0 = off
    precision: str = "32-true"
    num_workers: int = 0
    # Where the feature cache is built and items are scored: "auto" (the GPU when PyTorch sees one, else the
    # CPU), "cpu", "cuda", "cuda:N" or "mps". Training runs where `fit(devices=...)` / Lightning put it.
    device: str = "auto"
    # Frozen encoders' features are computed once and read from disk every epoch: "auto" (FLUID_CACHE_DIR or
    # ~/.cache/fluid/features), "off", or a folder. Builds larger than the budget are skipped with a message.
    feature_cache: str = "auto"
    feature_cache_budget_gb: float = 20.0
    length_bucketing: bool = True  # training batches of similar text length (less padding)
    # Catalogue files of at least this many rows keep their id / text / image-path columns in memory-mapped
    # temporary files from the read on, and so do training + validation frames of that many rows together
    # (fluid.data.store.MEMORY_MAP_ROWS); None = never.
    memory_map_rows: int | None = 50_000
    # Fit the classical baseline that reads the same modalities next to every deep model, on the same split,
    # and compare them on validation (metrics.json "floor"; fluid.baselines.floor).
    floor: bool = True
    on_bad_row: str = "missing-modality"
    seed: int = 0
    columns: Columns = field(default_factory=Columns)

    def __post_init__(self):
        if not isinstance(self.device, str) or not DEVICE_PATTERN.fullmatch(self.device):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {self.device!r}")
        if isinstance(self.columns, dict):
            self.columns = Columns(**self.columns)
        if isinstance(self.columns.text, str):
            self.columns.text = [self.columns.text]
        if self.on_bad_row not in BAD_ROW_POLICIES:
            raise ValueError(f"on_bad_row must be one of {BAD_ROW_POLICIES}, got {self.on_bad_row!r}")
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {list(RECIPES)}, got {self.recipe!r}")
        if self.monitor is not None and self.monitor not in MONITORS:
            raise ValueError(f"monitor must be one of {list(MONITORS)}, got {self.monitor!r}")
        if self.schedule is not None and self.schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        unknown = set(values) - cls.field_names()
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; valid keys: {sorted(cls.field_names())}")
        return cls(**values)

    @classmethod
    def from_keywords(cls, keywords: dict) -> "RunConfig":
        """The config of ``Classifier(**keywords)``: RunConfig fields plus the column keywords
        (:data:`COLUMN_KEYWORDS`, the fields of :class:`Columns`) at the top level. A RunConfig field at None
        takes its default; a column at None has no such column (e.g. ``image=None``: no image column)."""
        values = {k: v for k, v in keywords.items() if v is not None and k not in COLUMN_KEYWORDS}
        columns = {k: keywords[k] for k in COLUMN_KEYWORDS if k in keywords}
        if isinstance(columns.get("text"), str):
            columns["text"] = [columns["text"]]
        unknown = set(values) - (cls.field_names() - {"columns"})
        if unknown:
            raise OptionError(f"unknown options {sorted(unknown)}; valid options: "
                              f"{sorted(cls.field_names() - {'columns'}) + sorted(COLUMN_KEYWORDS)}")
        return cls.from_dict({**values, "columns": Columns(**columns)})

    def keywords(self) -> dict:
        """The ``Classifier`` keywords of this config (the inverse of :meth:`from_keywords`)."""
        values = self.to_dict()
        return {**values.pop("columns"), **values}

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        try:
            values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:  # e.g. a !!python/object tag: safe_load builds plain data only
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(f"{path}: not a plain YAML mapping of config keys ({first}); config files hold "
                             "plain values only, and Python tags are refused") from None
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of config keys, got {type(values).__name__}")
        return cls.from_dict(values)


#: The demo's text encoder (the tiny BERT at width 64); its image encoder is the tiny convnet as it comes.
DEMO_ENCODER = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}


#: The head of the benchmark suite's small workload (``fluid.bench``); runs themselves size heads by recipe.
DEMO_HEAD = {"hidden_dim": 64, "num_heads": 4, "num_queries": 8, "num_experts": 4, "contrastive_weight": 0.0}


def demo_config(model: str = "fluid", **overrides) -> RunConfig:
    """The configuration of ``fluid demo``: the offline ``tiny`` encoders (a 2-layer BERT of width 64 and the
    small convnet, trained with the head: no pretrained weights offline) and everything else left to the
    ``auto`` recipe, which sizes the head, the batch, the learning rates and the epochs to the catalogue
    (:mod:`fluid.training.recipe`)."""
    base = dict(model=model, text_encoder="tiny", image_encoder="tiny",
                encoder_overrides={"text": dict(DEMO_ENCODER)})
    base.update(overrides)
    return RunConfig.from_dict(base)


#: The smallest model that trains: for smoke tests of a pipeline (CI, a new data source), not for accuracy.
#: ``Classifier(**SMOKE_TEST_OVERRIDES, ...)`` or the keys of a ``--config`` YAML file.
SMOKE_TEST_OVERRIDES = {
    "text_encoder": "tiny", "image_encoder": "tiny", "epochs": 2, "batch_size": 16, "lr": 0.002,
    "head": {"hidden_dim": 32, "num_queries": 4, "num_experts": 4, "num_heads": 2},
    "encoder_overrides": {
        "text": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
        "image": {"hidden_size": 32, "image_size": 32, "widths": [8, 8, 16]},
    },
}
