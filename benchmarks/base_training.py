"""Base-size (BERT-base + ViT-B/16 + paper-size head) training and inference, reference vs FLUID's defaults
and a few variants, on a bigger workload than ``fluid bench``'s base rows: the suite's own
``training_section`` with batch 32 and 16 timed batches. Meant for a GPU (on 2 CPU cores it takes hours).

    python benchmarks/base_training.py --items 1024 --out benchmarks/results/base-training-gpu.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from fluid.bench.suite import Plan, _Data, training_section
from fluid.bench.workload import DEFAULTS, REFERENCE


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1024, help="training items of the epoch (default 1024)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the rows")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    half = "bf16" if device.type == "cpu" or torch.cuda.is_bf16_supported() else "fp16"
    setups = [REFERENCE, replace(REFERENCE, name=f"reference + {half} autocast", autocast=half), DEFAULTS,
              replace(DEFAULTS, name=f"fluid defaults + {half} autocast", autocast=half),
              replace(DEFAULTS, name="fluid defaults + 4 workers", workers=4)]
    with tempfile.TemporaryDirectory() as tmp:
        data = _Data(Path(tmp) / "data", items=args.items * 5 // 4 + 200)
        rows = training_section(data, "base", setups, device, Plan(batch_size=32, latency_items=50),
                                items=args.items, max_batches=16, log=print)
    keys = ("setup", "train_items_per_s", "cache_build_seconds", "first_epoch_seconds", "later_epoch_seconds",
            "first_epoch_speedup", "run_15_epochs_speedup", "inference_items_per_s", "p50_ms", "peak_cuda_mib")
    for row in rows:
        print({k: row[k] for k in keys}, flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps({"device": torch.cuda.get_device_name(device) if device.type == "cuda"
                                        else "cpu", "items": args.items, "rows": rows}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
