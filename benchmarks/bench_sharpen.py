"""Scene-scale ``sharpen`` throughput and peak memory against GDAL's gdal_pansharpen.py.

Builds a large scene (default 8192 x 8192 PAN px) by mirror-tiling the real wv2_grip pair and
giving it a real UTM georeference, then runs ``ssdiff sharpen`` with each classical method and
``gdal_pansharpen.py`` on it, each in its own process, and prints megapixels per second and peak
resident memory. Targets (issue 2): brovey at no less than a third of GDAL's throughput; peak
memory under 2 GB whatever the scene size.

    .venv/bin/python benchmarks/bench_sharpen.py [--size 8192] [--workers 2] [--work /tmp/ssdiff-bench]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PEAK = Path(__file__).with_name("peak_rss.py")


def mirror_tile(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Tile (C, h, w) to (C, height, width) with mirrored copies, so no seam is artificial."""
    reps_y = -(-height // arr.shape[1])
    reps_x = -(-width // arr.shape[2])
    row = [arr if i % 2 == 0 else arr[:, :, ::-1] for i in range(reps_x)]
    strip = np.concatenate(row, axis=2)
    rows = [strip if j % 2 == 0 else strip[:, ::-1, :] for j in range(reps_y)]
    return np.concatenate(rows, axis=1)[:, :height, :width]


def build_scene(work: Path, size: int) -> tuple[Path, Path]:
    """Write a mirror-tiled wv2_grip pair of ``size`` PAN px under a real UTM georeference."""
    work.mkdir(parents=True, exist_ok=True)
    pan_path, ms_path = work / f"pan_{size}.tif", work / f"ms_{size}.tif"
    if pan_path.exists() and ms_path.exists():
        return pan_path, ms_path
    with rasterio.open(DATA / "wv2_grip" / "pan.tif") as ds:
        pan = ds.read()
    with rasterio.open(DATA / "wv2_grip" / "ms.tif") as ds:
        ms = ds.read()
        names = ds.descriptions
    origin = (400000.0, 4220000.0)  # UTM 42N, the area of the shared WorldView-3 scene
    common = dict(driver="GTiff", crs="EPSG:32642", tiled=True, blockxsize=512, blockysize=512,
                  compress="deflate", dtype="uint16", BIGTIFF="IF_SAFER")
    big = mirror_tile(pan, size, size)
    with rasterio.open(pan_path, "w", width=size, height=size, count=1,
                       transform=Affine(0.5, 0, origin[0], 0, -0.5, origin[1]), **common) as dst:
        dst.write(big)
        dst.update_tags(SENSOR="WV2", BIT_DEPTH="11")
    del big
    big = mirror_tile(ms, size // 4, size // 4)
    with rasterio.open(ms_path, "w", width=size // 4, height=size // 4, count=ms.shape[0],
                       transform=Affine(2.0, 0, origin[0], 0, -2.0, origin[1]), **common) as dst:
        dst.write(big)
        dst.descriptions = names
    return pan_path, ms_path


def timed(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd`` under the peak-memory wrapper; returns (seconds, peak MB)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(PEAK), *cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr.strip()[-500:]}")
    peak_mb = float(proc.stdout.strip().splitlines()[-1].split()[-1])
    return seconds, peak_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ssdiff-bench"))
    parser.add_argument("--methods", default="brovey,gsa,mtf-glp")
    args = parser.parse_args()
    if not (DATA / "wv2_grip" / "pan.tif").exists():
        print(f"skipped: shared real scenes not found at {DATA}")
        return
    pan, ms = build_scene(args.work, args.size)
    mp = args.size * args.size / 1e6
    ssdiff = str(Path(sys.executable).with_name("ssdiff"))
    rows = []
    gdal = shutil.which("gdal_pansharpen.py")
    if gdal:
        out = args.work / "gdal.tif"
        out.unlink(missing_ok=True)
        cmd = [gdal, str(pan), str(ms), str(out), "-threads", str(args.workers), "-bitdepth",
               "11", "-co", "TILED=YES", "-co", "COMPRESS=DEFLATE", "-co", "BIGTIFF=IF_SAFER", "-q"]
        rows.append(("gdal_pansharpen.py (brovey, GTiff)", *timed(cmd)))
    for method in args.methods.split(","):
        out = args.work / f"{method}.tif"
        cmd = [ssdiff, "sharpen", str(pan), str(ms), "-o", str(out), "-m", method, "-j",
               str(args.workers), "--overwrite", "-q", "--force"]
        rows.append((f"ssdiff {method} (COG)", *timed(cmd)))
    print(f"\nscene {args.size}x{args.size} PAN px ({mp:.1f} MP), 8 bands uint16, "
          f"{args.workers} workers\n")
    print(f"| {'run':36s} | {'seconds':>8s} | {'MP/s':>7s} | {'peak MB':>8s} |")
    print(f"|{'-' * 38}|{'-' * 10}|{'-' * 9}|{'-' * 10}|")
    for name, seconds, peak in rows:
        print(f"| {name:36s} | {seconds:8.1f} | {mp / seconds:7.2f} | {peak:8.0f} |")
    if gdal:
        gdal_rate = mp / rows[0][1]
        brovey = [r for r in rows if r[0].startswith("ssdiff brovey")]
        if brovey:
            share = (mp / brovey[0][1]) / gdal_rate
            print(f"\nbrovey / GDAL throughput: {share:.2f} (target >= 0.33)")


if __name__ == "__main__":
    main()
