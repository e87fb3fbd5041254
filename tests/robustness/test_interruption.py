"""kill -9 during `fluid train`, then `fluid train --resume`: the same final model and metrics as an uninterrupted
run with the same seed (CPU, deterministic). Checkpoints are written atomically."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from fluid.cli import app
from fluid.training.trainer import AtomicCheckpointIO

EPOCHS = 3


def _train_args(corpus, out, *extra):
    return ["train", "--data", str(corpus.latin1), "--out", str(out), "--config", str(corpus.root / "tiny.yaml"),
            "--text-col", "title", "--text-col", "description", "--image-col", "img", "--label-col", "cat",
            "--id-col", "id", "--seed", "0", "--epochs", str(EPOCHS), "--modality-dropout", "0.3", *extra]


@pytest.mark.slow
def test_kill_9_then_resume_equals_an_uninterrupted_run(corpus, tmp_path):
    whole = tmp_path / "whole"
    result = CliRunner().invoke(app, _train_args(corpus, whole))
    assert result.exit_code == 0, result.output

    killed = tmp_path / "killed"
    env = {**os.environ, "CI": "1"}
    process = subprocess.Popen([sys.executable, "-m", "fluid", *_train_args(corpus, killed)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = killed / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    still_running = process.poll() is None
    process.send_signal(signal.SIGKILL)
    stderr = process.communicate()[1].decode(errors="replace")
    assert still_running and process.returncode == -signal.SIGKILL, stderr[-2000:]
    assert not (killed / "metrics.json").exists()  # it really was cut short
    epoch_at_kill = torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"]
    assert epoch_at_kill < EPOCHS - 1

    result = CliRunner().invoke(app, _train_args(corpus, killed, "--resume"))
    assert result.exit_code == 0, result.output
    final_whole = json.loads((whole / "metrics.json").read_text())
    final_resumed = json.loads((killed / "metrics.json").read_text())
    assert final_resumed["epochs_run"] == final_whole["epochs_run"] == EPOCHS
    assert final_resumed["best_epoch"] == final_whole["best_epoch"]
    for key in ("accuracy", "macro_f1", "confusion_matrix", "n_items"):
        assert final_resumed["validation"][key] == final_whole["validation"][key], key
    weights_whole, weights_resumed = load_file(whole / "model.safetensors"), load_file(killed / "model.safetensors")
    assert weights_whole.keys() == weights_resumed.keys()
    for name, tensor in weights_whole.items():
        assert torch.equal(tensor, weights_resumed[name]), name
    assert not list((killed / "checkpoints").glob("*.tmp"))


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    """A save that dies half-way leaves the previous checkpoint intact and no partial file under its name."""
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1, "state_dict": {"w": torch.ones(3)}}, path)

    def dies_half_way(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"epoch": 2, "state_dict": {"w": torch.zeros(3)}}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]
