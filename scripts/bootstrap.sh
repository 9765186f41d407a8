#!/usr/bin/env bash
# One-shot set-up of a fresh machine: system tools (GDAL CLI, classical codecs) and the
# virtual environment at .venv with the project installed. Safe to re-run: it only does
# what is missing or out of date.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian/Ubuntu packages and the commands that prove each is present.
declare -A SYSTEM_PACKAGES=(
  [gdal-bin]=gdalinfo
  [libopenjp2-tools]=opj_compress
  [webp]=cwebp
  [libavif-bin]=avifenc
  [x265]=x265
  [ffmpeg]=ffmpeg
  [libjpeg-turbo-progs]=cjpeg
)

missing=()
for pkg in "${!SYSTEM_PACKAGES[@]}"; do
  command -v "${SYSTEM_PACKAGES[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: missing system tools (${missing[*]}) and no apt-get to install them;" \
         "install them with your package manager and re-run." >&2
    exit 1
  fi
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "bootstrap: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    SUDO="sudo"
  fi
  echo "bootstrap: installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3.12 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then PYTHON="$candidate"; break; fi
  done
fi
[ -n "$PYTHON" ] || { echo "bootstrap: no python3 found" >&2; exit 1; }

stamp=".venv/.bootstrap-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
echo "bootstrap: installing the project and its dependencies into .venv (a few minutes the first time)"
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
# constraints.txt pins the exact versions CI was last green with; pyproject.toml holds the ranges.
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
# DeepSpeed builds a CPU op at its first init; build it now, once for this environment
# (jobs/training/dsops.py says why it would otherwise be rebuilt).
.venv/bin/python -m jobs.training.dsops
rm -f .venv/.bootstrap-*
touch "$stamp"
