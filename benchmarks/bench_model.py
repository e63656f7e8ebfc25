"""Speed of the SSDiff denoiser on the CPU: forward per 64x64 patch and training steps, and the
model path at scene scale.

Usage::

    python benchmarks/bench_model.py [--variants fast faithful] [--reps 5] [--threads N]
    python benchmarks/bench_model.py --scale-only [--scale-sizes 2048 4096] [--scale-args ...]
    python benchmarks/bench_model.py --accuracy-only

Scene scale (``--scale``, on by default): ``ssdiff sharpen --method ssdiff`` with default options,
in a child process, on the wv2_grip scene mirror-tiled to 2048² and 4096² PAN px (the model it
picks: the shipped generalist, compiled where ``--compile auto`` decides so): wall seconds, PAN
kpx/s by the wall clock and by the child's CPU time over the cores it may use (what a quiet
machine would take: on a shared machine the wall clock measures the other processes too), the
speed-up over the released inference, and the child's peak resident memory (its VmHWM, from
``wait4``), each with an empty and then a filled Inductor cache (``--scale-caches``: a first run
on a machine, and every later one). ``--accuracy`` compares ``--precision bf16`` (eager, and
compiled for the generalist) with ``fp32`` on the shared scenes a shipped model was made for (max
and 99th percentile of the absolute difference in DN over valid pixels).

Batch 16 of 64x64 PAN px patches (8 bands, ratio 4), channels-last, fp32 and bf16 autocast.
Each number is the best of ``--reps`` timed runs after one warm-up (the best is the least
disturbed by other processes on a shared machine). The released SSDiff code takes about 0.46 s
per 64x64 patch forward (fp32, batch 16) on a 2-core CPU (docs/ssdiff-reference.md section 2).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ssdiff_cli.nn import ModelConfig, SSDiffDenoiser

RELEASED_FWD_S_PER_PATCH = 0.46
#: Released SSDiff inference on this 2-core CPU, PAN px/s: 10 DDIM steps of every 64x64 patch at
#: stride 16, its SSNet forward measured at 386 ms per batch of 16 patches (issue 13's table).
RELEASED_PAN_PX_PER_S = 66.0
# Released inference: every 64x64 patch at stride 16 runs its own 10-step trajectory, 222 patch
# trajectories for a 256x256 image (reference doc section 2).
RELEASED_SCENE_MP_PER_S = 256 * 256 / 1e6 / (222 * 10 * RELEASED_FWD_S_PER_PATCH)


def _batch(bands: int, ratio: int, size: int, batch: int):
    g = torch.Generator().manual_seed(0)
    cl = torch.channels_last
    x_t = torch.randn(batch, bands, size, size, generator=g).contiguous(memory_format=cl)
    lms = torch.rand(batch, bands, size, size, generator=g).contiguous(memory_format=cl)
    pan = torch.rand(batch, 1, size, size, generator=g).contiguous(memory_format=cl)
    ms = torch.rand(batch, bands, size // ratio, size // ratio, generator=g)
    t = torch.rand(batch, generator=g) * 999
    return x_t, t, lms, pan, ms.contiguous(memory_format=cl)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _best(fn, reps: int, clock: str = "wall") -> float:
    now = CLOCKS[clock]
    fn()  # warm-up (oneDNN primitive creation)
    times = []
    for _ in range(reps):
        t0 = now()
        fn()
        times.append(now() - t0)
    return min(times)


def _autocast(bf16: bool):
    if bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def bench(
    variant: str, bands: int, ratio: int, size: int, batch: int, reps: int, clock: str = "wall"
) -> dict:
    cfg = ModelConfig(bands=bands, ratio=ratio, variant=variant)
    net = SSDiffDenoiser(cfg).to(memory_format=torch.channels_last)
    x_t, t, lms, pan, ms = _batch(bands, ratio, size, batch)
    target = torch.randn_like(x_t)
    out = {"params": sum(p.numel() for p in net.parameters())}
    net.eval()
    for bf16 in (False, True):

        def fwd(bf16=bf16):
            with torch.inference_mode(), _autocast(bf16):
                net(x_t, t, lms, pan, ms)

        out[("fwd", bf16)] = _best(fwd, reps, clock) / batch
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.0)
    for bf16 in (False, True):

        def train_step(bf16=bf16):
            with _autocast(bf16):
                loss = F.l1_loss(net(x_t, t, lms, pan, ms).float(), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        out[("train", bf16)] = _best(train_step, max(1, reps // 2), clock)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["fast", "faithful"])
    ap.add_argument("--bands", type=int, default=8)
    ap.add_argument("--ratio", type=int, default=4)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="cpu: process CPU time; with --threads 1 it is the single-core compute time, "
        "unaffected by other processes competing for the cores",
    )
    ap.add_argument("--scene", action=argparse.BooleanOptionalAction, default=True,
                    help="also time whole-scene sharpen --method ssdiff")
    ap.add_argument("--scene-size", type=int, default=512)
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--scale", action=argparse.BooleanOptionalAction, default=True,
                    help="scene-scale sharpen in a child process: throughput and peak memory")
    ap.add_argument("--scale-only", action="store_true", help="only the scene-scale run")
    ap.add_argument("--scale-sizes", type=int, nargs="+", default=[2048, 4096])
    ap.add_argument("--scale-args", nargs="*", default=[],
                    help="extra sharpen options for the scene-scale run (e.g. --precision fp32)")
    ap.add_argument("--scale-caches", nargs="+", choices=["cold", "warm"],
                    default=["cold", "warm"],
                    help="Inductor cache state of each scene-scale run: cold (an empty cache: "
                    "a first run on a machine, compile included) and/or warm (the same cache "
                    "again: every later run)")
    ap.add_argument("--accuracy", action=argparse.BooleanOptionalAction, default=False,
                    help="bf16 against fp32 in DN on the shared scenes")
    ap.add_argument("--accuracy-only", action="store_true")
    ap.add_argument("--accuracy-size", type=int, default=None,
                    help="compare on a central crop of this many PAN px a side (default: whole)")
    ap.add_argument("--work", default=None, help="folder for scenes and outputs (default: temp)")
    args = ap.parse_args()
    if args.scale_only or args.accuracy_only:
        with _workdir(args.work) as work:
            if args.scale_only:
                scene_scale(work, args.scale_sizes, args.scale_args, args.scale_caches)
            if args.accuracy_only:
                precision_accuracy(work, args.accuracy_size)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}, "
        f"{args.size}x{args.size} PAN px, {args.bands} bands, ratio {args.ratio}, channels-last, "
        f"{args.clock} clock"
    )
    header = (
        f"{'variant':<9} {'params':>9} {'fwd fp32':>10} {'fwd bf16':>10} {'step fp32':>10} "
        f"{'step bf16':>10} {'vs released':>12}"
    )
    print(header)
    print(
        f"{'':<9} {'':>9} {'ms/patch':>10} {'ms/patch':>10} {'s/step':>10} {'s/step':>10} {'(fwd fp32)':>12}"
    )
    for variant in args.variants:
        r = bench(variant, args.bands, args.ratio, args.size, args.batch, args.reps, args.clock)
        speedup = RELEASED_FWD_S_PER_PATCH / r[("fwd", False)]
        print(
            f"{variant:<9} {r['params']:>9,} {1e3 * r[('fwd', False)]:>10.1f} "
            f"{1e3 * r[('fwd', True)]:>10.1f} {r[('train', False)]:>10.3f} "
            f"{r[('train', True)]:>10.3f} {speedup:>11.0f}x",
            flush=True,
        )
    print(f"released SSDiff code: {1e3 * RELEASED_FWD_S_PER_PATCH:.0f} ms/patch forward (fp32)")
    if args.scene:
        scene_throughput(args.variants, args.scene_size, args.steps)
    if args.scale or args.accuracy:
        with _workdir(args.work) as work:
            if args.scale:
                scene_scale(work, args.scale_sizes, args.scale_args, args.scale_caches)
            if args.accuracy:
                precision_accuracy(work, args.accuracy_size)


def scene_throughput(variants, size: int, steps: list[int]) -> None:
    """Whole-scene MP/s of ``sharpen --method ssdiff`` on a real wv2_grip crop (random weights:
    speed does not depend on them), against the released inference's scene throughput."""
    import tempfile
    import warnings
    from pathlib import Path

    import rasterio

    from ssdiff_cli import zoo
    from ssdiff_cli.diffusion import DiffusionConfig
    from ssdiff_cli.pipeline import SharpenOptions, sharpen

    data = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wv2_grip"
    if not (data / "pan.tif").exists():
        print(f"scene throughput skipped: {data} not found")
        return
    print(f"\nwhole-scene sharpen --method ssdiff, wv2_grip crop {size}x{size} PAN px, 8 bands")
    print(f"{'variant':<9} {'steps':>5} {'seconds':>8} {'MP/s':>8} {'vs released':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with rasterio.open(data / "pan.tif") as ds:
            pan, profile = ds.read(window=((0, size), (0, size))), ds.profile
            tags = ds.tags()
        profile.update(width=size, height=size)
        with rasterio.open(tmp / "pan.tif", "w", **profile) as dst:
            dst.write(pan)
            dst.update_tags(**tags)
        with rasterio.open(data / "ms.tif") as ds:
            ms, profile = ds.read(window=((0, size // 4), (0, size // 4))), ds.profile
        profile.update(width=size // 4, height=size // 4)
        with rasterio.open(tmp / "ms.tif", "w", **profile) as dst:
            dst.write(ms)
        for variant in variants:
            config = ModelConfig(bands=8, ratio=4, variant=variant)
            card = zoo.ModelCard(name=f"bench-{variant}", sensor="wv2", band_names=[""] * 8,
                                 bands=8, ratio=4, normalisation={"kind": "fixed", "scale": 2047.0},
                                 model=config.to_dict(), diffusion=DiffusionConfig().to_dict())
            zoo.save_checkpoint(SSDiffDenoiser(config), card, tmp / card.name)
            for n in steps:
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    sharpen(tmp / "pan.tif", tmp / "ms.tif", str(tmp / "out.tif"), SharpenOptions(
                        method="ssdiff", overwrite=True, force=True,
                        method_options={"model": str(tmp / card.name), "steps": n}))
                seconds = time.perf_counter() - start
                mps = size * size / 1e6 / seconds
                print(f"{variant:<9} {n:>5} {seconds:>8.1f} {mps:>8.4f} "
                      f"{mps / RELEASED_SCENE_MP_PER_S:>11.0f}x", flush=True)
    print(f"released SSDiff inference: {RELEASED_SCENE_MP_PER_S:.6f} MP/s "
          "(10 steps, 64x64 patches at stride 16); target >= 100x")


DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@contextlib.contextmanager
def _workdir(path):
    import tempfile

    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            yield Path(tmp)


def mirror_scene(src: Path, size: int, out: Path) -> tuple[Path, Path]:
    """``src``'s PAN and MS mirror-tiled (reflected at every edge, so no seam) to ``size`` PAN px
    a side, as tiled GeoTIFFs with the source's tags; returns (pan, ms)."""
    import numpy as np
    import rasterio

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("pan", "ms"):
        target = out / f"{name}.tif"
        paths.append(target)
        with rasterio.open(src / f"{name}.tif") as ds:
            ratio = _pan_width(src) // ds.width
            n = size // ratio
            if target.exists():
                with rasterio.open(target) as have:
                    if have.width == n:
                        continue
            data, profile, tags = ds.read(), ds.profile, ds.tags()
            band_tags = [ds.tags(i + 1) for i in range(ds.count)]
            names = ds.descriptions
        reps = [-(-n // data.shape[1]), -(-n // data.shape[2])]
        pad = ((0, 0), (0, reps[0] * data.shape[1] - data.shape[1]),
               (0, reps[1] * data.shape[2] - data.shape[2]))
        data = np.pad(data, pad, mode="symmetric")[:, :n, :n]
        profile.update(width=n, height=n, tiled=True, blockxsize=256, blockysize=256,
                       compress="deflate")
        with rasterio.open(target, "w", **profile) as dst:
            dst.write(data)
            dst.update_tags(**tags)
            for i, t in enumerate(band_tags):
                dst.update_tags(i + 1, **t)
            dst.descriptions = names
    return paths[0], paths[1]


def _pan_width(src: Path) -> int:
    import rasterio

    with rasterio.open(src / "pan.tif") as ds:
        return ds.width


def run_child(args: list[str], env: dict | None = None) -> dict:
    """Run ``python -m ssdiff_cli ARGS`` (with ``env`` added to the environment) and measure it:
    wall and CPU seconds, peak RSS (MB), and what it printed on stdout."""
    import os
    import subprocess
    import sys
    import tempfile

    start = time.perf_counter()
    with tempfile.TemporaryFile() as stdout:
        proc = subprocess.Popen([sys.executable, "-m", "ssdiff_cli", *args],
                                stdout=stdout, stderr=subprocess.PIPE,
                                cwd=Path(__file__).resolve().parents[1],
                                env={**os.environ, **(env or {})})
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        stdout.seek(0)
        out = stdout.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"ssdiff {' '.join(args)} failed ({proc.returncode}): "
                           f"{err.decode(errors='replace')[-500:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "peak_mb": usage.ru_maxrss / 1024, "stdout": out.decode(errors="replace")}


def scene_scale(work: Path, sizes: list[int], extra: list[str],
                caches: tuple[str, ...] = ("cold", "warm")) -> list[dict]:
    """``sharpen --method ssdiff`` (defaults) on wv2_grip mirror-tiled to each size; a table.

    Each size runs with an empty Inductor cache (``cold``: a first run on a machine, the compile
    included when ``--compile auto`` compiles) and/or again with that cache (``warm``)."""
    import os

    src = DATA / "wv2_grip"
    if not (src / "pan.tif").exists():
        print(f"scene-scale run skipped: {src} not found")
        return []
    cores = len(os.sched_getaffinity(0))
    print(f"\nscene scale: sharpen --method ssdiff {' '.join(extra)} (the model it picks), "
          f"wv2_grip mirror-tiled, {cores} cores; released inference {RELEASED_PAN_PX_PER_S:.0f} "
          "PAN px/s")
    print(f"{'PAN px':>11} {'cache':>5} {'seconds':>8} {'kpx/s wall':>11} {'kpx/s cpu':>10} "
          f"{'x rel. wall':>11} {'x rel. cpu':>11} {'peak RSS MB':>12}  model, compile")
    rows = []
    for size in sizes:
        pan, ms = mirror_scene(src, size, work / f"wv2_grip_{size}")
        out = work / f"ssdiff_{size}.tif"
        cache = work / f"inductor_{size}"
        shutil.rmtree(cache, ignore_errors=True)
        for state in caches:
            m = run_child(["sharpen", str(pan), str(ms), "-o", str(out), "--method", "ssdiff",
                           "--force", "--overwrite", "-q", "--json", *extra],
                          env={"TORCHINDUCTOR_CACHE_DIR": str(cache)})
            method = json.loads(m.pop("stdout"))["method"]
            px = size * size
            wall_rate = px / m["wall"]
            cpu_rate = px / (m["cpu"] / cores)  # the rate with the cores to itself
            rows.append({"size": size, "cache": state, **m, "kpx_s": wall_rate / 1e3,
                         "kpx_s_cpu": cpu_rate / 1e3})
            compiled = method.get("compile")
            how = (f"compiled, first chunk {compiled.get('first_chunk_seconds')} s"
                   if isinstance(compiled, dict) and compiled.get("compiled") else "eager")
            print(f"{f'{size}x{size}':>11} {state:>5} {m['wall']:>8.1f} {wall_rate / 1e3:>11.1f} "
                  f"{cpu_rate / 1e3:>10.1f} {wall_rate / RELEASED_PAN_PX_PER_S:>10.0f}x "
                  f"{cpu_rate / RELEASED_PAN_PX_PER_S:>10.0f}x "
                  f"{m['peak_mb']:>12.0f}  {method['model']} {method['precision']} "
                  f"chunk {method['chunk']}, {how}", flush=True)
        out.unlink(missing_ok=True)
    for state in caches:
        same = [r for r in rows if r["cache"] == state]
        if len(same) > 1:
            lo, hi = same[0]["peak_mb"], same[-1]["peak_mb"]
            print(f"peak RSS {same[-1]['size']}² vs {same[0]['size']}² ({state}): "
                  f"{100 * (hi - lo) / lo:+.1f} %")
    return rows


def crop_scene(src: Path, size: int, out: Path) -> tuple[Path, Path]:
    """A central ``size`` x ``size`` PAN px crop of ``src`` (and its MS), with the tags."""
    import rasterio

    out.mkdir(parents=True, exist_ok=True)
    ratio = None
    paths = []
    for name in ("pan", "ms"):
        with rasterio.open(src / f"{name}.tif") as ds:
            if ratio is None:
                ratio, full = 1, ds.width
                off = (min(ds.height, ds.width) - size) // 2 // 32 * 32  # on the MS grid too
            else:
                ratio = full // ds.width
            n, o = size // ratio, off // ratio
            data, profile = ds.read(window=((o, o + n), (o, o + n))), ds.profile
            tags, names = ds.tags(), ds.descriptions
        profile.update(width=n, height=n)
        paths.append(out / f"{name}.tif")
        with rasterio.open(paths[-1], "w", **profile) as dst:
            dst.write(data)
            dst.update_tags(**tags)
            dst.descriptions = names
    return paths[0], paths[1]


def precision_accuracy(work: Path, size: int | None = None) -> None:
    """bf16 (eager, and compiled for the generalist) against fp32: max and 99th percentile
    |difference| in DN over valid pixels, on the shared scenes with a shipped model made for
    their sensor and with the shipped generalist (or central crops of them)."""
    import numpy as np
    import rasterio

    eager = ["--compile", "off"]
    runs = [  # (model, label, options) against the same model's fp32 eager run
        ("ssdiff-8band", "bf16", eager), ("ssdiff-4band", "bf16", eager),
        ("ssdiff-generalist", "bf16", eager), ("ssdiff-generalist", "bf16 compiled",
                                               ["--compile", "on"])]
    scenes = {"wv2_grip": ("ssdiff-8band", "ssdiff-generalist"),
              "ge1_grip": ("ssdiff-4band", "ssdiff-generalist")}
    where = f"central {size}² PAN px crops" if size else "whole scenes"
    print(f"\n--precision bf16 against fp32 (eager), sharpen --method ssdiff, |difference| in DN, "
          f"{where}")
    print(f"{'scene':<10} {'model':<18} {'run':<14} {'max':>6} {'p99':>6} {'p99.9':>6} "
          f"{'mean':>7}")
    for name, models in scenes.items():
        src = DATA / name
        if not (src / "pan.tif").exists():
            print(f"{name}: skipped ({src} not found)")
            continue
        pan, ms = (src / "pan.tif", src / "ms.tif") if not size else crop_scene(
            src, size, work / f"{name}_crop{size}")

        def fuse(model: str, tag: str, options: list[str], name=name, pan=pan, ms=ms) -> Path:
            out = work / f"{name}_{model}_{tag.replace(' ', '_')}.tif"
            run_child(["sharpen", str(pan), str(ms), "-o", str(out), "--method", "ssdiff",
                       "--model", model, *options, "--force", "--overwrite", "-q"])
            return out

        for model in models:
            reference = fuse(model, "fp32", ["--precision", "fp32", *eager])
            with rasterio.open(reference) as ds:
                x = ds.read(masked=True).astype(np.float64)
            for run_model, label, options in runs:
                if run_model != model:
                    continue
                with rasterio.open(fuse(model, label, ["--precision", "bf16", *options])) as ds:
                    y = ds.read(masked=True).astype(np.float64)
                diff = np.abs(x - y).compressed()
                print(f"{name:<10} {model:<18} {label:<14} {diff.max():>6.0f} "
                      f"{np.percentile(diff, 99):>6.0f} {np.percentile(diff, 99.9):>6.0f} "
                      f"{diff.mean():>7.3f}", flush=True)


if __name__ == "__main__":
    main()
