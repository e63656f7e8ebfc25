"""Speed of the SSDiff denoiser on the CPU: forward per 64x64 patch and training steps.

Usage::

    python benchmarks/bench_model.py [--variants fast faithful] [--reps 5] [--threads N]

Batch 16 of 64x64 PAN px patches (8 bands, ratio 4), channels-last, fp32 and bf16 autocast.
Each number is the best of ``--reps`` timed runs after one warm-up (the best is the least
disturbed by other processes on a shared machine). The released SSDiff code takes about 0.46 s
per 64x64 patch forward (fp32, batch 16) on a 2-core CPU (docs/ssdiff-reference.md section 2).
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
import torch.nn.functional as F

from ssdiff_cli.nn import ModelConfig, SSDiffDenoiser

RELEASED_FWD_S_PER_PATCH = 0.46
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
    args = ap.parse_args()
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


if __name__ == "__main__":
    main()
