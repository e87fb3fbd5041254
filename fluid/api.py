"""``fluid.Classifier``: the one front for training, evaluation and prediction, a thin layer over a learner
(:mod:`fluid.learners`: a deep network or a classical baseline, chosen by the model's name and then talked to
through the learner contract only). The CLI, the HTTP server and the experiment runner are thin layers over it.

Example::

    clf = Classifier("fluid", text_encoder="tiny", image_encoder="tiny",
                     label="category", text=["name", "description"], image="image_path")
    clf.fit(train_df, epochs=5)
    clf.predict(test_df)            # pandas Series aligned with test_df.index
    clf.evaluate(test_df)           # dict with the keys of `fluid evaluate --json`
    clf.save("runs/my-model"); Classifier.load("runs/my-model")
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import NotFittedError

from fluid.config import RunConfig
from fluid.data import read_input, scorable_rows
from fluid.learners import FitOptions, FloorWarning, RunDirectory, learner_class
from fluid.learners import floor as floors
from fluid.learners.selection import fit_auto
from fluid.learners.predictions import checked_drop, evaluate_frame, score_items, top_k_results, write_predictions
from fluid.learners.training_data import prepare_training_data

__all__ = ["Classifier", "FloorWarning", "FluidNotFittedError"]

AUTO_MODEL = "auto"  # model="auto": train the candidates and the floor, keep the best on validation


class FluidNotFittedError(NotFittedError):
    """Raised when predict/evaluate/embed/save is called before fit or load."""


class Classifier:
    """A multimodal (image + text) product classifier.

    Args:
        model: a head name from :func:`fluid.model.available_heads` ("fluid", "fluid-no-moe", "early-fusion",
            "blip2", "image-only", "text-only", "molt", ...), a classical baseline, or "auto".
        text_encoder / image_encoder: a Hugging Face hub name, a local directory, or an offline preset
            ("tiny", ...). Defaults are the paper's (mBERT and ViT-B/16), which need the hub or a local copy.
        label / text / image: column names of the label, the text column(s) (joined with a newline) and the
            image column (paths relative to ``image_root``, bytes, PIL images, or missing); None: no such column.
        image_root: folder that image paths are relative to; paths may not escape it.
        id / language / label_source: optional column names.
        path: the run directory to train into (default: a fresh temporary directory).
        **config: any other :class:`fluid.config.RunConfig` field (epochs, batch_size, lr, modality_dropout,
            head={...} overrides such as hidden_dim or num_experts, ...).
    """

    def __init__(self, model: str = "fluid", *, text_encoder: str | None = None, image_encoder: str | None = None,
                 label: str = "label", text: str | list[str] = "text", image: str | None = "image",
                 image_root: str | None = None, id: str | None = None, language: str | None = None,
                 label_source: str | None = None, encoding: str | None = None, delimiter: str | None = None,
                 path: str | None = None, **config: Any):
        self._params = dict(model=model, text_encoder=text_encoder, image_encoder=image_encoder, label=label,
                            text=text, image=image, image_root=image_root, id=id, language=language,
                            label_source=label_source, encoding=encoding, delimiter=delimiter, path=path, **config)
        self.config = self._config()
        self.learner = None
        self.run_dir: Path | None = Path(path) if path else None
        self.metrics_: dict | None = None
        self.recipe_ = None

    @classmethod
    def from_config(cls, config: RunConfig, *, path: str | Path | None = None) -> "Classifier":
        """A classifier with every setting of ``config`` (e.g. ``RunConfig.load("config.yaml")``)."""
        return cls(**config.keywords(), path=str(path) if path is not None else None)

    # ----------------------------------------------------------------- scikit-learn conventions
    def get_params(self, deep: bool = True) -> dict:
        return dict(self._params)

    def set_params(self, **params) -> "Classifier":
        self._params = {**self._params, **params}
        self.config = self._config()
        return self

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self._params.items() if v is not None)
        return f"Classifier({shown})"

    def _config(self) -> RunConfig:  # the user's settings; the recipe fills the rest at fit
        return RunConfig.from_keywords({k: v for k, v in self._params.items() if k != "path"})

    @property
    def network(self):
        """The fitted model: a ``MultimodalNetwork`` (deep heads) or a ``ClassicalModel``; None before fit."""
        return self.learner.model if self.learner is not None else None

    classes_ = property(lambda self: self.learner.classes if self.learner is not None else None)

    is_fitted = property(lambda self: self.learner is not None)

    def check_fitted(self) -> None:
        if not self.is_fitted:
            raise FluidNotFittedError("This Classifier is not fitted yet: call fit(...) or Classifier.load(dir) "
                                      "before predict, predict_proba, evaluate, embed or save.")

    def read(self, data, *, split: str | None = None, require_label: bool = False):
        """Reads ``data`` (any of ``fluid.data.ACCEPTED_DATA``) with this classifier's column settings into a
        :class:`fluid.data.Catalogue` of canonical rows, as ``fit``, ``predict`` and ``evaluate`` do."""
        return read_input(data, self.config.columns, split=split, require_label=require_label,
                          on_bad_row=self.config.on_bad_row, memory_map_rows=self.config.memory_map_rows)

    # ----------------------------------------------------------------- training
    def fit(self, train, val=None, *, epochs: int | None = None, time_limit: float | None = None,
            seed: int | None = None, devices: int | str = "auto", resume: bool = False,
            progress: bool = True, verbose: bool = True) -> "Classifier":
        """Trains on ``train``; selects the best epoch on ``val`` (or a stratified split carved from ``train``).

        Args:
            train / val: DataFrame, catalogue path, or GLAMI-1M folder (its ``train`` split is used).
            epochs / seed: override the configured number of epochs / seed (and are kept in the params).
            time_limit: seconds; training stops cleanly at the next epoch boundary and keeps the best epoch.
            devices: "auto", a number of devices, or a list — passed to Lightning (DDP for several).
            resume: continue from ``<path>/checkpoints/last.ckpt`` of an interrupted run.
            progress: progress bars. verbose: print the recipe's choices (and the floor) to stderr.
        Settings left open (``None``) are chosen by the run's ``recipe`` from the training data and the
        encoders (:mod:`fluid.training.recipe`); ``self.recipe_`` and ``recipe.json`` record each choice and why.
        """
        self.set_params(**{k: v for k, v in (("epochs", epochs), ("seed", seed)) if v is not None})
        if self.run_dir is None:
            self.run_dir = Path(tempfile.mkdtemp(prefix="fluid-run-"))
        run = RunDirectory(self.run_dir).create()
        options = FitOptions(devices=devices, resume=resume, time_limit=time_limit, progress=progress,
                             verbose=verbose)
        if self._params["model"] == AUTO_MODEL:
            return self._fit_auto(train, val, options)
        if resume:
            run.check_resumable()
        self.config = self._config()
        self.config, self.recipe_, data, classes, bad_rows = prepare_training_data(
            self.read, train, val, self.config, run, resume=resume, verbose=verbose)
        kind = learner_class(self.config.model)
        self.learner = kind.for_training(self.config, classes, data, run, resume=resume)
        run.write_config(self.config, classes)
        self.learner.save_assets(run)
        started = time.perf_counter()
        outcome = self.learner.fit(data, run, options)
        if not outcome.is_global_zero:
            return self  # under DDP only the first process evaluates and writes the run directory
        if outcome.unreadable_images:
            run.write_bad_rows({**bad_rows, "unreadable_images": outcome.unreadable_images})
        self.metrics_ = outcome.metrics(evaluate_frame(self.learner, data.val, data.val_root),
                                        time.perf_counter() - started, data.train["label"])
        if self.config.floor and kind.has_floor:
            self.metrics_["floor"] = floors.fit_floor_beside(self.config, classes, self.learner.reads, data, run,
                                                             self.metrics_["validation"], verbose=verbose)
        self.learner.save_weights(run)
        run.write_metrics(self.metrics_)
        return self

    def _fit_auto(self, train, val, options: FitOptions) -> "Classifier":
        kept = fit_auto(Classifier, self._params, self.config, RunDirectory(self.run_dir), train, val, options)
        if kept is not None:
            self.learner, self.metrics_, self.config, self.recipe_ = kept.learner, kept.metrics_, kept.config, kept.recipe_
        return self

    # ----------------------------------------------------------------- inference
    def _scored(self, data, *, require_label: bool = False, **score_options):
        """(catalogue, scorable-row mask, Scores of those rows) for ``data``."""
        self.check_fitted()
        catalogue = self.read(data, split="test", require_label=require_label)
        ok = scorable_rows(catalogue.frame).to_numpy()
        return catalogue, ok, self.learner.score(catalogue.frame[ok], catalogue.image_root, **score_options)

    def predict_proba(self, data, *, drop_modality: str | None = None, progress: bool = False) -> pd.DataFrame:
        """Class probabilities: one column per class, rows aligned with the input (NaN rows for items with
        neither text nor image)."""
        catalogue, ok, scores = self._scored(data, drop_modality=checked_drop(drop_modality), progress=progress)
        frame = catalogue.frame
        result = pd.DataFrame(np.nan, index=frame.index, columns=self.classes_)
        result.loc[frame.index[ok], :] = scores.proba
        if not ok.all():
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
        """Per item, what ``fluid predict`` and the server return: ``{"labels": [{"label", "probability"}...k],
        "gate", "gate_mean", "experts" (the MoE experts it was routed to, weights summing to 1), "missing",
        "image_problem" (why its image could not be decoded), "error" (no text and no image)}``; see
        :func:`fluid.learners.predictions.top_k_results`."""
        catalogue, ok, scores = self._scored(data)
        return top_k_results(catalogue.frame, ok, scores, self.classes_, k, self.learner.chosen_experts)

    def predict_items(self, items: list[dict], k: int = 5) -> list[dict]:
        """:meth:`predict_top_k` for a few products given as ``{"text": str | None, "image": PIL image | bytes |
        None}``, scored in one forward pass without the catalogue reader (a server request); see
        :func:`fluid.learners.predictions.score_items`."""
        self.check_fitted()
        frame, ok, scores = score_items(self.learner, items)
        return top_k_results(frame, ok, scores, self.classes_, k, self.learner.chosen_experts)

    def predict_to_file(self, data, out: str | Path, *, top_k: int = 5, chunk_size: int = 2048,
                        progress: bool = True) -> dict:
        """Scores a whole catalogue chunk by chunk into one row per item of ``out`` (.csv or .parquet), written
        only when complete; returns the counts (:func:`fluid.learners.predictions.write_predictions`)."""
        self.check_fitted()
        return write_predictions(self.learner, self.read(data, split="test"), Path(out), top_k=top_k,
                                 chunk_size=chunk_size, progress=progress)

    def embed(self, data, *, progress: bool = False) -> np.ndarray:
        """The fused representation right before the classifier: N x E (NaN rows for unscorable items)."""
        _, ok, scores = self._scored(data, want_embedding=True, progress=progress)
        result = np.full((len(ok), scores.embedding.shape[1] if scores.embedding is not None else 0), np.nan,
                         dtype=np.float32)
        if scores.embedding is not None:
            result[ok] = scores.embedding
        return result

    def evaluate(self, data, *, drop_modality: str | None = None, corrupt=None, progress: bool = False) -> dict:
        """Metrics on labelled data, with the keys of ``fluid evaluate --json``. Unknown labels are counted
        (``n_unknown_label``) and score as errors; unscorable rows are counted in ``n_skipped``.

        ``corrupt``: ``"NAME[:SEVERITY]"`` (e.g. ``"image-blur:2"``; see :mod:`fluid.data.corruptions`) or a
        ``Corruption``: every item's image or text is corrupted (seeded by the run's seed and the item id) before
        scoring; recorded as ``metrics["corruption"]``."""
        from fluid.data.corruptions import parse_corruption

        self.check_fitted()
        corruption = parse_corruption(corrupt, seed=self.config.seed) if corrupt is not None else None
        catalogue = self.read(data, split="test", require_label=True)
        if not scorable_rows(catalogue.frame).any():
            raise ValueError(f"nothing to evaluate in {catalogue.source}: no row has a label and a usable text or "
                             f"image ({catalogue.report})")
        metrics = evaluate_frame(self.learner, catalogue.frame, catalogue.image_root,
                                 drop_modality=checked_drop(drop_modality), progress=progress,
                                 n_skipped=catalogue.report.dropped_rows, corruption=corruption)
        metrics["bad_rows"] = catalogue.report.to_dict()
        if metrics["n_items"] and metrics["n_unknown_label"] == metrics["n_items"]:
            warnings.warn(f"none of the {metrics['n_items']} labels in {catalogue.source} is a class this model "
                          f"knows (e.g. {metrics['unknown_labels'][:3]}; it knows {self.classes_[:5]}...): every "
                          "item counts as an error. Is the label column the one the model was trained on?",
                          UserWarning, stacklevel=2)
        return metrics

    # ----------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        """Writes the run-directory format (:mod:`fluid.learners.run_directory`)."""
        self.check_fitted()
        target = RunDirectory(directory).create()
        if self.run_dir is not None and RunDirectory(self.run_dir).same_as(target):
            self.learner.save_weights(target)
            return target.path
        target.write_config(self.config, self.classes_)
        self.learner.save_assets(target)
        self.learner.save_weights(target)
        if self.metrics_ is not None:
            target.write_metrics(self.metrics_)
        if self.run_dir is not None:
            RunDirectory(self.run_dir).copy_records_to(target)
        return target.path

    @classmethod
    def load(cls, directory: str | Path, *, device: str | None = None) -> "Classifier":
        """Reads a run directory written by ``fit`` or ``save`` (safetensors/JSON/YAML only). ``device``: where to
        score items ("auto", "cpu", "cuda", "cuda:N", "mps"); None = the run's ``config.device``."""
        run = RunDirectory(directory).check_complete()
        config = run.config() if device is None else dataclasses.replace(run.config(), device=device)
        self = cls.from_config(config, path=run.path)
        self.learner = learner_class(config.model).load(run, config, run.classes())
        self.metrics_ = run.metrics()
        return self

    def save_pretrained(self, directory: str | Path, *, push_to_hub: bool = False, repo_id: str | None = None,
                        **hub_kwargs) -> Path:
        """Hugging Face Hub convention: save to ``directory`` and optionally upload it to ``repo_id``."""
        directory = self.save(directory)
        if push_to_hub:
            RunDirectory(directory).push_to_hub(repo_id, private=hub_kwargs.get("private"))
        return directory

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, revision: str | None = None, **hub_kwargs) -> "Classifier":
        """Loads a local run directory, or downloads ``org/name`` from the Hugging Face Hub and loads it."""
        return cls.load(name_or_path) if Path(name_or_path).is_dir() else cls.load(RunDirectory.download(str(name_or_path), revision=revision, **hub_kwargs).path)
