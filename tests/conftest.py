"""Session-wide test settings and fixtures shared across packages."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager

import pandas as pd
import pytest
from PIL import Image

from fluid import Classifier
from fluid.config import SMOKE_TEST_OVERRIDES


def pytest_configure(config):
    # The feature cache defaults to ~/.cache/fluid/features; tests write theirs into a throw-away folder.
    os.environ["FLUID_CACHE_DIR"] = tempfile.mkdtemp(prefix="fluid-test-cache-")


COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}


@pytest.fixture(scope="session")
def trained_run_dir(tmp_path_factory):
    """A run directory of a FLUID model trained for 2 epochs on 48 products in 3 colour classes (a CSV with
    id, title, img, cat columns), shared by the server, web, batching, fuzzing, load-test and export tests.
    Tests that write into a run directory copy it first."""
    root = tmp_path_factory.mktemp("catalogue")
    (root / "imgs").mkdir()
    rows = []
    for i in range(48):
        colour = list(COLOURS)[i % 3]
        Image.new("RGB", (32, 32), COLOURS[colour]).save(root / "imgs" / f"{i}.png")
        rows.append({"id": f"p{i}", "title": f"{colour} shirt {i}", "img": f"imgs/{i}.png", "cat": f"cat-{colour}"})
    pd.DataFrame(rows).to_csv(root / "products.csv", index=False)
    classifier = Classifier(label="cat", text="title", image="img", id="id", image_root=str(root),
                            **SMOKE_TEST_OVERRIDES)
    classifier.fit(str(root / "products.csv"), seed=0, progress=False)
    out = tmp_path_factory.mktemp("run") / "fluid"
    classifier.save(out)
    return out


@contextmanager
def running_server(run_dir, *, startup_seconds: float = 180):
    """``fluid serve RUN_DIR`` in a real process on a free loopback port; yields its base URL once /health
    answers, and stops it afterwards. A loaded CI machine can take a minute to import torch."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([sys.executable, "-m", "fluid", "serve", str(run_dir), "--host", "127.0.0.1",
                                "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.monotonic() + startup_seconds
        while True:
            assert process.poll() is None, process.stdout.read().decode(errors="replace")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                    if json.loads(response.read()) == {"status": "ok"}:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"server did not come up within {startup_seconds} s"
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def serve_process():
    """``with serve_process(run_dir) as base_url: ...`` — see :func:`running_server`."""
    return running_server


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module: small models on a shared 2-core machine run several times faster on
    one thread than on two contending ones."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
