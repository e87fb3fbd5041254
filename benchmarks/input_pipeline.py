"""The CPU side of FLUID's input pipeline, per item: what bounds a GPU's feature-cache build and first epoch.

On a GPU the encoders are fast and the first epoch with frozen encoders is the feature-cache build, whose speed
is set by the CPU work per item: decode the JPEG, run the image processor, tokenise the text (issue 8, the H100
run in BENCHMARKS.md). This script times those stages one CPU thread at a time on the synthetic catalogue
written at GLAMI-1M's default image size (228 x 298 JPEGs) with catalogue-shaped texts
(:func:`fluid.bench.workload.product_texts`), for the ``base`` encoders' preprocessing (ViT-B/16 at 224 px) and
the ``tiny`` demo encoders':

* ``decode``: :func:`fluid.data.images.load_image` (read + decode + RGB);
* ``processor on the CPU``: the encoder's own image processor, rescale and normalisation included (what every
  batch cost before the normalisation moved to the encoder's device);
* ``preprocessor``: :class:`fluid.encoders.image.ImagePreprocessor` as the DataLoader runs it now (resize/crop
  only, uint8 pixels), and ``normalise``: :meth:`ImagePreprocessor.pixel_values` on the CPU (on a GPU it runs
  there);
* ``tokenise``: the text encoder's preprocessor (dynamic padding).

Both image variants run in the same process on the same images, alternating, best of ``--repeats``; the bytes
per item a batch carries to the device are reported too. ``items/s per CPU core`` is 1000 / (decode + image
preprocessing + tokenise, ms): the most one DataLoader worker can feed an encoder that costs nothing.

    OMP_NUM_THREADS=1 python benchmarks/input_pipeline.py --items 256 --json benchmarks/results/input_pipeline.json
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from fluid.atomic import write_json_atomic
from fluid.bench.workload import SIZES, product_texts
from fluid.data import read_glami
from fluid.data.images import load_image
from fluid.data.synthetic import write_synthetic
from fluid.encoders import build_image_encoder, build_text_encoder

GLAMI_IMAGE_SIZE = (228, 298)  # width x height of GLAMI-1M's default image version


def _best_ms_per_item(fn, n_items: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return 1000.0 * best / n_items


def measure(size: str, paths: list[str], texts: list[str], batch_size: int, repeats: int) -> dict:
    """Per-item milliseconds of each stage for one encoder size (see the module docstring)."""
    dims = SIZES[size]
    image = build_image_encoder("tiny-vit", **dims["image"])
    text = build_text_encoder("tiny", corpus=texts, max_length=512, **dims["text"])
    pre = image.preprocessor
    if not pre.deferred:
        raise SystemExit(f"the {size} image processor does not defer its normalisation: nothing to compare")
    images = [load_image(p) for p in paths]
    batches = [images[a:a + batch_size] for a in range(0, len(images), batch_size)]
    text_batches = [texts[a:a + batch_size] for a in range(0, len(texts), batch_size)]
    n = len(images)

    def processor_on_cpu():
        for b in batches:
            torch.as_tensor(image.processor(images=b, return_tensors="pt")["pixel_values"], dtype=torch.float32)

    prepared = [pre(b) for b in batches]

    def preprocessor():
        for b in batches:
            pre(b)

    def normalise():
        for p in prepared:
            pre.pixel_values(p)

    ms = {"decode": _best_ms_per_item(lambda: [load_image(p) for p in paths], n, repeats)}
    full, deferred, norm = [], [], []
    for _ in range(repeats):  # alternating, so a change in the machine's load hits both variants
        full.append(_best_ms_per_item(processor_on_cpu, n, 1))
        deferred.append(_best_ms_per_item(preprocessor, n, 1))
        norm.append(_best_ms_per_item(normalise, n, 1))
    ms["processor_on_cpu"], ms["preprocessor"], ms["normalise"] = min(full), min(deferred), min(norm)
    ms["tokenise"] = _best_ms_per_item(lambda: [text.preprocessor(t) for t in text_batches], n, repeats)
    reference = torch.as_tensor(image.processor(images=batches[0], return_tensors="pt")["pixel_values"])
    max_diff = float((pre.pixel_values(prepared[0]) - reference).abs().max())
    pixels = int(torch.tensor(image.pixel_shape).prod())
    before = ms["decode"] + ms["processor_on_cpu"] + ms["tokenise"]
    gpu = ms["decode"] + ms["preprocessor"] + ms["tokenise"]
    cpu = gpu + ms["normalise"]
    return {
        "size": size,
        "pixel_shape": list(image.pixel_shape),
        "ms_per_item": {k: round(v, 3) for k, v in ms.items()},
        "image_preprocessing_speedup": {
            "normalised_on_the_device": round(ms["processor_on_cpu"] / ms["preprocessor"], 2),
            "normalised_on_the_cpu": round(ms["processor_on_cpu"] / (ms["preprocessor"] + ms["normalise"]), 2),
        },
        "bytes_per_image_to_device": {"before": 4 * pixels, "now": pixels},
        "items_per_s_per_cpu_core": {"before": round(1000 / before, 1),
                                     "now, normalised on a GPU": round(1000 / gpu, 1),
                                     "now, normalised on the CPU": round(1000 / cpu, 1)},
        "max_abs_diff_to_processor": max_diff,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=256)
    parser.add_argument("--size", action="append", choices=sorted(SIZES), help="repeatable; default base and tiny")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    report = {
        "benchmark": "input pipeline, CPU side per item",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "items": args.items, "batch_size": args.batch_size, "repeats": args.repeats,
        "image_size": list(GLAMI_IMAGE_SIZE), "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="fluid-pipeline-") as scratch:
        root = write_synthetic(Path(scratch), items=int(args.items / 0.75) + 10, seed=args.seed,
                               image_size=GLAMI_IMAGE_SIZE, overwrite=True)
        train = read_glami(root, split="train")
        frame = train.frame.iloc[:args.items]
        paths = [str(Path(train.image_root) / p) for p in frame["image"]]
        texts = product_texts(frame, args.seed).tolist()
        for size in args.size or ["base", "tiny"]:
            print(f"{size}: {len(paths)} items, batch {args.batch_size}, best of {args.repeats}", file=sys.stderr)
            report["runs"].append(measure(size, paths, texts, args.batch_size, args.repeats))
    for r in report["runs"]:
        ms = r["ms_per_item"]
        print(f"\n{r['size']} preprocessing (pixels {'x'.join(map(str, r['pixel_shape']))}), ms per item:")
        for stage, value in ms.items():
            print(f"  {stage:<17} {value:8.3f}")
        print(f"  image preprocessing speed-up: {r['image_preprocessing_speedup']}")
        print(f"  bytes per image to the device: {r['bytes_per_image_to_device']}")
        print(f"  items/s per CPU core: {r['items_per_s_per_cpu_core']}")
        print(f"  max |normalised - processor|: {r['max_abs_diff_to_processor']:.3g}")
    if args.json:
        write_json_atomic(args.json, report, indent=1)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
