"""Recipes: the training settings a run leaves open, chosen from the catalogue and the encoders.

A :class:`~fluid.config.RunConfig` field left at ``None`` (and a head key absent from ``head``) is the recipe's to
choose; anything the user sets wins. Two recipes:

* ``paper``: the FLUID paper's numbers (AdamW, lr 2e-5, batch 128, 15 epochs, constant rate, the head's paper
  defaults: width 768, l = 32 queries, 16 experts, λ1 = λ2 = λ3 = 1/3). Chosen for pretrained encoders and
  GLAMI-1M's ~1M items (~100k optimiser steps); use it to reproduce the paper.
* ``auto`` (the default): sizes the head, the batch and the number of optimiser steps to the catalogue, gives
  the randomly initialised head a larger learning rate than pretrained layers that fine-tune, warms up and
  decays the rate, and stops early. The rules are the table of docs/recipes.md; each chosen value carries
  its reason, printed at the start of training and written to ``recipe.json`` in the run directory.

This module only decides numbers: it reads label counts and the encoder settings, never data files or models.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass

from fluid.config import RECIPES, RunConfig

#: What the encoders of a run do: "scratch" (randomly initialised, trained with the head: the ``tiny`` preset),
#: "frozen" (pretrained, fixed), "partly-fine-tuned" (pretrained, top layers train), "fine-tuned" (pretrained,
#: all layers train) or "unused" (the head does not read that modality, or a classical model).
ENCODER_MODES = ("scratch", "frozen", "partly-fine-tuned", "fine-tuned", "unused")

PAPER = {
    "epochs": 15, "batch_size": 128, "lr": 2e-5, "encoder_lr": 2e-5, "weight_decay": 0.01, "warmup_steps": 0,
    "schedule": "constant", "patience": 0, "max_text_length": 512, "val_fraction": 0.1, "modality_dropout": 0.0,
    "token_dropout": 0.0, "image_augment": 0.0, "colour_augment": 0.0, "monitor": "val_macro_f1",
}
#: Learning rate of pretrained layers that fine-tune (the paper's rate for its whole model).
FINE_TUNE_LR = 2e-5
#: Above this many training items, ``auto`` keeps the fused path's losses off encoders trained from scratch
#: (``fusion_trains_encoders=False``): measured better on ~970 and ~1,350 items, level on ~510 and ~750, worse on
#: ~215 (docs/recipes.md).
DETACHED_FUSION_MIN_ITEMS = 750
#: Optimiser steps a run aims at: encoders trained from scratch need more than a head on frozen features.
TARGET_STEPS = {"scratch": 1000, "pretrained": 400}
MIN_EPOCHS, MAX_EPOCHS = 5, 40
UNUSED = "unused by a classical model"
#: (largest number of training items, head width, attention heads, queries, experts): the first row that fits.
HEAD_SIZES = (
    (2_000, 64, 4, 8, 4),
    (20_000, 128, 4, 16, 8),
    (200_000, 256, 8, 16, 8),
    (math.inf, 768, 8, 32, 16),
)
#: (largest number of training items, batch size).
BATCH_SIZES = ((1_000, 16), (10_000, 32), (100_000, 64), (math.inf, 128))


@dataclass(frozen=True)
class CatalogueStats:
    """What a recipe knows of the training data: labelled items and the class counts."""

    n_items: int
    class_counts: tuple[int, ...]  # items per class, largest first
    separate_validation: bool = False  # validation data was given: the recipe does not carve a split

    @classmethod
    def from_labels(cls, labels: Iterable, *, separate_validation: bool = False) -> "CatalogueStats":
        counts: dict[str, int] = {}
        for label in labels:
            if label is None or label != label:  # None or NaN
                continue
            counts[str(label)] = counts.get(str(label), 0) + 1
        return cls(sum(counts.values()), tuple(sorted(counts.values(), reverse=True)), separate_validation)

    @property
    def n_classes(self) -> int:
        return len(self.class_counts)

    @property
    def imbalance(self) -> float:
        """Largest class / smallest class (1 = balanced)."""
        return self.class_counts[0] / self.class_counts[-1] if self.class_counts else 1.0


@dataclass(frozen=True)
class EncoderSetup:
    """What each encoder of a run does (one of :data:`ENCODER_MODES`)."""

    text: str
    image: str

    @classmethod
    def from_config(cls, cfg: RunConfig, *, uses_image: bool = True, uses_text: bool = True) -> "EncoderSetup":
        return cls(_encoder_mode(cfg.text_encoder, cfg, uses_text), _encoder_mode(cfg.image_encoder, cfg, uses_image))

    @property
    def modes(self) -> set[str]:
        return {self.text, self.image} - {"unused"}

    @property
    def trains_from_scratch(self) -> bool:
        return "scratch" in self.modes

    @property
    def fine_tunes(self) -> bool:
        return bool(self.modes & {"fine-tuned", "partly-fine-tuned"})

    def describe(self) -> str:
        return f"text encoder {self.text}, image encoder {self.image}"


def _encoder_mode(name: str, cfg: RunConfig, used: bool) -> str:
    if not used:
        return "unused"
    from fluid.encoders.presets import PRESETS

    if name in PRESETS:
        return "frozen" if cfg.freeze is True else "scratch"
    if cfg.freeze is False:
        return "fine-tuned"
    return "partly-fine-tuned" if cfg.train_top_layers > 0 else "frozen"


@dataclass(frozen=True)
class Choice:
    """One setting of a run: its value, who chose it ("you" or the recipe) and why."""

    key: str  # a RunConfig field, or "head.<key>"
    value: object
    source: str
    reason: str


@dataclass(frozen=True)
class Recipe:
    """The outcome of :func:`resolve`: the recipe's name, what it saw and every setting with its reason."""

    name: str
    stats: CatalogueStats
    encoders: EncoderSetup
    choices: tuple[Choice, ...]

    def to_dict(self) -> dict:
        return {"recipe": self.name, "n_items": self.stats.n_items, "n_classes": self.stats.n_classes,
                "imbalance": round(self.stats.imbalance, 2), "encoders": dataclasses.asdict(self.encoders),
                "choices": [dataclasses.asdict(c) for c in self.choices]}

    def summary(self) -> str:
        """Lines for a terminal: what the recipe saw, then one line per setting."""
        lines = [f"recipe {self.name}: {self.stats.n_items} labelled items, {self.stats.n_classes} classes "
                 f"(largest/smallest {self.stats.imbalance:.1f}x), {self.encoders.describe()}"]
        width = max((len(c.key) for c in self.choices if c.reason != UNUSED), default=0)
        for c in self.choices:
            if c.reason == UNUSED:
                continue
            lines.append(f"  {c.key:<{width}} = {_show(c.value):<10} {c.source}: {c.reason}")
        return "\n".join(lines)


def _show(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def resolve(cfg: RunConfig, stats: CatalogueStats, encoders: EncoderSetup, head_defaults: dict) -> tuple[
        RunConfig, Recipe]:
    """The run configuration with every open setting chosen by ``cfg.recipe``, and the record of the choices.

    Args:
        cfg: the user's configuration; ``None`` fields and absent head keys are open.
        stats: the labelled training data (before any validation split is carved from it).
        encoders: what the encoders do (:meth:`EncoderSetup.from_config`).
        head_defaults: the chosen head's config fields and their defaults (only those keys are set in ``head``).
    """
    if cfg.recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {list(RECIPES)}, got {cfg.recipe!r}")
    proposals = _paper(encoders) if cfg.recipe == "paper" else _auto(cfg, stats, encoders)
    if not encoders.modes:  # a classical model: only the validation split matters
        proposals = {key: (value, UNUSED if key != "val_fraction" else reason)
                     for key, (value, reason) in proposals.items() if not key.startswith("head.")}
    head_keys = set(head_defaults)
    if not {**head_defaults, **cfg.head}.get("use_qtransform", True) and "head.unimodal_input" in proposals:
        proposals["head.unimodal_input"] = ("tokens", "the head has no Q-Transform whose queries could be read")
    layers = _tiny_layers(cfg)
    if layers is not None and head_defaults.get("encoder_layers", 1) > max(1, layers):
        proposals["head.encoder_layers"] = (max(1, layers), f"the tiny encoders have {layers} layers")
    values, head, choices = {}, dict(cfg.head), []
    for key, (value, reason) in proposals.items():
        if key.startswith("head."):
            name = key.removeprefix("head.")
            if name not in head_keys:
                continue
            if name in cfg.head:
                choices.append(Choice(key, cfg.head[name], "you", "set in the configuration"))
                continue
            head[name] = value
        else:
            if getattr(cfg, key) is not None:
                choices.append(Choice(key, getattr(cfg, key), "you", "set in the configuration"))
                continue
            values[key] = value
        choices.append(Choice(key, value, f"recipe {cfg.recipe}", reason))
    for name in sorted(set(cfg.head) - {c.key.removeprefix("head.") for c in choices}):
        choices.append(Choice(f"head.{name}", cfg.head[name], "you", "set in the configuration"))
    resolved = dataclasses.replace(cfg, head=head, **values)
    still_open = [f.name for f in dataclasses.fields(resolved) if getattr(resolved, f.name) is None
                  and f.name in PAPER]
    if still_open:
        raise AssertionError(f"recipe {cfg.recipe} left {still_open} open")
    return resolved, Recipe(cfg.recipe, stats, encoders, tuple(choices))


def _paper(encoders: EncoderSetup) -> dict[str, tuple[object, str]]:
    why = "the paper's value (tuned for pretrained encoders on ~1M items)"
    proposals = {key: (value, why) for key, value in PAPER.items()}
    proposals["patience"] = (0, "no early stopping: the paper trains a fixed 15 epochs")
    proposals["modality_dropout"] = (0.0, "the paper trains without modality dropout")
    proposals["token_dropout"] = (0.0, "the paper hides no input tokens")
    proposals["image_augment"] = (0.0, "the paper does not augment images")
    proposals["colour_augment"] = (0.0, "the paper does not augment images")
    if encoders.trains_from_scratch:
        proposals["lr"] = (PAPER["lr"], why + "; too small for encoders trained from scratch: use recipe auto")
    return proposals  # head keys: the head configs' own defaults are the paper's


def _auto(cfg: RunConfig, stats: CatalogueStats, encoders: EncoderSetup) -> dict[str, tuple[object, str]]:
    n = stats.n_items
    val_fraction = cfg.val_fraction if cfg.val_fraction is not None else (0.15 if n < 2_000 else 0.1)
    n_train = n if stats.separate_validation else max(1, round(n * (1 - val_fraction)))
    batch = cfg.batch_size or _first_fit(BATCH_SIZES, n_train)[1]
    steps_per_epoch = max(1, math.ceil(n_train / batch))
    kind = "scratch" if encoders.trains_from_scratch else "pretrained"
    wanted = TARGET_STEPS[kind]
    epochs = cfg.epochs or min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(wanted / steps_per_epoch)))
    total_steps = epochs * steps_per_epoch
    _, width, heads, queries, experts = _first_fit(HEAD_SIZES, n_train)
    lr = 1e-3 if width <= 256 else 3e-4
    size_why = f"{n_train} training items"
    p = {}
    p["val_fraction"] = (val_fraction, "unused: validation data was given" if stats.separate_validation else
                         "a larger validation share picks the epoch more reliably on a small catalogue"
                         if n < 2_000 else "enough validation items at 10 %")
    p["batch_size"] = (batch, f"{size_why}: {steps_per_epoch} optimiser steps per epoch")
    p["epochs"] = (epochs, f"about {wanted} optimiser steps for {'encoders trained from scratch' if kind == 'scratch' else 'a head on pretrained features'} "
                   f"({epochs} x {steps_per_epoch} = {total_steps}), within {MIN_EPOCHS}-{MAX_EPOCHS} epochs")
    p["patience"] = (max(4, epochs // 4), "early stopping when validation has not improved for a quarter of "
                     "the epochs (the best epoch is kept)")
    p["lr"] = (lr, f"randomly initialised head of width {width}: AdamW at {lr:g}")
    if encoders.fine_tunes:
        p["encoder_lr"] = (FINE_TUNE_LR, "pretrained layers that fine-tune keep the paper's small rate")
    elif encoders.trains_from_scratch:
        p["encoder_lr"] = (lr, "encoders trained from scratch learn at the head's rate")
    else:
        p["encoder_lr"] = (FINE_TUNE_LR, "unused: no encoder layer trains")
    p["warmup_steps"] = (max(10, round(0.06 * total_steps)), "linear warm-up over 6 % of the steps")
    p["schedule"] = ("cosine", "cosine decay to 0 after the warm-up")
    p["weight_decay"] = (0.01, "AdamW's usual 0.01, not on biases, norms, query and missing-modality tokens")
    p["max_text_length"] = (256 if kind == "scratch" else 512,
                            "encoders trained every step: attention cost grows with length" if kind == "scratch"
                            else "frozen encoders run once per text (feature cache)")
    p["modality_dropout"] = (0.1, "hides one modality of 10 % of training items so the missing-modality "
                             "path is trained")
    p["token_dropout"] = ((0.3, "the text encoder trains from scratch: hiding 30 % of its input tokens (as [UNK]) "
                              "keeps it from memorising items by their rare words, so the fused model learns from "
                              "the image too (measured: docs/recipes.md)")
                         if encoders.text == "scratch" else
                         (0.0, "the text encoder is pretrained or unused (not measured there)"))
    p["image_augment"] = ((0.125, "the image encoder trains: each training image is mirrored at random and "
                              "shifted by up to 1/8 of its side, so it is not learnt by heart (measured: "
                              "docs/recipes.md)") if encoders.image in ("scratch", "fine-tuned", "partly-fine-tuned")
                         else (0.0, "the image encoder is frozen or unused: its features are fixed"))
    p["colour_augment"] = (0.0, "off: reordering a trained image encoder's colour channels made the image-only "
                           "head worse and FLUID no better on small-english (docs/recipes.md); try it where "
                           "colour says nothing about the class")
    p["monitor"] = (("val_macro_f1", f"long tail ({stats.imbalance:.0f}x): rare classes count as much as "
                     "frequent ones") if stats.imbalance >= 3 else
                    ("val_accuracy", "classes of similar size"))
    p["head.hidden_dim"] = (width, size_why)
    p["head.num_heads"] = (heads, f"head width {width}")
    p["head.num_queries"] = (queries, size_why)
    p["head.num_experts"] = (experts, size_why)
    p["head.ce_weight"] = (1.0, "cross-entropy at full weight, so lr means the same for every head")
    p["head.contrastive_weight"] = ((0.0, "measured: the contrastive term costs accuracy with encoders trained "
                                     "from scratch (docs/model.md)") if kind == "scratch" else
                                    (0.1, "a light alignment term on pretrained features (measured no "
                                           "different from 0 there: docs/recipes.md)"))
    p["head.moe_weight"] = (0.01, "Switch Transformer's balance weight (α = 0.01)")
    trained = encoders.trains_from_scratch or encoders.fine_tunes
    p["head.unimodal_weight"] = ((1.0, "each trained encoder also learns from its own modality's classifier, so "
                                  "one modality fitting the training labels first does not starve the other "
                                  "(measured: docs/recipes.md)") if trained else
                                 (0.0, "frozen encoders: per-modality classifiers would change nothing"))
    p["head.unimodal_blend"] = ((True, "the logits weigh the fused and per-modality classifiers with weights "
                                 "fitted on validation, so a modality the fused classifier over-trusts after "
                                 "fitting the training data is discounted (measured: docs/recipes.md)") if trained else
                                (False, "frozen encoders: the fitted blend kept the fused classifier alone "
                                 "(measured: docs/recipes.md)"))
    unimodal_off_by_you = cfg.head.get("unimodal_weight", 1.0) <= 0
    if unimodal_off_by_you:
        p["head.unimodal_blend"] = (False, "your unimodal_weight is 0: no per-modality classifier to blend")
    p["head.pooled_shortcut"] = (True, "the head can fall back on a linear probe of the pooled encoder tokens "
                                 "(measured: never worse, lower seed-to-seed spread; docs/recipes.md)")
    p["head.fusion_trains_encoders"] = _fusion_trains_encoders(cfg, encoders, n_train, unimodal_off_by_you)
    p["head.unimodal_input"] = _unimodal_input(cfg, p["head.fusion_trains_encoders"][0], trained)
    return p


def _unimodal_input(cfg: RunConfig, fusion_trains_encoders: bool, trained: bool) -> tuple[str, str]:
    if not trained:
        return "tokens", ("no encoder trains, so auto adds no per-modality classifiers (should you add them, they "
                          "read the mean of the encoder tokens)")
    if not cfg.head.get("fusion_trains_encoders", fusion_trains_encoders):
        return "queries", ("the fused path is kept off the encoders, so each learns from its own modality's "
                           "classifier alone: reading that modality's Q-Transform queries (attention pooling) "
                           "teaches it better than the mean of its tokens (measured +0.6 to +1.4 points on "
                           "~970-1,350 items; docs/recipes.md)")
    return "tokens", ("the fused path trains the encoders too: the per-modality classifiers read the mean of the "
                      "encoder tokens (reading the Q-Transform queries measured 7 points worse on ~215 items; "
                      "docs/recipes.md)")


def _fusion_trains_encoders(cfg: RunConfig, encoders: EncoderSetup, n_train: int,
                            unimodal_off_by_you: bool) -> tuple[bool, str]:
    if not encoders.trains_from_scratch:
        return True, ("frozen or pretrained encoders: the paper's behaviour (the alternative was measured with "
                      "encoders trained from scratch only)")
    if unimodal_off_by_you or cfg.head.get("contrastive_trains_encoders", False):
        return True, "your head settings leave the encoders nothing else to learn from"
    if n_train <= DETACHED_FUSION_MIN_ITEMS:
        return True, (f"{n_train} training items: the fused path trains the encoders too (keeping it off them "
                      "measured level on ~510-760 items and 3 points worse on ~215; docs/recipes.md)")
    return False, (f"{n_train} training items, encoders trained from scratch: they learn from their own "
                   "modality's classifier only, the fused head on top of them (measured +1 to +2 points on "
                   "~970-1,350 items; docs/recipes.md)")


def _tiny_layers(cfg: RunConfig) -> int | None:
    """The fewest hidden layers (stages) of the run's offline preset encoders (None when none is a preset)."""
    from fluid.encoders.presets import ALIASES, TINY, TINY_IMAGE_DEFAULTS, TINY_TEXT_DEFAULTS, TINY_VIT
    from fluid.encoders.tinyconv import STAGES

    counts = []
    for modality, name, defaults in (("text", cfg.text_encoder, TINY_TEXT_DEFAULTS),
                                     ("image", cfg.image_encoder, TINY_IMAGE_DEFAULTS)):
        if modality == "image" and name == TINY:
            counts.append(STAGES)
        elif name in (TINY, TINY_VIT):
            overrides = {ALIASES.get(k, k): v for k, v in (cfg.encoder_overrides or {}).get(modality, {}).items()}
            counts.append(int(overrides.get("num_hidden_layers", defaults["num_hidden_layers"])))
    return min(counts) if counts else None


def _first_fit(table, n: int):
    return next(row for row in table if n <= row[0])
