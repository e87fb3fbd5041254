"""Where `Classifier.fit` holds its memory: the peak resident and anonymous memory of each stage of one training
run (read the catalogue, split, build the network and its tokenizer, the feature cache and loaders, train,
evaluate), sampled every 20 ms by a thread. Run it at two catalogue sizes to see which stage grows.

    python -c "from fluid.data.synthetic import write_synthetic as w; w('/tmp/c100k', items=100_000)"
    OMP_NUM_THREADS=1 python benchmarks/fit_memory_stages.py /tmp/c100k --json stages-100k.json

Stages are found by wrapping the functions ``Classifier.fit`` calls (``read``, ``stratified_split``, the deep
learner's ``build`` and ``cached_features``, ``train_network``, ``evaluate_frame``); "between X and Y" is the
work in ``fit`` itself between two of them (e.g. building the DataLoaders before ``train_network``). Linux only
(``/proc/self/status``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from fluid.bench.measure import _status_kib


class StageSampler:
    """Peak ``RssAnon`` / ``VmRSS`` (MiB) per stage name, sampled by a daemon thread."""

    def __init__(self, interval: float = 0.02) -> None:
        self.stage = "imports"
        self.peaks: dict[str, dict[str, float]] = {}
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        status = _status_kib("RssAnon", "VmRSS")
        peak = self.peaks.setdefault(self.stage, {"anon_mib": 0.0, "rss_mib": 0.0})
        peak["anon_mib"] = max(peak["anon_mib"], round(status.get("RssAnon", 0) / 1024, 1))
        peak["rss_mib"] = max(peak["rss_mib"], round(status.get("VmRSS", 0) / 1024, 1))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    def __enter__(self) -> "StageSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._sample()
        self._stop.set()
        self._thread.join()

    def wrap(self, owner, name: str) -> None:
        """Make ``owner.name`` a stage of its own; the time after it, until the next stage, is "after <name>"."""
        inner = getattr(owner, name)

        def staged(*args, **kwargs):
            self._sample()
            self.stage = name
            try:
                return inner(*args, **kwargs)
            finally:
                self._sample()
                self.stage = f"after {name}"

        setattr(owner, name, staged)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a catalogue fluid can read (e.g. a synthetic GLAMI-layout folder)")
    parser.add_argument("--model", default="fluid", help="demo configuration of this model (default fluid)")
    parser.add_argument("--json", type=Path, help="write the per-stage peaks here")
    args = parser.parse_args(argv)

    import fluid.api as api
    import fluid.data as data
    import fluid.training.trainer as trainer
    from fluid.config import demo_config
    from fluid.learners import DeepLearner

    sampler = StageSampler()
    for owner, name in ((api.Classifier, "read"), (data, "stratified_split"), (DeepLearner, "build"),
                        (DeepLearner, "cached_features"), (trainer, "train_network"), (api, "evaluate_frame")):
        sampler.wrap(owner, name)
    params = demo_config(args.model, epochs=1, floor=False).to_dict()
    params.pop("columns")  # a GLAMI-layout folder has fixed columns
    with tempfile.TemporaryDirectory() as run_dir, sampler:
        sampler.stage = "before fit"
        api.Classifier(path=str(Path(run_dir) / "run"), **params).fit(args.data, progress=False)
    result = {"data": str(args.data), "model": args.model, "stages": sampler.peaks,
              "peak_rss_mib": round(_status_kib("VmHWM")["VmHWM"] / 1024, 1)}
    for stage, peak in sampler.peaks.items():
        print(f"{stage:28s} peak anonymous {peak['anon_mib']:8.1f} MiB   RSS {peak['rss_mib']:8.1f} MiB")
    print(f"process peak RSS (VmHWM): {result['peak_rss_mib']} MiB")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
