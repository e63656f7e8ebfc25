#!/usr/bin/env bash
# The default job: fetch the public-domain Landsat-8 sample that Debian's r-cran-satellite
# package ships, pansharpen it (PAN = B8, MS = B2 B3 B4 B5 as one file per band, sensor read
# from the MTL sidecar) and write a COG plus a quicklook PNG to examples/output/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA=examples/data/landsat8
OUT=examples/output
mkdir -p "$DATA" "$OUT"
if [ ! -f "$DATA/LC08_L1TP_195025_20130707_20170503_01_T1_B8.TIF" ]; then
    tmp=$(mktemp -d)
    if ! (cd "$tmp" && apt-get download r-cran-satellite >/dev/null 2>&1); then
        [ "$(id -u)" = 0 ] && apt-get update -qq
        (cd "$tmp" && apt-get download r-cran-satellite >/dev/null)
    fi
    dpkg -x "$tmp"/r-cran-satellite_*.deb "$tmp/x"
    cp "$tmp"/x/usr/lib/R/site-library/satellite/extdata/LC08_* "$DATA/"
    rm -rf "$tmp"
fi
P="$DATA/LC08_L1TP_195025_20130707_20170503_01_T1"
.venv/bin/ssdiff info "${P}_B8.TIF" "${P}_B2.TIF" "${P}_B3.TIF" "${P}_B4.TIF" "${P}_B5.TIF"
.venv/bin/ssdiff sharpen "${P}_B8.TIF" "${P}_B2.TIF" "${P}_B3.TIF" "${P}_B4.TIF" "${P}_B5.TIF" \
    -o "$OUT/landsat8_sharpened.tif" --quicklook "$OUT/landsat8_quicklook.png" --overwrite "$@"
echo "wrote $OUT/landsat8_sharpened.tif and $OUT/landsat8_quicklook.png"
