"""``fluid.Classifier``: the one code path for training, evaluation and prediction.

The CLI, the HTTP server and the experiment runner are thin layers over this class, so the same seed gives the
same numbers everywhere.

Example::

    from fluid import Classifier
    clf = Classifier("fluid", text_encoder="tiny", image_encoder="tiny",
                     label="category", text=["name", "description"], image="image_path")
    clf.fit(train_df, epochs=5)
    clf.predict(test_df)            # pandas Series aligned with test_df.index
    clf.evaluate(test_df)           # dict with the keys of `fluid evaluate --json`
    clf.save("runs/my-model"); Classifier.load("runs/my-model")
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import NotFittedError

from fluid.atomic import atomic_path, write_json, write_json_atomic
from fluid.baselines.model import STATE_FILE as CLASSICAL_STATE_FILE
from fluid.config import Columns, RunConfig
from fluid.data.dataset import IMAGE_PROBLEM, ColumnCells, unreadable_image_reason
from fluid.data.schema import has_value, label_sort_key, scorable_rows
from fluid.errors import OptionError
from fluid.training.device import resolve_device

log = logging.getLogger("fluid")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
LABELS_FILE = "labels.json"
METRICS_FILE = "metrics.json"
RECIPE_FILE = "recipe.json"
FLOOR_DIR = "floor"
CANDIDATES_DIR = "candidates"
AUTO_MODEL = "auto"  # model="auto": train the candidates and the floor, keep the best on validation
AUTO_CANDIDATES = ("fluid",)
SUMMARY_METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1", "top5_accuracy",
                   "n_items")
SPLIT_FILE = "split.csv"
CHECKPOINT_DIR = "checkpoints"
RUN_FILES = (CONFIG_FILE, LABELS_FILE, WEIGHTS_FILE, METRICS_FILE, SPLIT_FILE, RECIPE_FILE, "report.md",
             "bad_rows.json")
RUN_DIRS = ("encoders", "plots")
ACCEPTED_DATA = ("a pandas DataFrame", "a path to a .csv/.tsv/.parquet/.jsonl catalogue",
                 "a GLAMI-1M folder or zip", "a dict or a list of dicts (one product each)",
                 "an image path or a list of image paths")

_COLUMN_PARAMS = {"label": "label", "text": "text", "image": "image", "image_root": "image_root",
                  "id": "id", "language": "language", "label_source": "label_source", "encoding": "encoding"}


class FloorWarning(UserWarning):
    """A deep model scored below the classical floor on validation."""


class FluidNotFittedError(NotFittedError):
    """Raised when predict/evaluate/embed/save is called before fit or load."""


class Classifier:
    """A multimodal (image + text) product classifier.

    Args:
        model: a head name from :func:`fluid.model.available_heads` ("fluid", "fluid-no-moe", "early-fusion",
            "blip2", "image-only", "text-only", "molt", ...).
        text_encoder / image_encoder: a Hugging Face hub name, a local directory, or the offline preset
            "tiny". Defaults are the paper's (mBERT and ViT-B/16), which need the hub or a local copy.
        label / text / image: column names of the label, the text column(s) (joined with a newline) and the
            image column (paths relative to ``image_root``, bytes, PIL images, or missing).
        image_root: folder that image paths are relative to; paths may not escape it.
        id / language / label_source: optional column names.
        path: the run directory to train into (default: a fresh temporary directory).
        **config: any other :class:`fluid.config.RunConfig` field (epochs, batch_size, lr, modality_dropout,
            head={...} overrides such as hidden_dim or num_experts, ...).
    """

    def __init__(self, model: str = "fluid", *, text_encoder: str | None = None, image_encoder: str | None = None,
                 label: str = "label", text: str | list[str] = "text", image: str | None = "image",
                 image_root: str | None = None, id: str | None = None, language: str | None = None,
                 label_source: str | None = None, encoding: str | None = None, path: str | None = None,
                 **config: Any):
        self._params = dict(model=model, text_encoder=text_encoder, image_encoder=image_encoder, label=label,
                            text=text, image=image, image_root=image_root, id=id, language=language,
                            label_source=label_source, encoding=encoding, path=path, **config)
        self.config = self._build_config(self._params)
        self.network = None
        self.classes_: list[str] | None = None
        self.run_dir: Path | None = Path(path) if path else None
        self.metrics_: dict | None = None
        self.recipe_ = None

    # ----------------------------------------------------------------- scikit-learn conventions
    def get_params(self, deep: bool = True) -> dict:
        return dict(self._params)

    def set_params(self, **params) -> "Classifier":
        merged = {**self._params, **params}
        self.config = self._build_config(merged)
        self._params = merged
        return self

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self._params.items() if v is not None)
        return f"Classifier({shown})"

    @staticmethod
    def _build_config(params: dict) -> RunConfig:
        params = dict(params)
        params.pop("path", None)
        columns = {}
        for key, column_field in _COLUMN_PARAMS.items():
            columns[column_field] = params.pop(key)
        if isinstance(columns["text"], str):
            columns["text"] = [columns["text"]]
        values = {k: v for k, v in params.items() if v is not None}
        unknown = set(values) - RunConfig.field_names()
        if unknown:
            raise OptionError(f"Classifier got unknown options {sorted(unknown)}; valid options: "
                            f"{sorted(RunConfig.field_names() - {'columns'}) + sorted(_COLUMN_PARAMS)}")
        base = RunConfig().to_dict()
        base.update(values)
        base["columns"] = Columns(**columns)
        return RunConfig.from_dict(base)

    @property
    def is_fitted(self) -> bool:
        return self.network is not None

    def check_fitted(self) -> None:
        if not self.is_fitted:
            raise FluidNotFittedError("This Classifier is not fitted yet: call fit(...) or Classifier.load(dir) "
                                      "before predict, predict_proba, evaluate, embed or save.")

    # ----------------------------------------------------------------- data
    def read(self, data, *, split: str | None = None, require_label: bool = False):
        """Reads ``data`` (any of :data:`ACCEPTED_DATA`, a dict or a list of dicts) with this classifier's column
        settings into a :class:`fluid.data.Catalogue` of canonical rows, as ``fit``, ``predict`` and
        ``evaluate`` do."""
        from fluid.data import find_glami, read_catalogue

        columns = self.config.columns
        if isinstance(data, dict):
            data = [data]
        if isinstance(data, list) and data and all(isinstance(d, dict) for d in data):
            # One product per dict: an absent key is a missing modality, not a schema error.
            data = pd.DataFrame(data)
            for column in [*columns.text, columns.image]:
                if column is not None and column not in data.columns:
                    data[column] = None
        elif isinstance(data, (list, tuple)) and data and all(isinstance(d, (str, Path)) for d in data):
            data = pd.DataFrame({columns.image or "image": [str(d) for d in data]})
        elif isinstance(data, (str, Path)) and str(data).lower().endswith(IMAGE_SUFFIXES):
            data = pd.DataFrame({columns.image or "image": [str(data)]})
        elif not isinstance(data, (pd.DataFrame, str, Path)):
            raise TypeError(f"data must be {', '.join(ACCEPTED_DATA)}; got {type(data).__name__}")
        if isinstance(data, pd.DataFrame) and data.empty:
            raise ValueError("data is an empty DataFrame: there is nothing to "
                             + ("train on" if require_label else "score"))
        if isinstance(data, (str, Path)) and find_glami(Path(data), strict=False) is not None:
            if split == "val":
                raise ValueError(f"{data} is a GLAMI-1M catalogue, which has no validation split: leave val "
                                 "empty to carve a stratified one from its training split (the test split is "
                                 "for the final evaluation only)")
            return read_catalogue(data, split=split, on_bad_row=self.config.on_bad_row,
                                  require_label=require_label, memory_map_rows=self.config.memory_map_rows)
        def optional(column):  # at inference, optional columns may be absent from a DataFrame
            return column if (require_label or self._has_column(data, column)) else None

        catalogue = read_catalogue(
            data, text_cols=columns.text, image_col=columns.image,
            label_col=columns.label if require_label else None,  # prediction never needs the label
            id_col=optional(columns.id), language_col=optional(columns.language),
            label_source_col=optional(columns.label_source),
            image_root=columns.image_root, on_bad_row=self.config.on_bad_row, require_label=require_label,
            memory_map_rows=self.config.memory_map_rows,
            **({"encoding": columns.encoding} if not isinstance(data, pd.DataFrame) else {}),
        )
        if isinstance(data, pd.DataFrame) and not require_label and data.index.is_unique:
            # Keep every input row, so predictions align with the caller's index; rows the reader could not
            # use (e.g. neither text nor image) come back empty and are reported as unscorable.
            frame = catalogue.frame.reindex(data.index)
            frame["text"] = frame["text"].astype(object).where(frame["text"].notna(), None)
            frame["image"] = frame["image"].astype(object).where(frame["image"].notna(), None)
            catalogue = dataclasses.replace(catalogue, frame=frame)
        return catalogue

    @staticmethod
    def _has_column(data, column: str | None) -> bool:
        if column is None:
            return False
        if isinstance(data, pd.DataFrame):
            return column in data.columns
        return True  # files: let the reader decide (GLAMI always has labels; tables may not)

    # ----------------------------------------------------------------- building
    def _build_network(self, corpus: Sequence[str | None] | None, encoder_dir: Path | None = None):
        from fluid.encoders import (build_image_encoder, build_text_encoder, load_image_encoder,
                                    load_text_encoder)
        from fluid.model import build_head, head_spec
        from fluid.training.network import MultimodalNetwork

        cfg = self.config
        if _is_classical(cfg.model):  # a classical baseline: the Classifier delegates to fluid.baselines
            from fluid.baselines import ClassicalModel

            return ClassicalModel(cfg.model, self.classes_, cfg.head, modality_dropout=cfg.modality_dropout,
                                  seed=cfg.seed)
        spec = head_spec(cfg.model)
        uses_image, uses_text = spec.reads_image, spec.reads_text
        overrides = cfg.encoder_overrides or {}
        text_encoder = image_encoder = None
        if uses_text:
            if encoder_dir is not None and (encoder_dir / "text").exists():
                text_encoder = load_text_encoder(encoder_dir / "text")
            else:
                text_encoder = build_text_encoder(cfg.text_encoder, freeze=cfg.freeze,
                                                  train_top_layers=cfg.train_top_layers,
                                                  max_length=cfg.max_text_length, corpus=corpus,
                                                  **overrides.get("text", {}))
        if uses_image:
            if encoder_dir is not None and (encoder_dir / "image").exists():
                image_encoder = load_image_encoder(encoder_dir / "image")
            else:
                image_encoder = build_image_encoder(cfg.image_encoder, freeze=cfg.freeze,
                                                    train_top_layers=cfg.train_top_layers,
                                                    **overrides.get("image", {}))
        head = build_head(cfg.model, len(self.classes_),
                          image_dim=image_encoder.dim if image_encoder is not None else 768,
                          text_dim=text_encoder.dim if text_encoder is not None else 768,
                          image_has_cls=image_encoder.has_cls_token if image_encoder is not None else True,
                          text_has_cls=text_encoder.has_cls_token if text_encoder is not None else True, **cfg.head)
        return MultimodalNetwork(head, text_encoder, image_encoder, modality_dropout=cfg.modality_dropout,
                                 token_dropout=cfg.token_dropout or 0.0, image_augment=cfg.image_augment or 0.0)

    def _loader(self, frame: pd.DataFrame, image_root, *, shuffle: bool, drop_modality: str | None = None,
                label_map: dict | None = None, corruption=None, features: dict | None = None,
                bucket: bool = False):
        """:func:`fluid.training.loaders.catalogue_loader` with this run's settings; ``bucket`` applies only
        when ``length_bucketing`` is on."""
        from fluid.training.loaders import catalogue_loader

        cfg = self.config
        label_map = label_map if label_map is not None else {c: i for i, c in enumerate(self.classes_)}
        return catalogue_loader(self.network, frame, image_root, label_map, batch_size=cfg.batch_size,
                                shuffle=shuffle, seed=cfg.seed, bucket=bucket and cfg.length_bucketing,
                                num_workers=cfg.num_workers, on_bad_row=cfg.on_bad_row, drop_modality=drop_modality,
                                corruption=corruption, features=features)

    def _cached_features(self, frames: list[tuple[pd.DataFrame, Any]], progress: bool) -> list[dict]:
        """Per (frame, image_root): the frozen encoders' features from the on-disk cache (built where missing),
        or ``{}`` when the cache is off or no encoder can be cached (see :mod:`fluid.training.features`)."""
        from fluid.encoders import FeatureCache
        from fluid.training.features import cache_root, cached_features

        root = cache_root(self.config.feature_cache)
        if root is None:
            return [{} for _ in frames]
        cache = FeatureCache(root, budget_bytes=int(self.config.feature_cache_budget_gb * 1024**3))
        return [cached_features(self.network, frame, image_root, cache, batch_size=self.config.batch_size,
                                progress=progress, workers=self.config.num_workers) for frame, image_root in frames]

    # ----------------------------------------------------------------- training
    def fit(self, train, val=None, *, epochs: int | None = None, time_limit: float | None = None,
            seed: int | None = None, devices: int | str = "auto", resume: bool = False,
            progress: bool = True, verbose: bool = True) -> "Classifier":
        """Trains on ``train``; selects the best epoch on ``val`` (or a stratified split carved from ``train``).

        Args:
            train / val: DataFrame, catalogue path, or GLAMI-1M folder (its ``train`` split is used).
            epochs: overrides the configured number of epochs.
            time_limit: seconds; training stops cleanly at the next epoch boundary and keeps the best epoch.
            seed: overrides the configured seed (data split, initialisation, shuffling).
            devices: "auto", a number of devices, or a list — passed to Lightning (DDP for several).
            resume: continue from ``<path>/checkpoints/last.ckpt`` of an interrupted run.
            progress: progress bars.
            verbose: print the recipe's choices (and the baseline floor) to stderr.
        Settings left open (``None``) are chosen by the run's ``recipe`` from the training data and the
        encoders (:mod:`fluid.training.recipe`); ``self.recipe_`` and ``recipe.json`` record each choice and why.
        Returns:
            self
        """
        from fluid.training.blend import blends, fit_blend
        from fluid.training.trainer import train_network

        if epochs is not None:
            self.set_params(epochs=epochs)
        if seed is not None:
            self.set_params(seed=seed)
        run_dir = self._ensure_run_dir()
        if self._params["model"] == AUTO_MODEL:
            return self._fit_auto(train, val, time_limit=time_limit, devices=devices, resume=resume,
                                  progress=progress, verbose=verbose)
        if resume and not (run_dir / CHECKPOINT_DIR / "last.ckpt").exists():
            raise FileNotFoundError(f"resume=True but {run_dir / CHECKPOINT_DIR / 'last.ckpt'} does not exist: "
                                    "there is no interrupted run in this directory to continue")

        self.config = self._build_config(self._params)  # the user's settings; the recipe fills the rest
        train_cat = self.read(train, split="train", require_label=True)
        train_frame = train_cat.frame
        bad_rows = {"train": train_cat.report.to_dict()}
        if len(train_frame) == 0:
            raise ValueError(f"no usable training rows in {train_cat.source}: {train_cat.report}")
        self.recipe_ = self._apply_recipe(train_frame["label"], separate_validation=val is not None)
        write_json_atomic(run_dir / RECIPE_FILE, self.recipe_.to_dict())
        if verbose:
            print(self.recipe_.summary(), file=sys.stderr, flush=True)
        cfg = self.config
        if val is None:
            from fluid.data.splits import stratified_split

            train_frame, val_frame = stratified_split(train_frame, val_fraction=cfg.val_fraction, seed=cfg.seed)
            train_cat = dataclasses.replace(train_cat, frame=train_frame)  # the unsplit frame's buffers can go
            val_root = train_cat.image_root
            _write_split(run_dir / SPLIT_FILE, train_frame, val_frame)
        else:
            val_cat = self.read(val, split="val", require_label=True)
            val_frame, val_root = val_cat.frame, val_cat.image_root
            bad_rows["val"] = val_cat.report.to_dict()
        if cfg.memory_map_rows is not None and len(train_frame) + len(val_frame) >= cfg.memory_map_rows:
            from fluid.data import release_arrow_memory
            from fluid.data.store import memory_map_strings

            train_frame, val_frame = memory_map_strings(train_frame), memory_map_strings(val_frame)
            train_cat = dataclasses.replace(train_cat, frame=train_frame)
            val_cat = None  # noqa: F841  (its unsplit frame's buffers can go too)
            release_arrow_memory()
        write_json(run_dir / "bad_rows.json", bad_rows)

        labels_path = run_dir / LABELS_FILE
        if resume and labels_path.exists():
            self.classes_ = json.loads(labels_path.read_text(encoding="utf-8"))["classes"]
        else:
            self.classes_ = sorted({str(x) for x in train_frame["label"].dropna()}, key=label_sort_key)
        if len(self.classes_) < 2:
            raise ValueError(f"training needs at least 2 classes; the training data has {self.classes_}")

        import lightning.pytorch as pl

        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        corpus = ColumnCells(train_frame["text"], "text")
        encoder_dir = run_dir / "encoders"
        self.network = self._build_network(corpus, encoder_dir if resume else None)
        self._write_static(run_dir)

        train_counts = train_frame["label"].astype(str).value_counts().to_dict()
        started = time.perf_counter()
        if _is_classical(cfg.model):
            from fluid.training.trainer import TrainResult

            self.network.fit(train_frame, train_cat.image_root)
            result = TrainResult(best_epoch=None, epochs_run=1, best_score=None, stopped_by_time=False)
        else:
            self.network.to(resolve_device(cfg.device))  # the cache is built there; Lightning then trains
            train_features, val_features = self._cached_features(
                [(train_frame, train_cat.image_root), (val_frame, val_root)], progress=progress)
            result = train_network(
                self.network, cfg, num_classes=len(self.classes_), run_dir=run_dir,
                # Lightning's DDP sampler swap cannot wrap a custom batch sampler: no bucketing across devices
                train_loader=self._loader(train_frame, train_cat.image_root, shuffle=True,
                                          features=train_features, bucket=not _is_multi_device(devices)),
                val_loader=self._loader(val_frame, val_root, shuffle=False, features=val_features),
                devices=devices, resume=resume, time_limit=time_limit, progress=progress,
            )
        train_seconds = time.perf_counter() - started
        if not result.is_global_zero:
            return self  # under DDP only the first process evaluates and writes the run directory
        if not _is_classical(cfg.model):
            bad_rows["unreadable_images"] = {}
            for stage, frame, features in (("train", train_frame, train_features), ("val", val_frame, val_features)):
                problems = {**_cache_problems(features), **result.unreadable_images.get(stage, {})}
                bad_rows["unreadable_images"][stage] = {"count": len(problems),
                                                        "examples": _unreadable_rows(frame, problems, limit=20)}
            write_json(run_dir / "bad_rows.json", bad_rows)
        blend = None
        if not _is_classical(cfg.model) and blends(self.network.head):
            fitted = fit_blend(self.network, self._loader(val_frame, val_root, shuffle=False, features=val_features),
                               resolve_device(cfg.device))
            blend = fitted.to_dict()
            if verbose:
                print(fitted.summary(), file=sys.stderr, flush=True)
        val_metrics = self._evaluate_frame(val_frame, val_root, progress=False)
        self.metrics_ = {"validation": val_metrics, "best_epoch": result.best_epoch, "blend": blend,
                         "n_unreadable_image": {stage: v["count"]
                                                for stage, v in bad_rows.get("unreadable_images", {}).items()},
                         "epochs_run": result.epochs_run, "train_seconds": train_seconds,
                         "train_label_counts": train_counts, "stopped_by_time_limit": result.stopped_by_time}
        if cfg.floor and not _is_classical(cfg.model):
            self.metrics_["floor"] = self._fit_floor(train_frame, train_cat.image_root, val_frame, val_root,
                                                     run_dir, verbose=verbose)
        self._save_weights(run_dir / WEIGHTS_FILE)
        write_json(run_dir / METRICS_FILE, self.metrics_)
        return self

    def _fit_auto(self, train, val, **fit_options) -> "Classifier":
        """``model="auto"``: trains each head of ``candidates`` (default: fluid) in ``candidates/<name>/``, the
        first one with the classical floor, and keeps the best on validation (ties: the earlier candidate, the
        floor last). The run directory then holds the kept model; ``metrics_["selection"]`` says which and why."""
        run_dir = self.run_dir
        names = list(self.config.candidates or AUTO_CANDIDATES)
        fitted: dict[str, Classifier] = {}
        for position, name in enumerate(names):
            params = {**self._params, "model": name, "candidates": None, "floor": position == 0,
                      "path": str(run_dir / CANDIDATES_DIR / name), "head": _head_keys_of(name, self.config.head)}
            candidate = Classifier(**params).fit(train, val, **fit_options)
            if candidate.metrics_ is None:
                return self  # a secondary process of a multi-device (DDP) run
            fitted[name] = candidate
        first = fitted[names[0]]
        key = _compared_metric(first.config.monitor)
        scores = {name: float(c.metrics_["validation"][key]) for name, c in fitted.items()}
        floor_name = first.metrics_["floor"]["model"]
        scores[floor_name] = float(first.metrics_["floor"]["validation"][key])
        best = max(scores, key=scores.get)
        if best == floor_name:
            self._adopt_floor(first, run_dir)
        else:
            fitted[best].save(run_dir)
        kept = Classifier.load(run_dir, device=self.config.device)
        others = ", ".join(f"{n} {v:.3f}" for n, v in scores.items() if n != best)
        selection = {"candidates": scores, "chosen": best, "compared_on": f"validation {key}",
                     "reason": f"highest validation {key}: {best} {scores[best]:.3f} (others: {others})"}
        kept.metrics_ = {**kept.metrics_, "selection": selection}
        write_json(run_dir / METRICS_FILE, kept.metrics_)
        self.network, self.classes_, self.metrics_ = kept.network, kept.classes_, kept.metrics_
        self.config, self.recipe_ = kept.config, first.recipe_
        if fit_options.get("verbose", True):
            print(f"model auto: kept {selection['reason']}", file=sys.stderr, flush=True)
        return self

    def _adopt_floor(self, trained: "Classifier", run_dir: Path) -> None:
        """Writes ``trained``'s classical floor as the run directory's model (config, labels, weights, metrics)."""
        floor_dir = trained.run_dir / FLOOR_DIR
        floor_metrics = json.loads((floor_dir / METRICS_FILE).read_text(encoding="utf-8"))
        config = dataclasses.replace(trained.config, model=floor_metrics["model"], head={}, floor=False)
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(run_dir / CONFIG_FILE) as tmp:
            config.save(tmp)
        write_json(run_dir / LABELS_FILE, {"classes": trained.classes_})
        for name in (WEIGHTS_FILE, CLASSICAL_STATE_FILE):
            shutil.copy2(floor_dir / name, run_dir / name)
        for name in (SPLIT_FILE, RECIPE_FILE, "bad_rows.json"):
            if (trained.run_dir / name).exists():
                shutil.copy2(trained.run_dir / name, run_dir / name)
        write_json(run_dir / METRICS_FILE, {
            "validation": floor_metrics["validation"], "best_epoch": None, "epochs_run": 1,
            "train_seconds": floor_metrics["fit_seconds"], "train_label_counts": trained.metrics_["train_label_counts"],
            "floor_of": trained.config.model})

    def _fit_floor(self, train_frame: pd.DataFrame, train_root, val_frame: pd.DataFrame, val_root, run_dir: Path,
                   *, verbose: bool) -> dict:
        """Fits the classical floor (:mod:`fluid.baselines.floor`) on this run's split, saves it to
        ``run_dir/floor/`` and compares it with the deep model on validation; warns when the floor is better."""
        from fluid.baselines.floor import fit_floor
        from fluid.model import head_spec
        from fluid.training.metrics import compute_metrics

        cfg = self.config
        spec = head_spec(cfg.model)
        floor = fit_floor(train_frame, train_root, self.classes_, (spec.reads_image, spec.reads_text), seed=cfg.seed)
        scored = val_frame[scorable_rows(val_frame)]
        out = floor.model.run(scored, val_root)
        floor_metrics = compute_metrics(out["labels"], out["proba"], self.classes_)
        (run_dir / FLOOR_DIR).mkdir(parents=True, exist_ok=True)
        floor.model.save(run_dir / FLOOR_DIR / WEIGHTS_FILE)
        write_json(run_dir / FLOOR_DIR / METRICS_FILE, {"validation": floor_metrics, **floor.describe()})
        deep_metrics = self.metrics_["validation"]
        key = _compared_metric(cfg.monitor)
        record = {**floor.describe(), "compared_on": f"validation {key}",
                  "validation": {k: floor_metrics[k] for k in SUMMARY_METRICS},
                  "deep_minus_floor": float(deep_metrics[key] - floor_metrics[key])}
        if record["deep_minus_floor"] < 0:
            message = (f"{cfg.model} scores below the classical floor on validation: {key} "
                       f"{deep_metrics[key]:.3f} against {floor_metrics[key]:.3f} for {floor.model.name} "
                       f"(saved in {run_dir / FLOOR_DIR}). Try model='auto', which keeps the better one, more "
                       f"epochs, or pretrained encoders.")
            warnings.warn(message, FloorWarning, stacklevel=3)
        elif verbose:
            print(f"floor: {cfg.model} {key} {deep_metrics[key]:.3f} on validation, {floor.model.name} "
                  f"{floor_metrics[key]:.3f}", file=sys.stderr, flush=True)
        return record

    def _apply_recipe(self, labels, *, separate_validation: bool):
        """Resolves ``self.config`` with its recipe for these training labels; returns the recipe's record."""
        from fluid.training.recipe import CatalogueStats, EncoderSetup, resolve

        cfg = self.config
        stats = CatalogueStats.from_labels(labels, separate_validation=separate_validation)
        if _is_classical(cfg.model):
            encoders, head_defaults = EncoderSetup("unused", "unused"), {}
        else:
            from fluid.model import head_config, head_spec

            spec = head_spec(cfg.model)
            encoders = EncoderSetup.from_config(cfg, uses_image=spec.reads_image, uses_text=spec.reads_text)
            head_defaults = dataclasses.asdict(head_config(cfg.model))
        self.config, recipe = resolve(cfg, stats, encoders, head_defaults)
        return recipe

    def _ensure_run_dir(self) -> Path:
        if self.run_dir is None:
            self.run_dir = Path(tempfile.mkdtemp(prefix="fluid-run-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        return self.run_dir

    def _write_static(self, run_dir: Path) -> None:
        """Config, label map and encoder assets: everything but the weights."""
        with atomic_path(run_dir / CONFIG_FILE) as tmp:
            self.config.save(tmp)
        write_json(run_dir / LABELS_FILE, {"classes": self.classes_})
        encoder_dir = run_dir / "encoders"
        if _is_classical(self.config.model):
            return
        if self.network.text_encoder is not None:
            self.network.text_encoder.save(encoder_dir / "text")
        if self.network.image_encoder is not None:
            self.network.image_encoder.save(encoder_dir / "image")

    # ----------------------------------------------------------------- weights
    def _saved_state(self) -> dict[str, torch.Tensor]:
        """The parameters and buffers worth saving: the head, plus any encoder that trains (a frozen pretrained
        encoder is reloaded from its source instead)."""
        keep = {"head"}
        for name in ("text_encoder", "image_encoder"):
            encoder = getattr(self.network, name)
            if encoder is not None and encoder.trainable:
                keep.add(name)
        state = self.network.state_dict()
        return {k: v.detach().cpu().contiguous().clone() for k, v in state.items() if k.split(".")[0] in keep}

    def _save_weights(self, path: Path) -> None:
        from safetensors.torch import save_file

        if _is_classical(self.config.model):
            self.network.save(path)
            return
        with atomic_path(path) as tmp:
            save_file(self._saved_state(), str(tmp), metadata={"format": "pt", "fluid_model": self.config.model})

    def _load_weights(self, path: Path) -> None:
        from safetensors.torch import load_file

        if _is_classical(self.config.model):
            from fluid.baselines import ClassicalModel

            self.network = ClassicalModel.load(path)
            return
        try:
            state = load_file(str(path))
        except Exception as error:  # noqa: BLE001 - safetensors raises its own error types
            raise ValueError(f"{path}: refused to load the weights: not a valid safetensors file (run directories "
                             f"hold safetensors only, never a pickle; the file may be truncated or replaced): "
                             f"{str(error).strip() or type(error).__name__}") from None
        missing, unexpected = self.network.load_state_dict(state, strict=False)
        saved_prefixes = {k.split(".")[0] for k in state}
        missing = [k for k in missing if k.split(".")[0] in saved_prefixes | {"head"}]
        if missing or unexpected:
            raise ValueError(f"{path} does not match the model in its run directory: missing {missing[:5]}, "
                             f"unexpected {list(unexpected)[:5]}")

    # ----------------------------------------------------------------- inference
    @torch.no_grad()
    def _run(self, frame: pd.DataFrame, image_root, *, drop_modality: str | None = None, progress: bool = False,
             want_embedding: bool = False, corruption=None) -> dict:
        """Scores a canonical frame. Returns arrays aligned with ``frame``: proba (N x C), labels (N; -1 unknown),
        embedding (N x E, if asked), gate (N x l or None), expert_load (E or None), routing (N x E or None)."""
        from rich.progress import Progress

        if drop_modality not in (None, "image", "text"):
            raise ValueError(f"drop_modality must be None, 'image' or 'text', got {drop_modality!r}")
        if _is_classical(self.config.model):
            return self.network.run(frame, image_root, drop_modality=drop_modality, want_embedding=want_embedding,
                                    corruption=corruption)
        from lightning.fabric.utilities.apply_func import move_data_to_device

        device = resolve_device(self.config.device)
        self.network.to(device).eval()
        loader = self._loader(frame, image_root, shuffle=False, drop_modality=drop_modality, corruption=corruption)
        probas, labels, embeddings, gates, loads, routings = [], [], [], [], [], []
        unreadable: dict[int, str] = {}  # frame position -> why its image failed to decode (scored without it)
        with Progress(transient=True, disable=not progress) as bar:
            task = bar.add_task("scoring", total=len(frame))
            for batch in loader:
                output = self.network(move_data_to_device(batch, device), aux_losses=False)
                probas.append(_host(torch.softmax(output.logits.float(), dim=-1)))
                labels.append(batch["label"].numpy())
                if want_embedding:
                    embeddings.append(_host(output.embedding))
                if output.gate is not None:
                    gates.append(_host(output.gate))
                if output.expert_load is not None:
                    loads.append(_host(output.expert_load) * len(batch["label"]))
                if output.routing is not None:
                    routings.append(_host(output.routing))
                for position, problems in zip(batch["index"].tolist(), batch.get("problems", [])):
                    reason = unreadable_image_reason(problems)
                    if reason is not None:
                        unreadable[position] = reason
                bar.advance(task, len(batch["label"]))
        n_classes = len(self.classes_)
        return {
            "proba": np.concatenate(probas) if probas else np.zeros((0, n_classes)),
            "labels": np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64),
            "embedding": np.concatenate(embeddings) if embeddings else None,
            "gate": np.concatenate(gates) if gates else None,
            "expert_load": (np.sum(loads, axis=0) / max(len(frame), 1)) if loads else None,
            "routing": np.concatenate(routings) if routings else None,
            "unreadable_images": _unreadable_rows(frame, unreadable),
        }

    def predict_proba(self, data, *, drop_modality: str | None = None, progress: bool = False) -> pd.DataFrame:
        """Class probabilities: one column per class, rows aligned with the input (NaN rows for items with
        neither text nor image)."""
        self.check_fitted()
        catalogue = self.read(data, split="test", require_label=False)
        frame = catalogue.frame
        ok = scorable_rows(frame)
        out = self._run(frame[ok], catalogue.image_root, drop_modality=drop_modality, progress=progress)
        result = pd.DataFrame(np.nan, index=frame.index, columns=self.classes_)
        result.loc[ok[ok].index, :] = out["proba"]
        if (~ok).any():
            warnings.warn(f"{int((~ok).sum())} item(s) have neither text nor image and were not scored "
                          f"(rows with index {frame.index[~ok][:5].tolist()})", stacklevel=2)
        return result

    def predict(self, data, *, drop_modality: str | None = None, progress: bool = False) -> pd.Series:
        """Predicted labels as a Series aligned with the input's index (None for unscorable items)."""
        proba = self.predict_proba(data, drop_modality=drop_modality, progress=progress)
        labels = pd.Series([None] * len(proba), index=proba.index, dtype=object, name="prediction")
        ok = proba.notna().all(axis=1)
        labels[ok] = np.asarray(self.classes_, dtype=object)[proba[ok].to_numpy().argmax(axis=1)]
        return labels

    def predict_top_k(self, data, k: int = 5) -> list[dict]:
        """Per item: ``{"labels": [{"label", "probability"}...k], "gate": [l floats] | None,
        "gate_mean": float | None, "experts": [{"expert", "weight"}...] | None, "missing": ["image"|"text"...]}``
        — what ``fluid predict`` and the server return. An image that could not be decoded counts as missing and
        ``"image_problem"`` says why. ``experts`` are the MoE experts the item was routed to
        (FLUID heads with the MoE; at most the head's top_k, weights renormalised to sum to 1, largest first).
        Items with neither modality get ``"labels": []`` and ``"error"``."""
        self.check_fitted()
        catalogue = self.read(data, split="test", require_label=False)
        return self._top_k_for_frame(catalogue.frame, catalogue.image_root, k)

    def _top_k_for_frame(self, frame: pd.DataFrame, image_root, k: int) -> list[dict]:
        """:meth:`predict_top_k` of a canonical frame. An image that fails to decode is missing: ``missing``
        names it and ``image_problem`` says why; with no text either, the item gets no labels and an ``error``."""
        ok = scorable_rows(frame).to_numpy()
        out = self._run(frame[ok], image_root)
        unreadable = {row["row"]: row["problem"] for row in out.get("unreadable_images") or ()}
        results, scored = [], 0
        for row_label, has_modality, text, image in zip(frame.index, ok, frame["text"], frame["image"]):
            missing = [name for name, value in (("image", image), ("text", text)) if not has_value(value)]
            if not has_modality:
                results.append({"labels": [], "gate": None, "gate_mean": None, "experts": None,
                                "missing": missing, "error": "neither text nor image"})
                continue
            problem = unreadable.get(row_label)
            proba = out["proba"][scored]
            gate = out["gate"][scored] if out["gate"] is not None else None
            routing = out["routing"][scored] if out["routing"] is not None else None
            scored += 1
            if problem is not None:
                missing = ["image", *missing]
                if "text" in missing:
                    results.append({"labels": [], "gate": None, "gate_mean": None, "experts": None,
                                    "missing": missing, "image_problem": problem,
                                    "error": f"neither text nor image: the image could not be read ({problem})"})
                    continue
            order = np.argsort(-proba, kind="stable")[: max(1, k)]
            result = {
                "labels": [{"label": self.classes_[i], "probability": float(proba[i])} for i in order],
                "gate": gate.tolist() if gate is not None else None,
                "gate_mean": float(gate.mean()) if gate is not None else None,
                "experts": self._chosen_experts(routing) if routing is not None else None,
                "missing": missing,
            }
            if problem is not None:
                result["image_problem"] = problem
            results.append(result)
        return results

    def _chosen_experts(self, routing: np.ndarray) -> list[dict]:
        """E routing weights of one item -> its chosen experts, largest weight first, weights summing to 1."""
        top_k = self.network.head.config.top_k  # routing comes only from heads that declare experts
        order = [i for i in np.argsort(-routing, kind="stable")[:top_k] if routing[i] > 0]
        total = float(sum(routing[i] for i in order)) or 1.0
        return [{"expert": int(i), "weight": float(routing[i]) / total} for i in order]

    def predict_to_file(self, data, out: str | Path, *, top_k: int = 5, chunk_size: int = 2048,
                        progress: bool = True) -> dict:
        """Scores a whole catalogue chunk by chunk and writes one row per item to ``out`` (.csv or .parquet):
        ``id, label_1, probability_1, … label_k, probability_k, gate_mean, missing, image_problem, error``.
        Rows keep the catalogue's order; the file appears only when complete (written to a temporary name, then
        renamed).

        Returns:
            ``{"n_items", "n_scored", "n_unscorable", "n_unreadable_images", "n_dropped_by_reader", "bad_rows",
            "path"}`` (``image_problem`` says why an item's image could not be read; it was scored without it);
            rows the reader could not use at all (e.g. neither text nor image in a file) are counted in
            ``n_dropped_by_reader`` and described in ``bad_rows``.
        """
        from rich.progress import Progress

        self.check_fitted()
        out = Path(out)
        if out.suffix.lower() not in (".csv", ".parquet"):
            raise ValueError(f"{out}: the output must end in .csv or .parquet")
        catalogue = self.read(data, split="test", require_label=False)
        frame = catalogue.frame
        writer, n_unscorable, n_unreadable = None, 0, 0
        with atomic_path(out) as tmp:
            with Progress(disable=not progress) as bar:
                task = bar.add_task("scoring", total=len(frame))
                for start in range(0, len(frame), chunk_size):
                    chunk = frame.iloc[start:start + chunk_size]
                    rows = self._top_k_for_frame(chunk, catalogue.image_root, top_k)
                    table = _top_k_table(chunk["id"].tolist(), rows, top_k)
                    n_unscorable += int(table["error"].notna().sum())
                    n_unreadable += int(table["image_problem"].notna().sum())
                    writer = _append_table(writer, table, tmp, first=start == 0, csv=out.name.endswith(".csv"))
                    bar.advance(task, len(chunk))
            if writer is not None and hasattr(writer, "close"):
                writer.close()
            if len(frame) == 0:
                _top_k_table([], [], top_k).to_csv(tmp, index=False)
        return {"n_items": len(frame), "n_scored": len(frame) - n_unscorable, "n_unscorable": n_unscorable,
                "n_unreadable_images": n_unreadable, "n_dropped_by_reader": catalogue.report.dropped_rows,
                "bad_rows": catalogue.report.to_dict(), "path": str(out)}

    def embed(self, data, *, progress: bool = False) -> np.ndarray:
        """The fused representation right before the classifier: N x E (NaN rows for unscorable items)."""
        self.check_fitted()
        catalogue = self.read(data, split="test", require_label=False)
        frame = catalogue.frame
        ok = scorable_rows(frame).to_numpy()
        out = self._run(frame[ok], catalogue.image_root, progress=progress, want_embedding=True)
        dim = out["embedding"].shape[1] if out["embedding"] is not None else 0
        result = np.full((len(frame), dim), np.nan, dtype=np.float32)
        if out["embedding"] is not None:
            result[ok] = out["embedding"]
        return result

    def evaluate(self, data, *, drop_modality: str | None = None, corrupt=None, progress: bool = False) -> dict:
        """Metrics on labelled data, with the keys of ``fluid evaluate --json``. Unknown labels are counted
        (``n_unknown_label``) and score as errors; unscorable rows are counted in ``n_skipped``.

        ``corrupt``: ``"NAME[:SEVERITY]"`` (e.g. ``"image-blur:2"``, ``"text-typos:4"``; see
        :mod:`fluid.data.corruptions`) or a ``Corruption``: every item's image or text is corrupted
        (deterministically, seeded by the run's seed and the item id) before scoring; recorded as
        ``metrics["corruption"]``."""
        from fluid.data.corruptions import parse_corruption

        self.check_fitted()
        corruption = parse_corruption(corrupt, seed=self.config.seed) if corrupt is not None else None
        catalogue = self.read(data, split="test", require_label=True)
        if not scorable_rows(catalogue.frame).any():
            raise ValueError(f"nothing to evaluate in {catalogue.source}: no row has a label and a usable text or "
                             f"image ({catalogue.report})")
        metrics = self._evaluate_frame(catalogue.frame, catalogue.image_root, drop_modality=drop_modality,
                                       progress=progress, n_skipped=catalogue.report.dropped_rows,
                                       corruption=corruption)
        metrics["bad_rows"] = catalogue.report.to_dict()
        if metrics["n_items"] and metrics["n_unknown_label"] == metrics["n_items"]:
            warnings.warn(f"none of the {metrics['n_items']} labels in {catalogue.source} is a class this model "
                          f"knows (e.g. {metrics['unknown_labels'][:3]}; it knows {self.classes_[:5]}...): every "
                          "item counts as an error. Is the label column the one the model was trained on?",
                          UserWarning, stacklevel=2)
        return metrics

    def _evaluate_frame(self, frame: pd.DataFrame, image_root, *, drop_modality: str | None = None,
                        progress: bool = False, n_skipped: int = 0, corruption=None) -> dict:
        from fluid.training.metrics import compute_metrics

        ok = scorable_rows(frame)
        scored = frame[ok]
        out = self._run(scored, image_root, drop_modality=drop_modality, progress=progress, corruption=corruption)
        metrics = compute_metrics(
            out["labels"], out["proba"], self.classes_,
            languages=scored["language"].tolist() if "language" in scored else None,
            label_sources=scored["label_source"].tolist() if "label_source" in scored else None,
            n_skipped=n_skipped + int((~ok).sum()),
        )
        unknown = sorted({str(v) for v in scored["label"][out["labels"] < 0].dropna()})
        metrics["unknown_labels"] = unknown[:50]
        metrics["drop_modality"] = drop_modality
        metrics["corruption"] = corruption.label if corruption is not None else None
        unreadable = out.get("unreadable_images") or []
        metrics["n_unreadable_image"] = len(unreadable)
        metrics["unreadable_images"] = unreadable[:20]
        if out["gate"] is not None:
            metrics["gate_mean"] = float(out["gate"].mean())
            metrics["gate_histogram"] = np.histogram(out["gate"].mean(axis=1), bins=10, range=(0, 1))[0].tolist()
        if out["expert_load"] is not None:
            metrics["expert_load"] = out["expert_load"].tolist()
        return metrics

    # ----------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        """Writes the run-directory format: config.yaml, labels.json, model.safetensors, encoders/, metrics."""
        self.check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.run_dir is not None and self.run_dir.resolve() == directory.resolve():
            self._save_weights(directory / WEIGHTS_FILE)
            return directory
        self._write_static(directory)
        self._save_weights(directory / WEIGHTS_FILE)
        if self.metrics_ is not None:
            write_json(directory / METRICS_FILE, self.metrics_)
        if self.run_dir is not None:
            for name in (SPLIT_FILE, RECIPE_FILE, "report.md", "bad_rows.json"):
                if (self.run_dir / name).exists():
                    shutil.copy2(self.run_dir / name, directory / name)
            if (self.run_dir / FLOOR_DIR).is_dir():
                shutil.copytree(self.run_dir / FLOOR_DIR, directory / FLOOR_DIR, dirs_exist_ok=True)
        return directory

    @classmethod
    def load(cls, directory: str | Path, *, device: str | None = None) -> "Classifier":
        """Reads a run directory written by ``fit`` or ``save``. Loads safetensors/JSON/YAML only.

        ``device``: where to score items ("auto", "cpu", "cuda", "cuda:N", "mps"); None = the run's
        ``config.device`` (default "auto": the GPU when PyTorch sees one)."""
        directory = Path(directory)
        for name in (CONFIG_FILE, LABELS_FILE, WEIGHTS_FILE):
            if not (directory / name).exists():
                raise FileNotFoundError(f"{directory} is not a FLUID run directory: {name} is missing "
                                        f"(expected {CONFIG_FILE}, {LABELS_FILE}, {WEIGHTS_FILE})")
        config = RunConfig.load(directory / CONFIG_FILE)
        if device is not None:
            config = dataclasses.replace(config, device=device)
        self = cls.__new__(cls)
        params = config.to_dict()
        columns = params.pop("columns")
        params.update({key: columns[field] for key, field in _COLUMN_PARAMS.items()})
        self._params = {**params, "path": str(directory)}
        self.config = config
        self.run_dir = directory
        self.classes_ = json.loads((directory / LABELS_FILE).read_text(encoding="utf-8"))["classes"]
        self.network = self._build_network(corpus=None, encoder_dir=directory / "encoders")
        self._load_weights(directory / WEIGHTS_FILE)
        if not _is_classical(config.model):
            self.network.eval()
        metrics_path = directory / METRICS_FILE
        self.metrics_ = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.exists() else None
        return self

    def save_pretrained(self, directory: str | Path, *, push_to_hub: bool = False, repo_id: str | None = None,
                        **hub_kwargs) -> Path:
        """Hugging Face Hub convention: save to ``directory`` and optionally upload it to ``repo_id``."""
        directory = self.save(directory)
        if push_to_hub:
            from huggingface_hub import HfApi

            if not repo_id:
                raise ValueError("push_to_hub=True needs repo_id='org/name'")
            api = HfApi()
            api.create_repo(repo_id, exist_ok=True, **{k: v for k, v in hub_kwargs.items() if k == "private"})
            api.upload_folder(folder_path=str(directory), repo_id=repo_id)
        return directory

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, revision: str | None = None, **hub_kwargs) -> "Classifier":
        """Loads a local run directory, or downloads ``org/name`` from the Hugging Face Hub and loads it."""
        path = Path(name_or_path)
        if path.is_dir():
            return cls.load(path)
        from huggingface_hub import snapshot_download

        local = snapshot_download(repo_id=str(name_or_path), revision=revision, **hub_kwargs)
        return cls.load(local)


def _is_classical(model: str) -> bool:
    """True for the classical baselines of :mod:`fluid.baselines` (no encoders, no head)."""
    from fluid.model import is_classical

    return is_classical(model)


def _compared_metric(monitor: str) -> str:
    """The validation metric that compares a model with its floor and the candidates of model="auto": the
    run's ``monitor`` (macro F1 or accuracy; accuracy where the monitor is the loss, which a floor has not)."""
    return "macro_f1" if monitor == "val_macro_f1" else "accuracy"


def _head_keys_of(model: str, head: dict) -> dict:
    """The entries of a ``head`` mapping that ``model``'s head config has (model="auto" shares one mapping)."""
    from fluid.model import head_config

    known = {f.name for f in dataclasses.fields(head_config(model))}
    return {k: v for k, v in head.items() if k in known}


def _host(values: torch.Tensor) -> np.ndarray:
    """A float32 numpy copy of an output tensor, wherever it was computed."""
    return values.float().cpu().numpy()


def _is_multi_device(devices) -> bool:
    """Whether Lightning's ``devices`` value means several processes (DDP)."""
    if isinstance(devices, (list, tuple)):
        return len(devices) > 1
    if isinstance(devices, int) or (isinstance(devices, str) and devices.lstrip("-").isdigit()):
        count = int(devices)
        return count > 1 or (count == -1 and torch.cuda.device_count() > 1)
    return devices == "auto" and torch.cuda.device_count() > 1



#: The string columns of a ``predict_to_file`` table besides the labels.
TEXT_COLUMNS = ("id", "missing", "image_problem", "error")


def _top_k_table(ids: list, rows: list[dict], k: int) -> pd.DataFrame:
    """One row per item from :meth:`Classifier.predict_top_k` results (missing ranks left empty)."""
    records = []
    for item_id, row in zip(ids, rows):
        record = {"id": item_id}
        for rank in range(k):
            hit = row["labels"][rank] if rank < len(row["labels"]) else None
            record[f"label_{rank + 1}"] = hit["label"] if hit else None
            record[f"probability_{rank + 1}"] = hit["probability"] if hit else None
        record["gate_mean"] = row.get("gate_mean")
        record["missing"] = ",".join(row["missing"])
        record["image_problem"] = row.get("image_problem")
        record["error"] = row.get("error")
        records.append(record)
    columns = ["id"] + [f"{name}_{r + 1}" for r in range(k) for name in ("label", "probability")] + [
        "gate_mean", *TEXT_COLUMNS[1:]]
    return pd.DataFrame.from_records(records, columns=columns)


def _append_table(writer, table: pd.DataFrame, path: Path, *, first: bool, csv: bool):
    """Appends ``table`` to a CSV file (``csv``) or a Parquet writer; returns the writer to reuse."""
    if csv:
        table.to_csv(path, mode="w" if first else "a", header=first, index=False)
        return writer
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, pa.string()) if c in TEXT_COLUMNS or c.startswith("label_")
                        else (c, pa.float64()) for c in table.columns])
    arrow = pa.Table.from_pandas(table.astype({c: object for c in TEXT_COLUMNS}), schema=schema,
                                 preserve_index=False)
    if writer is None:
        writer = pq.ParquetWriter(str(path), schema)
    writer.write_table(arrow)
    return writer


def _cache_problems(features: dict) -> dict[int, str]:
    """Frame position -> reason for the images the feature-cache build could not decode (the cached image
    features of a run whose dataset then never opens the files)."""
    image = features.get("image")
    problems = getattr(image, "problems", None) or {}
    return {position: reason.removeprefix(IMAGE_PROBLEM) for position, reason in problems.items()}


def _unreadable_rows(frame: pd.DataFrame, problems: dict[int, str], limit: int | None = None) -> list[dict]:
    """``[{"row", "id", "problem"}]`` in frame order for the frame positions in ``problems`` (images that failed
    to decode), the first ``limit`` of them (None: all); ``row`` is the frame's index label (the file's data
    row)."""
    rows = []
    for position in sorted(problems)[:limit]:
        row = frame.index[position]
        rows.append({"row": row.item() if hasattr(row, "item") else row, "id": frame["id"].iloc[position],
                     "problem": problems[position]})
    return rows


def _write_split(path: Path, train: pd.DataFrame, val: pd.DataFrame) -> None:
    split = pd.concat([pd.DataFrame({"id": train["id"], "split": "train"}),
                       pd.DataFrame({"id": val["id"], "split": "val"})])
    with atomic_path(path) as tmp:
        split.to_csv(tmp, index=False)
