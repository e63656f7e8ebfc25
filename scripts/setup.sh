#!/usr/bin/env bash
# One-time set-up on a fresh machine: a virtual environment in .venv with the CPU build of
# PyTorch and ssdiff installed in editable mode with its test tools. Safe to run again.
# Also installs Debian's gdal-bin (gdal_pansharpen.py) for the GDAL agreement test when apt is
# available and we are root; without it that one test skips.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# The CPU build: a bare `torch` requirement would pull a multi-GB CUDA build.
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev]"
if ! command -v gdal_pansharpen.py >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq gdal-bin python3-gdal >/dev/null) \
        || echo "setup: gdal-bin could not be installed; the GDAL agreement test will skip" >&2
fi
