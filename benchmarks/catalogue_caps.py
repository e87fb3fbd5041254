"""The best accuracy any classifier can reach on each catalogue of benchmarks/quality.py: exact Bayes caps from
the generators' own probabilities (no sampling), for a reader of the text alone, of the image alone and of both.

    python benchmarks/catalogue_caps.py            # prints a table, writes benchmarks/results/catalogue_caps.json

A cap treats every drawn cue as readable (a faint pattern, a half-covered outline): an upper bound for a real
model, on clean test labels. The small-english, english-pretrained and multilingual texts name the garment type
in 90 % of items and the pattern in 60 % (offline-presets: 25 %; product-pages: both in 98 %), nothing else about
the class; their images are the realistic mode's drawings (offline-presets: the complementary mode's, which show
the garment's family and pattern but not the type within the family; product-pages: 3 % of them missing).
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
OUT = ROOT / "benchmarks" / "results" / "catalogue_caps.json"
TYPE_NAMED = 0.9  # english_text / multilingual_text name the garment type with this probability


def _text_likelihoods(keep: list[int], pattern_share: float, type_named: float = TYPE_NAMED) -> np.ndarray:
    """P(text evidence | class) for texts naming the type (``type_named``) and the pattern (``pattern_share``)."""
    from fluid.data.synthetic import CLASSES, PATTERNS, TYPES

    evidence = list(itertools.product([None, *TYPES], [None, *PATTERNS]))
    out = np.zeros((len(evidence), len(keep)))
    for j, k in enumerate(keep):
        gtype, pattern, _ = CLASSES[k]
        for s, (said_type, said_pattern) in enumerate(evidence):
            p_type = 1 - type_named if said_type is None else type_named * (said_type == gtype)
            p_pattern = 1 - pattern_share if said_pattern is None else pattern_share * (said_pattern == pattern)
            out[s, j] = p_type * p_pattern
    return out


def caps(text: np.ndarray, image: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    """Bayes caps: sum over evidence of the largest P(class) P(evidence | class)."""
    w = weights / weights.sum()
    return {"text": float((text * w).max(axis=1).sum()), "image": float((image * w).max(axis=1).sum()),
            "both": float((text[:, None, :] * image[None, :, :] * w).max(axis=2).sum())}


def all_caps() -> dict[str, dict[str, float]]:
    from offline_presets import PAGE_IMAGE_MISSING, PAGE_PATTERN_NAMED, PAGE_TYPE_NAMED, TOP_CLASSES

    from fluid.data.synthetic import CLASSES, evidence_likelihoods, fusion_cap, modality_caps

    out = {}
    for mode in ("realistic", "complementary"):
        text, image = modality_caps(mode=mode)
        out[mode] = {"text": text, "image": image, "both": fusion_cap(mode=mode)}
    keep = sorted(range(len(CLASSES)), key=lambda k: -CLASSES[k][2])[:TOP_CLASSES]
    weights = np.array([CLASSES[k][2] for k in keep], dtype=float)
    realistic_images = evidence_likelihoods("realistic")[1][:, keep]
    complementary_images = evidence_likelihoods("complementary")[1][:, keep]
    for name in ("small-english", "english-pretrained", "multilingual"):
        out[name] = caps(_text_likelihoods(keep, 0.6), realistic_images, weights)
    pages = caps(_text_likelihoods(keep, PAGE_PATTERN_NAMED, PAGE_TYPE_NAMED), realistic_images, weights)
    shown, prior = 1 - PAGE_IMAGE_MISSING, weights.max() / weights.sum()  # a missing image leaves the prior / text
    out["product-pages"] = out["pages-pretrained"] = {
        "text": pages["text"], "image": shown * pages["image"] + (1 - shown) * prior,
        "both": shown * pages["both"] + (1 - shown) * pages["text"]}
    out["offline-presets"] = caps(_text_likelihoods(keep, 0.25), complementary_images, weights)
    return out


def main() -> int:
    table = all_caps()
    print(f"{'catalogue':20s} {'text':>6s} {'image':>6s} {'both':>6s}")
    for name, row in table.items():
        print(f"{name:20s} {row['text']:6.3f} {row['image']:6.3f} {row['both']:6.3f}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({k: {m: round(v, 4) for m, v in row.items()} for k, row in table.items()}, indent=1)
                   + "\n", encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
