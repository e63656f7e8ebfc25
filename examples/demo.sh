#!/usr/bin/env bash
# The default job: fetch the WorldView-2 Rotterdam tiles that ship in the PyPI wheel solaris 0.4.0
# (17.8 MB; Maxar WorldView-2, SpaceNet 6 optical release, CC-BY-SA 4.0), write tile 3 (or
# SSDIFF_DEMO_TILE=2) as a PAN (600 x 600 px, 0.5 m) + MS (150 x 150 px, 4 bands, 2 m) pair
# (examples/solaris_tiles.py: the tutorial's MS is a 2x nearest-neighbour upsampling; every second
# pixel gives back the true 2 m grid), pansharpen it with the default method (`auto`: the
# generalist SSDiff model, checked against MTF-GLP-FS on the scene) and write to examples/output/:
#   rotterdamN_sharpened.tif   the result (COG)
#   rotterdamN_upsampled.tif   the MS brought onto the PAN grid, for comparison
#   rotterdamN_report.json     `ssdiff sharpen --json` (method.guard: what the check measured)
#   rotterdamN_quicklook.png   PAN, upsampled MS and result side by side, on the 256 x 256 px crop
#                              where the result departs most from the upsampled MS
# and say which method ran, what the guard measured and the terms of the data.
# Tile 1 of the wheel is never used: it is held out for independent evaluation.
# Extra arguments go to `ssdiff sharpen` (e.g. -m gsa).
set -euo pipefail
cd "$(dirname "$0")/.."
TILE=${SSDIFF_DEMO_TILE:-3}
case "$TILE" in 2|3) ;; *) echo "demo.sh: SSDIFF_DEMO_TILE=$TILE: tile 2 or 3 (tile 1 is held out)" >&2; exit 2;; esac
bash scripts/setup.sh
DATA=examples/data
OUT=examples/output
WHEEL="$DATA/solaris-0.4.0-py3-none-any.whl"
mkdir -p "$DATA" "$OUT"
if [ ! -f "$WHEEL" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # pip 24.1 and later refuse solaris 0.4.0 for a malformed dependency specifier in its metadata
    # ("gdal (>=3.0.2geopandas>=0.7.0)"); pip 24.0, run from its own wheel, still downloads it.
    # Both files are pinned by their PyPI sha256.
    echo "pip==24.0 --hash=sha256:ba0d021a166865d2265246961bec0152ff124de910c5cc39f1156ce3fa7c69dc" \
        > "$tmp/pip.txt"
    echo "solaris==0.4.0 --hash=sha256:09445946221410ebb2ae807580cf7dea9fe3c9aa3bf045947b61a162d2d3a8df" \
        > "$tmp/solaris.txt"
    .venv/bin/python -m pip download -q --no-deps --require-hashes -r "$tmp/pip.txt" -d "$tmp"
    .venv/bin/python "$tmp/pip-24.0-py3-none-any.whl/pip" download -qq --no-deps --require-hashes \
        -r "$tmp/solaris.txt" -d "$tmp"
    mv "$tmp/solaris-0.4.0-py3-none-any.whl" "$WHEEL"
fi
SCENE="$DATA/wv2_solaris_$TILE"
.venv/bin/python examples/solaris_tiles.py "$WHEEL" "$TILE" "$SCENE"   # also prints the data's terms
PAN="$SCENE/pan.tif"
MS="$SCENE/ms.tif"
NAME="$OUT/rotterdam$TILE"
.venv/bin/ssdiff info "$PAN" "$MS"
.venv/bin/ssdiff sharpen "$PAN" "$MS" -o "${NAME}_sharpened.tif" --overwrite --json "$@" \
    > "${NAME}_report.json"
.venv/bin/ssdiff sharpen "$PAN" "$MS" -o "${NAME}_upsampled.tif" -m upsample --overwrite -q
.venv/bin/python examples/side_by_side.py "$PAN" "${NAME}_upsampled.tif" "${NAME}_sharpened.tif" \
    "${NAME}_report.json" "${NAME}_quicklook.png"
echo "wrote ${NAME}_sharpened.tif and ${NAME}_quicklook.png (data CC-BY-SA 4.0: terms above)"
