"""ERGAS against an imposed displacement of the MS: does a model lean on one decimation phase?

Per scene the project's Wald protocol degrades the pair (`ssdiff evaluate --reduced`: the sensor's
MTF Gaussians, samples at the blocks' centres), except that the MS's samples are taken ``d``
reduced-PAN pixels away from the blocks' centres (on one axis, or on both: the diagonal). That is
the MS displaced by ``d`` PAN px relative to the PAN with no interpolation of its own
(:func:`ssdiff_cli.quality.wald.degrade_phased`); ``d = 0`` is the project's protocol itself. Each
displaced pair is fused with ``--method ssdiff`` (every ``--model``, per-scene calibration on,
the default), ``--method mtf-glp-fs`` and the model's own base (the generalist's MTF-GLP-FS, which
``--method mtf-glp-fs`` no longer is since it matches the toolbox's: run here as the generalist
with a zero correction, a network whose last layer is zero), registration off, and scored
against the original MS.

    .venv/bin/python benchmarks/bench_displacement.py                      # the shipped model
    .venv/bin/python benchmarks/bench_displacement.py --model ssdiff-generalist \\
        --model runs/generalist-phase --json out.json

The three default scenes are in no training set of the shipped generalist (its card's
``never_seen``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from generalist_data import DATA  # noqa: E402

SCENES = ("wv2_grip", "ge1_grip", "wv3_cristianics")
DISPLACEMENTS = (0.0, 0.25, 0.5, 0.75, 1.0)
DIRECTIONS = {"diagonal": (1.0, 1.0), "axis": (0.0, 1.0)}  # (dy, dx) per unit displacement
BASE = "mtf-glp-fs"
OWN_BASE = "own base"


def registration_off(options_type) -> dict:
    """``coregister`` switched off in whichever form :class:`SharpenOptions` takes: a boolean
    flag (today) or ``auto|on|off`` (issue 22's registration)."""
    default = {f.name: f.default for f in dataclasses.fields(options_type)}.get("coregister")
    if default is None or default is dataclasses.MISSING:
        return {}
    return {"coregister": False if isinstance(default, bool) else "off"}


def _write(path: Path, data: np.ndarray, valid: np.ndarray, sensor: str) -> None:
    """A float32 GeoTIFF with no georeferencing (the grids are related by their sizes)."""
    import rasterio

    data = data if data.ndim == 3 else data[None]
    nodata = -1e30
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                           count=data.shape[0], dtype="float32", nodata=nodata) as dst:
            dst.write(np.where(valid, data, nodata).astype(np.float32))
            dst.update_tags(SENSOR=sensor)


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import rasterio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path) as ds:
            return ds.read().astype(np.float32), ds.read_masks(1) > 0


class DisplacedScene:
    """One shared scene, read once, degraded with its MS displaced on request."""

    def __init__(self, folder: str, crop: int | None = None) -> None:
        from ssdiff_cli.scene import prepare_scene, read_arrays

        pan, ms = DATA / folder / "pan.tif", DATA / folder / "ms.tif"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scene, det, _ = prepare_scene(pan, [ms], None)
            self.pan, self.pan_valid, self.ms, self.ms_valid = read_arrays(scene.spec)
        self.name, self.preset, self.ratio = folder, det.preset, scene.ratio
        self.bit_depth = det.bit_depth or det.preset.bit_depth
        if crop:  # a centred window of crop PAN px, whole MS pixels
            r = self.ratio
            m = crop // r
            y0 = max(0, (self.ms.shape[1] - m) // 2)
            x0 = max(0, (self.ms.shape[2] - m) // 2)
            self.ms, self.ms_valid = self.ms[:, y0:y0 + m, x0:x0 + m], self.ms_valid[y0:y0 + m, x0:x0 + m]
            ys, xs = slice(y0 * r, (y0 + m) * r), slice(x0 * r, (x0 + m) * r)
            self.pan, self.pan_valid = self.pan[ys, xs], self.pan_valid[ys, xs]

    def pair(self, shift: tuple[float, float]):
        """The Wald pair with the MS's samples ``shift`` = (dy, dx) reduced-PAN px away."""
        from ssdiff_cli.quality import wald

        p = self.preset
        return wald.degrade_pair(self.pan, self.ms, self.ratio, p.ms_gnyq, p.pan_gnyq,
                                 pan_valid=self.pan_valid, ms_valid=self.ms_valid, ms_phase=shift)


def ergas_of(scene: DisplacedScene, shift, runs: dict[str, dict], tmp: Path) -> dict:
    """``{run name: ERGAS}`` of each run (``{name: SharpenOptions fields}``) on one displaced pair."""
    from ssdiff_cli.pipeline import SharpenOptions, sharpen
    from ssdiff_cli.quality import indices

    pair = scene.pair(shift)
    lr_pan, lr_ms = tmp / "pan.tif", tmp / "ms.tif"
    _write(lr_pan, pair.pan, pair.pan_valid, scene.preset.name)
    _write(lr_ms, pair.ms, np.broadcast_to(pair.ms_valid, pair.ms.shape), scene.preset.name)
    ref, r = pair.reference, scene.ratio
    data_range = float(2**scene.bit_depth - 1) if scene.bit_depth else None
    out = {}
    for name, fields in runs.items():
        opts = SharpenOptions(**{"sensor": scene.preset.key, "force": True, "overwrite": True,
                                 "dtype": "float32", "workers": 1, "tile_size": 512,
                                 **registration_off(SharpenOptions), **fields})
        fused_path = tmp / "fused.tif"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sharpen(str(lr_pan), str(lr_ms), str(fused_path), opts)
        fused, valid = _read(fused_path)
        h, w = min(fused.shape[1], ref.shape[1]), min(fused.shape[2], ref.shape[2])
        mask = valid[:h, :w] & pair.reference_valid[:h, :w]
        scores = indices.reduced_resolution(fused[:, :h, :w], ref[:, :h, :w], r, mask=mask,
                                            data_range=data_range)
        out[name] = float(scores["ERGAS"])
    return out


def zero_correction_model(like: str, prefix: Path) -> str:
    """A generalist of ``like``'s architecture whose correction is zero (its last convolution is
    zero-initialised): through ``sharpen`` it gives that model's own classical base."""
    from ssdiff_cli import zoo
    from ssdiff_cli.nn.generalist import GeneralistConfig, GeneralistDenoiser

    card = zoo.read_card(like)
    card.name, card.training = "zero-correction", {"terms": ["no training data"]}
    zoo.save_checkpoint(GeneralistDenoiser(GeneralistConfig(**card.model)), card, prefix)
    return str(prefix)


def run(scenes, models, displacements, directions, crop) -> list[dict]:
    """Rows ``{scene, direction, d, <run>: ERGAS, ...}`` for every scene, direction and ``d``."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="ssdiff-disp-") as tmp:
        runs = {BASE: {"method": BASE},
                OWN_BASE: {"method": "ssdiff", "method_options": {
                    "model": zero_correction_model(models[0], Path(tmp) / "zero")}}}
        for m in models:
            runs[m] = {"method": "ssdiff", "method_options": {"model": m}}
        for folder in scenes:
            scene = DisplacedScene(folder, crop)
            zero = None
            for direction in directions:
                uy, ux = DIRECTIONS[direction]
                for d in displacements:
                    if d == 0 and zero is not None:  # one pair, whatever the direction
                        scores = zero
                    else:
                        t0 = time.perf_counter()
                        scores = ergas_of(scene, (uy * d, ux * d), runs, Path(tmp))
                        print(f"# {folder} {direction} {d}: {time.perf_counter() - t0:.0f} s",
                              file=sys.stderr, flush=True)
                        zero = scores if d == 0 else zero
                    rows.append({"scene": folder, "direction": direction, "d": d, **scores})
    return rows


def table(rows: list[dict], models: list[str]) -> str:
    """A Markdown table: ERGAS of both bases and of each model, and each model over each base."""
    head = ["scene", "MS displaced", "d (PAN px)", BASE, OWN_BASE, *models,
            *(f"{m} / {b}" for m in models for b in (BASE, OWN_BASE))]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["scene"], r["direction"], f"{r['d']:.2f}", f"{r[BASE]:.3f}", f"{r[OWN_BASE]:.3f}",
                 *(f"{r[m]:.3f}" for m in models),
                 *(f"{r[m] / r[b]:.3f}" for m in models for b in (BASE, OWN_BASE))]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for m in models:
        for b in (BASE, OWN_BASE):
            below = sum(r[m] < r[b] for r in rows)
            lines.append(f"{m}: below {b} on {below} of {len(rows)} points; "
                         f"worst ratio {max(r[m] / r[b] for r in rows):.3f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", help="a generalist (name or path); repeatable "
                    "(default: ssdiff-generalist)")
    ap.add_argument("--scene", action="append", help=f"shared scene folder (default: {', '.join(SCENES)})")
    ap.add_argument("--displacement", type=float, action="append",
                    help=f"PAN px (default: {', '.join(map(str, DISPLACEMENTS))})")
    ap.add_argument("--direction", action="append", choices=sorted(DIRECTIONS))
    ap.add_argument("--crop", type=int, help="score a centred window of this many PAN px a side")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    models = args.model or ["ssdiff-generalist"]
    models = [str(Path(m).resolve()) if Path(m).with_suffix(".json").exists() else m for m in models]
    rows = run(args.scene or SCENES, models, args.displacement or DISPLACEMENTS,
               args.direction or list(DIRECTIONS), args.crop)
    names = [Path(m).name if "/" in m else m for m in models]
    for r in rows:
        for m, n in zip(models, names):
            r[n] = r.pop(m)
    print(table(rows, names))
    if args.json:
        Path(args.json).write_text(json.dumps({"crop": args.crop, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
