"""Benchmark: scoring a 4096x4096 PAN scene at full resolution vs reading it.

The scene is built by mirror-tiling ``wv2_grip`` (8-band WorldView-2, ratio 4) up to a 4096x4096
PAN and a 1024x1024 MS, written as tiled, deflate-compressed GeoTIFFs into a temporary folder
outside the repository; ``ssdiff sharpen -m mtf-glp`` then makes the fused COG to score and
``-m upsample`` the lms used as a stand-in reference for the reduced-resolution scorer. Each stage
runs in a fresh child process, so the peak RSS reported (``resource.getrusage``) is its own:

* ``read``: read the PAN, the MS and the fused image, whole (what scoring must at least read),
  with GDAL decoding on every core as ``evaluate`` does: the baseline of the ``x read`` column;
* ``read1``: the same read with rasterio's defaults (GDAL decodes on one thread);
* ``scene``: read everything ``evaluate`` reads, as it reads it: strips with their halos, the
  scene opened and sampled, the MS brought onto the PAN grid per strip (no scoring);
* ``evaluate``: ``ssdiff evaluate FUSED --pan PAN --ms MS`` as a library call (sensor detection,
  scene sample, strip-by-strip reading and all full-resolution indices: D_lambda Khan, D_s, HQNR,
  QNR);
* ``cli``: the same command run as a program, Python start-up included;
* ``indices``: the full-resolution indices alone, on arrays already in memory;
* ``reference``: ``ssdiff evaluate FUSED --reference REF`` (SAM, ERGAS, Q2n, SCC, Q, PSNR).

Target (issue 3): evaluating takes no more than a few times as long as reading, peak memory
under 2 GB.

    python benchmarks/bench_evaluate.py [--size 4096] [--repeat 3]

Each stage runs ``--repeat`` times; the table shows the run with the median time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "wv2_grip"
SSDIFF = Path(sys.executable).with_name("ssdiff")
sys.path.insert(0, str(ROOT))

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

    with rasterio.open(DATA / "pan.tif") as ds:
        pan, tags = ds.read(1), ds.tags()
    with rasterio.open(DATA / "ms.tif") as ds:
        ms = ds.read()
    pan = _mirror_tile(pan, size, size)
    ms = _mirror_tile(ms, size // RATIO, size // RATIO)
    prof = dict(driver="GTiff", tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    for name, data in (("pan", pan[None]), ("ms", ms)):
        _, h, w = data.shape
        with rasterio.open(tmp / f"{name}.tif", "w", width=w, height=h, count=data.shape[0],
                           dtype="uint16", **prof) as ds:
            ds.write(data)
            ds.update_tags(**tags)  # SENSOR, BIT_DEPTH, RATIO of the source pair
    for method, out in (("mtf-glp", "fused.tif"), ("upsample", "lms.tif")):
        subprocess.run([str(SSDIFF), "sharpen", str(tmp / "pan.tif"), str(tmp / "ms.tif"), "-o",
                        str(tmp / out), "-m", method, "-q", "--force"], check=True)


def stage(name: str, tmp: Path) -> dict:
    import rasterio

    from ssdiff_cli import evaluate

    pan, ms, fused = tmp / "pan.tif", tmp / "ms.tif", tmp / "fused.tif"
    res: dict = {}
    t0 = time.perf_counter()
    if name in ("read", "read1"):
        threads = {"NUM_THREADS": "ALL_CPUS"} if name == "read" else {}
        for path in (pan, ms, fused):
            with rasterio.open(path, **threads) as ds:
                assert ds.read().size
    elif name == "scene":
        from ssdiff_cli.quality import indices
        from ssdiff_cli.scene import prepare_scene

        scene, _, _ = prepare_scene(pan, [ms], with_sample=False)  # as evaluate does
        inputs = evaluate.FusedSceneInputs(fused, scene, (np.zeros(scene.bands, np.float32), 0.0))
        c, h, w = inputs.shape
        step, halo = indices.full_strip_rows(RATIO, w, c), indices.full_res_halo(RATIO)
        for y in range(0, h, step):
            assert inputs.rows(max(0, y - halo), min(h, y + step + halo)).F.size
        inputs.close()
    elif name == "evaluate":
        ev = evaluate.evaluate_images([fused], pan=pan, ms=[ms])
        res = ev.rows["fused.tif"]
    elif name == "cli":
        out = subprocess.run([str(SSDIFF), "evaluate", str(fused), "--pan", str(pan), "--ms", str(ms),
                              "--json", "-q"], check=True, capture_output=True, text=True)
        res = json.loads(out.stdout)["rows"]["fused.tif"]
        # the child's own peak, not this process's
        return {"seconds": time.perf_counter() - t0,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0, **res}
    elif name == "indices":
        from ssdiff_cli.quality import indices
        from ssdiff_cli.scene import fill_values, prepare_scene, read_tile

        scene, detection, sample = prepare_scene(pan, [ms])
        h, w = scene.spec.out.height, scene.spec.out.width
        tile = read_tile(scene.spec, 0, 0, h, w, fill_values(sample), want_ms=True)
        with rasterio.open(fused) as ds:
            f = ds.read(out_dtype="float32")
        p = detection.preset
        t0 = time.perf_counter()
        res = indices.full_resolution(f, tile.pan, tile.lms, tile.ms, RATIO, p.ms_gnyq, p.pan_gnyq)
    elif name == "reference":
        res = evaluate.score_against(fused, tmp / "lms.tif")
        res = {k: v for k, v in res.items() if not isinstance(v, list)}
    else:
        raise ValueError(name)
    return {"seconds": time.perf_counter() - t0, "peak_rss_mb": _peak_mb(), **res}


STAGES = (
    ("read", "read PAN + MS + fused (GeoTIFF, whole)"),
    ("read1", "the same with rasterio's defaults (one decode thread)"),
    ("scene", "read as evaluate does (strips, MS onto PAN grid)"),
    ("evaluate", "evaluate FUSED --pan --ms (library)"),
    ("cli", "ssdiff evaluate FUSED --pan --ms (program)"),
    ("indices", "full-res indices on in-memory arrays"),
    ("reference", "evaluate FUSED --reference (8 bands)"),
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=3, help="runs per stage; the median is shown")
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
        print(f"scene {size}x{size} PAN, 8 bands, built in {time.perf_counter() - t:.1f} s ({tmp}), "
              f"{os.cpu_count()} cores")
        rows = []
        for name, label in STAGES:
            runs = []
            for _ in range(args.repeat):
                out = subprocess.run(
                    [sys.executable, __file__, "--stage", name, "--tmp", str(tmp)],
                    check=True, capture_output=True, text=True,
                )
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            # the median run by time: shared machines are noisy
            rows.append((name, label, sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]))
    mp = size * size / 1e6
    read_s = rows[0][2]["seconds"]
    print("\n| stage | seconds | x read | MP/s (PAN px) | peak RSS (MB) |\n|---|---|---|---|---|")
    for _, label, r in rows:
        print(f"| {label} | {r['seconds']:.2f} | {r['seconds'] / read_s:.1f} | "
              f"{mp / r['seconds']:.1f} | {r['peak_rss_mb']:.0f} |")
    for name, label, r in rows[1:]:
        if name == "cli":
            continue
        vals = {k: round(v, 4) for k, v in r.items() if k not in ("seconds", "peak_rss_mb")
                and not isinstance(v, list)}
        print(f"{label}: {vals}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
