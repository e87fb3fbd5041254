"""The first steps of a fit: read the data, let the recipe fill the configuration, carve the validation split."""

from __future__ import annotations

import sys
from collections.abc import Callable

from fluid.config import RunConfig
from fluid.data import label_sort_key
from fluid.learners.base import TrainingData
from fluid.learners.run_directory import RunDirectory


def prepare_training_data(read: Callable, train, val, config: RunConfig, run: RunDirectory, *, resume: bool = False,
                          verbose: bool = True):
    """Reads ``train`` (and ``val``) with ``read(data, split=, require_label=True)``, resolves ``config`` with
    its recipe for these training labels, carves a stratified validation split where ``val`` is None, keeps
    large frames memory-mapped, and writes recipe.json, split.csv and bad_rows.json to ``run``. The classes are
    the training labels in their natural order (a resumed run keeps the ones in its labels.json).

    Returns ``(resolved config, Recipe, TrainingData, classes, bad-row record)``."""
    from fluid.learners import learner_class
    from fluid.training.recipe import CatalogueStats, resolve

    train_cat = read(train, split="train", require_label=True)
    bad_rows = {"train": train_cat.report.to_dict()}
    if len(train_cat.frame) == 0:
        raise ValueError(f"no usable training rows in {train_cat.source}: {train_cat.report}")
    stats = CatalogueStats.from_labels(train_cat.frame["label"], separate_validation=val is not None)
    config, recipe = resolve(config, stats, *learner_class(config.model).recipe_inputs(config))
    run.write_recipe(recipe.to_dict())
    if verbose:
        print(recipe.summary(), file=sys.stderr, flush=True)
    if val is None:
        from fluid.data import stratified_split

        train_frame, val_frame = stratified_split(train_cat.frame, val_fraction=config.val_fraction, seed=config.seed)
        val_root = train_cat.image_root
        run.write_split(train_frame, val_frame)
    else:
        val_cat = read(val, split="val", require_label=True)
        train_frame, val_frame, val_root = train_cat.frame, val_cat.frame, val_cat.image_root
        bad_rows["val"] = val_cat.report.to_dict()
    rows = config.memory_map_rows
    if rows is not None and len(train_frame) + len(val_frame) >= rows:
        from fluid.data import memory_map_strings, release_arrow_memory

        train_frame, val_frame = memory_map_strings(train_frame), memory_map_strings(val_frame)
        release_arrow_memory()
    run.write_bad_rows(bad_rows)
    classes = (run.classes() if resume and run.has_labels() else
               sorted({str(x) for x in train_frame["label"].dropna()}, key=label_sort_key))
    if len(classes) < 2:
        raise ValueError(f"training needs at least 2 classes; the training data has {classes}")
    return config, recipe, TrainingData(train_frame, train_cat.image_root, val_frame, val_root), classes, bad_rows
