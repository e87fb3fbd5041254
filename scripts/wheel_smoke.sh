#!/usr/bin/env bash
# Builds the wheel and the sdist, installs the wheel (not editable) into a fresh virtual environment, and runs
# FLUID from outside the source tree: catches what an editable install hides, such as files missing from the
# package (the server's web page). Needs ./.venv (scripts/setup.sh) for the build frontend.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
echo "wheel smoke: building the wheel and the sdist"
.venv/bin/python -m build --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; exit 1; }
wheel=$(ls "$WORK"/dist/*.whl)
sdist=$(ls "$WORK"/dist/*.tar.gz)
echo "wheel smoke: built $(basename "$wheel") and $(basename "$sdist")"
tar tzf "$sdist" >"$WORK/sdist.txt"
unzip -Z1 "$wheel" >"$WORK/wheel.txt" 2>/dev/null || .venv/bin/python -m zipfile -l "$wheel" >"$WORK/wheel.txt"
for member in fluid/serve/static/index.html fluid/serve/static/app.js fluid/serve/static/style.css; do
  grep "/$member$" "$WORK/sdist.txt" >/dev/null || { echo "wheel smoke: $member is missing from the sdist" >&2; exit 1; }
  grep "$member" "$WORK/wheel.txt" >/dev/null || { echo "wheel smoke: $member is missing from the wheel" >&2; exit 1; }
done
"$(.venv/bin/python -c 'import sys; print(sys._base_executable)')" -m venv "$WORK/venv"
pip_fresh=("$WORK/venv/bin/pip" install --quiet --disable-pip-version-check)
if command -v nvidia-smi >/dev/null 2>&1; then
  "${pip_fresh[@]}" torch
else
  "${pip_fresh[@]}" "torch==${FLUID_TORCH_VERSION:-2.13.0}"
fi
"${pip_fresh[@]}" "$wheel[serve]" httpx
cd "$WORK"  # outside the source tree: only the installed wheel can be imported
export CI=true HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
"$WORK/venv/bin/python" - "$ROOT" <<'PY'
import importlib.metadata
import sys
from pathlib import Path

import fluid
from fluid.version import DISTRIBUTION

root = Path(sys.argv[1]).resolve()
where = Path(fluid.__file__).resolve()
assert root not in where.parents, f"imported fluid from the source tree ({where}), not the installed wheel"
assert importlib.metadata.version(DISTRIBUTION) == fluid.__version__
from fastapi.testclient import TestClient  # noqa: E402
from fluid.serve.web import router  # noqa: E402
from fastapi import FastAPI  # noqa: E402

app = FastAPI()
app.include_router(router)
page = TestClient(app).get("/")
assert page.status_code == 200 and "<html" in page.text.lower(), page.status_code
print(f"wheel smoke: fluid {fluid.__version__} imported from {where.parent}; the web page is served")
PY
fluid_cli="$WORK/venv/bin/fluid"
"$fluid_cli" --version
"$fluid_cli" synth --out catalogue --items 120 --seed 0 >/dev/null
"$fluid_cli" train --data catalogue --out run --model fluid --text-encoder tiny --image-encoder tiny --epochs 1 \
  --no-floor >"$WORK/train.log" 2>&1 || { tail -30 "$WORK/train.log"; exit 1; }
"$fluid_cli" predict run --text "a red cotton shirt" --top-k 2 >"$WORK/predict.json"
"$WORK/venv/bin/python" -c "import json, sys; out = json.load(open(sys.argv[1])); print('wheel smoke: predict ->', out)" \
  "$WORK/predict.json"
echo "wheel smoke: passed"
