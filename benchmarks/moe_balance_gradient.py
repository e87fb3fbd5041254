r"""How hard the load-balancing term pulls on the router at initialisation, against the cross-entropy.

    OMP_NUM_THREADS=1 python benchmarks/moe_balance_gradient.py            # what docs/model.md quotes

λ3 = ``moe_weight`` multiplies the Switch-form loss E·Σᵢ fᵢ·Pᵢ once, so λ3 = 1/3 (the paper) is Switch's α = 1/3
where Switch uses α = 0.01. For each λ3 in ``--weights`` this script builds a small FLUID head (width 64, 4 experts,
top-2, 8 queries, 4 heads, no dropout, the default λ1 = 1/3) at initialisation, feeds it random tokens (width 64:
65 image tokens, 40 text tokens, uniform labels over ``--classes``) and measures, on the router's weights and bias
together, the gradient norm of λ3·L_MoE and of λ1·CE, each on its own (``torch.autograd.grad``). Reported: their
ratio (balance / CE) per seed (each seed is a new head and a new batch), and its median, min and max.

Tokens are N(0, 1) plus ``signal`` times a random per-class vector (one for the image, one for the text, the
same for every token of an item): ``--signals 0`` is pure noise with labels unrelated to the inputs, where the
items' CE gradients on the router mostly cancel; 1 gives the CE something to learn, as real data does.

The CE gradient does not depend on λ3, so the ratio is linear in λ3 for a given seed; the script measures each
weight anyway. Writes ``benchmarks/results/moe_balance_gradient.json`` (``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

import torch

from fluid.model import build_head

HEAD = {"hidden_dim": 64, "num_heads": 4, "num_queries": 8, "num_experts": 4, "top_k": 2, "dropout": 0.0}
TOKEN_DIM, IMAGE_TOKENS, TEXT_TOKENS = 64, 65, 40
DEFAULT_WEIGHTS = (1 / 3, 0.1, 0.03, 0.01)


def random_batch(seed: int, batch_size: int, classes: int, signal: float) -> tuple[torch.Tensor, ...]:
    """(image B x 65 x 64, text B x 40 x 64, labels B): N(0, 1) tokens + signal · a per-class vector."""
    g = torch.Generator().manual_seed(10_000 + seed)
    labels = torch.randint(0, classes, (batch_size,), generator=g)
    image_class = torch.randn(classes, 1, TOKEN_DIM, generator=g)
    text_class = torch.randn(classes, 1, TOKEN_DIM, generator=g)
    image = torch.randn(batch_size, IMAGE_TOKENS, TOKEN_DIM, generator=g) + signal * image_class[labels]
    text = torch.randn(batch_size, TEXT_TOKENS, TOKEN_DIM, generator=g) + signal * text_class[labels]
    return image, text, labels


def router_gradient_norms(moe_weight: float, seed: int, batch_size: int, classes: int,
                          signal: float) -> tuple[float, float]:
    """(‖∂(λ3·L_MoE)/∂router‖, ‖∂(λ1·CE)/∂router‖) for one freshly initialised head and one random batch."""
    torch.manual_seed(seed)
    head = build_head("fluid", classes, TOKEN_DIM, TOKEN_DIM, moe_weight=moe_weight, **HEAD).train()
    image, text, labels = random_batch(seed, batch_size, classes, signal)
    parts = head.loss(head(image, text), labels)
    router = [head.moe.router.proj.weight, head.moe.router.proj.bias]
    balance = torch.autograd.grad(parts["moe_balance"], router, retain_graph=True)
    ce = torch.autograd.grad(head.config.ce_weight * parts["ce"], router)
    return _norm(balance), _norm(ce)


def _norm(grads: tuple[torch.Tensor, ...]) -> float:
    return float(torch.sqrt(sum(g.pow(2).sum() for g in grads)))


def measure(weights: list[float], seeds: int, batch_sizes: list[int], classes: int,
            signals: list[float]) -> list[dict]:
    """One record per (signal, batch size, λ3): per-seed norms and ratios, and the ratio's median / min / max."""
    records = []
    for signal in signals:
        for batch_size in batch_sizes:
            for weight in weights:
                records.append(_record(weight, seeds, batch_size, classes, signal))
    return records


def _record(weight: float, seeds: int, batch_size: int, classes: int, signal: float) -> dict:
    norms = [router_gradient_norms(weight, seed, batch_size, classes, signal) for seed in range(seeds)]
    ratios = [b / c for b, c in norms]
    return {"signal": signal, "batch_size": batch_size, "moe_weight": weight,
            "balance_grad_norm": [b for b, _ in norms], "ce_grad_norm": [c for _, c in norms],
            "ratio": ratios, "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=float, nargs="+", default=list(DEFAULT_WEIGHTS))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--classes", type=int, default=17, help="the synthetic catalogue has 17")
    parser.add_argument("--signals", type=float, nargs="+", default=[0.0, 1.0],
                        help="scale of the per-class vector added to the tokens (0 = labels unrelated to inputs)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "moe_balance_gradient.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    records = measure(args.weights, args.seeds, args.batch_sizes, args.classes, args.signals)
    print(f"router gradient norm, balance term / CE term, at init ({args.seeds} seeds; λ1 = 1/3)")
    print(f"{'signal':>6} {'batch':>5} {'moe_weight':>10} {'median':>8} {'min':>8} {'max':>8}")
    for r in records:
        print(f"{r['signal']:>6g} {r['batch_size']:>5} {r['moe_weight']:>10.4g} {r['ratio_median']:>8.3f} "
              f"{r['ratio_min']:>8.3f} {r['ratio_max']:>8.3f}")
    result = {
        "what": "router gradient norm of moe_weight·L_MoE over that of ce_weight·CE at initialisation",
        "head": {**HEAD, "ce_weight": 1 / 3, "token_dim": TOKEN_DIM, "image_tokens": IMAGE_TOKENS,
                 "text_tokens": TEXT_TOKENS, "classes": args.classes},
        "inputs": ("tokens N(0, 1) + signal * a per-class vector, labels uniform; a new head "
                   "(torch.manual_seed(seed)) and batch per seed"),
        "seeds": args.seeds, "records": records,
        "torch": torch.__version__, "python": sys.version.split()[0], "machine": platform.machine(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
