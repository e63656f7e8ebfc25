"""Benchmark: reading a 4096x4096 PAN scene vs computing its quality indices.

The scene is built by mirror-tiling ``wv2_grip`` (8-band WorldView-2, ratio 4) up to a 4096x4096
PAN and 1024x1024 MS, written as GeoTIFFs into a temporary folder outside the repository,
together with a fused image (a simple Brovey) and the lms as ``.npy`` files. Each stage then runs
in a fresh child process that memory-maps its inputs, so the peak RSS reported
(``resource.getrusage``) is that stage's own.

    python benchmarks/bench_evaluate.py [--size 4096]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "wv2_grip"
sys.path.insert(0, str(ROOT))

MS_GNYQ = [0.35] * 7 + [0.27]
PAN_GNYQ = 0.11
RATIO = 4


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _mirror_tile(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    while arr.shape[-2] < h or arr.shape[-1] < w:  # np.pad symmetric reflects at most once
        step = [(0, 0)] * (arr.ndim - 2) + [
            (0, min(h - arr.shape[-2], arr.shape[-2])),
            (0, min(w - arr.shape[-1], arr.shape[-1])),
        ]
        arr = np.pad(arr, step, mode="symmetric")
    return arr[..., :h, :w]


def prepare(tmp: Path, size: int) -> None:
    import rasterio

    from ssdiff_cli.quality import wald

    with rasterio.open(DATA / "pan.tif") as ds:
        pan = ds.read(1)
    with rasterio.open(DATA / "ms.tif") as ds:
        ms = ds.read()
    pan = _mirror_tile(pan, size, size)
    ms = _mirror_tile(ms, size // RATIO, size // RATIO)
    prof = dict(driver="GTiff", tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    with rasterio.open(tmp / "pan.tif", "w", width=size, height=size, count=1, dtype="uint16", **prof) as ds:
        ds.write(pan, 1)
    with rasterio.open(
        tmp / "ms.tif", "w", width=size // 4, height=size // 4, count=8, dtype="uint16", **prof
    ) as ds:
        ds.write(ms)
    lms = np.lib.format.open_memmap(tmp / "lms.npy", "w+", np.float32, (8, size, size))
    fused = np.lib.format.open_memmap(tmp / "fused.npy", "w+", np.float32, (8, size, size))
    step = 512
    for y in range(0, size, step):  # lms strip by strip, with a low-res halo for the cubic
        y0, y1 = max(0, y // 4 - 4), min(size // 4, (y + step) // 4 + 4)
        up = wald.upsample_ms(ms[:, y0:y1].astype(np.float32), RATIO)
        lms[:, y : y + step] = up[:, (y // 4 - y0) * 4 : (y // 4 - y0) * 4 + step]
    inten_mean, pan_mean = float(lms[:, ::8, ::8].mean()), float(pan[::8, ::8].mean())
    for y in range(0, size, step):  # Brovey with the PAN scaled to the intensity's mean
        sl = lms[:, y : y + step]
        inten = sl.mean(axis=0) + 1e-3
        fused[:, y : y + step] = sl * (pan[y : y + step] * (inten_mean / pan_mean) / inten)
    lms.flush()
    fused.flush()


def stage(name: str, tmp: Path) -> dict:
    import rasterio

    from ssdiff_cli.quality import indices

    res: dict = {}
    t0 = time.perf_counter()
    if name == "read":
        with rasterio.open(tmp / "pan.tif") as ds:
            pan = ds.read(1)
        with rasterio.open(tmp / "ms.tif") as ds:
            ms = ds.read()
        assert pan.size and ms.size
    elif name in ("full", "reduced"):
        with rasterio.open(tmp / "pan.tif") as ds:
            pan = ds.read(1)
        with rasterio.open(tmp / "ms.tif") as ds:
            ms = ds.read()
        lms = np.load(tmp / "lms.npy", mmap_mode="r")
        fused = np.load(tmp / "fused.npy", mmap_mode="r")
        t0 = time.perf_counter()
        if name == "full":
            res = indices.full_resolution(fused, pan, lms, ms, RATIO, MS_GNYQ, PAN_GNYQ)
        else:  # reduced-resolution scorer throughput (fused vs lms as a stand-in reference)
            res = indices.reduced_resolution(fused, lms, RATIO, data_range=2047)
            res = {k: v for k, v in res.items() if not isinstance(v, list)}
    else:
        raise ValueError(name)
    return {"seconds": time.perf_counter() - t0, "peak_rss_mb": _peak_mb(), **res}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage == "prepare":
        prepare(Path(args.tmp), args.size)
        return 0
    if args.stage:
        print(json.dumps(stage(args.stage, Path(args.tmp))))
        return 0
    if not (DATA / "pan.tif").exists():
        print(f"skipped: real scene not found at {DATA}")
        return 0
    size = args.size - args.size % 32
    with tempfile.TemporaryDirectory(prefix="ssdiff-bench-") as tmpd:
        tmp = Path(tmpd)
        t = time.perf_counter()
        # every stage, preparation included, runs in its own child so that each peak RSS is the
        # stage's own (a child inherits its parent's high-water mark across fork + exec)
        subprocess.run(
            [sys.executable, __file__, "--stage", "prepare", "--tmp", str(tmp), "--size", str(size)],
            check=True,
        )
        print(f"scene {size}x{size} PAN, 8 bands, built in {time.perf_counter() - t:.1f} s ({tmp})")
        rows = []
        for name, label in (
            ("read", "read PAN + MS (GeoTIFF)"),
            ("full", "full-res indices (D_lambda, D_s, HQNR, QNR)"),
            ("reduced", "reduced-res scorer (SAM..PSNR, 8 bands)"),
        ):
            out = subprocess.run(
                [sys.executable, __file__, "--stage", name, "--tmp", str(tmp)],
                check=True,
                capture_output=True,
                text=True,
            )
            res = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append((label, res))
    mp = size * size / 1e6
    print("\n| stage | seconds | MP/s (PAN px) | peak RSS (MB) |\n|---|---|---|---|")
    for label, r in rows:
        print(f"| {label} | {r['seconds']:.2f} | {mp / r['seconds']:.1f} | {r['peak_rss_mb']:.0f} |")
    for label, r in rows[1:]:
        vals = {k: round(v, 4) for k, v in r.items() if k not in ("seconds", "peak_rss_mb")}
        print(f"{label}: {vals}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
