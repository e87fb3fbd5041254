"""Classical reference models: TF-IDF / image features + multinomial logistic regression.

They answer "is the deep model worth it?" on the same split. Each is an entry of kind "classical" in the one
model registry (``fluid.model.head_spec``: name, modalities, description); :class:`ClassicalModel` is the backend
that ``fluid.Classifier`` delegates to for those entries, reading the modalities the entry declares, so the
classical models share the Classifier's fit / predict / predict_proba / evaluate / save / load contract and
metric keys.

Saved as ``model.safetensors`` (coefficients, intercepts, IDF weights, image standardisation; float64) and
``classical.json`` (model name, options, TF-IDF vocabularies) — no pickle.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fluid.atomic import atomic_path, write_json_atomic
from fluid.baselines.features import TextFeatures, image_feature_dim, image_features
from fluid.data.schema import has_value
from fluid.model import HeadSpec, available_models, head_spec, is_classical


class ClassicalView(Mapping):
    """A read-only, live view of the registry's classical entries: name -> ``value(entry)``."""

    def __init__(self, value: Callable[[HeadSpec], object]):
        self._value = value

    def __getitem__(self, name: str):
        if not is_classical(name):
            raise KeyError(name)
        return self._value(head_spec(name))

    def __iter__(self) -> Iterator[str]:
        return iter(available_models("classical"))

    def __len__(self) -> int:
        return len(available_models("classical"))

    def __repr__(self) -> str:
        return repr(dict(self))


#: name -> the modalities it reads (a view of ``fluid.model``'s registry).
CLASSICAL_MODELS = ClassicalView(lambda spec: spec.modalities)
#: name -> its one-line description (a view of the registry).
DESCRIPTIONS = ClassicalView(lambda spec: spec.description)
#: Options (``head`` in the run configuration, ``--head KEY=VALUE`` on the command line).
DEFAULT_OPTIONS: dict = {
    "C": 10.0,                 # inverse L2 regularisation strength (not tuned: fixed for every catalogue)
    "max_iter": 2000,          # lbfgs iterations
    "class_weight": None,      # None or "balanced"
    "max_features": 200_000,   # per TF-IDF view (word, char)
    "min_df": 2,               # a term must occur in this many training texts
    "image_weight": 1.0,       # L2 norm of the standardised image block next to the (L2-normalised) text block
}
STATE_FILE = "classical.json"
FORMAT_VERSION = 1


class ClassicalModel:
    """Features + multinomial logistic regression over a canonical frame (columns ``text``, ``image``,
    ``label``; see docs/architecture.md).

    Args:
        name: a classical entry of the registry (``fluid.model.available_models("classical")``).
        classes: the C class names; column order of every probability matrix.
        options: overrides of :data:`DEFAULT_OPTIONS`.
        modality_dropout: p; training adds, for a random share p of the items, a copy with one modality
            removed (the counterpart of the deep models' per-sample modality dropout). Only for models that
            read both modalities.
        seed: seeds the modality-dropout copies (the solver itself is deterministic).
    """

    def __init__(self, name: str, classes: Sequence[str], options: dict | None = None, *,
                 modality_dropout: float = 0.0, seed: int = 0):
        if not is_classical(name):
            raise ValueError(f"unknown classical model {name!r}; choose one of "
                             f"{sorted(available_models('classical'))}")
        unknown = sorted(set(options or {}) - set(DEFAULT_OPTIONS))
        if unknown:
            raise ValueError(f"{name}: unknown options {unknown}; valid options (head: / --head KEY=VALUE): "
                             f"{sorted(DEFAULT_OPTIONS)}")
        self.name = name
        self.modalities = head_spec(name).modalities
        self.classes = [str(c) for c in classes]
        self.options = {**DEFAULT_OPTIONS, **(options or {})}
        self.modality_dropout = float(modality_dropout)
        self.seed = int(seed)
        self.text_features: TextFeatures | None = None
        self.image_mean: np.ndarray | None = None
        self.image_scale: np.ndarray | None = None
        self.coef: np.ndarray | None = None       # C x F
        self.intercept: np.ndarray | None = None  # C

    # ----------------------------------------------------------------- features
    def _images(self, cells: Sequence, image_root, keys: Sequence[str] | None = None,
                corruption=None, problems: dict[int, str] | None = None) -> np.ndarray:
        """N x (D + 1): raw image features and a last column that is 1 where the image is missing/unreadable.
        ``corruption`` (a ``fluid.data.corruptions.Corruption`` of an image) is applied to each decoded image,
        keyed by the item id in ``keys``; ``problems`` (row -> why) collects the images that failed to decode."""
        from fluid.data import BadImageError, load_image

        out = np.zeros((len(cells), image_feature_dim() + 1))
        for row, cell in enumerate(cells):
            image = None
            if has_value(cell):
                try:
                    image = load_image(cell, image_root)
                except (BadImageError, OSError, ValueError) as error:
                    if problems is not None:
                        problems[row] = str(error)
            if image is not None and corruption is not None:
                image = corruption(image, keys[row])
            if image is None:
                out[row, -1] = 1.0
            else:
                out[row, :-1] = image_features(image)
        return out

    def _design(self, texts: Sequence, raw_images: np.ndarray | None) -> sp.csr_matrix:
        """The N x F design matrix from texts and :meth:`_images` output (standardised image block; a
        missing image's block is 0 = the training mean, flagged by its indicator column)."""
        blocks = []
        if "text" in self.modalities:
            text_missing = np.array([0.0 if has_value(t) else 1.0 for t in texts]).reshape(-1, 1)
            blocks += [self.text_features.transform(texts), sp.csr_matrix(text_missing)]
        if "image" in self.modalities:
            features, missing = raw_images[:, :-1], raw_images[:, -1:]
            # standardised, then scaled so the block's expected L2 norm is image_weight (the text block's is 1)
            scaled = (features - self.image_mean) / self.image_scale * (
                self.options["image_weight"] / np.sqrt(features.shape[1]))
            scaled[missing[:, 0] == 1] = 0.0
            blocks += [sp.csr_matrix(scaled), sp.csr_matrix(missing)]
        return sp.hstack(blocks, format="csr")

    def _inputs(self, frame: pd.DataFrame, image_root, drop_modality: str | None = None, corruption=None,
                problems: dict[int, str] | None = None):
        """(texts, :meth:`_images` output or None) with ``drop_modality`` removed and ``corruption`` applied;
        ``problems`` collects the frame positions whose image failed to decode, and why."""
        keys = [str(k) for k in (frame["id"] if "id" in frame else frame.index)]
        texts = [None if drop_modality == "text" else t for t in frame["text"]]
        if corruption is not None and corruption.modality == "text":
            texts = [corruption(t, key) if has_value(t) else t for t, key in zip(texts, keys)]
        raw_images = None
        if "image" in self.modalities:
            cells = [None] * len(frame) if drop_modality == "image" else list(frame["image"])
            image_corruption = corruption if corruption is not None and corruption.modality == "image" else None
            raw_images = self._images(cells, image_root, keys, image_corruption, problems)
        return texts, raw_images

    # ----------------------------------------------------------------- training
    def fit(self, frame: pd.DataFrame, image_root=None) -> "ClassicalModel":
        """Fits the features and the logistic regression on a labelled canonical frame."""
        from sklearn.linear_model import LogisticRegression

        texts, raw_images = self._inputs(frame, image_root)
        y = self.label_indices(frame)
        keep = y >= 0
        texts = [t for t, k in zip(texts, keep) if k]
        raw_images = raw_images[keep] if raw_images is not None else None
        y = y[keep]
        texts, raw_images, y = self._with_modality_dropout(texts, raw_images, y)
        if "text" in self.modalities:
            self.text_features = TextFeatures(self.options["max_features"], self.options["min_df"]).fit(texts)
        if "image" in self.modalities:
            present = raw_images[raw_images[:, -1] == 0, :-1]
            if len(present) == 0:
                raise ValueError(f"{self.name} needs training items with a readable image; none has one")
            self.image_mean = present.mean(axis=0)
            self.image_scale = np.where(present.std(axis=0) > 1e-8, present.std(axis=0), 1.0)
        design = self._design(texts, raw_images)
        regression = LogisticRegression(C=float(self.options["C"]), max_iter=int(self.options["max_iter"]),
                                        class_weight=self.options["class_weight"])
        regression.fit(design, y)
        coef = np.zeros((len(self.classes), design.shape[1]))
        intercept = np.full(len(self.classes), -1e4)  # a class absent from training is never predicted
        if len(regression.classes_) == 2:  # sklearn's binary form: sigmoid(z) == softmax((-z/2, z/2))
            half = regression.coef_[0] / 2.0, regression.intercept_[0] / 2.0
            coef[regression.classes_] = np.stack([-half[0], half[0]])
            intercept[regression.classes_] = [-half[1], half[1]]
        else:
            coef[regression.classes_] = regression.coef_
            intercept[regression.classes_] = regression.intercept_
        self.coef, self.intercept = coef, intercept
        return self

    def _with_modality_dropout(self, texts: list, raw_images: np.ndarray | None, y: np.ndarray):
        if self.modality_dropout <= 0 or len(self.modalities) < 2:
            return texts, raw_images, y
        rng = np.random.default_rng(self.seed)
        chosen = np.flatnonzero(rng.random(len(y)) < self.modality_dropout)
        drop_text = rng.random(len(chosen)) < 0.5
        extra_texts = [None if dt else texts[i] for i, dt in zip(chosen, drop_text)]
        extra_images = raw_images[chosen].copy()
        extra_images[~drop_text, :-1] = 0.0
        extra_images[~drop_text, -1] = 1.0
        return texts + extra_texts, np.vstack([raw_images, extra_images]), np.concatenate([y, y[chosen]])

    def label_indices(self, frame: pd.DataFrame) -> np.ndarray:
        """N class indices; -1 for a missing label or one not in ``classes``."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index.get(str(v), -1) if has_value(v) else -1 for v in frame["label"]], dtype=np.int64) \
            if "label" in frame else np.full(len(frame), -1, dtype=np.int64)

    # ----------------------------------------------------------------- inference
    def predict_proba_frame(self, frame: pd.DataFrame, image_root=None, *, drop_modality: str | None = None,
                            corruption=None, problems: dict[int, str] | None = None) -> np.ndarray:
        """N x C softmax probabilities; ``problems`` (position -> why) collects the images that failed to decode
        (scored as missing)."""
        self._check_fitted()
        texts, raw_images = self._inputs(frame, image_root, drop_modality, corruption, problems)
        scores = np.asarray(self._design(texts, raw_images) @ self.coef.T) + self.intercept
        scores -= scores.max(axis=1, keepdims=True)
        proba = np.exp(scores)
        return proba / proba.sum(axis=1, keepdims=True)

    def run(self, frame: pd.DataFrame, image_root=None, *, drop_modality: str | None = None,
            corruption=None) -> tuple[np.ndarray, dict[int, str]]:
        """(N x C probabilities, {frame position: why its image could not be decoded})."""
        problems: dict[int, str] = {}
        if len(frame) == 0:
            return np.zeros((0, len(self.classes))), problems
        proba = self.predict_proba_frame(frame, image_root, drop_modality=drop_modality, corruption=corruption,
                                         problems=problems)
        return proba, problems

    @property
    def num_parameters(self) -> int:
        """Learned weights of the logistic regression (C x F + C)."""
        return 0 if self.coef is None else int(self.coef.size + self.intercept.size)

    def _check_fitted(self) -> None:
        if self.coef is None:
            raise RuntimeError(f"{self.name} is not fitted")

    # ----------------------------------------------------------------- persistence
    def save(self, weights_path: str | os.PathLike) -> None:
        """Writes ``weights_path`` (safetensors) and ``classical.json`` beside it, each atomically."""
        from safetensors.numpy import save_file

        self._check_fitted()
        weights_path = Path(weights_path)
        arrays = {"coef": self.coef, "intercept": self.intercept}
        state = {"format_version": FORMAT_VERSION, "model": self.name, "classes": self.classes,
                 "options": self.options, "modality_dropout": self.modality_dropout, "seed": self.seed}
        if self.text_features is not None:
            text_state, text_arrays = self.text_features.state()
            state["text_features"] = text_state
            arrays.update(text_arrays)
        if self.image_mean is not None:
            arrays.update(image_mean=self.image_mean, image_scale=self.image_scale)
        with atomic_path(weights_path) as tmp:
            save_file({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in arrays.items()}, str(tmp),
                      metadata={"format": "np", "fluid_model": self.name})
        write_json_atomic(weights_path.with_name(STATE_FILE), state, indent=None, ensure_ascii=False)

    @classmethod
    def load(cls, weights_path: str | os.PathLike) -> "ClassicalModel":
        """Reads what :meth:`save` wrote (safetensors + JSON only)."""
        from safetensors.numpy import load_file

        weights_path = Path(weights_path)
        state_path = weights_path.with_name(STATE_FILE)
        if not state_path.exists():
            raise FileNotFoundError(f"{state_path} is missing: {weights_path.parent} holds no classical model")
        state = json.loads(state_path.read_text(encoding="utf-8"))
        if state.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{state_path}: format_version {state.get('format_version')} is not "
                             f"{FORMAT_VERSION}, which this version of FLUID reads")
        arrays = load_file(str(weights_path))
        self = cls(state["model"], state["classes"], state["options"], modality_dropout=state["modality_dropout"],
                   seed=state["seed"])
        self.coef, self.intercept = arrays["coef"], arrays["intercept"]
        if "text_features" in state:
            self.text_features = TextFeatures.from_state(state["text_features"], arrays)
        if "image_mean" in arrays:
            self.image_mean, self.image_scale = arrays["image_mean"], arrays["image_scale"]
        return self

