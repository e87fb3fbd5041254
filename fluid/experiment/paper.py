"""The FLUID paper's numbers and ordering statements (arXiv 2508.07264, Tables 1-3 on GLAMI-1M).

Source: the paper's full text and the headline table in /work/shared/seeds/README.md ("Paper headline numbers
on GLAMI-1M", Accuracy / macro Precision / Recall / F1 in %), copied here as fractions.
"""

from __future__ import annotations

PAPER_SOURCE = ("FLUID, arXiv 2508.07264, Tables 1-3 (GLAMI-1M test split; accuracy and macro precision / "
                "recall / F1)")

#: our system name -> (paper row name, paper table)
PAPER_ROWS: dict[str, tuple[str, str]] = {
    "early-fusion": ("Early-Fusion", "Table 1"),
    "improved-attention": ("Improved-Attention", "Table 1"),
    "blip2": ("Modified BLIP2", "Table 1"),
    "fluid": ("FLUID", "Tables 1-3"),
    "image-only": ("Image-only", "Table 2"),
    "text-only": ("Text-only", "Table 2"),
    "fluid-no-contrastive": ("w/o contrastive", "Table 3"),
    "fluid-no-qtransform": ("w/o Q-Transform", "Table 3"),
    "fluid-no-gating": ("w/o gating", "Table 3"),
    "fluid-no-bottleneck": ("w/o Q-Bottleneck", "Table 3"),
    "fluid-no-moe": ("w/o MoE", "Table 3"),
}

_PERCENT = {  # Acc, P, R, F1 (%)
    "early-fusion": (63, 53, 40, 41),
    "improved-attention": (66, 56, 42, 45),
    "blip2": (78, 64, 62, 63),
    "image-only": (46, 28, 22, 21),
    "text-only": (73, 63, 54, 55),
    "fluid": (91, 87, 87, 87),
    "fluid-no-contrastive": (75, 68, 66, 67),
    "fluid-no-qtransform": (87, 83, 80, 81),
    "fluid-no-gating": (88, 85, 84, 84),
    "fluid-no-bottleneck": (75, 67, 63, 64),
    "fluid-no-moe": (88, 85, 84, 85),
}
PAPER_METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1")

#: our system name -> {metric: fraction}
PAPER_RESULTS: dict[str, dict[str, float]] = {
    system: dict(zip(PAPER_METRICS, (v / 100.0 for v in values))) for system, values in _PERCENT.items()
}

ABLATIONS = ("fluid-no-contrastive", "fluid-no-qtransform", "fluid-no-gating", "fluid-no-bottleneck",
             "fluid-no-moe")
PRIOR_BASELINES = ("early-fusion", "improved-attention", "blip2")
