"""Deterministic, seeded input corruptions for robustness evaluation (``fluid evaluate --corrupt NAME[:SEVERITY]``).

Each corruption changes one modality of an item; the severity runs from 1 (mild) to 5 (severe), in the spirit of
ImageNet-C. The random draws of an item depend only on ``(seed, corruption name, item id)``, so the same item is
corrupted the same way in every run, in any order, in any DataLoader worker.

======================  ==========================================================================================
name                    severity 1 … 5
======================  ==========================================================================================
``image-blur``          Gaussian blur, radius 1, 2, 3, 5, 8 % of the shorter side
``image-noise``         additive Gaussian noise, σ = 8, 16, 32, 48, 64 (of 255), per pixel and channel
``image-jpeg``          JPEG re-encoding at quality 30, 18, 12, 8, 5
``image-occlusion``     a grey rectangle covering 10, 20, 30, 45, 60 % of the image at a random place
``text-shuffle``        a random 20, 40, 60, 80, 100 % of the words swap places among themselves
``text-truncate``       only the first 80, 60, 40, 20, 10 % of the words are kept (at least one)
``text-typos``          each letter is, with probability 2, 5, 10, 20, 30 %, deleted, doubled, replaced or swapped
                        with the next one
``text-drop-words``     each word is dropped with probability 10, 20, 35, 50, 70 % (at least one is kept)
======================  ==========================================================================================

Text corruptions split on whitespace and join the words with single spaces.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["CORRUPTIONS", "SEVERITIES", "Corruption", "parse_corruption"]

SEVERITIES = (1, 2, 3, 4, 5)
DEFAULT_SEVERITY = 3

_BLUR_RADIUS = (0.01, 0.02, 0.03, 0.05, 0.08)  # fraction of the shorter side
_NOISE_SIGMA = (8.0, 16.0, 32.0, 48.0, 64.0)
_JPEG_QUALITY = (30, 18, 12, 8, 5)
_OCCLUDED_AREA = (0.10, 0.20, 0.30, 0.45, 0.60)
_SHUFFLED_SHARE = (0.2, 0.4, 0.6, 0.8, 1.0)
_KEPT_SHARE = (0.8, 0.6, 0.4, 0.2, 0.1)
_TYPO_RATE = (0.02, 0.05, 0.10, 0.20, 0.30)
_DROP_RATE = (0.10, 0.20, 0.35, 0.50, 0.70)


def _blur(image: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    radius = max(0.5, _BLUR_RADIUS[level] * min(image.size))
    return image.filter(ImageFilter.GaussianBlur(radius))


def _noise(image: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32)
    noisy = pixels + rng.normal(0.0, _NOISE_SIGMA[level], size=pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(noisy + 0.5, 0, 255).astype(np.uint8), "RGB")


def _jpeg(image: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=_JPEG_QUALITY[level])
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        return decoded.convert("RGB")


def _occlusion(image: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    width, height = image.size
    pixels = _OCCLUDED_AREA[level] * width * height
    aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))  # box width / box height
    box_w = min(float(width), np.sqrt(pixels * aspect))
    box_h = min(float(height), pixels / box_w)
    box_w = min(float(width), pixels / box_h)  # a box cut by one edge grows along the other: same area
    box_w, box_h = max(1, round(box_w)), max(1, round(box_h))
    left = int(rng.integers(0, width - box_w + 1))
    top = int(rng.integers(0, height - box_h + 1))
    out = image.copy()
    ImageDraw.Draw(out).rectangle((left, top, left + box_w - 1, top + box_h - 1), fill=(128, 128, 128))
    return out


def _shuffle(text: str, level: int, rng: np.random.Generator) -> str:
    words = text.split()
    chosen = np.flatnonzero(rng.random(len(words)) < _SHUFFLED_SHARE[level])
    if len(chosen) > 1:
        moved = rng.permutation(chosen)
        words = list(words)
        originals = [words[i] for i in moved]
        for position, word in zip(chosen, originals):
            words[position] = word
    return " ".join(words)


def _truncate(text: str, level: int, rng: np.random.Generator) -> str:
    words = text.split()
    keep = max(1, int(np.ceil(_KEPT_SHARE[level] * len(words))))
    return " ".join(words[:keep])


def _typos(text: str, level: int, rng: np.random.Generator) -> str:
    chars = list(" ".join(text.split()))
    letters = [c for c in chars if c.isalpha()] or ["e"]
    rate = _TYPO_RATE[level]
    out: list[str] = []
    i = 0
    while i < len(chars):
        char = chars[i]
        if char.isalpha() and rng.random() < rate:
            operation = int(rng.integers(0, 4))
            if operation == 0:  # delete
                pass
            elif operation == 1:  # double
                out += [char, char]
            elif operation == 2:  # replace by another letter of the same text (same script)
                out.append(letters[int(rng.integers(0, len(letters)))])
            elif i + 1 < len(chars):  # swap with the next character
                out += [chars[i + 1], char]
                i += 1
            else:
                out.append(char)
        else:
            out.append(char)
        i += 1
    return "".join(out)


def _drop_words(text: str, level: int, rng: np.random.Generator) -> str:
    words = text.split()
    if not words:
        return ""
    kept = rng.random(len(words)) >= _DROP_RATE[level]
    if not kept.any():
        kept[int(rng.integers(0, len(words)))] = True
    return " ".join(w for w, k in zip(words, kept) if k)


#: name → (modality, function(value, level 0-4, rng) -> value)
CORRUPTIONS = {
    "image-blur": ("image", _blur),
    "image-noise": ("image", _noise),
    "image-jpeg": ("image", _jpeg),
    "image-occlusion": ("image", _occlusion),
    "text-shuffle": ("text", _shuffle),
    "text-truncate": ("text", _truncate),
    "text-typos": ("text", _typos),
    "text-drop-words": ("text", _drop_words),
}


@dataclass(frozen=True)
class Corruption:
    """One corruption at one severity. ``corruption(value, key)`` corrupts an RGB ``PIL.Image`` or a ``str``
    (the modality of ``name``) with draws seeded by ``(seed, name, key)``; ``key`` is the item id."""

    name: str
    severity: int = DEFAULT_SEVERITY
    seed: int = 0

    def __post_init__(self) -> None:
        if self.name not in CORRUPTIONS:
            raise ValueError(f"unknown corruption {self.name!r}; available: {', '.join(CORRUPTIONS)}")
        if isinstance(self.severity, bool) or self.severity not in SEVERITIES:
            raise ValueError(f"corruption severity must be one of {SEVERITIES}, got {self.severity!r}")

    @property
    def modality(self) -> str:
        """``"image"`` or ``"text"``."""
        return CORRUPTIONS[self.name][0]

    @property
    def label(self) -> str:
        """``"name:severity"``, the form :func:`parse_corruption` reads."""
        return f"{self.name}:{self.severity}"

    def rng(self, key: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(f"{self.name}\x00{key}".encode())])

    def __call__(self, value, key: str):
        if value is None:
            return None
        modality, function = CORRUPTIONS[self.name]
        if modality == "image":
            if not isinstance(value, Image.Image):
                raise TypeError(f"{self.name} corrupts PIL images, got {type(value).__name__}")
            value = value.convert("RGB") if value.mode != "RGB" else value
        elif not isinstance(value, str):
            raise TypeError(f"{self.name} corrupts strings, got {type(value).__name__}")
        return function(value, self.severity - 1, self.rng(str(key)))


def parse_corruption(spec: str | Corruption, seed: int = 0) -> Corruption:
    """``"image-blur"`` (severity 3), ``"image-blur:5"`` or a :class:`Corruption` → a :class:`Corruption`."""
    if isinstance(spec, Corruption):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"a corruption is 'NAME[:SEVERITY]' or a Corruption, got {type(spec).__name__}")
    name, _, severity = spec.strip().partition(":")
    if not severity:
        return Corruption(name, DEFAULT_SEVERITY, seed)
    try:
        level = int(severity)
    except ValueError:
        raise ValueError(f"corruption {spec!r}: the severity after ':' must be an integer 1-5") from None
    return Corruption(name, level, seed)
