"""Scene throughput with one dask worker process vs two (vs the in-process thread pool).

A real scene (``../shared/data/wv2_grip``, 1280 x 1280 PAN) is mirror-tiled with NumPy to
``--size`` PAN pixels a side (4096 by default; the MS is mirrored on its own grid, so the pair
stays exactly co-registered) and written as GeoTIFFs to a temporary folder outside the
repository, removed at the end (``--keep`` keeps it). Each method then sharpens it:

- ``threads -j N``: the pipeline's own thread pool in this process (the baseline);
- ``local:N``: a dask ``LocalCluster`` of N worker processes x 1 thread (``open_executor``).

Times are the wall-clock seconds of one ``sharpen`` call (prepare, fuse, blend, COG write;
cluster start-up excluded, printed apart), best of ``--repeat``. "speed-up" is against the
1-worker row of the same kind (threads or local), "vs first" against the method's first row.

    python benchmarks/bench_scaling.py                    # 4096^2: local:1, local:2, threads -j 1, -j 2
    python benchmarks/bench_scaling.py --size 2048 --runs local:1,local:2 --repeat 2
    python benchmarks/bench_scaling.py --methods ssdiff --size 1024
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ssdiff_cli.executors import open_executor  # noqa: E402
from ssdiff_cli.pipeline import SharpenOptions, sharpen  # noqa: E402

# ----------------------------------------------------------------------------------------------
# METHODS BENCHMARKED: a classical method and the model (the shipped 8-band one, one step). The
# model is ~20x slower per pixel on a CPU: run it on a smaller scene, e.g.
#   python benchmarks/bench_scaling.py --methods ssdiff --size 1024
METHODS: list[str] = ["mtf-glp", "ssdiff"]
METHOD_OPTIONS: dict[str, dict] = {
    "ssdiff": {"model": "ssdiff-8band", "steps": 1},
}
# ----------------------------------------------------------------------------------------------

SOURCE = ROOT.parent / "shared" / "data" / "wv2_grip"


def _mirror(a: np.ndarray, side: int) -> np.ndarray:
    """(bands, h, w) -> (bands, side, side): mirror-tiled to the right and down, then cropped."""
    pad = ((0, 0), (0, max(0, side - a.shape[1])), (0, max(0, side - a.shape[2])))
    return np.pad(a, pad, mode="symmetric")[:, :side, :side]


def mirror_tile(pan_src: Path, ms_src: Path, size: int, folder: Path) -> tuple[Path, Path]:
    """Write a ``size`` x ``size`` PAN (and its MS) made by mirror-tiling a real pair."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # wv2_grip is not georeferenced
        pan_ds, ms_ds = rasterio.open(pan_src), rasterio.open(ms_src)
    with pan_ds, ms_ds:
        ratio = pan_ds.width // ms_ds.width
        if size % ratio:
            raise SystemExit(f"--size must be a multiple of the ratio ({ratio})")
        pan, ms = pan_ds.read(1), ms_ds.read()
        pan_profile, ms_profile = pan_ds.profile, ms_ds.profile
        pan_tags, ms_tags = pan_ds.tags(), ms_ds.tags()
        ms_desc = ms_ds.descriptions
    m = size // ratio
    pan_big = _mirror(pan[None], size)
    ms_big = _mirror(ms, m)
    out = []
    for name, data, profile, tags, desc in (
        ("pan.tif", pan_big, pan_profile, pan_tags, None),
        ("ms.tif", ms_big, ms_profile, ms_tags, ms_desc),
    ):
        profile = {**profile, "width": data.shape[2], "height": data.shape[1], "tiled": True,
                   "blockxsize": 256, "blockysize": 256, "compress": "deflate", "driver": "GTiff"}
        path = folder / name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(data)
                dst.update_tags(**tags)
                for i, d in enumerate(desc or [], start=1):
                    if d:
                        dst.set_band_description(i, d)
        out.append(path)
    return out[0], out[1]


def run_once(pan, ms, out, method, tile_size, workers, executor):
    opts = SharpenOptions(method=method, tile_size=tile_size, workers=workers, overwrite=True,
                          force=True, method_options=METHOD_OPTIONS.get(method, {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        report = sharpen(pan, ms, str(out), opts, executor=executor)
        return time.perf_counter() - start, report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096, help="PAN side in pixels (default 4096)")
    ap.add_argument("--runs", default="local:1,local:2,threads:1,threads:2",
                    help="comma list of local:N and threads:N (default local:1,local:2,threads:1,threads:2)")
    ap.add_argument("--tile-size", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=1, help="best of this many runs")
    ap.add_argument("--methods", default="mtf-glp", help=f"comma-separated, of {METHODS}")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)
    if not (SOURCE / "pan.tif").exists():
        print(f"bench_scaling: {SOURCE} not found (the shared real scenes)", file=sys.stderr)
        return 1

    folder = Path(tempfile.mkdtemp(prefix="ssdiff-scaling-"))
    try:
        t = time.perf_counter()
        pan, ms = mirror_tile(SOURCE / "pan.tif", SOURCE / "ms.tif", args.size, folder)
        mp = args.size * args.size / 1e6
        print(f"scene: wv2_grip mirror-tiled to {args.size}x{args.size} PAN px ({mp:.1f} MP), "
              f"8 bands, tile {args.tile_size}; written in {time.perf_counter() - t:.1f} s to {folder}")
        rows = []
        for method in args.methods.split(","):
            first = None
            one: dict[str, float] = {}
            for run in args.runs.split(","):
                kind, _, n = run.partition(":")
                n = int(n or 1)
                if kind == "threads":
                    ctx, label = open_executor(), f"threads -j {n}"
                elif kind == "local":
                    ctx, label = open_executor(cluster=f"local:{n}"), f"local:{n} (processes)"
                else:
                    raise SystemExit(f"unknown run {run!r}")
                t = time.perf_counter()
                with ctx as (executor, _desc):
                    startup = time.perf_counter() - t
                    workers = executor.nthreads if executor is not None else n
                    best = min(run_once(pan, ms, folder / "out.tif", method, args.tile_size, workers,
                                        executor)[0] for _ in range(max(1, args.repeat)))
                first = first or best
                if n == 1:
                    one[kind] = best
                speed = f"{one[kind] / best:.2f}x" if kind in one else "-"
                rows.append((method, label, n, best, mp / best, speed, first / best, startup))
                print(f"  {method:8s} {label:22s} {best:7.2f} s", flush=True)
        print()
        print("| method | run | workers | seconds | MP/s | speed-up | vs first | start-up s |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for method, label, n, sec, mps, speed, vs_first, startup in rows:
            print(f"| {method} | {label} | {n} | {sec:.2f} | {mps:.2f} | {speed} | {vs_first:.2f}x "
                  f"| {startup:.1f} |")
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
