r"""The paper-size FLUID head alone at inference on the CPU: time per call at batch 1 and 64, and the operators
that take the batch-1 time (``torch.profiler``).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/head_profile.py                 # what docs/model.md quotes
    OMP_NUM_THREADS=1 python benchmarks/head_profile.py --repeats 20 --rounds 3 --dispatch sparse dense

The head is built as ``fluid bench``'s ``head_share`` section builds it: ``build_head("fluid", ...)`` with the
paper defaults (width 768, 32 queries, 2 bottleneck queries, 16 experts, top-2), ``torch.manual_seed(0)``, under
``torch.inference_mode`` as that section does (``--build normal``: outside it, as ``Classifier`` does); eval
mode, called under ``torch.inference_mode`` on one thread. Inputs: 197 image tokens (ViT-B/16 at 224 px) and
right-padded text of ``--text-length`` tokens (default 97, the length of ``fluid bench``'s batch-1 item; its
batch of 64 is padded to 309), width 768. At batch 1 both modalities are present and the text is not padded;
at batch 64 text lengths are drawn from [8, text_length] and (unless ``--no-missing``) one item has no image
and one no text, as a real catalogue batch may.

Timing: per dispatch mode and batch size, ``--rounds`` rounds of ``--repeats`` calls (a quarter of them at
batch 64) after warm-up calls; the median, min and max of the per-call wall times are reported, and the
median thread CPU time (less disturbed by other processes on a shared machine; quote medians). Writes
``benchmarks/results/head_profile.json`` (``--out``) and prints a summary.

Host cost (``--host-width``, default 16): the same head structure at width 16, batch 1, ten times ``--repeats``
calls per round, and the number of operators one call dispatches. With the arithmetic gone, this is the cost of
issuing the operators: the part of the batch-1 time a GPU cannot hide without CUDA graphs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from fluid.atomic import atomic_path
from fluid.model import build_head

RESULTS = Path(__file__).parent / "results" / "head_profile.json"
IMAGE_TOKENS = 197  # ViT-B/16 at 224 px: 14 x 14 patches + CLS
WIDTH = 768  # BERT-base and ViT-B/16 token width


def build_paper_head(num_classes: int, dispatch: str, under_inference_mode: bool = True) -> torch.nn.Module:
    """The FLUID head with the paper defaults, as ``fluid bench``'s head_share section builds it (under
    ``inference_mode`` unless ``under_inference_mode`` is False)."""
    torch.manual_seed(0)
    with torch.inference_mode(under_inference_mode):
        return build_head("fluid", num_classes, image_dim=WIDTH, text_dim=WIDTH, moe_dispatch=dispatch).eval()


def make_inputs(batch: int, text_length: int, missing: bool, seed: int = 0,
                width: int = WIDTH) -> dict[str, torch.Tensor]:
    """Random encoder outputs with the masks a real batch has.

    Returns:
        dict: image_tokens B x 197 x width, image_mask B x 197, text_tokens B x L_t x width, text_mask B x L_t
        (bool, True = real token).
    """
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, IMAGE_TOKENS, width, generator=generator)
    text = torch.randn(batch, text_length, width, generator=generator)
    image_mask = torch.ones(batch, IMAGE_TOKENS, dtype=torch.bool)
    text_mask = torch.ones(batch, text_length, dtype=torch.bool)
    if batch > 1:
        lengths = torch.randint(min(8, text_length), text_length + 1, (batch,), generator=generator)
        lengths[0] = text_length  # the longest sets the padded length, as dynamic padding does
        text_mask = torch.arange(text_length)[None, :] < lengths[:, None]
        if missing and batch > 2:
            image_mask[1] = False
            text_mask[2] = False
    return {"image_tokens": image, "image_mask": image_mask, "text_tokens": text, "text_mask": text_mask}


def call(head: torch.nn.Module, inputs: dict[str, torch.Tensor]):
    return head(inputs["image_tokens"], inputs["text_tokens"], image_mask=inputs["image_mask"],
                text_mask=inputs["text_mask"], aux_losses=False)  # as prediction calls it


def time_calls(head: torch.nn.Module, inputs: dict[str, torch.Tensor], repeats: int, rounds: int,
               warmup: int) -> dict:
    """Per-call wall times (ms) over ``rounds`` x ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        call(head, inputs)
    per_call: list[float] = []
    cpu: list[float] = []
    for _ in range(rounds):
        for _ in range(repeats):
            started, started_cpu = time.perf_counter(), time.thread_time()
            call(head, inputs)
            cpu.append(1000 * (time.thread_time() - started_cpu))
            per_call.append(1000 * (time.perf_counter() - started))
    return {"median_ms": round(statistics.median(per_call), 3), "min_ms": round(min(per_call), 3),
            "max_ms": round(max(per_call), 3), "median_cpu_ms": round(statistics.median(cpu), 3),
            "calls": len(per_call)}


def top_operators(head: torch.nn.Module, inputs: dict[str, torch.Tensor], calls: int, top: int) -> list[dict]:
    """The operators with the most self CPU time over ``calls`` calls (per call, ms)."""
    from torch.profiler import ProfilerActivity, profile

    call(head, inputs)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            call(head, inputs)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "self_ms_per_call": round(e.self_cpu_time_total / 1000 / calls, 3),
             "share": round(e.self_cpu_time_total / max(total, 1), 4), "calls_per_call": e.count // calls}
            for e in events[:top]]


def operators_per_call(head: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> int:
    """How many PyTorch operators one call dispatches from Python (``aten::`` ops not called by another one):
    on a GPU each costs host time and most launch a kernel."""
    from torch.profiler import ProfilerActivity, profile

    call(head, inputs)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call(head, inputs)
    return sum(1 for e in prof.events() if e.name.startswith("aten::")
               and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")))


def host_cost(dispatch: str, classes: int, text_length: int, width: int, repeats: int, rounds: int,
              warmup: int) -> dict:
    """The paper head's structure (32 queries, 2 bottleneck queries, 16 experts, top-2, 8 attention heads) at
    width ``width`` instead of 768, batch 1: the arithmetic all but vanishes and the time left is the cost of
    issuing the operators, which is what bounds a GPU at batch 1 (measured on an H100: the paper-size head took
    3.7 ms with eager kernels and 1.85 ms replayed as a CUDA graph)."""
    torch.manual_seed(0)
    with torch.inference_mode():
        head = build_head("fluid", classes, image_dim=width, text_dim=width, hidden_dim=width,
                          moe_dispatch=dispatch).eval()
        inputs = make_inputs(1, text_length, False, width=width)
        timing = time_calls(head, inputs, repeats, rounds, warmup)
        return {"width": width, "operators_per_call": operators_per_call(head, inputs), **timing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--text-length", type=int, default=97,
                        help="padded text length (tokens); 97 = fluid bench's batch-1 item")
    parser.add_argument("--classes", type=int, default=17, help="number of classes (fluid bench's catalogue: 17)")
    parser.add_argument("--dispatch", nargs="+", default=["auto"], choices=["auto", "sparse", "dense"])
    parser.add_argument("--repeats", type=int, default=10, help="calls per round (batch 64: a quarter, >= 2)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-missing", dest="missing", action="store_false",
                        help="no item without image / text in batches > 2")
    parser.add_argument("--profile-calls", type=int, default=20, help="batch-1 calls under the profiler (0: none)")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--build", choices=["inference-mode", "normal"], default="inference-mode",
                        help="build the head under inference_mode (as fluid bench) or outside it (as Classifier)")
    parser.add_argument("--host-width", type=int, default=16,
                        help="also time the head's structure at this width, batch 1 (the per-operator host cost; "
                             "a multiple of 8; 0: skip)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument("--label", default="", help="a name for this run, stored in the JSON")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    results: dict = {"label": args.label, "torch": torch.__version__, "python": platform.python_version(),
                     "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "build": args.build,
                     "text_length": args.text_length, "image_tokens": IMAGE_TOKENS, "classes": args.classes,
                     "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "timings": {}}
    for dispatch in args.dispatch:
        head = build_paper_head(args.classes, dispatch, args.build == "inference-mode")
        results["head_parameters"] = sum(p.numel() for p in head.parameters())
        with torch.inference_mode():
            for batch in args.batches:
                inputs = make_inputs(batch, args.text_length, args.missing)
                repeats = args.repeats if batch == 1 else max(2, args.repeats // 4)
                timing = time_calls(head, inputs, repeats, args.rounds, args.warmup if batch == 1 else 1)
                results["timings"][f"{dispatch}/batch_{batch}"] = timing
                print(f"dispatch={dispatch:6s} batch={batch:3d}: median {timing['median_ms']:8.2f} ms "
                      f"(min {timing['min_ms']:.2f}, max {timing['max_ms']:.2f}; "
                      f"CPU {timing['median_cpu_ms']:.2f} ms; {timing['calls']} calls)", flush=True)
            if args.host_width:
                host = host_cost(dispatch, args.classes, args.text_length, args.host_width, 10 * args.repeats,
                                 args.rounds, args.warmup)
                results.setdefault("host_cost_batch_1", {})[dispatch] = host
                print(f"dispatch={dispatch:6s} width {host['width']}, batch 1: median {host['median_ms']:.3f} ms, "
                      f"{host['operators_per_call']} operators per call", flush=True)
            if args.profile_calls:
                ops = top_operators(head, make_inputs(1, args.text_length, args.missing), args.profile_calls,
                                    args.top)
                results.setdefault("top_operators_batch_1", {})[dispatch] = ops
                print(f"top operators at batch 1 (dispatch={dispatch}), self CPU ms per call:")
                for op in ops:
                    print(f"  {op['op']:40s} {op['self_ms_per_call']:8.3f}  {100 * op['share']:5.1f}%  "
                          f"x{op['calls_per_call']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
