"""Where a run keeps its Lightning checkpoints, and how they are read back (no code runs while loading)."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

CHECKPOINT_DIR = "checkpoints"
LAST_NAME, BEST_NAME = "last", "best"
LAST_CHECKPOINT = f"{LAST_NAME}.ckpt"  # written every epoch and on interruption; a resumed run starts here


def last_checkpoint(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT


def load_checkpoint(path: Path) -> dict:
    """Loads a checkpoint with ``weights_only=True`` (plain tensors and containers; no code can run) and turns
    torch's error for anything else (a pickled object, a truncated file) into one that names the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, TypeError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"{path}: refused to load this checkpoint: it is not a plain PyTorch weights file (it "
                         f"may carry a pickled Python object, which FLUID never unpickles, or be truncated): "
                         f"{first_line}") from None
