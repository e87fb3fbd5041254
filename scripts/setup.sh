#!/usr/bin/env bash
# Sets FLUID up in ./.venv (created if missing): PyTorch first — the CPU wheel on machines without an
# NVIDIA driver, so a bare `torch` requirement never pulls the multi-GB CUDA build there — then FLUID with
# its test extras. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
if ! python -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    echo "setup: NVIDIA driver found, installing the default (CUDA) PyTorch build"
    pip install --quiet torch
  else
    echo "setup: no GPU driver found, installing the CPU PyTorch wheel (torch==${FLUID_TORCH_VERSION:-2.13.0})"
    pip install --quiet "torch==${FLUID_TORCH_VERSION:-2.13.0}"
  fi
fi
# An older checkout installed this project under the distribution name "fluid": remove that record of it.
if pip show fluid 2>/dev/null | grep -x "Editable project location: $(pwd)" >/dev/null; then
  pip uninstall --quiet --yes fluid
fi
pip install --quiet -e ".[dev]"
echo "setup: done ($(python -c 'import torch, fluid; print("fluid", fluid.__version__, "torch", torch.__version__)'))"
