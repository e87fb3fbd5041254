"""What the benchmarks run on: product texts of realistic length, encoder sizes, and the configurations compared.

Texts: the synthetic catalogue's name + short description, extended so lengths follow a product-catalogue
shape: 20% of items are a name only, the rest get a description of log-normally distributed length (median
~33 words, long tail, capped at 400 words) drawn from the catalogue's own vocabulary. Encoders are built from
configs with random weights (timing does not need trained weights, and nothing is downloaded): ``tiny`` is the
demo size, ``base`` the paper's (BERT-base text, ViT-B/16 at 224 px).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd

from fluid.config import DEMO_ENCODER, DEMO_HEAD

SIZES: dict[str, dict] = {
    "tiny": {"text": dict(DEMO_ENCODER), "image": dict(DEMO_ENCODER),
             "head": {k: v for k, v in DEMO_HEAD.items() if k != "contrastive_weight"}},
    "base": {"text": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                      "intermediate_size": 3072},
             "image": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                       "intermediate_size": 3072, "image_size": 224, "patch_size": 16},
             "head": {}},  # the paper's head: width 768, 32 queries, 16 experts, top-2
}


@dataclass(frozen=True)
class Setup:
    """One training/inference configuration. ``reference`` is the authors' code: both encoders fine-tuned,
    every text padded to 512 tokens, fp32, eager attention, features recomputed every epoch."""

    name: str
    freeze: bool = False
    pad_to_max: bool = True
    attention: str = "eager"
    autocast: str | None = None  # "bf16" or "fp16"
    cache: bool = False
    bucketing: bool = False
    workers: int = 0
    compile: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


REFERENCE = Setup("reference")
#: FLUID's defaults for pretrained encoders (RunConfig: frozen, feature cache, dynamic padding, length
#: bucketing; transformers' default SDPA attention; fp32 on CPU).
DEFAULTS = Setup("fluid defaults", freeze=True, pad_to_max=False, attention="sdpa", cache=True, bucketing=True)


def single_optimisations(device_type: str, *, include_compile: bool = True) -> list[Setup]:
    """The reference with one change each, then FLUID's defaults. ``include_compile=False`` leaves out
    ``torch.compile``, whose compilation takes minutes on a small CPU."""
    half = "bf16" if device_type == "cpu" or _bf16_cuda() else "fp16"
    return [
        REFERENCE,
        replace(REFERENCE, name="+ frozen encoders", freeze=True),
        replace(REFERENCE, name="+ frozen + feature cache", freeze=True, cache=True),
        replace(REFERENCE, name="+ dynamic padding", pad_to_max=False),
        replace(REFERENCE, name="+ dynamic padding + length bucketing", pad_to_max=False, bucketing=True),
        replace(REFERENCE, name="+ SDPA attention", attention="sdpa"),
        replace(REFERENCE, name=f"+ {half} autocast", autocast=half),
        replace(REFERENCE, name="+ 2 DataLoader workers, pinned memory", workers=2),
        *([replace(REFERENCE, name="+ torch.compile (head)", compile=True)] if include_compile else []),
        DEFAULTS,
    ]


def _bf16_cuda() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def product_texts(frame: pd.DataFrame, seed: int = 0) -> pd.Series:
    """``frame["text"]`` with catalogue-shaped description lengths (see the module docstring)."""
    rng = np.random.default_rng(seed)
    vocabulary = sorted({w for t in frame["text"].dropna() for w in str(t).split()})
    names = [str(t).split(".")[0] if isinstance(t, str) else "" for t in frame["text"]]
    out = []
    for name in names:
        if rng.random() < 0.2:
            out.append(name)
            continue
        words = int(min(400, max(3, rng.lognormal(mean=np.log(33), sigma=0.9))))
        out.append(name + ". " + " ".join(rng.choice(vocabulary, size=words)) + ".")
    return pd.Series(out, index=frame.index)
