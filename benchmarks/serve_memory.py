"""Memory of ``fluid serve`` under adversarial-but-within-limits images (issue #24 item 1): decompression bombs under
PIL's 89.5-megapixel guard, a large JPEG, and the largest ``/predict/batch`` of them that the body limit lets in.

    python benchmarks/serve_memory.py                        # trains a tiny model first (~1 min on 2 cores)
    python benchmarks/serve_memory.py --run-dir runs/products --scenarios png_81mp jpeg_48mp
    python benchmarks/serve_memory.py --src /tmp/old-checkout --out /tmp/before.json  # another version's server

Each scenario starts a fresh server (``python -m fluid serve RUN_DIR`` on a free loopback port, one process, the
default limits unless the scenario sets one), sends three small warm-up requests, reads the server's resident
memory (the *baseline*), sends the scenario's requests, and reports:

* ``peak_rss_mib``: the server process's peak resident memory (``VmHWM`` of ``/proc/PID/status``; with psutil and
  no ``/proc``, the highest of the samples taken every 10 ms);
* ``after_rss_mib``: its resident memory one second after the last answer (what the server keeps);
* the HTTP statuses and the first error message.

A monitor thread stops a server whose resident memory passes ``--rss-cap-mib`` (default 8192) and the scenario
is reported as ``"killed_at_cap"``, so a version without the bound cannot exhaust the machine. ``--src DIR``
runs the server from another checkout (its ``fluid`` package; e.g. ``git worktree add /tmp/old <commit>``): a
scenario option that version does not have (``--max-image-pixels``) is left out and the result says so. Writes
``benchmarks/results/serve_memory.json`` (``--out``) and prints a table. Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))  # the same tiny model and free port as the load test
from serve_load import _free_port, _train_tiny_run

from fluid.atomic import write_json_atomic

RESULTS = Path(__file__).parent / "results" / "serve_memory.json"
BODY_LIMIT = 10 * 1024 * 1024  # the server's default --max-upload-mb 10
MAX_BATCH = 64  # the server's default --max-batch
RAISED = ["--max-image-pixels", "90000000"]  # above the 81 MP PNG: it is decoded (and downscaled) instead of refused

try:
    import psutil
except ImportError:  # /proc is enough on Linux
    psutil = None


# ------------------------------------------------------------------------------------------------ payloads
def _encode(im, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **kw)
    return buffer.getvalue()


def payloads() -> dict[str, bytes]:
    from PIL import Image

    return {
        "small_png": _encode(Image.new("RGB", (64, 64), (200, 30, 30)), "PNG"),
        # the image: 9000x9000 1-bit, 81 MP (under PIL's 89.5 MP guard), ~10 KB
        "png_81mp": _encode(Image.new("1", (9000, 9000)), "PNG"),
        # 8000x6000 = 48 MP, ~0.75 MB: a camera-size JPEG
        "jpeg_48mp": _encode(Image.new("RGB", (8000, 6000), (200, 30, 30)), "JPEG", quality=75),
    }


def _batch_body(image: bytes, count: int) -> list[dict]:
    encoded = base64.b64encode(image).decode()
    return [{"text": "red cotton shirt", "image_base64": encoded} for _ in range(count)]


def _fitting(image: bytes, limit: int = BODY_LIMIT, most: int = MAX_BATCH) -> int:
    """The most copies of ``image`` one /predict/batch body holds within the body limit (and max_batch)."""
    per_item = len(_batch_body(image, 1)[0]["image_base64"]) + 60
    return max(1, min(most, (limit - 64) // per_item))


# ------------------------------------------------------------------------------------------------ memory
def _status(pid: int) -> dict[str, float]:
    """``VmRSS`` and ``VmHWM`` of a process, in MiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM") if key in fields}
    except OSError:
        if psutil is None:
            raise RuntimeError("reading the server's memory needs /proc (Linux) or psutil") from None
        return {"VmRSS": psutil.Process(pid).memory_info().rss / 2**20}


class Monitor:
    """Samples the server's RSS every 10 ms; stops it past ``cap_mib``."""

    def __init__(self, process: subprocess.Popen, cap_mib: float):
        self.process, self.cap_mib = process, cap_mib
        self.peak_sampled = 0.0
        self.killed_at_cap = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and self.process.poll() is None:
            with contextlib.suppress(Exception):
                rss = _status(self.process.pid).get("VmRSS", 0.0)
                self.peak_sampled = max(self.peak_sampled, rss)
                if rss > self.cap_mib:
                    self.killed_at_cap = True
                    self.process.kill()
                    return
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# ------------------------------------------------------------------------------------------------ the server
class Server:
    def __init__(self, run_dir: Path, args: list[str], src: Path | None, log_dir: Path, name: str):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(log_dir / f"server-{name}.log", "wb")  # noqa: SIM115 - closed in stop
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "CI": "1"}
        if src is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fluid", "serve", str(run_dir), "--host", "127.0.0.1", "--port", str(self.port),
             *args], stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=str(src) if src else None)

    def wait_ready(self, client: httpx.Client, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.process.returncode}; see {self.log.name}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"the server did not answer /health within {timeout:.0f} s; see {self.log.name}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def _supports_option(src: Path | None, option: str) -> bool:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    result = subprocess.run([sys.executable, "-m", "fluid", "serve", "--help"], capture_output=True, text=True,
                            check=False, env={**env, "COLUMNS": "200"}, cwd=str(src) if src else None, timeout=300)
    return option in result.stdout


# ------------------------------------------------------------------------------------------------ scenarios
def _predict(client, base, image: bytes, name: str):
    return client.post(f"{base}/predict", data={"text": "red cotton shirt", "top_k": "3"},
                       files={"image": (name, image, "application/octet-stream")})


def scenarios(images: dict[str, bytes]) -> dict[str, dict]:
    """name -> {"about", "args" (server options), "run": f(client, base) -> [responses]}."""
    png, jpeg, small = images["png_81mp"], images["jpeg_48mp"], images["small_png"]
    png_batch, jpeg_batch = _fitting(png), _fitting(jpeg)

    def sequential(image, count, name):
        return lambda client, base: [_predict(client, base, image, name) for _ in range(count)]

    def batch(image, count):
        body = _batch_body(image, count)
        return lambda client, base: [client.post(f"{base}/predict/batch?top_k=3", json=body)]

    def concurrent(image, count, name):
        def run(client, base):
            with ThreadPoolExecutor(count) as pool:
                return list(pool.map(lambda _: _predict(client, base, image, name), range(count)))
        return run

    return {
        "small_png_x32": {"about": "32 x /predict, 64x64 PNG + text (control)", "args": [],
                          "run": sequential(small, 32, "x.png")},
        "png_81mp": {"about": "/predict, 9000x9000 1-bit PNG (81 MP, 10 KB), default limits", "args": [],
                     "run": sequential(png, 1, "bomb.png")},
        "png_81mp_raised": {"about": "/predict, the same PNG with --max-image-pixels 90000000 (decoded)",
                            "args": RAISED, "run": sequential(png, 1, "bomb.png")},
        "jpeg_48mp": {"about": "/predict, 8000x6000 JPEG (48 MP), default limits", "args": [],
                      "run": sequential(jpeg, 1, "big.jpg")},
        "batch8_png_81mp_raised": {"about": "/predict/batch of 8 x the 81 MP PNG (the issue's batch), "
                                            "--max-image-pixels 90000000", "args": RAISED,
                                   "run": batch(png, 8)},
        f"batch{png_batch}_png_81mp": {"about": f"/predict/batch of {png_batch} x the 81 MP PNG (max_batch), "
                                                "default limits", "args": [], "run": batch(png, png_batch)},
        f"batch{png_batch}_png_81mp_raised": {"about": f"/predict/batch of {png_batch} x the 81 MP PNG, "
                                                       "--max-image-pixels 90000000", "args": RAISED,
                                              "run": batch(png, png_batch)},
        f"batch{jpeg_batch}_jpeg_48mp": {"about": f"/predict/batch of {jpeg_batch} x the 48 MP JPEG (as many as "
                                                  "the 10 MB body limit holds)", "args": [],
                                         "run": batch(jpeg, jpeg_batch)},
        "concurrent8_png_81mp_raised": {"about": "8 concurrent /predict of the 81 MP PNG, --max-image-pixels "
                                                 "90000000", "args": RAISED,
                                        "run": concurrent(png, 8, "bomb.png")},
        "concurrent8_jpeg_48mp": {"about": "8 concurrent /predict of the 48 MP JPEG", "args": [],
                                  "run": concurrent(jpeg, 8, "big.jpg")},
    }


def _summary(responses) -> dict:
    statuses, first_error, items, item_errors = [], None, 0, 0
    for response in responses:
        statuses.append(response.status_code)
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else None
        if response.status_code != 200 and first_error is None:
            first_error = (body or {}).get("detail") if isinstance(body, dict) else response.text[:300]
        if isinstance(body, list):  # /predict/batch: per-item errors
            items += len(body)
            errors = [item["error"] for item in body if "error" in item]
            item_errors += len(errors)
            if errors and first_error is None:
                first_error = errors[0]
    out = {"statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))}, "first_error": first_error}
    if items:
        out.update(batch_items=items, batch_item_errors=item_errors)
    return out


def measure(name: str, scenario: dict, *, run_dir: Path, src: Path | None, supported: bool, cap_mib: float,
            log_dir: Path, small: bytes) -> dict:
    args = scenario["args"]
    note = None
    if args and not supported:
        note = f"this version has no {args[0]}: run with its defaults"
        args = []
    server = Server(run_dir, args, src, log_dir, name)
    result: dict = {"about": scenario["about"], "server_args": args}
    if note:
        result["note"] = note
    monitor = None
    try:
        with httpx.Client(timeout=600) as client:
            server.wait_ready(client)
            for _ in range(3):  # warm-up: the first model call allocates the encoders' working memory
                _predict(client, server.base, small, "x.png").raise_for_status()
            time.sleep(0.5)
            baseline = _status(server.process.pid)
            monitor = Monitor(server.process, cap_mib)
            started = time.perf_counter()
            try:
                responses = scenario["run"](client, server.base)
                result.update(_summary(responses))
            except httpx.HTTPError as error:  # the server died (e.g. stopped at the cap)
                result["error"] = f"{type(error).__name__}: {error}"
            result["seconds"] = round(time.perf_counter() - started, 2)
            time.sleep(1.0)
            alive = server.process.poll() is None
            after = _status(server.process.pid) if alive else {}
        monitor.stop()
        peak = after.get("VmHWM", monitor.peak_sampled) if alive else monitor.peak_sampled
        result.update({
            "baseline_rss_mib": round(baseline["VmRSS"], 1),
            "peak_rss_mib": round(peak, 1),
            "peak_over_baseline_mib": round(peak - baseline["VmRSS"], 1),
            "after_rss_mib": round(after["VmRSS"], 1) if alive else None,
            "killed_at_cap": monitor.killed_at_cap,
            "server_exit_code": None if alive else server.process.returncode,
        })
    finally:
        if monitor is not None:
            monitor.stop()
        server.stop()
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, default=None, help="a trained run (default: train a tiny one)")
    parser.add_argument("--src", type=Path, default=None,
                        help="run the server from this checkout's fluid package (default: the installed one)")
    parser.add_argument("--scenarios", nargs="*", default=None, help="names to run (default: all)")
    parser.add_argument("--rss-cap-mib", type=float, default=8192.0, help="stop a server whose RSS passes this")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="fluid-serve-memory-"))
    run_dir = args.run_dir
    if run_dir is None:
        print("training a tiny model (demo_config, 1 epoch, 300 synthetic items) ...", flush=True)
        run_dir = _train_tiny_run(work)
    run_dir = run_dir.resolve()
    src = args.src.resolve() if args.src else None
    images = payloads()
    table = scenarios(images)
    names = args.scenarios or list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {list(table)}")
    supported = _supports_option(src, "--max-image-pixels")
    results: dict = {
        "benchmark": "serve_memory", "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/serve_memory.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "src": str(src) if src else "installed fluid", "server_has_max_image_pixels": supported,
        "run_dir": str(run_dir), "trained_here": args.run_dir is None,
        "payload_bytes": {name: len(data) for name, data in images.items()},
        "machine": {"system": platform.system(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version(),
                    "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None},
        "rss_cap_mib": args.rss_cap_mib, "scenarios": {},
    }
    for name in names:
        print(f"{name}: {table[name]['about']} ...", flush=True)
        results["scenarios"][name] = row = measure(name, table[name], run_dir=run_dir, src=src,
                                                   supported=supported, cap_mib=args.rss_cap_mib, log_dir=work,
                                                   small=images["small_png"])
        print(f"    baseline {row['baseline_rss_mib']} MiB, peak {row['peak_rss_mib']} MiB "
              f"(+{row['peak_over_baseline_mib']}), after {row['after_rss_mib']} MiB, {row.get('statuses')}"
              f"{', KILLED AT CAP' if row['killed_at_cap'] else ''}", flush=True)

    print(f"\n{'scenario':34s} {'baseline':>9s} {'peak':>8s} {'+peak':>8s} {'after':>8s}  statuses / first error")
    for name, row in results["scenarios"].items():
        after = "-" if row["after_rss_mib"] is None else f"{row['after_rss_mib']:.0f}"
        error = (row.get("first_error") or "")[:70]
        print(f"{name:34s} {row['baseline_rss_mib']:9.0f} {row['peak_rss_mib']:8.0f} "
              f"{row['peak_over_baseline_mib']:8.0f} {after:>8s}  {row.get('statuses')} {error}"
              f"{' KILLED AT CAP' if row['killed_at_cap'] else ''}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, results)
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
