r"""Robustness of the demo FLUID model: accuracy on the synthetic catalogue's test split with full input, without
each modality, and under every corruption of :mod:`fluid.data.corruptions` — for models trained with different
``modality_dropout`` values.

    python benchmarks/robustness.py          # the demo's scale: 2,000 items, 10 epochs, dropout 0 / 0.1 / 0.3
    python benchmarks/robustness.py --items 1200 --epochs 6 --dropout 0.3 0 --severities 3 \
        --image-size 32 --small      # what docs/robustness.md reports (a loaded machine)

Writes ``benchmarks/results/robustness.json`` (and prints a table). Deterministic on CPU for a seed.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from fluid import Classifier
from fluid.atomic import write_json_atomic
from fluid.config import demo_config
from fluid.data.corruptions import CORRUPTIONS
from fluid.data.synthetic import write_synthetic

RESULTS = Path(__file__).parent / "results" / "robustness.json"
KEYS = ("accuracy", "macro_f1", "top5_accuracy", "n_items")


def _classifier(run_dir: Path, seed: int, epochs: int | None, dropout: float, image_size: int | None,
                small: bool) -> Classifier:
    config = demo_config("fluid", seed=seed, epochs=epochs, modality_dropout=dropout)
    image = config.encoder_overrides.setdefault("image", {})
    if image_size is not None:  # a cheaper image encoder: a smaller input, fewer grid tokens
        image.update(image_size=image_size)
    if small:  # the smoke-test encoder sizes (width 32, one layer) and batch 16: for a loaded 2-core machine
        config.encoder_overrides["text"].update(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                intermediate_size=64)
        image.update(hidden_size=32, widths=[8, 8, 16])
        config.batch_size, config.max_text_length = 16, 64
    return Classifier.from_config(config, path=run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=None, help="default: the auto recipe's choice")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dropout", type=float, nargs="+", default=[0.0, 0.1, 0.3],
                        help="modality_dropout values to train with (the demo uses 0.1)")
    parser.add_argument("--severities", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--image-size", type=int, default=None,
                        help="input size of the tiny image encoder (default: the demo's); smaller is faster")
    parser.add_argument("--small", action="store_true",
                        help="smoke-test encoder sizes (width 32, 1 layer), batch 16, 64 text tokens: much faster")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    work = Path(tempfile.mkdtemp(prefix="fluid-robustness-"))
    data = write_synthetic(work / "data", items=args.items, seed=args.seed)
    conditions = [("full", {})] + [(f"without-{m}", {"drop_modality": m}) for m in ("image", "text")]
    conditions += [(f"{name}:{s}", {"corrupt": f"{name}:{s}"}) for name in CORRUPTIONS for s in args.severities]
    results: dict = {"items": args.items, "epochs": args.epochs or "recipe auto", "seed": args.seed, "model": "fluid (demo_config)",
                     "image_encoder_input": {"image_size": args.image_size}
                     if args.image_size else "demo default", "small_encoders": args.small,
                     "command": "python benchmarks/robustness.py " + " ".join(sys.argv[1:]),
                     "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
                     "torch": torch.__version__, "models": {}}
    for dropout in args.dropout:
        name = f"modality_dropout={dropout:g}"
        started = time.perf_counter()
        clf = _classifier(work / name, args.seed, args.epochs, dropout, args.image_size, args.small).fit(data, progress=False)
        train_seconds = time.perf_counter() - started
        rows = {}
        for condition, kwargs in conditions:
            metrics = clf.evaluate(data, **kwargs)
            rows[condition] = {k: metrics[k] for k in KEYS}
            print(f"{name:22s} {condition:22s} acc {100 * metrics['accuracy']:5.1f}  "
                  f"macro-F1 {100 * metrics['macro_f1']:5.1f}", flush=True)
        full = rows["full"]["accuracy"]
        for row in rows.values():
            row["accuracy_drop_points"] = round(100 * (full - row["accuracy"]), 2)
        results["models"][name] = {"train_seconds": round(train_seconds, 1), "test": rows}
        _write(args.out, results)  # after each model, so a long run that is stopped keeps what it measured
        print(f"wrote {args.out}", flush=True)


def _write(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, results)


if __name__ == "__main__":
    main()
