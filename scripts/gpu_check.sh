#!/usr/bin/env bash
# The GPU path in one go (scripts/gpu_check.py says what it measures): on a machine with one
# NVIDIA GPU and no network, from a copy of this repository plus the folder that
# scripts/gpu_bundle.sh builds (.gpu/: wheels and shards, under 64 MiB with the repository).
#
#   scripts/gpu_check.sh --out DIR              # GPU: bf16 + fp32 training, codec, ~8 min
#   scripts/gpu_check.sh --out DIR --cpu --steps 3   # the same path on a CPU-only machine
#
# Packages the machine lacks are installed from .gpu/wheels into a private folder (never
# into the machine's own environment). Results: DIR/gpu_check.json.
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE="${GPU_BUNDLE:-.gpu}"
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3; fi

NEEDED="compressai deepspeed constriction webdataset pydantic hjson pytorch_msssim"
if ! "$PY" -c "import ${NEEDED// /, }" >/dev/null 2>&1; then
  [ -d "$BUNDLE/wheels" ] || {
    echo "gpu_check: missing packages and no $BUNDLE/wheels (run scripts/gpu_bundle.sh)" >&2
    exit 2
  }
  SITE="${TMPDIR:-/tmp}/ltchm-gpu-site"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$BUNDLE"/wheels/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" PATH="$SITE/bin:$PATH"
fi
export PYTHONUNBUFFERED=1
exec "$PY" scripts/gpu_check.py "$@"
