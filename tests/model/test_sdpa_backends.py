"""Attention over batch-dependent lengths excludes cuDNN's SDPA kernel on CUDA and changes nothing elsewhere."""

from __future__ import annotations

import torch

from fluid.sdpa import varying_length_attention


def test_cuda_attention_runs_without_the_cudnn_kernel_and_restores_it():
    before = torch.backends.cuda.cudnn_sdp_enabled()
    with varying_length_attention(torch.device("cuda")):
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.mem_efficient_sdp_enabled()
        assert torch.backends.cuda.math_sdp_enabled()
    assert torch.backends.cuda.cudnn_sdp_enabled() == before


def test_cpu_attention_is_untouched():
    before = torch.backends.cuda.cudnn_sdp_enabled()
    with varying_length_attention(torch.device("cpu")):
        assert torch.backends.cuda.cudnn_sdp_enabled() == before


def test_fp32_cuda_attention_outside_autocast_sets_nothing_and_half_precision_does(monkeypatch):
    before = torch.backends.cuda.cudnn_sdp_enabled()
    with varying_length_attention(torch.device("cuda"), torch.float32):
        assert torch.backends.cuda.cudnn_sdp_enabled() == before  # cuDNN's kernel takes fp16/bf16 only
    for dtype in (torch.bfloat16, torch.float16):
        with varying_length_attention(torch.device("cuda"), dtype):
            assert not torch.backends.cuda.cudnn_sdp_enabled()
    # under CUDA autocast fp32 inputs become bf16 inside SDPA (autocast itself needs a GPU: simulated)
    monkeypatch.setattr(torch, "is_autocast_enabled", lambda device_type=None: device_type == "cuda")
    with varying_length_attention(torch.device("cuda"), torch.float32):
        assert not torch.backends.cuda.cudnn_sdp_enabled()
    assert torch.backends.cuda.cudnn_sdp_enabled() == before
