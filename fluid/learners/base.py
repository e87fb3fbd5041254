"""The contract every learner keeps, so that :class:`fluid.Classifier` never asks which kind it holds.

A learner owns one trained model (a deep network or a classical baseline) and its class list. It builds the
model for a configuration, fits it on a :class:`TrainingData` split, scores canonical frames into
:class:`~fluid.learners.scores.Scores`, and writes or reads its weights in a
:class:`~fluid.learners.run_directory.RunDirectory`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from fluid.config import RunConfig
from fluid.learners.run_directory import RunDirectory
from fluid.learners.scores import Scores


@dataclass
class TrainingData:
    """The canonical training and validation frames of a run, each with the folder its image paths are
    relative to."""

    train: pd.DataFrame
    train_root: Any
    val: pd.DataFrame
    val_root: Any


@dataclass
class TrainOutcome:
    """What fitting produced besides the weights."""

    best_epoch: int | None
    epochs_run: int
    stopped_by_time: bool = False
    is_global_zero: bool = True  # False in the other processes of a multi-device (DDP) run
    #: {"train"|"val": {"count", "examples"}}: images that could not be decoded while fitting (deep models)
    unreadable_images: dict[str, dict] = field(default_factory=dict)
    blend: dict | None = None  # the validation-fitted blend (heads that blend), see fluid.training.blend

    def metrics(self, validation: dict, seconds: float, train_labels: pd.Series) -> dict:
        """The run's metrics.json: ``validation`` metrics, the epochs, the blend, unreadable images, time and the
        training label counts."""
        return {"validation": validation, "best_epoch": self.best_epoch, "blend": self.blend,
                "epochs_run": self.epochs_run,
                "n_unreadable_image": {stage: v["count"] for stage, v in self.unreadable_images.items()},
                "train_seconds": seconds, "stopped_by_time_limit": self.stopped_by_time,
                "train_label_counts": train_labels.astype(str).value_counts().to_dict()}


@dataclass(frozen=True)
class FitOptions:
    """How to run a fit (not what to learn: that is the RunConfig)."""

    devices: int | str = "auto"
    resume: bool = False
    time_limit: float | None = None
    progress: bool = True
    verbose: bool = True


class Learner(Protocol):
    """One trained model behind :class:`fluid.Classifier`."""

    config: RunConfig
    classes: list[str]
    has_floor: bool  # whether a classical floor is fitted beside it

    @property
    def reads(self) -> tuple[bool, bool]:
        """(reads the image, reads the text)."""

    @property
    def model(self) -> Any:
        """The underlying model: a ``MultimodalNetwork`` or a ``ClassicalModel``."""

    def fit(self, data: TrainingData, run: RunDirectory, options: FitOptions) -> TrainOutcome:
        """Trains on ``data.train``, choosing the epoch (deep models) on ``data.val``."""

    def score(self, frame: pd.DataFrame, image_root, *, drop_modality: str | None = None,
              want_embedding: bool = False, corruption=None, progress: bool = False) -> Scores:
        """Scores every row of a canonical frame (rows must have a text or an image)."""

    def score_items(self, texts: list, images: list) -> Scores:
        """Scores a few raw items at once without a catalogue (canonical texts and decoded images, None where
        missing): the path of a single request."""

    def chosen_experts(self, routing: np.ndarray) -> list[dict]:
        """One item's E routing weights -> its chosen experts, largest weight first, weights summing to 1."""

    def save_assets(self, run: RunDirectory) -> None:
        """Writes what the model needs besides its weights (encoders' tokenizer, processor, config) to ``run``."""

    def save_weights(self, run: RunDirectory) -> None:
        """Writes the weights to ``run``."""
