"""Load test of ``fluid serve``: throughput and latency of ``POST /predict`` under concurrent clients, with
server-side micro-batching off (``--micro-batch 1``) and on, measured in the same run on the same model.

    python benchmarks/serve_load.py                          # 400 requests per mode, 16 clients (~2 min, 2 cores)
    python benchmarks/serve_load.py --requests 40 --concurrency 4 --run-dir runs/products

Each mode starts a real uvicorn server (``python -m fluid serve``) on a free loopback port, sends a few warm-up
requests, then ``--requests`` requests (image + text, multipart) from ``--concurrency`` client threads, stopping
early at ``--time-limit`` seconds. Without ``--run-dir`` a tiny model (``demo_config``, tiny encoders, 1 epoch on
300 synthetic items) is trained first. Writes ``benchmarks/results/serve_load.json`` and prints a table.
Nothing leaves the machine: the server binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np

from fluid.atomic import write_json_atomic

RESULTS = Path(__file__).parent / "results" / "serve_load.json"
WORDS = ["red", "blue", "green", "cotton", "shirt", "dress", "summer", "running", "shoes", "leather", "bag", "wool"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _train_tiny_run(work: Path) -> Path:
    from fluid import Classifier
    from fluid.config import demo_config
    from fluid.data.synthetic import write_synthetic

    data = write_synthetic(work / "data", items=300, seed=0)
    params = demo_config("fluid", seed=0, epochs=1).to_dict()
    columns = params.pop("columns")
    run_dir = work / "run"
    classifier = Classifier(path=str(run_dir), **params,
                            **{k: v for k, v in columns.items() if k in ("label", "image")})
    classifier.fit(data, progress=False)
    return run_dir


def _payloads(count: int, seed: int) -> list[tuple[dict, bytes]]:
    """Distinct products: a few words of text and a small PNG of one random colour."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    payloads = []
    for _ in range(count):
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), colour).save(buffer, format="PNG")
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 8))))
        payloads.append(({"text": text, "top_k": "3"}, buffer.getvalue()))
    return payloads


class Server:
    """``python -m fluid serve`` in a subprocess on a free loopback port."""

    def __init__(self, run_dir: Path, micro_batch: int, max_wait_ms: float, log_dir: Path):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(log_dir / f"server-micro-batch-{micro_batch}.log", "wb")  # noqa: SIM115 - closed in stop
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fluid", "serve", str(run_dir), "--host", "127.0.0.1", "--port", str(self.port),
             "--micro-batch", str(micro_batch), "--max-wait-ms", str(max_wait_ms)],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1", "CI": "1"})

    def wait_ready(self, client, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.process.returncode}; see {self.log.name}")
            with contextlib.suppress(httpx.HTTPError):  # not listening yet
                if client.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"the server did not answer /health within {timeout:.0f} s; see {self.log.name}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def measure(run_dir: Path, *, micro_batch: int, max_wait_ms: float, requests: int, concurrency: int,
            time_limit: float, payloads: list, log_dir: Path) -> dict:
    """One mode: start the server, warm up, send the requests from ``concurrency`` threads, stop the server."""
    server = Server(run_dir, micro_batch, max_wait_ms, log_dir)
    try:
        with httpx.Client(timeout=60) as probe:
            server.wait_ready(probe)
            for data, image in payloads[:3]:  # warm-up, not counted
                probe.post(f"{server.base}/predict", data=data, files={"image": ("x.png", image, "image/png")})
            before = probe.get(f"{server.base}/info").json()["micro_batching"]
        next_index, lock = 0, threading.Lock()
        latencies_ms: list[float] = []
        errors: list[str] = []
        started = time.perf_counter()
        deadline = started + time_limit

        def client_loop() -> None:
            nonlocal next_index
            with httpx.Client(timeout=60) as client:
                while True:
                    with lock:
                        if next_index >= requests or time.perf_counter() > deadline:
                            return
                        index = next_index
                        next_index += 1
                    data, image = payloads[index % len(payloads)]
                    sent = time.perf_counter()
                    try:
                        response = client.post(f"{server.base}/predict", data=data,
                                               files={"image": ("x.png", image, "image/png")})
                        ok = response.status_code == 200 and len(response.json()["labels"]) == 3
                        problem = None if ok else f"HTTP {response.status_code}: {response.text[:200]}"
                    except Exception as error:  # noqa: BLE001 - counted as an error
                        problem = f"{type(error).__name__}: {error}"
                    elapsed = (time.perf_counter() - sent) * 1000
                    with lock:
                        if problem is None:
                            latencies_ms.append(elapsed)
                        else:
                            errors.append(problem)

        threads = [threading.Thread(target=client_loop) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        with httpx.Client(timeout=60) as probe:
            after = probe.get(f"{server.base}/info").json()["micro_batching"]
    finally:
        server.stop()
    completed = len(latencies_ms) + len(errors)
    model_calls = after["model_calls"] - before["model_calls"]
    answered = after["requests"] - before["requests"]
    return {
        "micro_batch": micro_batch, "max_wait_ms": max_wait_ms, "concurrency": concurrency,
        "requests_sent": completed, "requests_ok": len(latencies_ms), "errors": len(errors),
        "error_examples": errors[:5], "stopped_by_time_limit": completed < requests,
        "wall_seconds": round(wall, 3), "requests_per_second": round(len(latencies_ms) / wall, 2) if wall else None,
        "latency_ms": {"p50": _percentile(latencies_ms, 50), "p95": _percentile(latencies_ms, 95),
                       "p99": _percentile(latencies_ms, 99), "mean": round(float(np.mean(latencies_ms)), 2)
                       if latencies_ms else None, "max": round(max(latencies_ms), 2) if latencies_ms else None},
        "model_calls": model_calls, "mean_batch_size": round(answered / model_calls, 2) if model_calls else None,
        "largest_batch": after["largest_batch"],
    }


def _device() -> dict:
    import torch

    return {"inference": "cpu (the server scores on the CPU)", "machine": platform.machine(),
            "processor": platform.processor() or None, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
            "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per mode")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads")
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds per mode, at most")
    parser.add_argument("--micro-batch", type=int, default=16, help="max batch size of the 'on' mode")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="max wait of the 'on' mode")
    parser.add_argument("--run-dir", type=Path, default=None, help="a trained run (default: train a tiny one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or args.micro_batch < 2 or args.time_limit <= 0:
        parser.error("--requests and --concurrency must be >= 1, --micro-batch >= 2, --time-limit > 0")

    work = Path(tempfile.mkdtemp(prefix="fluid-serve-load-"))
    run_dir = args.run_dir
    if run_dir is None:
        print("training a tiny model (demo_config, 1 epoch, 300 synthetic items) ...", flush=True)
        run_dir = _train_tiny_run(work)
    payloads = _payloads(min(args.requests, 256), args.seed)
    results: dict = {
        "benchmark": "serve_load", "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "endpoint": "POST /predict (multipart: text + 64x64 PNG, top_k=3)", "device": _device(),
        "config": {"requests": args.requests, "concurrency": args.concurrency, "time_limit_s": args.time_limit,
                   "run_dir": str(run_dir), "trained_here": args.run_dir is None},
        "modes": {},
    }
    for name, micro_batch, max_wait in (("micro_batching_off", 1, 0.0),
                                        ("micro_batching_on", args.micro_batch, args.max_wait_ms)):
        print(f"{name}: {args.requests} requests, {args.concurrency} clients ...", flush=True)
        results["modes"][name] = measure(run_dir, micro_batch=micro_batch, max_wait_ms=max_wait,
                                         requests=args.requests, concurrency=args.concurrency,
                                         time_limit=args.time_limit, payloads=payloads, log_dir=work)
    off, on = results["modes"]["micro_batching_off"], results["modes"]["micro_batching_on"]
    results["speedup_requests_per_second"] = (round(on["requests_per_second"] / off["requests_per_second"], 2)
                                              if off["requests_per_second"] and on["requests_per_second"] else None)

    print(f"{'mode':20s} {'req/s':>8s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} {'errors':>6s} "
          f"{'calls':>6s} {'batch':>6s}")
    for name, row in results["modes"].items():
        latency = row["latency_ms"]
        print(f"{name:20s} {row['requests_per_second'] or 0:8.1f} {latency['p50'] or 0:8.1f} "
              f"{latency['p95'] or 0:8.1f} {latency['p99'] or 0:8.1f} {row['errors']:6d} {row['model_calls']:6d} "
              f"{row['mean_batch_size'] or 0:6.2f}")
    print(f"speed-up with micro-batching: {results['speedup_requests_per_second']}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, results)
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
