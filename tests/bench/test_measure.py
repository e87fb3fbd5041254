"""The benchmark's memory probes: a child process reports its own peak, not its parent's."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from fluid.bench.measure import PeakMemory, current_anon_rss_bytes, peak_rss_bytes

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status (Linux)")

CHILD = ("import json; from fluid.bench.measure import peak_rss_bytes; "
         "print(json.dumps(peak_rss_bytes()))")


@linux_only
def test_a_child_started_by_a_large_parent_reports_its_own_peak():
    ballast = np.ones(600 * 2**20 // 8)  # 600 MiB resident in this process
    assert peak_rss_bytes() >= ballast.nbytes
    child = subprocess.run([sys.executable, "-c", CHILD], check=True, capture_output=True, text=True)
    child_peak = json.loads(child.stdout)
    # ru_maxrss survives exec on Linux, so it would report this process's >= 600 MiB here
    assert 0 < child_peak < ballast.nbytes / 2
    del ballast


@linux_only
def test_peak_memory_sees_an_anonymous_allocation_inside_the_block():
    before = current_anon_rss_bytes()
    with PeakMemory(torch.device("cpu"), interval=0.001) as peak:
        block = np.ones(200 * 2**20 // 8)
        block[::512] = 2.0  # touch every page
        del block
    assert peak.anon_rss_bytes is not None and peak.anon_rss_bytes >= before + 150 * 2**20
    assert peak.rss_bytes >= peak.anon_rss_bytes
    assert peak.cuda_bytes is None
