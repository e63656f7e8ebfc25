"""KSDiff's network against the SSDiff generalist's, one forward pass on the same real input.

A ``--size`` x ``--size`` PAN px window (512 by default) of a shared scene (``wv2_grip``, 8
bands, ratio 4, by default) is read, its MTF-GLP-FS base computed and standardised exactly as the
generalist's inputs; then, best of ``--repeat`` runs each, under ``torch.inference_mode`` with the
networks prepared as every inference path prepares them (``inference_network``: eval,
channels-last) and the allocator set up as the CLI sets it (:mod:`ssdiff_cli.allocator`):

- ``generalist``: the shipped model, one network evaluation (its card samples one DDIM step);
- ``ksdiff``: the per-tile pass (the backbone with its kernels fixed), the part every tile pays;
- ``ksdiff prior``: once per scene, PLFE2 on a ``--sample`` px window, DDIM over the latent
  denoiser (``--steps``) and the kernel generator.

KSDiff's weights are random (no trained model exists yet; the cost of a pass does not depend on
the values; ``--config`` times another shape). ``--precision``: both networks under the same
autocast (fp32 by default; ``auto`` is what ``sharpen`` picks on the machine). Threads:
``--threads`` (1 by default, so that the machine's other users are
spared and the figures compare like with like). Prints a table: seconds, kpx/s, parameters and
the speed-up against the generalist.

    python benchmarks/bench_ksdiff_network.py
    python benchmarks/bench_ksdiff_network.py --scene ge1_grip --threads 2 --precision auto
    python benchmarks/bench_ksdiff_network.py --config '{"band_width": 16}'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ssdiff_cli import allocator  # noqa: E402

allocator.configure()  # as the CLI does before any work (before torch allocates)

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
import torch  # noqa: E402
from rasterio.windows import Window  # noqa: E402

from ssdiff_cli import diffusion, zoo  # noqa: E402
from ssdiff_cli.methods.classical import MTFGLP  # noqa: E402
from ssdiff_cli.methods.generalist import Standardisation, conditions  # noqa: E402
from ssdiff_cli.methods.network import inference_network  # noqa: E402
from ssdiff_cli.nn.ksdiff import KSDiffNetwork  # noqa: E402
from ssdiff_cli.nn.ksdiff_config import KSDiffConfig  # noqa: E402
from ssdiff_cli.nn.precision import PRECISIONS, precision_name, resolve_precision  # noqa: E402
from ssdiff_cli.quality import wald  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def scene_inputs(scene: str, size: int) -> tuple[dict[str, torch.Tensor], int]:
    """The standardised conditions (1, C, size, size) of the central window of ``scene``, and
    its ratio (read from the pair's grids)."""
    with rasterio.open(DATA / scene / "pan.tif") as pan_ds, rasterio.open(DATA / scene / "ms.tif") as ms_ds:
        ratio = round(pan_ds.width / ms_ds.width)
        m = size // ratio
        r0, c0 = (ms_ds.height - m) // 2, (ms_ds.width - m) // 2
        ms = ms_ds.read(window=Window(c0, r0, m, m)).astype(np.float64)
        pan = pan_ds.read(1, window=Window(c0 * ratio, r0 * ratio, m * ratio, m * ratio)).astype(np.float64)
    glp = MTFGLP("fs")
    low = pan.reshape(m, ratio, m, ratio).mean(axis=(1, 3))
    glp.fit(low.ravel(), ms.reshape(ms.shape[0], -1), ratio, [0.3] * ms.shape[0])
    _, cond = conditions(glp, Standardisation.from_glp(glp), pan, wald.upsample_ms(ms, ratio))
    return {k: torch.from_numpy(v)[None] for k, v in cond.items()}, ratio


def best_of(repeat: int, fn) -> float:
    """The fastest of ``repeat`` timed calls of ``fn`` (seconds)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def autocast(dtype):
    """The CPU autocast of ``--precision`` (off for fp32), as ``Sampling.sample`` runs it."""
    return torch.autocast(device_type="cpu", dtype=dtype, enabled=dtype is not None)


def time_generalist(cond: dict, ratio: int, repeat: int, dtype) -> tuple[float, int]:
    """Seconds of one forward pass of the shipped generalist (best of ``repeat``), parameters."""
    gen = inference_network(zoo.load_checkpoint("ssdiff-generalist")[0], "cpu")
    noise = torch.randn_like(cond["base"])
    with torch.inference_mode(), autocast(dtype):
        t = best_of(repeat, lambda: gen(noise, 999.0, cond["base"], cond["lms"], cond["pan"],
                                        cond["pan_lp"], ratio))
    return t, params(gen)


def params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", default="wv2_grip")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--sample", type=int, default=256, help="PAN px of the prior's scene sample")
    ap.add_argument("--steps", type=int, default=4, help="DDIM steps of the latent prior")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--precision", default="fp32", choices=PRECISIONS,
                    help="both networks under this autocast (auto: what sharpen picks here)")
    ap.add_argument("--config", default="{}", help="KSDiffConfig fields to change, as JSON")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cond, ratio = scene_inputs(args.scene, args.size)
    bands = cond["base"].shape[1]
    px = args.size * args.size
    rows = []

    dtype = resolve_precision(args.precision, "cpu")
    rows.append(("generalist (shipped)", *time_generalist(cond, ratio, args.repeat, dtype)))

    torch.manual_seed(0)
    net = KSDiffNetwork(KSDiffConfig.from_dict({**KSDiffConfig().to_dict(), **json.loads(args.config)}))
    with torch.no_grad():  # random weights everywhere (the zero last layer too)
        for p in net.parameters():
            p.normal_(0.0, 0.05)
    net = inference_network(net, "cpu")
    s = args.sample
    with torch.inference_mode(), autocast(dtype):
        def prior():
            c = net.condition(cond["pan"][..., :s, :s], cond["lms"][..., :s, :s], ratio)
            z = diffusion.sample(lambda zt, tt: net.denoise(zt, tt, c),
                                 torch.randn(1, *net.config.latent_shape), steps=args.steps,
                                 t_start=999)
            return net.kernels(z)

        t_prior = best_of(args.repeat, prior)
        kernels = prior()
        t = best_of(args.repeat, lambda: net(cond["base"], cond["lms"], cond["pan"],
                                             cond["pan_lp"], ratio, kernels))
    rows.append(("ksdiff (per tile)", t, params(net.backbone)))
    rows.append((f"ksdiff prior (once; {s}^2, {args.steps} steps)", t_prior,
                 params(net) - params(net.backbone) - params(net.plfe1)))

    base_t = rows[0][1]
    print(f"{args.scene}: {bands} bands, ratio {ratio}, {args.size}x{args.size} PAN px, "
          f"{args.threads} thread(s), {precision_name(dtype)}, torch {torch.__version__}, "
          f"best of {args.repeat}; ksdiff config changes {args.config}")
    print(f"{'network':44s} {'seconds':>8s} {'kpx/s':>8s} {'params':>9s} {'vs generalist':>14s}")
    for name, t, n in rows:
        rate = f"{px / t / 1e3:8.1f}" if "prior" not in name else f"{'-':>8s}"
        speed = f"{base_t / t:13.1f}x" if "prior" not in name else f"{'-':>14s}"
        print(f"{name:44s} {t:8.3f} {rate} {n:9d} {speed}")
    print(f"ksdiff total parameters {params(net)} (PLFE1, training only: {params(net.plfe1)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
