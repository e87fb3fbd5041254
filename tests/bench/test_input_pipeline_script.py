"""benchmarks/input_pipeline.py at a tiny size: it runs end to end, writes every key, and its deferred
normalisation reproduces the image processor's output (no timing assertions: the numbers depend on the machine)."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "input_pipeline.py"


def test_input_pipeline_benchmark_writes_its_results(tmp_path):
    out = tmp_path / "pipeline.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--items", "12", "--size", "tiny", "--batch-size", "5", "--repeats", "1",
         "--json", str(out)], capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["items"] == 12 and report["image_size"] == [228, 298]
    (run,) = report["runs"]
    assert run["size"] == "tiny" and run["pixel_shape"] == [3, 64, 64]
    assert set(run["ms_per_item"]) == {"decode", "processor_on_cpu", "preprocessor", "normalise", "tokenise"}
    assert all(v > 0 for v in run["ms_per_item"].values())
    assert run["bytes_per_image_to_device"] == {"before": 4 * 3 * 64 * 64, "now": 3 * 64 * 64}
    assert run["max_abs_diff_to_processor"] <= 1e-6
    ms = run["ms_per_item"]
    speedup = run["image_preprocessing_speedup"]["normalised_on_the_device"]
    assert abs(speedup - ms["processor_on_cpu"] / ms["preprocessor"]) < 0.02
    assert "tiny preprocessing" in completed.stdout and "wrote" in completed.stdout
