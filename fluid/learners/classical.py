"""The classical learner: a :class:`~fluid.baselines.ClassicalModel` (TF-IDF / image features + logistic
regression) behind the learner contract."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fluid.baselines import ClassicalModel
from fluid.config import RunConfig
from fluid.learners.base import FitOptions, TrainingData, TrainOutcome
from fluid.learners.run_directory import RunDirectory
from fluid.learners.scores import Scores


class ClassicalLearner:
    """A classical baseline for ``config`` (``config.model`` is a classical registry entry) and ``classes``."""

    has_floor = False  # it is the floor

    def __init__(self, config: RunConfig, classes: list[str], model: ClassicalModel) -> None:
        self.config = config
        self.classes = classes
        self.classical = model

    @staticmethod
    def recipe_inputs(config: RunConfig):
        from fluid.training.recipe import EncoderSetup

        return EncoderSetup("unused", "unused"), {}

    @classmethod
    def build(cls, config: RunConfig, classes: list[str]) -> "ClassicalLearner":
        return cls(config, classes, ClassicalModel(config.model, classes, config.head,
                                                   modality_dropout=config.modality_dropout, seed=config.seed))

    @classmethod
    def for_training(cls, config: RunConfig, classes: list[str], data: TrainingData, run: RunDirectory, *,
                     resume: bool) -> "ClassicalLearner":
        return cls.build(config, classes)  # fitting takes seconds: a resumed run fits again

    @classmethod
    def load(cls, run: RunDirectory, config: RunConfig, classes: list[str]) -> "ClassicalLearner":
        return cls(config, classes, ClassicalModel.load(run.weights))

    @property
    def model(self) -> ClassicalModel:
        return self.classical

    @property
    def reads(self) -> tuple[bool, bool]:
        return "image" in self.classical.modalities, "text" in self.classical.modalities

    def fit(self, data: TrainingData, run: RunDirectory, options: FitOptions) -> TrainOutcome:
        self.classical.fit(data.train, data.train_root)
        return TrainOutcome(best_epoch=None, epochs_run=1)

    def score(self, frame: pd.DataFrame, image_root, *, drop_modality: str | None = None,
              want_embedding: bool = False, corruption=None, progress: bool = False) -> Scores:
        if want_embedding:
            raise ValueError(f"{self.classical.name} is a classical baseline: it has no learned embedding to "
                             "return")
        proba, unreadable = self.classical.run(frame, image_root, drop_modality=drop_modality,
                                               corruption=corruption)
        return Scores(proba=proba, labels=self.classical.label_indices(frame), unreadable=unreadable)

    def score_items(self, texts: list, images: list) -> Scores:
        """Scores a few raw items (canonical texts, decoded images, None where missing)."""
        frame = pd.DataFrame({"id": [str(i) for i in range(len(texts))], "text": texts, "image": images})
        return self.score(frame, None)

    def chosen_experts(self, routing: np.ndarray) -> list[dict]:
        raise ValueError(f"{self.classical.name} has no experts")

    def save_assets(self, run: RunDirectory) -> None:
        """Nothing: a classical model's vocabulary and scales are part of its weights."""

    def save_weights(self, run: RunDirectory) -> None:
        run.create()
        self.classical.save(run.weights)
