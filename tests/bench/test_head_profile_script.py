"""benchmarks/head_profile.py, shortest settings: it runs end to end and writes its timings and the head's host cost
(no timing assertions: the numbers depend on the machine; operator counts do not)."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "head_profile.py"


def test_head_profile_reports_timings_and_the_operators_each_dispatch_issues(tmp_path):
    out = tmp_path / "head.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--batches", "1", "--dispatch", "sparse", "dense", "--repeats", "1",
         "--rounds", "1", "--warmup", "1", "--profile-calls", "0", "--text-length", "9", "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["timings"]) == {"sparse/batch_1", "dense/batch_1"}
    assert report["head_parameters"] > 40_000_000  # the paper-size head
    host = report["host_cost_batch_1"]
    assert {d: host[d]["width"] for d in host} == {"sparse": 16, "dense": 16}
    assert all(host[d]["median_ms"] > 0 and host[d]["calls"] == 10 for d in host)
    # all 16 experts in two matrix products: fewer operators than running the 2 routed experts one by one
    assert 0 < host["dense"]["operators_per_call"] < host["sparse"]["operators_per_call"] < 200
