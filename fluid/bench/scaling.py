"""One scaling measurement, run in its own process by ``fluid bench``: write a synthetic catalogue of N items
(in a child process, so the generator's own memory is not counted), train one epoch of the demo FLUID
configuration with :class:`fluid.Classifier`, and report time and memory: the process's peak RSS, its peak
anonymous RSS (without file-backed pages such as memory-mapped caches) and, on a GPU, peak CUDA memory.

``python -m fluid.bench.scaling --items N --workdir DIR --out FILE``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from pathlib import Path

from fluid.bench.measure import PeakMemory, mib, peak_rss_bytes


def measure(items: int, workdir: Path) -> dict:
    import torch

    from fluid import Classifier
    from fluid.config import demo_config
    from fluid.data.synthetic import write_synthetic

    started = time.perf_counter()
    data = workdir / "data"
    writer = multiprocessing.get_context("spawn").Process(
        target=write_synthetic, args=(data,), kwargs={"items": items, "seed": 0, "overwrite": True})
    writer.start()
    writer.join()
    if writer.exitcode != 0:
        raise RuntimeError(f"writing the {items}-item synthetic catalogue failed (exit code {writer.exitcode})")
    write_seconds = time.perf_counter() - started
    rss_before = peak_rss_bytes()
    classifier = Classifier.from_config(demo_config("fluid", epochs=1, floor=False), path=workdir / "run")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with PeakMemory(device, interval=0.05) as peak:
        classifier.fit(data, progress=False)
    train_items = sum(classifier.metrics_["train_label_counts"].values())
    seconds = classifier.metrics_["train_seconds"]
    return {"items": items, "train_items": train_items, "epoch_seconds": round(seconds, 2),
            "seconds_per_item": round(seconds / train_items, 6), "write_catalogue_seconds": round(write_seconds, 1),
            "peak_rss_mib": mib(peak_rss_bytes()), "peak_anon_rss_mib": mib(peak.anon_rss_bytes),
            "peak_cuda_mib": mib(peak.cuda_bytes), "rss_before_training_mib": mib(rss_before),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    result = measure(args.items, args.workdir)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
