"""The classical floor beside a deep run, and ``model="auto"``'s choice between models on validation."""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
import warnings

from fluid.baselines.model import STATE_FILE as CLASSICAL_STATE_FILE
from fluid.config import RunConfig
from fluid.data.schema import scorable_rows
from fluid.learners.base import TrainingData
from fluid.learners.run_directory import RECORDS, WEIGHTS_FILE, RunDirectory
from fluid.learners.scores import Scores

SUMMARY_METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1", "top5_accuracy",
                   "log_loss", "n_items")


class FloorWarning(UserWarning):
    """A deep model scored below the classical floor on validation."""


def compared_metric(monitor: str) -> str:
    """The validation metric that compares a model with its floor and the candidates of model="auto": the
    run's ``monitor`` (macro F1 or accuracy; accuracy where the monitor is the loss, which a floor has not)."""
    return "macro_f1" if monitor == "val_macro_f1" else "accuracy"


def fit_floor_beside(config: RunConfig, classes: list[str], reads: tuple[bool, bool], data: TrainingData,
                     run: RunDirectory, deep_validation: dict, *, verbose: bool) -> dict:
    """Fits the classical floor (:mod:`fluid.baselines.floor`) on the run's split, saves it to
    ``run/floor/`` and compares it with the deep model's ``deep_validation`` metrics; warns (:class:`FloorWarning`)
    when the floor is better. Returns the record kept in metrics.json."""
    from fluid.baselines.floor import fit_floor
    from fluid.learners.predictions import scored_metrics

    floor = fit_floor(data.train, data.train_root, classes, reads, seed=config.seed)
    scored = data.val[scorable_rows(data.val)]
    proba, unreadable = floor.model.run(scored, data.val_root)
    floor_metrics = scored_metrics(scored, Scores(proba, floor.model.label_indices(scored), unreadable=unreadable),
                                   classes)
    floor_dir = run.floor().create()
    floor.model.save(floor_dir.weights)
    floor_dir.write_metrics({"validation": floor_metrics, **floor.describe()})
    key = compared_metric(config.monitor)
    record = {**floor.describe(), "compared_on": f"validation {key}",
              "validation": {k: floor_metrics[k] for k in SUMMARY_METRICS},
              "deep_minus_floor": float(deep_validation[key] - floor_metrics[key])}
    if record["deep_minus_floor"] < 0:
        warnings.warn(f"{config.model} scores below the classical floor on validation: {key} "
                      f"{deep_validation[key]:.3f} against {floor_metrics[key]:.3f} for {floor.model.name} "
                      f"(saved in {floor_dir.path}). Try model='auto', which keeps the better one, more epochs, "
                      f"or pretrained encoders.", FloorWarning, stacklevel=4)
    elif verbose:
        print(f"floor: {config.model} {key} {deep_validation[key]:.3f} on validation, {floor.model.name} "
              f"{floor_metrics[key]:.3f}", file=sys.stderr, flush=True)
    return record


def adopt_floor(trained: RunDirectory, config: RunConfig, classes: list[str], train_metrics: dict,
                run: RunDirectory) -> None:
    """Writes the floor fitted beside the deep run ``trained`` as ``run``'s model (config, labels, weights,
    metrics, records)."""
    floor_dir = trained.floor()
    floor_metrics = floor_dir.metrics()
    run.write_config(dataclasses.replace(config, model=floor_metrics["model"], head={}, floor=False), classes)
    for name in (WEIGHTS_FILE, CLASSICAL_STATE_FILE):
        shutil.copy2(floor_dir / name, run / name)
    for name in RECORDS:
        if name != "report.md" and (trained / name).exists():
            shutil.copy2(trained / name, run / name)
    run.write_metrics({
        "validation": floor_metrics["validation"], "best_epoch": None, "epochs_run": 1,
        "train_seconds": floor_metrics["fit_seconds"], "train_label_counts": train_metrics["train_label_counts"],
        "floor_of": config.model})


#: The validation metric on which model="auto" ranks its candidates and the floor. Accuracy and macro F1 on a few
#: dozen validation items move in steps of one item and often tie; the log-loss moves with every item's
#: probability (docs/recipes.md, "The floor, and model: auto").
SELECTION_METRIC = "log_loss"


def select(losses: dict[str, float], key: str = SELECTION_METRIC) -> dict:
    """The ``selection`` record of model="auto": the lowest of ``losses`` (name -> validation ``key``; NaN, where
    nothing could be scored, last; ties go to the earlier name) and why."""
    best = min(losses, key=lambda name: math.inf if math.isnan(losses[name]) else losses[name])
    others = ", ".join(f"{n} {v:.3f}" for n, v in losses.items() if n != best)
    return {"candidates": losses, "chosen": best, "compared_on": f"validation {key}",
            "reason": f"lowest validation {key}: {best} {losses[best]:.3f} (others: {others})"}
