"""``BENCHMARKS.md``: the suite's results as markdown tables."""

from __future__ import annotations

import os
from pathlib import Path

from fluid.atomic import write_text_atomic
from fluid.bench.suite import PAPER_EPOCHS


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_markdown(results: dict) -> str:
    """The results of :func:`fluid.bench.run_suite` as markdown."""
    out = [f"# FLUID benchmarks ({results['mode']})\n",
           f"Device: {results['device']}; torch {results['torch']}, {results['threads']} threads; "
           f"started {results['started']}; the suite took {results['suite_seconds']} s. Produced by "
           f"`fluid bench{' --quick' if results['mode'] == 'quick' else ''}`; ratios are against the reference "
           "configuration measured in the same run.\n"]
    if "train_speedup_vs_reference" in results:
        out.append(f"**Headline** ({results['speedup_size']} encoders): first-epoch training speed-up of FLUID's "
                   f"defaults over the reference **{results['train_speedup_vs_reference']}×**; a "
                   f"{PAPER_EPOCHS}-epoch run **{results[f'run_{PAPER_EPOCHS}_epochs_speedup_vs_reference']}×**.")
    if "head_share_of_inference" in results:
        out.append(f" FLUID head share of inference time (worst of batch 1 and 64, base-size encoders): "
                   f"**{100 * results['head_share_of_inference']:.1f}%**.\n")
    if "training" in results:
        out.append("\n## Training and inference, each optimisation alone\n")
        run_key = f"run_{PAPER_EPOCHS}_epochs_speedup"
        rows = [[r["size"], r["setup"], r["train_items_per_s"], r["cache_build_seconds"], r["first_epoch_seconds"],
                 r["later_epoch_seconds"], f"{r['first_epoch_speedup']}×", f"{r[run_key]}×",
                 r["inference_items_per_s"], f"{r['inference_speedup']}×", r["p50_ms"], r["p95_ms"],
                 r["peak_rss_mib"], r["peak_cuda_mib"]] for r in results["training"]]
        out.append(_table(["size", "setup", "train items/s", "cache build s", "epoch 1 s", "later epochs s",
                           "epoch 1 speed-up", f"{PAPER_EPOCHS} epochs speed-up", "infer items/s", "infer speed-up",
                           "p50 ms (batch 1)", "p95 ms", "peak RSS MiB", "peak CUDA MiB"], rows))
    if "head_share" in results:
        hs = results["head_share"]
        out.append("\n## FLUID head against the encoders (inference, base-size encoders, paper-size head)\n")
        out.append(_table(["batch", "encoders ms", "head ms", "head share"],
                          [[k.removeprefix("batch_"), v["encoders_ms"], v["head_ms"], f"{100 * v['head_share']:.2f}%"]
                           for k, v in hs.items() if k.startswith("batch_")]))
        out.append(f"\nParameters: head {hs['head_parameters']:,}, encoders {hs['encoder_parameters']:,}.\n")
    if "quality" in results:
        out.append("\n## Test accuracy at equal epochs (tiny encoders, synthetic catalogue)\n")
        out.append(_table(["setup", "epochs", "train items", "seeds", "test accuracy (mean ± std)", "per seed",
                           "train s (mean)"],
                          [[r["setup"], r["epochs"], r["train_items"], len(r.get("seeds", [0])),
                            f"{r['test_accuracy']} ± {r.get('test_accuracy_std', 0.0)}",
                            ", ".join(str(a) for a in r.get("test_accuracies", [r["test_accuracy"]])),
                            r["train_seconds"]] for r in results["quality"]]))
    if "scaling" in results:
        out.append("\n## Scaling: one epoch of `Classifier.fit` (demo config)\n")
        out.append(_table(["items", "train items", "epoch s", "s per item (ratio)", "peak RSS MiB (ratio)",
                           "peak anonymous RSS MiB (ratio)", "peak CUDA MiB"],
                          [[r["items"], r["train_items"], r["epoch_seconds"],
                            f"{r['seconds_per_item']} ({r['seconds_per_item_ratio']}×)",
                            f"{r['peak_rss_mib']} ({r['peak_rss_ratio']}×)",
                            f"{r['peak_anon_rss_mib']} ({r['peak_anon_rss_ratio']}×)"
                            if r.get("peak_anon_rss_ratio") else r.get("peak_anon_rss_mib", ""),
                            r.get("peak_cuda_mib") or ""] for r in results["scaling"]]))
    return "\n".join(out)


def write_markdown(results: dict, path: str | os.PathLike) -> Path:
    return write_text_atomic(path, to_markdown(results))
