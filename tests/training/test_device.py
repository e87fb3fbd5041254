"""Where Classifier builds its feature cache and scores items: RunConfig.device and its resolution."""

from __future__ import annotations

import pytest
import torch

from fluid.config import RunConfig
from fluid.training.device import resolve_device


def test_auto_is_the_gpu_when_pytorch_sees_one_else_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_device("auto") == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "1")  # a multi-process run: each process its own GPU
    assert resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match=r"device='cuda:2', but this machine has 2 GPU\(s\)"):
        resolve_device("cuda:2")


def test_a_device_this_pytorch_cannot_use_is_an_actionable_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"device='cuda', but this PyTorch sees no GPU .*use device='cpu' or 'auto'"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match=r"device='gpu' is not one of"):
        resolve_device("gpu")


@pytest.mark.parametrize("value", ["gpu", "cuda:x", "CPU", "", 0])
def test_run_config_refuses_unknown_devices(value):
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"):
        RunConfig(device=value)
    assert RunConfig().device == "auto"
