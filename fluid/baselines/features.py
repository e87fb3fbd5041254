"""Fixed, explainable features for the classical baselines: TF-IDF on the text, colour/shape/texture
statistics on the image (Pillow + numpy only).

Both transformers serialise to plain arrays (safetensors) plus JSON, never pickle.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from PIL import Image
from sklearn.feature_extraction.text import TfidfVectorizer

#: (name, TfidfVectorizer options) of the two text views: word uni/bigrams and character 2-4-grams.
TEXT_VIEWS: dict[str, dict] = {
    "word": {"analyzer": "word", "ngram_range": (1, 2), "token_pattern": r"(?u)\b\w+\b"},
    "char": {"analyzer": "char_wb", "ngram_range": (2, 4)},
}
IMAGE_SIDE = 64          # images are resized to IMAGE_SIDE x IMAGE_SIDE before any feature is computed
GRAY_SIDE = 12           # downsampled grayscale thumbnail (silhouette): GRAY_SIDE² values
HOG_CELLS = 4            # HOG_CELLS x HOG_CELLS cells ...
HOG_BINS = 9             # ... of gradient-orientation histograms (unsigned, 0-180°)
RGB_BINS = 4             # joint RGB histogram: RGB_BINS³ bins
HSV_BINS = 8             # per-channel HSV histograms: 3 x HSV_BINS bins
IMAGE_FEATURE_NAMES = ("rgb_joint_histogram", "hsv_histograms", "grayscale_thumbnail",
                       "gradient_orientation_histograms", "gradient_energy")


def image_feature_dim() -> int:
    return RGB_BINS ** 3 + 3 * HSV_BINS + GRAY_SIDE ** 2 + HOG_CELLS ** 2 * HOG_BINS + 2


def image_features(image: Image.Image) -> np.ndarray:
    """One image → a float64 vector of length :func:`image_feature_dim`.

    Parts (in order): joint RGB colour histogram (RGB_BINS³, sums to 1); hue/saturation/value histograms
    (3 × HSV_BINS, each sums to 1); grayscale thumbnail GRAY_SIDE × GRAY_SIDE in [0, 1] (the silhouette);
    HOG-style gradient-orientation histograms on a HOG_CELLS × HOG_CELLS grid, magnitude-weighted and
    L2-normalised per cell (the pattern: stripes, dots, checks, zigzags); mean gradient magnitude along x and y.
    """
    rgb = np.asarray(image.convert("RGB").resize((IMAGE_SIDE, IMAGE_SIDE), Image.BILINEAR), dtype=np.float64)
    quantised = np.minimum((rgb / 256.0 * RGB_BINS).astype(int), RGB_BINS - 1)
    joint = quantised[..., 0] * RGB_BINS ** 2 + quantised[..., 1] * RGB_BINS + quantised[..., 2]
    rgb_hist = np.bincount(joint.ravel(), minlength=RGB_BINS ** 3) / joint.size

    hsv = np.asarray(image.convert("RGB").resize((IMAGE_SIDE, IMAGE_SIDE), Image.BILINEAR).convert("HSV"),
                     dtype=np.float64)
    hsv_hist = np.concatenate([np.histogram(hsv[..., c], bins=HSV_BINS, range=(0, 256))[0] / hsv[..., c].size
                               for c in range(3)])

    gray = rgb @ np.array([0.299, 0.587, 0.114]) / 255.0
    block = IMAGE_SIDE // GRAY_SIDE
    crop = gray[: block * GRAY_SIDE, : block * GRAY_SIDE]
    thumbnail = crop.reshape(GRAY_SIDE, block, GRAY_SIDE, block).mean(axis=(1, 3)).ravel()

    gy, gx = np.gradient(gray)
    magnitude = np.hypot(gx, gy)
    angle = np.mod(np.arctan2(gy, gx), np.pi)
    which = np.minimum((angle / np.pi * HOG_BINS).astype(int), HOG_BINS - 1)
    cell = IMAGE_SIDE // HOG_CELLS
    hog = np.zeros((HOG_CELLS, HOG_CELLS, HOG_BINS))
    for row in range(HOG_CELLS):
        for col in range(HOG_CELLS):
            window = (slice(row * cell, (row + 1) * cell), slice(col * cell, (col + 1) * cell))
            hog[row, col] = np.bincount(which[window].ravel(), weights=magnitude[window].ravel(),
                                        minlength=HOG_BINS)
    hog /= np.linalg.norm(hog, axis=2, keepdims=True) + 1e-6
    energy = np.array([np.abs(gx).mean(), np.abs(gy).mean()])
    return np.concatenate([rgb_hist, hsv_hist, thumbnail, hog.ravel(), energy])


class TextFeatures:
    """TF-IDF of word uni/bigrams ⊕ character 2-4-grams (sublinear tf, L2-normalised per view).

    ``transform(texts)`` → N × (V_word + V_char) CSR matrix; a missing text (None/"") is an all-zero row.
    """

    def __init__(self, max_features: int | None = 200_000, min_df: int = 1):
        self.max_features = max_features
        self.min_df = min_df
        self.vectorizers: dict[str, TfidfVectorizer] = {}

    def _vectorizer(self, view: str, vocabulary: dict | None = None) -> TfidfVectorizer:
        return TfidfVectorizer(**TEXT_VIEWS[view], lowercase=True, sublinear_tf=True, dtype=np.float64,
                               min_df=self.min_df if vocabulary is None else 1,
                               max_features=self.max_features if vocabulary is None else None,
                               vocabulary=vocabulary)

    def fit(self, texts: Sequence[str | None]) -> "TextFeatures":
        docs = _documents(texts)
        if not any(docs):
            raise ValueError("the text baseline needs training items with text; every text is missing")
        self.vectorizers = {}
        for view in TEXT_VIEWS:
            try:
                self.vectorizers[view] = self._vectorizer(view).fit(docs)
            except ValueError:  # min_df pruned every term (a tiny corpus): keep every term instead
                self.vectorizers[view] = TfidfVectorizer(**TEXT_VIEWS[view], lowercase=True, sublinear_tf=True,
                                                         dtype=np.float64, min_df=1).fit(docs)
        return self

    def transform(self, texts: Sequence[str | None]) -> sp.csr_matrix:
        docs = _documents(texts)
        return sp.hstack([self.vectorizers[view].transform(docs) for view in TEXT_VIEWS], format="csr")

    @property
    def dim(self) -> int:
        return sum(len(v.vocabulary_) for v in self.vectorizers.values())

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-able config + vocabularies, arrays: idf per view)."""
        config = {"max_features": self.max_features, "min_df": self.min_df,
                  "vocabulary": {view: {term: int(index) for term, index in v.vocabulary_.items()}
                                 for view, v in self.vectorizers.items()}}
        return config, {f"idf_{view}": v.idf_ for view, v in self.vectorizers.items()}

    @classmethod
    def from_state(cls, config: dict, arrays: dict[str, np.ndarray]) -> "TextFeatures":
        self = cls(max_features=config["max_features"], min_df=config["min_df"])
        for view in TEXT_VIEWS:
            vectorizer = self._vectorizer(view, vocabulary=config["vocabulary"][view])
            vectorizer.idf_ = arrays[f"idf_{view}"]
            self.vectorizers[view] = vectorizer
        return self


def _documents(texts: Sequence[str | None]) -> list[str]:
    return [t if isinstance(t, str) else "" for t in texts]
