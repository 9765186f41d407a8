#!/usr/bin/env bash
# Build .gpu/ (or DEST): what scripts/gpu_check.sh needs on a GPU machine that has no
# network and only its own Python packages (Python 3.12, torch with CUDA, numpy 2):
#   DEST/wheels/  the project's dependencies it lacks, at the versions of constraints.txt
#                 (DeepSpeed is published as a source archive only: built here into a wheel);
#   DEST/shards/  training shards of the UC-Merced images, through `ltchm preprocess --local`.
# Run from the project's .venv (make setup). Usage: scripts/gpu_bundle.sh [DEST]
# Environment: GPU_PYTHON (default 3.12), the GPU machine's Python version.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="${1:-.gpu}"
PYV="${GPU_PYTHON:-3.12}"
PY=.venv/bin/python
[ -x "$PY" ] || { echo "gpu_bundle: no .venv; run 'make setup' first" >&2; exit 1; }

pin() {  # NAME -> NAME==VERSION from constraints.txt
  local line
  line=$(grep -i "^${1//[-_]/[-_]}==" constraints.txt | head -1) || true
  [ -n "$line" ] || { echo "gpu_bundle: $1 is not pinned in constraints.txt" >&2; exit 1; }
  echo "$line"
}

rm -rf "$DEST/wheels" && mkdir -p "$DEST/wheels"
# The GPU image has torch, numpy, psutil, py-cpuinfo, ninja, msgpack, einops, packaging, tqdm,
# pyyaml, pillow, scipy, pandas, matplotlib, torch-geometric, nvidia-ml-py; the rest:
NEEDED=(compressai constriction pydantic pydantic-core annotated-types typing-inspection
        typing-extensions hjson webdataset braceexpand pytorch-msssim tomli)
specs=()
for name in "${NEEDED[@]}"; do specs+=("$(pin "$name")"); done
# the GPU image is Ubuntu 24.04 (glibc 2.39): every manylinux tag up to 2_39 installs there
platforms=()
for tag in 1 2014 2_17 2_24 2_27 2_28 2_31 2_34 2_35 2_39; do
  case $tag in 1|2014) platforms+=(--platform "manylinux${tag}_x86_64") ;;
               *) platforms+=(--platform "manylinux_${tag}_x86_64") ;; esac
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" \
  --implementation cp "${platforms[@]}" -d "$DEST/wheels" "${specs[@]}" 2>&1 \
  | grep -v "^WARNING: Location" || true
for name in "${NEEDED[@]}"; do
  ls "$DEST/wheels" | grep -qi "^${name//-/_}-" || {
    echo "gpu_bundle: no wheel of $name for Python $PYV" >&2; exit 1; }
done
"$PY" -m pip wheel -q --no-deps -w "$DEST/wheels" "$(pin deepspeed)"

rm -rf "$DEST/shards"
images=$("$PY" -c "from ltchm.paths import default_images; print(default_images())")
cat > "$DEST/shards.yaml" <<YAML
preprocess: {layout: folder, split_ratios: [0.8, 0.1, 0.1], split_seed: 0}
YAML
.venv/bin/ltchm preprocess "$images" --out "$DEST/shards" --config "$DEST/shards.yaml" \
  --local --no-progress >/dev/null
echo "gpu_bundle: $(du -sh "$DEST" | cut -f1) in $DEST ($(ls "$DEST/wheels" | wc -l) wheels, shards of $images)"
