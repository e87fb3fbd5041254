"""benchmarks/serve_load.py at a tiny size: it runs end to end and writes every key, with no failed request
(no timing assertions: the numbers depend on the machine)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "serve_load.py"


@pytest.mark.slow
def test_serve_load_benchmark_writes_its_results(trained_run_dir, tmp_path):
    out = tmp_path / "serve_load.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--run-dir", str(trained_run_dir), "--requests", "12", "--concurrency", "4",
         "--time-limit", "120", "--micro-batch", "8", "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    results = json.loads(out.read_text())
    assert {"benchmark", "created", "endpoint", "device", "config", "modes", "speedup_requests_per_second"} <= set(
        results)
    assert set(results["modes"]) == {"micro_batching_off", "micro_batching_on"}
    for name, mode in results["modes"].items():
        assert mode["errors"] == 0, (name, mode["error_examples"])
        assert mode["requests_ok"] == mode["requests_sent"] == 12
        assert mode["concurrency"] == 4 and mode["requests_per_second"] > 0
        assert set(mode["latency_ms"]) == {"p50", "p95", "p99", "mean", "max"}
        assert mode["latency_ms"]["p50"] <= mode["latency_ms"]["p95"] <= mode["latency_ms"]["p99"]
    assert results["modes"]["micro_batching_off"]["model_calls"] == 12  # one call per request
    assert results["modes"]["micro_batching_on"]["micro_batch"] == 8
    assert results["device"]["inference"].startswith("cpu") and results["device"]["cpu_count"] >= 1
    assert "micro_batching_on" in completed.stdout and "wrote" in completed.stdout
