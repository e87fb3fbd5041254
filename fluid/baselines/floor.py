"""The floor of every deep run: the classical baseline that reads the same modalities, fitted on the same split.

A deep head that scores below it on validation is not worth its cost; ``fluid.Classifier`` fits it next to every
deep model (seconds on a small catalogue) and says so. On a large catalogue the floor is fitted on a stratified
sample of at most ``max_items`` training items (its image features decode every image it reads), and the
record says so.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from fluid.baselines.model import ClassicalModel

#: Training items the floor reads at most (a stratified sample above that).
FLOOR_MAX_ITEMS = 20_000


def floor_model_for(modalities: tuple[bool, bool]) -> str:
    """The classical model that reads what a head reads: ``(uses_image, uses_text)`` -> its name."""
    uses_image, uses_text = modalities
    if uses_image and uses_text:
        return "tfidf-image-logreg"
    return "image-logreg" if uses_image else "tfidf-logreg"


@dataclass
class Floor:
    """A fitted floor model and how it was fitted."""

    model: ClassicalModel
    n_train: int       # training items it read
    sampled: bool      # True when n_train is a stratified sample of the training split
    seconds: float

    def describe(self) -> dict:
        return {"model": self.model.name, "n_train": self.n_train, "sampled": self.sampled,
                "fit_seconds": round(self.seconds, 2)}


def fit_floor(train: pd.DataFrame, image_root, classes: Sequence[str], modalities: tuple[bool, bool], *,
              seed: int = 0, max_items: int = FLOOR_MAX_ITEMS) -> Floor:
    """Fits the floor for a head reading ``modalities`` on ``train`` (canonical frame, labelled)."""
    from fluid.data.splits import stratified_split

    sampled = len(train) > max_items
    if sampled:
        train = stratified_split(train, val_fraction=max_items / len(train), seed=seed)[1]
    started = time.perf_counter()
    model = ClassicalModel(floor_model_for(modalities), classes, seed=seed).fit(train, image_root)
    return Floor(model, len(train), sampled, time.perf_counter() - started)
