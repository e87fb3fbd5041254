"""A deterministic synthetic GLAMI-like catalogue, written in the GLAMI-1M file layout.

Two modes (``write_synthetic(..., mode=...)``; details and numbers in docs/data.md):

* ``"realistic"`` (default): like a real catalogue, **both sides show the class, each with its own noise and
  gaps**. A class is a (garment *type*, *pattern*) pair (``CLASSES``). The text usually names the type (one of
  three synonyms per language) and often the pattern (two synonyms), but some texts omit the type or the
  pattern, a few name a wrong type or a wrong pattern, and a few are uninformative (a brand, maybe a colour,
  no description). The image usually shows the type's *own* silhouette (six distinct outlines, each with
  per-item proportions, size and position) filled with the pattern, but some images are fabric close-ups
  (no outline), some patterns are washed out (the garment looks plain), some faint (low contrast), some
  garments are partly covered. All probabilities are in ``REALISTIC_NOISE``; text and image evidence are drawn
  independently given the class, so ``modality_caps`` / ``fusion_cap`` compute the best attainable
  accuracies exactly: text only ~78%, image only ~87%, both ~97% (default class weights, clean labels).
* ``"complementary"``: the catalogue of earlier versions, byte-identical for the same seed and arguments.
  The text names the type (never the pattern); the image draws the pattern and only the silhouette *family*
  (``FAMILIES``: ``top`` = T-shirt/jacket, ``long`` = dress/skirt, ``trousers``, ``scarf``), whose types share
  one outline distribution. The sides share only the colour, so the class needs both: the best text-only
  classifier is capped at ~61% and the best image-only one at ~75%; both together reach 100%.

Common to both modes:

* **Long tail**: class weights from 100 down to 3.5 (largest/smallest ≈ 29×); category ids 1000-1016.
* **Languages**: GLAMI ``geo`` codes, each with a procedurally generated vocabulary in its own script (Latin
  with the language's letters, Greek for ``gr``, Cyrillic for ``bg``), its own adjective order (noun-adjective
  for ``ro``/``es``, adjective-noun elsewhere), clause order (verb-final for ``hu``/``tr``), adjective
  agreement suffixes and prepositions vs postpositions.
* **Complementary attributes**: brands, colours (also drawn in the image), materials and filler sentences,
  all independent of the class; names of 1-8 words, descriptions from empty to ~10 sentences.
* **Noisy labels**: in train, a ``noise`` share of all rows carry a wrong label; only ``machine``-labelled rows
  do (label_source ``machine`` vs ``human``); wrong labels follow the class prior (a machine labeller errs
  towards frequent classes). The test split is all ``human`` and clean. ``noisy_labels.csv`` (item_id,
  true_category, given_category) beside the CSVs records the truth; no reader or trainer uses it.
  ``synthetic.json`` beside it records the generator's arguments (mode, seed, items, noise, ...) and caps.
* **Images**: Pillow drawings in a random colour, filled with the class pattern in a contrasting colour, on a
  light background, with Gaussian noise; JPEG.

Every item is made from its own RNGs seeded by ``(seed, item)``, so any item can be generated independently
(and in parallel with ``workers``); the same seed and arguments give the same bytes. The item's class, split
and language do not depend on the mode.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import random
import shutil
from bisect import bisect_right
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from fluid.data.glami import GLAMI_COLUMNS, GLAMI_DIR, GLAMI_GEOS, glami_csv_name

__all__ = ["write_synthetic", "CLASSES", "TYPES", "PATTERNS", "FAMILIES", "DEFAULT_LANGUAGES", "MODES",
           "NOISY_LABELS_FILE", "SIDECAR_FILE", "HUMAN", "MACHINE", "RealisticNoise", "REALISTIC_NOISE",
           "modality_caps", "fusion_cap", "evidence_likelihoods", "naming_words"]

TYPES = ("t-shirt", "dress", "jacket", "trousers", "skirt", "scarf")
PATTERNS = ("plain", "striped", "dotted", "checked", "zigzag")
#: Garment type -> silhouette family. In ``"complementary"`` mode the image shows the family, never the exact
#: type: all types of a family draw their outline from the same distribution. (``"realistic"`` mode draws one
#: outline per type.)
FAMILIES: dict[str, str] = {"t-shirt": "top", "jacket": "top", "dress": "long", "skirt": "long",
                            "trousers": "trousers", "scarf": "scarf"}
#: (type, pattern, relative weight); category id = 1000 + position.
CLASSES: tuple[tuple[str, str, float], ...] = (
    ("t-shirt", "plain", 40), ("t-shirt", "striped", 100), ("t-shirt", "dotted", 12), ("t-shirt", "checked", 20),
    ("dress", "plain", 30), ("dress", "striped", 10), ("dress", "dotted", 45), ("dress", "checked", 6),
    ("jacket", "plain", 15), ("jacket", "striped", 65), ("jacket", "checked", 15),
    ("trousers", "plain", 35), ("trousers", "striped", 5), ("trousers", "checked", 9),
    ("skirt", "plain", 14), ("skirt", "zigzag", 7),
    ("scarf", "striped", 3.5),
)
DEFAULT_LANGUAGES = ("cz", "ro", "hu", "es", "tr", "gr")
_DEFAULT_LANGUAGE_WEIGHTS = {"cz": 0.30, "ro": 0.18, "hu": 0.15, "es": 0.15, "tr": 0.12, "gr": 0.10}
#: ``write_synthetic`` modes; the first is the default.
MODES = ("realistic", "complementary")
NOISY_LABELS_FILE = "noisy_labels.csv"
#: JSON sidecar beside the CSVs: the generator's arguments (mode, seed, items, noise, ...) and caps.
SIDECAR_FILE = "synthetic.json"
HUMAN, MACHINE = "human", "machine"
_MACHINE_SHARE = 0.25  # GLAMI-1M: ~75% of train human-labelled

_COLOURS = (  # (name, RGB) — the colour word in the text matches the drawing
    ("red", (196, 32, 40)), ("blue", (32, 64, 186)), ("green", (38, 140, 62)), ("yellow", (232, 196, 36)),
    ("black", (34, 34, 38)), ("pink", (236, 118, 168)), ("grey", (128, 128, 132)), ("brown", (118, 70, 32)),
)
_N_MATERIALS = 8


@dataclass(frozen=True)
class RealisticNoise:
    """Per-item probabilities of the ``"realistic"`` mode. Text and image are drawn independently given the
    class; within each side the type evidence and the pattern evidence are independent too (except that an
    uninformative text has neither).

    Text (shares of all items unless said otherwise):
        text_uninformative: the text is only a brand, maybe with a colour word, and no description: it names
            neither type nor pattern.
        text_type_omitted, text_type_wrong: of the other texts, the share that name no garment type (a generic
            noun instead) and the share that name a wrong type (uniform over the five others); the rest name the
            true type (one of three synonyms, in the name and maybe again in the description).
        text_pattern_named, text_pattern_wrong: of the other texts, the share that name the true pattern (one of
            two synonyms, in the name or the description) and the share that name a wrong one (uniform over the
            four others); the rest name no pattern.
    Image:
        image_type_hidden: a fabric close-up: the garment fills the frame, no outline (the type is not shown).
        image_pattern_hidden: of the patterned garments, the share whose pattern is washed out: it looks plain.
        image_pattern_faint: of the images with a visible pattern, the share drawn at low contrast (still there).
        image_occluded: a large box covers part of the picture (a hanger, a hand, a price tag).
    """

    text_uninformative: float = 0.04
    text_type_omitted: float = 0.06
    text_type_wrong: float = 0.04
    text_pattern_named: float = 0.70
    text_pattern_wrong: float = 0.04
    image_type_hidden: float = 0.20
    image_pattern_hidden: float = 0.05
    image_pattern_faint: float = 0.20
    image_occluded: float = 0.15


REALISTIC_NOISE = RealisticNoise()


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {MODES}")
    return mode


def _weights(weights: Sequence[float] | None) -> np.ndarray:
    w = np.asarray([c[2] for c in CLASSES] if weights is None else weights, dtype=float)
    if w.shape != (len(CLASSES),):
        raise ValueError(f"need {len(CLASSES)} weights, got shape {w.shape}")
    return w / w.sum()


def _realistic_likelihoods(r: RealisticNoise) -> tuple[np.ndarray, np.ndarray]:
    """``(text, image)``: P(evidence | class) of the realistic mode, shapes (42, 17) and (35, 17).

    Text evidence: (type named or None, pattern named or None); image evidence: (type shown or None, pattern that
    the garment appears to have). A reader that decodes the drawn evidence perfectly sees exactly these (a faint
    pattern or a partly covered garment still counts as shown: the caps are upper bounds)."""
    nt, np_ = len(TYPES), len(PATTERNS)
    text_ev = list(itertools.product([None, *TYPES], [None, *PATTERNS]))
    image_ev = list(itertools.product([None, *TYPES], PATTERNS))
    lt = np.zeros((len(text_ev), len(CLASSES)))
    li = np.zeros((len(image_ev), len(CLASSES)))
    for k, (t, p, _) in enumerate(CLASSES):
        for s, (ts, ps) in enumerate(text_ev):
            pt = (r.text_type_omitted if ts is None else r.text_type_wrong / (nt - 1) if ts != t
                  else 1.0 - r.text_type_omitted - r.text_type_wrong)
            pp = (1.0 - r.text_pattern_named - r.text_pattern_wrong if ps is None
                  else r.text_pattern_wrong / (np_ - 1) if ps != p else r.text_pattern_named)
            lt[s, k] = r.text_uninformative * (ts is None and ps is None) + (1.0 - r.text_uninformative) * pt * pp
        for s, (ts, ps) in enumerate(image_ev):
            pt = r.image_type_hidden if ts is None else (1.0 - r.image_type_hidden) * (ts == t)
            if p == "plain":
                pp = float(ps == "plain")
            else:
                pp = r.image_pattern_hidden * (ps == "plain") + (1.0 - r.image_pattern_hidden) * (ps == p)
            li[s, k] = pt * pp
    return lt, li


def _complementary_likelihoods() -> tuple[np.ndarray, np.ndarray]:
    """The complementary mode's evidence is deterministic: the text shows the type, the image (family, pattern)."""
    text_ev = list(TYPES)
    image_ev = sorted({(FAMILIES[t], p) for t, p, _ in CLASSES})
    lt = np.zeros((len(text_ev), len(CLASSES)))
    li = np.zeros((len(image_ev), len(CLASSES)))
    for k, (t, p, _) in enumerate(CLASSES):
        lt[text_ev.index(t), k] = 1.0
        li[image_ev.index((FAMILIES[t], p)), k] = 1.0
    return lt, li


def evidence_likelihoods(mode: str) -> tuple[np.ndarray, np.ndarray]:
    """``(text, image)``: P(evidence | class) of ``mode``'s generator, one row per kind of evidence, one column per
    class of ``CLASSES`` (see ``modality_caps``)."""
    return _realistic_likelihoods(REALISTIC_NOISE) if _check_mode(mode) == "realistic" else _complementary_likelihoods()


def modality_caps(weights: Sequence[float] | None = None, *, mode: str = "realistic") -> tuple[float, float]:
    """Best possible accuracy (on clean labels) of a classifier that sees only the text and of one that sees
    only the image, in catalogues written with ``mode``, for class weights ``weights`` (default: those of
    ``CLASSES``). Exact (Bayes) values computed from the generator's probabilities, no sampling.

    ``"complementary"``: the text tells the garment type (not the pattern): the best guess is the type's most
    frequent class; the image tells the pattern and the silhouette family (``FAMILIES``), not the type within the
    family: the best guess is the most frequent class of that (family, pattern).

    ``"realistic"``: both sides carry noisy type and pattern evidence (``REALISTIC_NOISE``); the cap is
    ``sum over evidence e of max over classes k of P(k) P(e | k)``, treating faint and partly covered patterns
    and outlines as readable (an upper bound for a real model)."""
    w = _weights(weights)
    lt, li = evidence_likelihoods(mode)
    return float((lt * w).max(axis=1).sum()), float((li * w).max(axis=1).sum())


def fusion_cap(weights: Sequence[float] | None = None, *, mode: str = "realistic") -> float:
    """Best possible accuracy (on clean labels) of a classifier that sees both text and image (exact, like
    ``modality_caps``): 1.0 in ``"complementary"`` mode, ~0.97 in ``"realistic"`` mode (default weights)."""
    w = _weights(weights)
    lt, li = evidence_likelihoods(mode)
    joint = lt[:, None, :] * li[None, :, :] * w
    return float(joint.max(axis=2).sum())


def naming_words(seed: int) -> dict[str, tuple[str, str]]:
    """Every word form the ``"realistic"`` mode writes to name a garment type or a pattern in catalogues drawn
    with ``seed``, in every language: ``{lower-cased word: ("type", one of TYPES) or ("pattern", one of
    PATTERNS)}``. Type nouns appear as they are (three synonyms); pattern adjectives (two synonyms) with each of
    their language's agreement suffixes. What a reader that knows the generator's vocabulary looks for."""
    words: dict[str, tuple[str, str]] = {}
    for lang in _build_languages(seed).values():
        for gtype, nouns in zip(TYPES, lang.type_nouns):
            words.update((noun.lower(), ("type", gtype)) for noun, _ in nouns)
        for pattern, stems in zip(PATTERNS, lang.patterns):
            words.update((lang.adj(stem, g).lower(), ("pattern", pattern))
                         for stem in stems for g in range(len(lang.suffixes)))
    return words


# -------------------------------------------------------------------------------------------------------------
# languages

# consonants, vowels, adjective order (AN/NA), clause order (SVO/SOV), agreement suffixes ("" = none)
_PROFILES: dict[str, tuple[str, str, str, str, tuple[str, ...]]] = {
    "cz": ("b c d h j k l m n p r s t v z č ř š ž", "a e i o u y á é í ů ě", "AN", "SVO", ("ý", "á", "é")),
    "sk": ("b c d h j k l m n p r s t v z č š ž ľ", "a e i o u y á ä é í ó ô", "AN", "SVO", ("ý", "á", "é")),
    "ro": ("b c d f g j l m n p r s t v z ș ț", "a e i o u ă â î", "NA", "SVO", ("", "ă", "e")),
    "gr": ("β γ δ ζ θ κ λ μ ν ξ π ρ σ τ φ χ", "α ε η ι ο υ ω ά έ ί ό", "AN", "SVO", ("ος", "η", "ο")),
    "si": ("b c d g h j k l m n p r s t v z č š ž", "a e i o u", "AN", "SVO", ("", "a", "o")),
    "hu": ("b d f g h j k l m n p r s t v z sz cs gy ny", "a e i o u á é ó ö ő ú ü", "AN", "SOV", ("",)),
    "hr": ("b c d g h j k l m n p r s t v z č ć đ š ž", "a e i o u", "AN", "SVO", ("", "a", "o")),
    "es": ("b c d f g j l m n p r s t v z ñ ll", "a e i o u á é í ó", "NA", "SVO", ("o", "a", "es")),
    "lt": ("b d g j k l m n p r s t v z č š ž", "a e i o u y ą ę ė į ų ū", "AN", "SVO", ("as", "a", "is")),
    "lv": ("b c d g j k l m n p r s t v z č š ž ķ ļ ņ", "a e i o u ā ē ī ū", "AN", "SVO", ("s", "a", "š")),
    "tr": ("b c ç d f g ğ h k l m n p r s ş t v y z", "a e ı i o ö u ü", "AN", "SOV", ("",)),
    "ee": ("d g h j k l m n p r s t v", "a e i o u õ ä ö ü", "AN", "SVO", ("",)),
    "bg": ("б в г д ж з к л м н п р с т ф х ц ч ш", "а е и о у ъ я", "AN", "SVO", ("", "а", "о")),
}


class _Lang:
    """A procedurally generated language: vocabulary + word order."""

    def __init__(self, code: str, rng: random.Random, used: set[str]) -> None:
        cons, vows, self.adj_order, self.clause, self.suffixes = _PROFILES[code]
        self.code = code
        self.cons = cons.split()
        self.vows = vows.split()

        word = lambda lo, hi: self._word(rng, used, lo, hi)
        gender = lambda: rng.randrange(len(self.suffixes))  # noqa: E731
        # garment type nouns: two synonyms each, with a grammatical gender
        self.types = [[(word(2, 3), gender()) for _ in range(2)] for _ in TYPES]
        self.colours = [word(2, 2) for _ in _COLOURS]
        self.materials = [word(2, 3) for _ in range(_N_MATERIALS)]
        self.nouns = [(word(2, 3), gender()) for _ in range(40)]
        self.adjs = [word(2, 3) for _ in range(40)]
        self.verbs = [word(2, 3) for _ in range(25)]
        self.adps = [word(1, 1) for _ in range(4)]  # prepositions (SVO) or postpositions (SOV)

    def _word(self, rng: random.Random, used: set[str], lo: int, hi: int) -> str:
        """A new word of ``lo``-``hi`` syllables, not in ``used`` (added to it)."""
        while True:
            n = rng.randint(lo, hi)
            w = "".join(
                rng.choice(self.cons) + rng.choice(self.vows) + (rng.choice(self.cons) if rng.random() < 0.25 else "")
                for _ in range(n)
            )
            if rng.random() < 0.2:
                w = rng.choice(self.vows) + w
            if w not in used and len(w) >= 3:
                used.add(w)
                return w

    def extend(self, rng: random.Random, used: set[str]) -> None:
        """Words of the realistic mode, drawn after every language's base vocabulary (so adding them changes
        none of the complementary mode's words): a third synonym per garment type and two adjectives per
        pattern."""
        self.more_types = [(self._word(rng, used, 2, 3), rng.randrange(len(self.suffixes))) for _ in TYPES]
        self.patterns = [[self._word(rng, used, 2, 3) for _ in range(2)] for _ in PATTERNS]
        #: the three synonyms of each type, the nouns the realistic mode names types with
        self.type_nouns = [syn + [more] for syn, more in zip(self.types, self.more_types)]

    def adj(self, stem: str, g: int) -> str:
        return stem + self.suffixes[g % len(self.suffixes)]

    def np_(self, noun: tuple[str, int], adjs: list[str]) -> list[str]:
        forms = [self.adj(a, noun[1]) for a in adjs]
        return forms + [noun[0]] if self.adj_order == "AN" else [noun[0]] + forms

    def pp(self, rng: random.Random) -> list[str]:
        noun = self.nouns[int(rng.random() * len(self.nouns))]
        adp = self.adps[int(rng.random() * len(self.adps))]
        return [noun[0], adp] if self.clause == "SOV" else [adp, noun[0]]


def _build_languages(seed: int) -> dict[str, _Lang]:
    used: set[str] = set()
    langs = {}
    for code in GLAMI_GEOS:  # all 13, fixed order: a language's words do not depend on which are selected
        langs[code] = _Lang(code, random.Random(f"fluid-synthetic-lang:{seed}:{code}"), used)
    for code in GLAMI_GEOS:
        langs[code].extend(random.Random(f"fluid-synthetic-lang-more:{seed}:{code}"), used)
    return langs


def _brands(seed: int) -> list[str]:
    rng = random.Random(f"fluid-synthetic-brands:{seed}")
    cons, vows = "bdfgklmnprstvz", "aeiou"
    out: list[str] = []
    while len(out) < 40:
        w = "".join(rng.choice(cons) + rng.choice(vows) for _ in range(rng.randint(2, 3))).capitalize()
        if w not in out:
            out.append(w)
    return out


# -------------------------------------------------------------------------------------------------------------
# text


def _ri(rng: random.Random, n: int) -> int:
    """Uniform integer in [0, n) (faster than randrange for the per-item hot path)."""
    return int(rng.random() * n)


def _pick(rng: random.Random, seq: Sequence[Any]) -> Any:
    return seq[int(rng.random() * len(seq))]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _name(rng: random.Random, L: _Lang, type_noun: tuple[str, int], colour: str, material: str, brand: str) -> str:
    r = rng.random()
    adjs = [] if r < 0.25 else [colour] if r < 0.55 else [colour, material] if r < 0.8 else [material]
    if len(adjs) == 2 and rng.random() < 0.5:
        adjs.reverse()
    words = L.np_(type_noun, adjs)
    if rng.random() < 0.7:
        words = [brand] + words
    if rng.random() < 0.3:
        words = words + L.pp(rng)
    return " ".join(words)


def _sentence(rng: random.Random, L: _Lang, type_nouns: list[tuple[str, int]], colour: str, material: str) -> str:
    if rng.random() < 0.3:
        subj = L.np_(_pick(rng, type_nouns), [_pick(rng, L.adjs)] if rng.random() < 0.5 else [])
    else:
        subj = L.np_(_pick(rng, L.nouns), [_pick(rng, L.adjs)] if rng.random() < 0.6 else [])
    obj_noun = _pick(rng, L.nouns)
    r = rng.random()
    obj_adjs = [colour] if r < 0.15 else [material] if r < 0.4 else [_pick(rng, L.adjs)] if r < 0.7 else []
    obj = L.np_(obj_noun, obj_adjs)
    verb = [_pick(rng, L.verbs)]
    pp = L.pp(rng) if rng.random() < 0.4 else []
    words = subj + verb + obj + pp if L.clause == "SVO" else subj + obj + pp + verb
    return _cap(" ".join(words)) + "."


def _description(rng: random.Random, L: _Lang, type_nouns, colour: str, material: str) -> str:
    if rng.random() < 0.2:
        return ""  # GLAMI has rows without description (NaN)
    n = 1
    while n < 10 and rng.random() < 0.62:
        n += 1
    return " ".join(_sentence(rng, L, type_nouns, colour, material) for _ in range(n))


def _other(rng: random.Random, n: int, k: int) -> int:
    """Uniform integer in [0, n) other than ``k``."""
    j = _ri(rng, n - 1)
    return j + (j >= k)


def _pattern_sentence(rng: random.Random, L: _Lang, nouns: list[tuple[str, int]], pattern_word: str) -> str:
    subj = L.np_(_pick(rng, nouns), [pattern_word])
    obj = L.np_(_pick(rng, L.nouns), [_pick(rng, L.adjs)] if rng.random() < 0.5 else [])
    verb = [_pick(rng, L.verbs)]
    return _cap(" ".join(subj + verb + obj if L.clause == "SVO" else subj + obj + verb)) + "."


def _realistic_text(rng: random.Random, L: _Lang, noise: RealisticNoise, gtype: str, pattern: str, colour: str,
                    material: str, brand: str) -> tuple[str, str]:
    """``(name, description)`` of the realistic mode: the type and the pattern, each named, omitted or wrong
    with ``noise``'s probabilities, among brand / colour / material words and filler sentences."""
    if rng.random() < noise.text_uninformative:  # a brand, maybe a colour word, nothing else
        return (brand if rng.random() < 0.5 else f"{brand} {L.adj(colour, 0)}"), ""
    r = rng.random()
    if r < noise.text_type_omitted:
        nouns = L.nouns  # generic nouns only
    elif r < noise.text_type_omitted + noise.text_type_wrong:
        nouns = L.type_nouns[_other(rng, len(TYPES), TYPES.index(gtype))]
    else:
        nouns = L.type_nouns[TYPES.index(gtype)]
    r = rng.random()
    if r < noise.text_pattern_named:
        pattern_word = _pick(rng, L.patterns[PATTERNS.index(pattern)])
    elif r < noise.text_pattern_named + noise.text_pattern_wrong:
        pattern_word = _pick(rng, L.patterns[_other(rng, len(PATTERNS), PATTERNS.index(pattern))])
    else:
        pattern_word = None
    in_name = pattern_word is not None and rng.random() < 0.6
    # name: [brand] adjectives (colour / material / pattern, in random order) noun [prepositional phrase]
    r = rng.random()
    adjs = [] if r < 0.3 else [colour] if r < 0.6 else [colour, material] if r < 0.8 else [material]
    if len(adjs) == 2 and rng.random() < 0.5:
        adjs.reverse()
    if in_name:
        adjs.insert(_ri(rng, len(adjs) + 1), pattern_word)
    words = L.np_(_pick(rng, nouns), adjs)
    if rng.random() < 0.7:
        words = [brand] + words
    if rng.random() < 0.3:
        words = words + L.pp(rng)
    name = " ".join(words)
    # description: filler sentences (some repeat the noun, colour, material) and maybe the pattern
    sentences = [] if rng.random() < 0.2 else [_sentence(rng, L, nouns, colour, material)]
    while sentences and len(sentences) < 10 and rng.random() < 0.62:
        sentences.append(_sentence(rng, L, nouns, colour, material))
    if pattern_word is not None and not in_name:
        sentences.insert(_ri(rng, len(sentences) + 1), _pattern_sentence(rng, L, nouns, pattern_word))
    return name, " ".join(sentences)


# -------------------------------------------------------------------------------------------------------------
# images

_NOISE_BANK: dict[tuple[int, int, int], list[Image.Image]] = {}
_NOISE_PAD = 16


def _noise_bank(seed: int, size: tuple[int, int]) -> list[Image.Image]:
    key = (seed, *size)
    bank = _NOISE_BANK.get(key)
    if bank is None:
        rng = np.random.default_rng([seed, 7919])
        w, h = size
        bank = []
        for _ in range(16):
            a = rng.normal(128.0, 14.0, size=(h + _NOISE_PAD, w + _NOISE_PAD, 3))
            bank.append(Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)))
        _NOISE_BANK[key] = bank
    return bank


def _jit(rng: random.Random, rgb: tuple[int, int, int], amount: int) -> tuple[int, int, int]:
    r = rng.random
    span = 2 * amount + 1
    return tuple(max(0, min(255, c - amount + int(r() * span))) for c in rgb)  # type: ignore[return-value]


def _accent(rng: random.Random, rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    if lum < 110:
        t = rng.uniform(0.55, 0.75)
        return tuple(int(c + (255 - c) * t) for c in rgb)  # type: ignore[return-value]
    f = rng.uniform(0.25, 0.45)
    return tuple(int(c * f) for c in rgb)  # type: ignore[return-value]


# Pattern and silhouette masks are drawn once per parameter set and cached (per process): an item picks its
# parameters from its RNG and crops the cached mask at a random offset, which is much faster than drawing.
_MASKS: dict[tuple, Image.Image] = {}
_MAX_PERIOD = 36


def _pattern_mask(key: tuple, w: int, h: int) -> Image.Image:
    """An ``L`` mask (1 = accent ink, 0 = ground) of size (w + _MAX_PERIOD, h + _MAX_PERIOD) for ``key``."""
    full = (w, h, *key)
    m = _MASKS.get(full)
    if m is not None:
        return m
    W, H = w + _MAX_PERIOD, h + _MAX_PERIOD
    m = Image.new("L", (W, H), 0)
    d = ImageDraw.Draw(m)
    kind = key[0]
    if kind == "striped":
        _, period, width, orient = key
        if orient == 0:
            for y in range(0, H, period):
                d.rectangle((0, y, W, y + width - 1), fill=1)
        elif orient == 1:
            for x in range(0, W, period):
                d.rectangle((x, 0, x + width - 1, H), fill=1)
        else:
            step = int(round(period * math.sqrt(2)))
            for k in range(-H - step, W + H + step, step):
                d.line(((k, 0), (k + H, H)) if orient == 2 else ((k, 0), (k - H, H)), fill=1, width=width)
    elif kind == "dotted":
        _, step, r = key
        for row, y in enumerate(range(0, H + step, step)):
            shift = step // 2 if row % 2 else 0
            for x in range(shift - step, W + step, step):
                d.ellipse((x - r, y - r, x + r, y + r), fill=1)
    elif kind == "checked":
        _, c = key
        for j, y in enumerate(range(0, H, c)):
            for i, x in enumerate(range(0, W, c)):
                if (i + j) % 2 == 0:
                    d.rectangle((x, y, x + c - 1, y + c - 1), fill=1)
    elif kind == "zigzag":
        _, step, amp, wl = key
        for y in range(0, H + step, step):
            pts = [(x, y + (amp if (k % 2) else -amp)) for k, x in enumerate(range(-wl, W + wl, wl // 2))]
            d.line(pts, fill=1, width=3, joint="curve")
    else:  # pragma: no cover
        raise ValueError(kind)
    _MASKS[full] = m
    return m


def _pattern_key(rng: random.Random, pattern: str) -> tuple | None:
    if pattern == "plain":
        return None
    if pattern == "striped":
        period = 9 + _ri(rng, 8)
        return ("striped", period, max(3, period // 2 - 1 + _ri(rng, 3)), _ri(rng, 4))
    if pattern == "dotted":
        return ("dotted", 11 + _ri(rng, 7), 2 + _ri(rng, 3))
    if pattern == "checked":
        return ("checked", 8 + _ri(rng, 7))
    if pattern == "zigzag":
        return ("zigzag", 12 + _ri(rng, 7), 3 + _ri(rng, 4), 2 * (4 + _ri(rng, 4)))
    raise ValueError(pattern)  # pragma: no cover


# family -> (height/width ratios, heights as a share of the canvas height); one of 3 x 3 picked per item
_SIL_SHAPES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "top": ((0.85, 0.97, 1.1), (0.56, 0.64, 0.72)),
    "long": ((1.4, 1.55, 1.7), (0.72, 0.8, 0.88)),
    "trousers": ((1.95, 2.1, 2.3), (0.78, 0.84, 0.9)),
    "scarf": ((4.0, 4.7, 5.4), (0.74, 0.82, 0.9)),
}


def _outline(family: str, v: int) -> list[list[tuple[float, float]]]:
    """Polygons of a family's outline in the unit box (x right, y down); ``v`` (0-2) varies the proportions."""
    if family == "top":  # body with sleeves; v = sleeve length
        a = (0.26, 0.38, 0.52)[v]  # where the sleeve ends
        pit = max(0.3, a - 0.04)
        return [[(0.3, 0.0), (0.41, 0.0), (0.5, 0.08), (0.59, 0.0), (0.7, 0.0), (1.0, a), (0.89, a + 0.12),
                 (0.79, pit), (0.79, 1.0), (0.21, 1.0), (0.21, pit), (0.11, a + 0.12), (0.0, a)]]
    if family == "long":  # narrow top flaring to a wide hem; v = top width
        t = (0.34, 0.44, 0.54)[v] / 2
        return [[(0.5 - t, 0.0), (0.5 + t, 0.0), (0.5 + t - 0.04, 0.2), (1.0, 0.97), (0.75, 1.0), (0.5, 0.98),
                 (0.25, 1.0), (0.0, 0.97), (0.5 - t + 0.04, 0.2)]]
    if family == "trousers":  # waistband and two legs; v = crotch height
        c = (0.28, 0.35, 0.42)[v]
        return [[(0.02, 0.0), (0.98, 0.0), (1.0, 1.0), (0.6, 1.0), (0.5, c), (0.4, 1.0), (0.0, 1.0)]]
    if family == "scarf":  # a long band with a fringe at both ends; v = fringe length
        f = (0.04, 0.06, 0.08)[v]
        polys = [[(0.0, f), (1.0, f), (1.0, 1.0 - f), (0.0, 1.0 - f)]]
        for k in range(4):
            x = 0.05 + 0.3 * k
            polys += [[(x, 0.0), (x + 0.12, 0.0), (x + 0.12, f), (x, f)],
                      [(x, 1.0 - f), (x + 0.12, 1.0 - f), (x + 0.12, 1.0), (x, 1.0)]]
        return polys
    raise ValueError(family)  # pragma: no cover


def _silhouette(rng: random.Random, family: str, w: int, h: int) -> tuple[Image.Image, Image.Image]:
    """Garment outline masks ``(inside=1, inside=255)`` of the type's silhouette *family*, at a random size,
    proportion and position (drawn the same way for every type of the family)."""
    return _placed_mask(rng, "sil", family, w, h, _SIL_SHAPES[family], _outline)


def _patterned(rng: random.Random, sil01: Image.Image, sil255: Image.Image, key: tuple | None) -> Image.Image:
    """Palette indices of the garment (1) with the pattern ``key`` in ink (2) at a random offset, on the
    background (0); ``key`` None = plain."""
    if key is None:
        return sil01
    w, h = sil01.size
    ox, oy = _ri(rng, _MAX_PERIOD), _ri(rng, _MAX_PERIOD)
    pat = _pattern_mask(key, w, h).crop((ox, oy, ox + w, oy + h))
    return ImageChops.add(sil01, ImageChops.darker(sil255, pat))


def _maybe_tag(rng: random.Random, idx: Image.Image) -> None:
    """A distractor in 30 % of images: a small label tag (palette index 3), independent of the class."""
    if rng.random() < 0.3:
        w, h = idx.size
        tx, ty = _ri(rng, w - 12), _ri(rng, h - 8)
        idx.paste(3, (tx, ty, tx + 10, ty + 6))


def _noisy_jpeg(rng: random.Random, idx: Image.Image, bank, quality: int) -> bytes:
    """The palette image ``idx`` in RGB plus a random crop of a Gaussian-noise tile, as JPEG bytes."""
    w, h = idx.size
    tile = bank[_ri(rng, len(bank))]
    ox, oy = _ri(rng, _NOISE_PAD), _ri(rng, _NOISE_PAD)
    img = ImageChops.add(idx.convert("RGB"), tile.crop((ox, oy, ox + w, oy + h)), 1.0, -128)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _image(rng: random.Random, family: str, pattern: str, colour_rgb, size: tuple[int, int], bank,
           quality: int) -> bytes:
    """Compose a palette image (0 background, 1 garment colour, 2 pattern ink, 3 tag), add noise, JPEG."""
    w, h = size
    bg = _jit(rng, (236, 234, 230), 14)
    base = _jit(rng, colour_rgb, 18)
    ink = _accent(rng, base)
    sil01, sil255 = _silhouette(rng, family, w, h)
    idx = _patterned(rng, sil01, sil255, _pattern_key(rng, pattern))
    _maybe_tag(rng, idx)
    idx.putpalette(bytes((*bg, *base, *ink, *_jit(rng, (250, 250, 250), 5))))
    return _noisy_jpeg(rng, idx, bank, quality)


# type -> (height/width ratios, heights as a share of the canvas height) of the realistic mode's outlines
_TYPE_SHAPES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "t-shirt": ((0.8, 0.9, 1.0), (0.52, 0.6, 0.68)),
    "jacket": ((1.15, 1.27, 1.4), (0.64, 0.72, 0.8)),
    "dress": ((1.6, 1.75, 1.9), (0.76, 0.84, 0.92)),
    "skirt": ((0.75, 0.88, 1.0), (0.44, 0.52, 0.6)),
    "trousers": ((1.95, 2.1, 2.3), (0.78, 0.84, 0.9)),
    "scarf": ((4.0, 4.7, 5.4), (0.74, 0.82, 0.9)),
}


def _type_outline(gtype: str, v: int) -> list[list[tuple[float, float]]]:
    """Polygons of a garment type's own outline in the unit box (realistic mode); ``v`` (0-2) varies a detail."""
    if gtype == "t-shirt":  # body with short sleeves; v = sleeve length
        a = (0.22, 0.28, 0.34)[v]
        return [[(0.3, 0.0), (0.41, 0.0), (0.5, 0.08), (0.59, 0.0), (0.7, 0.0), (1.0, a), (0.89, a + 0.12),
                 (0.79, 0.3), (0.79, 1.0), (0.21, 1.0), (0.21, 0.3), (0.11, a + 0.12), (0.0, a)]]
    if gtype == "jacket":  # open V collar, long sleeves hanging beside the body; v = sleeve length
        c = (0.8, 0.87, 0.94)[v]
        return [[(0.33, 0.0), (0.42, 0.0), (0.5, 0.3), (0.58, 0.0), (0.67, 0.0), (0.84, 0.05), (1.0, c),
                 (0.87, c + 0.04), (0.81, 0.3), (0.8, 1.0), (0.2, 1.0), (0.19, 0.3), (0.13, c + 0.04), (0.0, c),
                 (0.16, 0.05)]]
    if gtype == "dress":  # narrow bodice, waist, flaring to a wide hem; v = bodice width
        t = (0.3, 0.36, 0.42)[v] / 2
        return [[(0.5 - t, 0.0), (0.5 + t, 0.0), (0.5 + t + 0.02, 0.18), (0.5 + t - 0.04, 0.34), (1.0, 0.97),
                 (0.75, 1.0), (0.5, 0.98), (0.25, 1.0), (0.0, 0.97), (0.5 - t + 0.04, 0.34), (0.5 - t - 0.02, 0.18)]]
    if gtype == "skirt":  # waistband, straight flare to the hem; v = waist width
        b = (0.5, 0.58, 0.66)[v] / 2
        return [[(0.5 - b, 0.0), (0.5 + b, 0.0), (0.5 + b, 0.08), (1.0, 1.0), (0.0, 1.0), (0.5 - b, 0.08)]]
    return _outline(FAMILIES[gtype], v)  # trousers, scarf: one type per family


def _type_silhouette(rng: random.Random, gtype: str, w: int, h: int) -> tuple[Image.Image, Image.Image]:
    """Masks ``(inside=1, inside=255)`` of the type's own outline at a random size, proportion, detail and
    position (3 x 3 x 3 cached variants per type and image size)."""
    return _placed_mask(rng, "type-sil", gtype, w, h, _TYPE_SHAPES[gtype], _type_outline)


def _placed_mask(rng: random.Random, kind: str, name: str, w: int, h: int, shapes, outline) -> tuple[
        Image.Image, Image.Image]:
    """Masks ``(inside=1, inside=255)`` of ``outline(name, variant)`` scaled by one of ``shapes`` (ratios,
    heights) and placed at a random position; the 3 x 3 x 3 variants per (kind, name, size) are cached."""
    key = (kind, name, w, h, _ri(rng, 3), _ri(rng, 3), _ri(rng, 3))
    cached = _MASKS.get(key)
    if cached is None:
        ratios, heights = shapes
        ratio = ratios[key[4]]
        bh = heights[key[5]] * h
        bw = bh / ratio
        if bw > 0.92 * w:  # narrow canvas: shrink, keeping the proportions
            bw = 0.92 * w
            bh = bw * ratio
        x0, y0 = (w - bw) / 2, (h - bh) / 2
        m = Image.new("L", (w, h), 0)
        d = ImageDraw.Draw(m)
        for poly in outline(name, key[6]):
            d.polygon([(x0 + u * bw, y0 + v * bh) for u, v in poly], fill=255)
        slack = (max(0, int((w - bw) / 2) - 1), max(0, int((h - bh) / 2) - 1))
        cached = (m.point(lambda v: 1 if v > 127 else 0), m, slack)
        _MASKS[key] = cached  # type: ignore[assignment]
    m01, m255, (sx, sy) = cached  # type: ignore[misc]
    dx, dy = _ri(rng, 2 * sx + 1) - sx, _ri(rng, 2 * sy + 1) - sy  # random position (crop pads with 0)
    box = (dx, dy, dx + w, dy + h)
    return m01.crop(box), m255.crop(box)


def _realistic_image(rng: random.Random, noise: RealisticNoise, gtype: str, pattern: str, colour_rgb,
                     size: tuple[int, int], bank, quality: int) -> bytes:
    """The realistic mode's picture: the type's own outline (or a fabric close-up), the pattern (maybe washed
    out or faint), maybe a covering box and a tag; palette 0 background, 1 garment, 2 ink, 3 tag, 4 cover."""
    w, h = size
    bg = _jit(rng, (236, 234, 230), 14)
    base = _jit(rng, colour_rgb, 18)
    ink = _accent(rng, base)
    if rng.random() < noise.image_type_hidden:  # close-up: the garment fills the frame
        sil01, sil255 = Image.new("L", (w, h), 1), Image.new("L", (w, h), 255)
    else:
        sil01, sil255 = _type_silhouette(rng, gtype, w, h)
    if pattern != "plain" and rng.random() < noise.image_pattern_hidden:
        pattern = "plain"  # washed out: looks plain
    key = _pattern_key(rng, pattern)
    if key is not None and rng.random() < noise.image_pattern_faint:  # low contrast: ink near the garment colour
        t = 0.3 + 0.25 * rng.random()
        ink = tuple(int(b + (c - b) * t) for b, c in zip(base, ink))  # type: ignore[assignment]
    idx = _patterned(rng, sil01, sil255, key)
    cover = _jit(rng, (200, 196, 190) if rng.random() < 0.5 else (70, 66, 64), 20)
    if rng.random() < noise.image_occluded:  # a box covering part of the picture
        bw, bh = int(w * (0.3 + 0.2 * rng.random())), int(h * (0.2 + 0.15 * rng.random()))
        bx, by = _ri(rng, w - bw + 1), _ri(rng, h - bh + 1)
        idx.paste(4, (bx, by, bx + bw, by + bh))
    _maybe_tag(rng, idx)
    idx.putpalette(bytes((*bg, *base, *ink, *_jit(rng, (250, 250, 250), 5), *cover)))
    return _noisy_jpeg(rng, idx, bank, quality)


# -------------------------------------------------------------------------------------------------------------
# items


class _Config:
    def __init__(self, seed: int, noise: float, image_size: tuple[int, int], test_fraction: float,
                 languages: Sequence[str], quality: int, images_dir: str, mode: str = "complementary") -> None:
        self.mode = mode
        self.seed = seed
        self.noise = noise
        self.image_size = image_size
        self.test_fraction = test_fraction
        self.quality = quality
        self.images_dir = images_dir
        all_langs = _build_languages(seed)
        self.langs = [all_langs[c] for c in languages]
        self.lang_weights = [_DEFAULT_LANGUAGE_WEIGHTS.get(c, 0.1) for c in languages]
        self.brands = _brands(seed)
        w = np.array([c[2] for c in CLASSES], dtype=float)
        self.prior = w / w.sum()
        self.cdf = list(np.cumsum(self.prior)[:-1])
        self.offset = random.Random(f"fluid-synthetic-weyl:{seed}").random()
        self.machine_share = max(_MACHINE_SHARE, noise)
        lw = np.asarray(self.lang_weights, dtype=float)
        self.lang_cdf = list(np.cumsum(lw / lw.sum())[:-1])
        # wrong labels follow the prior of the other classes
        self.wrong_cdf = []
        for k in range(len(CLASSES)):
            p = self.prior.copy()
            p[k] = 0.0
            self.wrong_cdf.append(list(np.cumsum(p / p.sum())[:-1]))
        self.prefix = images_dir + os.sep

    def __getstate__(self):  # rebuilt in workers (cheap) instead of pickling the vocabularies
        return (self.seed, self.noise, self.image_size, self.test_fraction, [L.code for L in self.langs],
                self.quality, self.images_dir, self.mode)

    def __setstate__(self, state):
        self.__init__(*state)


def _item(i: int, cfg: _Config) -> tuple[str, list[Any], tuple[str, str, str] | None]:
    """Make item ``i``: write its image, return ``(split, csv row, noisy-label row or None)``.

    The class (a low-discrepancy sequence), the split, the language, the colour and the material are the same
    in both modes (the first draws of the item's RNG). The complementary mode then draws everything else from
    that RNG, in the order of earlier versions; the realistic mode draws brand and label noise from it, the
    text and the image from two RNGs of their own (so the two sides are independent given the class)."""
    rng = random.Random(f"fluid-synthetic:{cfg.seed}:{i}")
    u = (cfg.offset + i * 0.6180339887498949) % 1.0  # low-discrepancy: class counts follow the weights closely
    k = bisect_right(cfg.cdf, u)
    gtype, pattern, _ = CLASSES[k]
    split = "test" if rng.random() < cfg.test_fraction else "train"
    L = cfg.langs[bisect_right(cfg.lang_cdf, rng.random())]
    c = _ri(rng, len(_COLOURS))
    colour_word, colour_rgb = L.colours[c], _COLOURS[c][1]
    material = _pick(rng, L.materials)
    bank = _noise_bank(cfg.seed, cfg.image_size)
    if cfg.mode == "complementary":
        type_nouns = L.types[TYPES.index(gtype)]
        name = _name(rng, L, _pick(rng, type_nouns), colour_word, material, _pick(rng, cfg.brands))
        description = _description(rng, L, type_nouns, colour_word, material)
        jpeg = _image(rng, FAMILIES[gtype], pattern, colour_rgb, cfg.image_size, bank, cfg.quality)
    else:
        brand = _pick(rng, cfg.brands)
        name, description = _realistic_text(random.Random(f"fluid-synthetic-text:{cfg.seed}:{i}"), L,
                                            REALISTIC_NOISE, gtype, pattern, colour_word, material, brand)
        jpeg = _realistic_image(random.Random(f"fluid-synthetic-image:{cfg.seed}:{i}"), REALISTIC_NOISE, gtype,
                                pattern, colour_rgb, cfg.image_size, bank, cfg.quality)

    given = k
    source = HUMAN
    if split == "train" and rng.random() < cfg.machine_share:
        source = MACHINE
        if rng.random() < cfg.noise / cfg.machine_share:
            given = bisect_right(cfg.wrong_cdf[k], rng.random())
    item_id, image_id = str(100000 + i), str(500000 + i)
    fd = os.open(f"{cfg.prefix}{image_id}.jpg", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, jpeg)
    finally:
        os.close(fd)
    row = [item_id, image_id, name, description, L.code, str(1000 + given), _category_name(given), source]
    noisy = (item_id, str(1000 + k), str(1000 + given)) if split == "train" else None
    return split, row, noisy


def _category_name(k: int) -> str:
    gtype, pattern, _ = CLASSES[k]
    return f"{pattern} {gtype}"


_WORKER_CFG: _Config | None = None


def _init_worker(cfg: _Config) -> None:
    global _WORKER_CFG
    _WORKER_CFG = cfg


def _chunk(bounds: tuple[int, int]):
    assert _WORKER_CFG is not None
    return [_item(i, _WORKER_CFG) for i in range(*bounds)]


def write_synthetic(
    out_dir: str | os.PathLike,
    *,
    items: int = 3000,
    seed: int = 0,
    noise: float = 0.1,
    image_size: tuple[int, int] = (96, 128),
    test_fraction: float = 0.2,
    languages: Sequence[str] = DEFAULT_LANGUAGES,
    workers: int = 1,
    jpeg_quality: int = 85,
    overwrite: bool = False,
    mode: str = "realistic",
) -> Path:
    """Write a synthetic catalogue to ``out_dir/GLAMI-1M-dataset`` and return that folder.

    Files: ``GLAMI-1M-train.csv``, ``GLAMI-1M-test.csv`` (GLAMI columns), ``images/<image_id>.jpg`` and the
    sidecars ``noisy_labels.csv`` (train rows: item_id, true_category, given_category) and ``synthetic.json``
    (the arguments below, the realistic mode's probabilities and the mode's caps).

    Args:
        mode: ``"realistic"`` (default): text and image each show the class with their own noise (text only
            can reach ~78% accuracy, image only ~87%, both ~97%: ``modality_caps``, ``fusion_cap``);
            ``"complementary"``: the text shows only the garment type, the image only the pattern and the
            silhouette family, so the class needs both (caps ~61% and ~75%, both 100%); byte-identical to the
            catalogues of earlier versions.
        items: total items (train + test); ``test_fraction`` of them (drawn per item) go to test.
        seed: everything derives from it; the same seed (and arguments) gives byte-identical files.
        noise: share of *train* rows whose label is wrong (all of them ``machine``-labelled).
        image_size: ``(width, height)`` of the JPEGs.
        languages: GLAMI ``geo`` codes to use (default six: cz, ro, hu, es, tr, gr).
        workers: processes for large catalogues (output is identical for any value).
        overwrite: replace an existing synthetic catalogue in ``out_dir`` (refuses to delete a folder that
            does not look like one written by this function).
    """
    _check_mode(mode)
    if items < 1:
        raise ValueError("items must be >= 1")
    if not 0.0 <= noise < 1.0:
        raise ValueError("noise must be in [0, 1)")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError("test_fraction must be in (0, 1)")
    bad = [c for c in languages if c not in _PROFILES]
    if bad or not languages:
        raise ValueError(f"unknown language codes {bad}; use GLAMI geo codes {GLAMI_GEOS}")
    w, h = int(image_size[0]), int(image_size[1])
    if w < 16 or h < 16:
        raise ValueError("image_size must be at least 16x16")

    root = Path(out_dir) / GLAMI_DIR
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{root} exists and is not empty (pass overwrite=True to replace it)")
        if not (root / NOISY_LABELS_FILE).is_file():
            raise FileExistsError(f"{root} does not look like a synthetic catalogue; refusing to delete it")
        shutil.rmtree(root)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    cfg = _Config(int(seed), float(noise), (w, h), float(test_fraction), tuple(languages), int(jpeg_quality),
                  str(images), mode)

    if workers > 1:
        import multiprocessing as mp

        size = max(64, math.ceil(items / (workers * 8)))
        bounds = [(s, min(items, s + size)) for s in range(0, items, size)]
        with mp.get_context().Pool(workers, initializer=_init_worker, initargs=(cfg,)) as pool:
            results = [r for chunk in pool.imap(_chunk, bounds) for r in chunk]
    else:
        results = [_item(i, cfg) for i in range(items)]

    header = list(GLAMI_COLUMNS)
    files = {s: open(root / glami_csv_name(s), "w", encoding="utf-8", newline="") for s in ("train", "test")}
    try:
        writers = {s: csv.writer(f, lineterminator="\n") for s, f in files.items()}
        for wr in writers.values():
            wr.writerow(header)
        for split, row, _ in results:
            writers[split].writerow(row)
    finally:
        for f in files.values():
            f.close()
    with open(root / NOISY_LABELS_FILE, "w", encoding="utf-8", newline="") as f:
        wr = csv.writer(f, lineterminator="\n")
        wr.writerow(["item_id", "true_category", "given_category"])
        wr.writerows(noisy for _, _, noisy in results if noisy is not None)
    text_cap, image_cap = modality_caps(mode=mode)
    info = {
        "generator": "fluid.data.synthetic.write_synthetic", "mode": mode, "seed": int(seed), "items": int(items),
        "noise": float(noise), "image_size": [w, h], "test_fraction": float(test_fraction),
        "languages": list(languages), "jpeg_quality": int(jpeg_quality),
        "realistic_noise": asdict(REALISTIC_NOISE) if mode == "realistic" else None,
        "caps": {"text": text_cap, "image": image_cap, "both": fusion_cap(mode=mode)},
    }
    (root / SIDECAR_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return root
