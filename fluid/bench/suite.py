"""The benchmark suite behind ``fluid bench``: the reference configuration against FLUID's defaults and each
optimisation alone, the FLUID head's share of inference time, accuracy at equal epochs, and scaling.

Every number of one run comes from the same process on the same machine; comparisons are ratios to the
reference measured in that run. Training throughput is measured on a bounded number of batches after one
warm-up batch and extrapolated to epochs (``epoch_seconds``); a cached setup's first epoch adds the time to
build its feature cache, which later epochs do not pay.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from fluid.bench.measure import PeakMemory, mib, percentiles, timed
from fluid.bench.workload import DEFAULTS, REFERENCE, SIZES, Setup, product_texts, single_optimisations

PAPER_EPOCHS = 15


@dataclass(frozen=True)
class Plan:
    """How much work each section does (``quick`` for CI and laptops, ``full`` for the record)."""

    train_items: int = 256
    batch_size: int = 16
    max_batches: int = 6
    latency_items: int = 16
    base_train_items: int = 0  # 0: no base-size training section
    base_max_batches: int = 2
    head_share_batches: tuple[int, int] = (1, 64)
    head_share_repeats: tuple[int, int] = (5, 1)  # per batch size
    head_share_size: str = "base"
    quality_items: int = 600
    quality_epochs: int = 3
    quality_seeds: tuple[int, ...] = (0,)  # initialisation and shuffling seeds; the catalogue stays the same
    scaling_items: tuple[int, ...] = (1000, 4000)

    @classmethod
    def quick(cls) -> "Plan":
        return cls()

    @classmethod
    def full(cls) -> "Plan":
        return cls(train_items=512, max_batches=16, latency_items=50, base_train_items=64, base_max_batches=3,
                   head_share_repeats=(20, 3), quality_items=2000, quality_epochs=8, quality_seeds=(0, 1, 2),
                   scaling_items=(1000, 10_000, 100_000))


# ------------------------------------------------------------------------------------------------ building
def _build_network(size: str, setup: Setup, corpus: list[str], num_classes: int, head_name: str = "fluid",
                   seed: int = 0):
    from fluid.encoders import build_image_encoder, build_text_encoder
    from fluid.model import build_head
    from fluid.training.network import MultimodalNetwork

    dims = SIZES[size]
    text = build_text_encoder("tiny", corpus=corpus, freeze=setup.freeze, max_length=512, seed=seed, **dims["text"])
    image = build_image_encoder("tiny-vit", freeze=setup.freeze, seed=seed, **dims["image"])
    if setup.pad_to_max:
        text.preprocessor.padding = "max_length"
    for encoder in (text, image):
        encoder.model.set_attn_implementation(setup.attention)
    torch.manual_seed(seed)
    head = build_head(head_name, num_classes, image_dim=image.dim, text_dim=text.dim, **dims["head"])
    return MultimodalNetwork(head, text, image)


def _loader(network, frame, image_root, label_map, setup: Setup, batch_size: int, *, shuffle: bool,
            features: dict | None = None, seed: int = 0):
    """The training/inference loader (:func:`fluid.training.loaders.catalogue_loader`) with ``setup``'s knobs."""
    from fluid.training.loaders import catalogue_loader

    return catalogue_loader(network, frame, image_root, label_map, batch_size=batch_size, shuffle=shuffle, seed=seed,
                            bucket=setup.bucketing, num_workers=setup.workers, features=features)


def _autocast(setup: Setup, device: torch.device):
    if setup.autocast is None:
        return torch.autocast(device.type, enabled=False)
    dtype = torch.bfloat16 if setup.autocast == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def _forward(network, batch, compiled_head=None):
    if compiled_head is None:
        return network(batch, aux_losses=network.training)
    image_tokens, image_mask, text_tokens, text_mask = network.encode(batch)
    return compiled_head(image_tokens, text_tokens, image_mask=image_mask, text_mask=text_mask,
                         aux_losses=network.training)


# ------------------------------------------------------------------------------------------------ sections
class _Data:
    """The synthetic catalogue with catalogue-shaped texts, split into train and test frames."""

    def __init__(self, folder: Path, items: int, seed: int = 0):
        from fluid.data import read_glami
        from fluid.data.synthetic import write_synthetic

        root = write_synthetic(folder, items=items, seed=seed, overwrite=True)
        train = read_glami(root, split="train")
        test = read_glami(root, split="test")
        self.image_root = train.image_root
        self.train = train.frame.assign(text=product_texts(train.frame, seed))
        self.test = test.frame.assign(text=product_texts(test.frame, seed + 1))
        self.classes = sorted({str(x) for x in self.train["label"]})
        self.label_map = {c: i for i, c in enumerate(self.classes)}
        self.corpus = self.train["text"].tolist()


def _train_steps(network, loader, device, setup: Setup, *, max_batches: int | None, epochs: int = 1,
                 lr: float = 1e-3) -> tuple[int, float]:
    """Runs training steps; returns (items timed, seconds timed). The first batch is a warm-up (not timed)
    when ``max_batches`` is set; otherwise every step of every epoch is timed."""
    from lightning.fabric.utilities.apply_func import move_data_to_device

    params = [p for p in network.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    compiled = torch.compile(network.head, dynamic=True) if setup.compile else None
    network.train()
    items, seconds = 0, []
    for epoch in range(epochs):
        if hasattr(loader.batch_sampler, "set_epoch"):
            loader.batch_sampler.set_epoch(epoch)
        elif hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        iterator = iter(loader)
        step = 0
        while True:
            warm_up = max_batches is not None and epoch == 0 and step == 0
            if max_batches is not None and step > max_batches:
                break
            timer: list[float] = []
            with timed(device, timer):
                batch = next(iterator, None)
                if batch is None:
                    break
                batch = move_data_to_device(batch, device)
                with _autocast(setup, device):
                    output = _forward(network, batch, compiled)
                    loss = network.head.loss(output, batch["label"])["loss"]
                optimizer.zero_grad(set_to_none=True)
                loss.float().backward()
                optimizer.step()
            if not warm_up:
                seconds.extend(timer)
                items += len(batch["label"])
            step += 1
    return items, float(sum(seconds))


@torch.inference_mode()
def _inference(network, data: _Data, frame, device, setup: Setup, batch_size: int, latency_items: int) -> dict:
    from lightning.fabric.utilities.apply_func import move_data_to_device

    network.eval()
    compiled = torch.compile(network.head, dynamic=True) if setup.compile else None
    loader = _loader(network, frame, data.image_root, data.label_map, setup, batch_size, shuffle=False)
    seconds: list[float] = []
    items = 0
    for k, batch in enumerate(loader):
        timer: list[float] = []
        with timed(device, timer), _autocast(setup, device):
            _forward(network, move_data_to_device(batch, device), compiled)
        if k:  # the first batch warms up
            seconds.extend(timer)
            items += len(batch["label"])
    single = _loader(network, frame.iloc[:latency_items + 1], data.image_root, data.label_map, setup, 1,
                     shuffle=False)
    latencies: list[float] = []
    batches = iter(single)
    next(batches)  # warm-up
    for batch in batches:
        with timed(device, latencies), _autocast(setup, device):
            _forward(network, move_data_to_device(batch, device), compiled)
    return {"inference_items_per_s": round(items / max(sum(seconds), 1e-9), 2), **percentiles(latencies)}


def training_section(data: _Data, size: str, setups: list[Setup], device: torch.device, plan: Plan,
                     *, items: int, max_batches: int, log: Callable[[str], None]) -> list[dict]:
    """Per setup: training items/s, epoch time (first and later), inference items/s, latency, peak memory."""
    from fluid.encoders import FeatureCache
    from fluid.training.features import cached_features

    frame = data.train.iloc[:items]
    eval_frame = data.test.iloc[: max(2 * plan.batch_size + 1, plan.latency_items + 1)]
    rows = []
    for setup in setups:
        log(f"  [{size}] {setup.name}")
        network = _build_network(size, setup, data.corpus, len(data.classes)).to(device)
        with PeakMemory(device) as peak, tempfile.TemporaryDirectory() as cache_dir:
            features, cache_seconds = {}, 0.0
            if setup.cache:
                started = time.perf_counter()
                features = cached_features(network, frame, data.image_root, FeatureCache(cache_dir),
                                           batch_size=plan.batch_size, progress=False)
                cache_seconds = time.perf_counter() - started
            loader = _loader(network, frame, data.image_root, data.label_map, setup, plan.batch_size, shuffle=True,
                             features=features)
            n, seconds = _train_steps(network, loader, device, setup, max_batches=max_batches)
            inference = _inference(network, data, eval_frame, device, setup, plan.batch_size, plan.latency_items)
        items_per_s = n / max(seconds, 1e-9)
        epoch = len(frame) / items_per_s
        rows.append({
            "setup": setup.name, "size": size, "config": setup.to_dict(),
            "train_items_per_s": round(items_per_s, 2),
            "cache_build_seconds": round(cache_seconds, 3),
            "first_epoch_seconds": round(cache_seconds + epoch, 3),
            "later_epoch_seconds": round(epoch, 3),
            f"run_{PAPER_EPOCHS}_epochs_seconds": round(cache_seconds + PAPER_EPOCHS * epoch, 3),
            "epoch_items": len(frame),
            **inference,
            "peak_rss_mib": mib(peak.rss_bytes), "peak_cuda_mib": mib(peak.cuda_bytes),
        })
        del network
    reference = next(r for r in rows if r["setup"] == REFERENCE.name)
    for row in rows:
        row["first_epoch_speedup"] = round(reference["first_epoch_seconds"] / row["first_epoch_seconds"], 2)
        row[f"run_{PAPER_EPOCHS}_epochs_speedup"] = round(
            reference[f"run_{PAPER_EPOCHS}_epochs_seconds"] / row[f"run_{PAPER_EPOCHS}_epochs_seconds"], 2)
        row["inference_speedup"] = round(row["inference_items_per_s"] / reference["inference_items_per_s"], 2)
        row["p50_latency_ratio"] = round(row["p50_ms"] / reference["p50_ms"], 3)
        row["peak_rss_ratio"] = round(row["peak_rss_mib"] / reference["peak_rss_mib"], 3)
    return rows


@torch.inference_mode()
def head_share_section(data: _Data, device: torch.device, plan: Plan, log: Callable[[str], None]) -> dict:
    """The FLUID head's time against the encoders' at inference (by default base-size encoders and the
    paper-size head)."""
    from lightning.fabric.utilities.apply_func import move_data_to_device

    network = _build_network(plan.head_share_size, DEFAULTS, data.corpus, len(data.classes)).to(device).eval()
    out: dict = {"size": plan.head_share_size}
    for batch_size, repeats in zip(plan.head_share_batches, plan.head_share_repeats):
        log(f"  head share at batch {batch_size}")
        loader = _loader(network, data.test.iloc[:batch_size], data.image_root, data.label_map, DEFAULTS, batch_size,
                         shuffle=False)
        batch = move_data_to_device(next(iter(loader)), device)
        encode_s: list[float] = []
        head_s: list[float] = []
        for k in range(repeats + 1):
            timer_e: list[float] = []
            with timed(device, timer_e):
                image_tokens, image_mask, text_tokens, text_mask = network.encode(batch)
            timer_h: list[float] = []
            with timed(device, timer_h):
                network.head(image_tokens, text_tokens, image_mask=image_mask, text_mask=text_mask,
                             aux_losses=False)
            if k:  # the first round warms up
                encode_s += timer_e
                head_s += timer_h
        encode, head = sum(encode_s) / repeats, sum(head_s) / repeats
        out[f"batch_{batch_size}"] = {"encoders_ms": round(1000 * encode, 3), "head_ms": round(1000 * head, 3),
                                      "head_share": round(head / (encode + head), 4)}
    out["head_parameters"] = sum(p.numel() for p in network.head.parameters())
    out["encoder_parameters"] = sum(p.numel() for p in network.parameters()) - out["head_parameters"]
    return out


def quality_section(data: _Data, device: torch.device, plan: Plan, log: Callable[[str], None]) -> list[dict]:
    """Test accuracy after the same number of epochs, tiny encoders, once per seed of ``plan.quality_seeds``: the
    reference (fine-tune, pad to 512), FLUID's defaults for from-scratch encoders (trained, dynamic padding,
    bucketing, SDPA), and frozen + cache. ``test_accuracy`` / ``train_seconds`` are means over the seeds."""
    from fluid.encoders import FeatureCache
    from fluid.training.features import cached_features

    setups = [REFERENCE, Setup("fluid defaults (trained tiny encoders)", pad_to_max=False, attention="sdpa",
                               bucketing=True), DEFAULTS]
    frame = data.train.iloc[:plan.quality_items]
    rows = []
    for setup in setups:
        accuracies, times = [], []
        for seed in plan.quality_seeds:
            log(f"  quality: {setup.name}, seed {seed}")
            network = _build_network("tiny", setup, data.corpus, len(data.classes), seed=seed).to(device)
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as cache_dir:
                features = (cached_features(network, frame, data.image_root, FeatureCache(cache_dir),
                                            batch_size=plan.batch_size * 2, progress=False) if setup.cache else {})
                loader = _loader(network, frame, data.image_root, data.label_map, setup, 32, shuffle=True,
                                 features=features, seed=seed)
                _train_steps(network, loader, device, setup, max_batches=None, epochs=plan.quality_epochs)
            times.append(time.perf_counter() - started)
            accuracies.append(_accuracy(network, data, device))
        rows.append({"setup": setup.name, "epochs": plan.quality_epochs, "train_items": len(frame),
                     "seeds": list(plan.quality_seeds), "test_accuracies": [round(a, 4) for a in accuracies],
                     "test_accuracy": round(statistics.fmean(accuracies), 4),
                     "test_accuracy_std": round(statistics.stdev(accuracies), 4) if len(accuracies) > 1 else 0.0,
                     "train_seconds": round(statistics.fmean(times), 1)})
    return rows


@torch.inference_mode()
def _accuracy(network, data: _Data, device: torch.device) -> float:
    from lightning.fabric.utilities.apply_func import move_data_to_device

    network.eval()
    loader = _loader(network, data.test, data.image_root, data.label_map, Setup("eval", pad_to_max=False), 64,
                     shuffle=False)
    correct = total = 0
    for batch in loader:
        batch = move_data_to_device(batch, device)
        known = batch["label"] >= 0
        predicted = network(batch, aux_losses=False).logits.argmax(-1)
        correct += int((predicted[known] == batch["label"][known]).sum())
        total += int(known.sum())
    return correct / max(total, 1)


def scaling_section(plan: Plan, workdir: Path, log: Callable[[str], None]) -> list[dict]:
    """One epoch of ``Classifier.fit`` (demo config) per catalogue size, each in a fresh process so its peak
    RSS is its own."""
    rows = []
    for items in plan.scaling_items:
        log(f"  scaling: {items} items")
        out = workdir / f"scaling-{items}.json"
        subprocess.run([sys.executable, "-m", "fluid.bench.scaling", "--items", str(items), "--workdir",
                        str(workdir / f"scaling-{items}"), "--out", str(out)], check=True)
        rows.append(json.loads(out.read_text(encoding="utf-8")))
    first = rows[0]
    for row in rows:
        row["seconds_per_item_ratio"] = round(row["seconds_per_item"] / first["seconds_per_item"], 3)
        row["peak_rss_ratio"] = round(row["peak_rss_mib"] / first["peak_rss_mib"], 3)
        if row.get("peak_anon_rss_mib") and first.get("peak_anon_rss_mib"):
            row["peak_anon_rss_ratio"] = round(row["peak_anon_rss_mib"] / first["peak_anon_rss_mib"], 3)
    return rows


# ------------------------------------------------------------------------------------------------ suite
def run_suite(*, quick: bool = True, device: str = "auto", sections: tuple[str, ...] = ("training", "head_share",
              "quality", "scaling"), plan: Plan | None = None, log: Callable[[str], None] = print) -> dict:
    """Runs the suite and returns its results (see docs/benchmarks.md for the keys)."""
    plan = plan or (Plan.quick() if quick else Plan.full())
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    torch.manual_seed(0)
    results: dict = {
        "mode": "quick" if quick else "full",
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({os.cpu_count()} cores)",
        "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
        "plan": plan.__dict__, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fluid-bench-") as tmp:
        workdir = Path(tmp)
        needs_data = {"training", "head_share", "quality"} & set(sections)
        data = _Data(workdir / "data", items=max(plan.train_items, plan.quality_items) * 5 // 4 + 200) \
            if needs_data else None
        if "training" in sections:
            log("training and inference, each optimisation alone (tiny encoders)")
            rows = training_section(data, "tiny", single_optimisations(dev.type, include_compile=not quick), dev, plan,
                                    items=plan.train_items, max_batches=plan.max_batches, log=log)
            if plan.base_train_items:
                log("training and inference (base-size encoders)")
                rows += training_section(data, "base", [REFERENCE, DEFAULTS], dev, plan,
                                         items=plan.base_train_items, max_batches=plan.base_max_batches, log=log)
            results["training"] = rows
            largest = "base" if plan.base_train_items else "tiny"
            defaults = next(r for r in rows if r["setup"] == DEFAULTS.name and r["size"] == largest)
            results["train_speedup_vs_reference"] = defaults["first_epoch_speedup"]
            results[f"run_{PAPER_EPOCHS}_epochs_speedup_vs_reference"] = defaults[f"run_{PAPER_EPOCHS}_epochs_speedup"]
            results["speedup_size"] = largest
        if "head_share" in sections:
            log("FLUID head against the encoders at inference (base-size encoders, paper-size head)")
            results["head_share"] = head_share_section(data, dev, plan, log)
            results["head_share_of_inference"] = max(v["head_share"] for k, v in results["head_share"].items()
                                                     if k.startswith("batch_"))
        if "quality" in sections:
            log("test accuracy at equal epochs (tiny encoders)")
            results["quality"] = quality_section(data, dev, plan, log)
        if "scaling" in sections:
            log("scaling: one epoch of Classifier.fit per catalogue size")
            results["scaling"] = scaling_section(plan, workdir, log)
            ten_k = [r for r in results["scaling"] if r["items"] >= 10_000]
            if len(ten_k) >= 2:
                growth = ten_k[-1]["peak_rss_mib"] / ten_k[0]["peak_rss_mib"]
                results["peak_rss_growth_10k_to_largest"] = round(growth, 3)
                if ten_k[0].get("peak_anon_rss_mib") and ten_k[-1].get("peak_anon_rss_mib"):
                    results["peak_anon_rss_growth_10k_to_largest"] = round(
                        ten_k[-1]["peak_anon_rss_mib"] / ten_k[0]["peak_anon_rss_mib"], 3)
    results["suite_seconds"] = round(time.perf_counter() - started, 1)
    return results
