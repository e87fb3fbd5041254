"""The benchmark suite (``fluid bench``): see :func:`fluid.bench.suite.run_suite` and docs/benchmarks.md."""

from fluid.bench.report import write_markdown
from fluid.bench.suite import Plan, run_suite

__all__ = ["Plan", "run_suite", "write_markdown"]
