#!/usr/bin/env bash
# What a user gets from `pip install ssdiff-*.whl`: build the wheel, install it (not editable)
# into a fresh virtual environment outside the checkout, and run it from there:
# `ssdiff --version`, `ssdiff models list` (must list every model shipped in ssdiff_cli/models),
# and `ssdiff sharpen --method ssdiff` on a shared scene (skipped, with a message, when
# ../shared/data is absent). Prints the wheel's size. Run by .ci/run.
#
# PyTorch is installed first as `torch==$TORCH_VERSION` from pip's configured index (a bare
# `torch` would pull the multi-GB CUDA build), as scripts/setup.sh does.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DATA=${SSDIFF_TEST_DATA:-$ROOT/../shared/data}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
SCENE=ge1_grip
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ssdiff-wheel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
fail() { printf 'wheel_check: FAIL: %s\n' "$*" >&2; exit 1; }

# Build from a copy of the sources, so the checkout gets no build/ or egg-info.
mkdir "$WORK/src"
cp pyproject.toml README.md "$WORK/src/"
cp -r ssdiff_cli "$WORK/src/"
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
"$PYTHON" -m pip wheel -q --no-deps -w "$WORK/dist" "$WORK/src"
WHEEL=$(ls "$WORK"/dist/ssdiff-*.whl)
echo "wheel: $(basename "$WHEEL"), $(du -k "$WHEEL" | cut -f1) KiB"

"$PYTHON" -m venv "$WORK/venv"
PIP=("$WORK/venv/bin/python" -m pip install -q)
"${PIP[@]}" "torch==$TORCH_VERSION"
"${PIP[@]}" "$WHEEL"

# From outside the checkout, so nothing can be imported from it.
cd "$WORK"
SSDIFF=$WORK/venv/bin/ssdiff
where=$("$WORK/venv/bin/python" -c 'import ssdiff_cli; print(ssdiff_cli.__file__)')
case "$where" in "$WORK/venv/"*) ;; *) fail "ssdiff_cli imported from $where, not the fresh environment" ;; esac

version=$("$SSDIFF" --version)
want=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$ROOT/pyproject.toml" | head -n 1)
[ "$version" = "ssdiff $want" ] || fail "--version printed '$version', expected 'ssdiff $want'"
echo "$version"

"$SSDIFF" models list
"$SSDIFF" models list --json >models.json
for card in "$ROOT"/ssdiff_cli/models/*.json; do
    name=$(basename "$card" .json)
    [ -f "${card%.json}.safetensors" ] || continue
    "$WORK/venv/bin/python" -c 'import json, sys
names = [m["name"] for m in json.load(open("models.json"))["models"]]
sys.exit(sys.argv[1] not in names)' "$name" || fail "the installed wheel does not list the shipped model $name"
done

if [ ! -f "$DATA/$SCENE/pan.tif" ]; then
    echo "wheel_check: shared scenes not found at $DATA: skipping the sharpen from the installed wheel"
    exit 0
fi
"$SSDIFF" sharpen "$DATA/$SCENE/pan.tif" "$DATA/$SCENE/ms.tif" -o "$WORK/out.tif" --method ssdiff --json -q \
    >sharpen.json
"$WORK/venv/bin/python" - <<'EOF' || fail "sharpen --method ssdiff from the wheel did not use a shipped model"
import json
import sys

import rasterio

report = json.load(open("sharpen.json"))
method = report["method"]
with rasterio.open(report["output"]) as d:
    band = d.read(1, masked=True)
    print(f"sharpen: method {method['name']}, model {method.get('model')}, {report['seconds']:.1f} s; "
          f"output {d.width}x{d.height}, {d.count} bands, band 1 range {band.min()}..{band.max()}")
    ok = method["name"] == "ssdiff" and method.get("model") and band.max() > band.min()
sys.exit(not ok)
EOF
echo "wheel_check: PASS"
