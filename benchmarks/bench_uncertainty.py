"""Does ``sharpen --uncertainty`` say where the model errs? Validated at reduced resolution.

Per scene the pair is degraded by its ratio (the project's Wald protocol; ``--protocol toolbox``
for the toolbox's), ``sharpen -m ssdiff --uncertainty`` runs on the degraded pair exactly as a
user runs it, and its predicted error is set against the actual ``|output - original MS|``:
Spearman's rank correlation pooled over pixels and bands, and the actual error by decile of the
predicted error (it must rise monotonically). ``cost`` is the run's time over a plain ``sharpen``
of the same pair. Default scenes: the families neither the shipped generalist nor the shipped head
ever saw (GRIP WorldView-2 and GeoEye-1, WorldView-3); ``--seen`` adds the families they trained
on (in distribution, reported apart). ``--png`` draws one scene: its PAN, the sharpened image,
the predicted and the actual error.

``--full-resolution``: no reference exists, so ``sharpen -m ssdiff --uncertainty`` runs on the
pair as it is and each ``--block`` px block (64 and 128) is scored with the field's no-reference
indices (D_lambda, D_s, HQNR of ``ssdiff evaluate``, computed over the whole scene and kept per
block: :func:`ssdiff_cli.quality.full_blocks.full_resolution_blocks`); blocks with under half
their 32 px sub-blocks scored or half their pixels valid are skipped. Per block the predicted
error is its mean per band over the band's standard deviation in the block's MS, averaged over
the bands: the indices' UIQIs measure an error against the block's own contrast (they do not
change when a block's gain does), so a DN error means more in a flat block. Reported: Spearman
over blocks against 1 - HQNR, D_s and D_lambda; the same against 1 - HQNR for a control that
knows only each block's contrast (the band's scene-mean predicted error over the block's
standard deviation) and for the error over the band's scene standard deviation instead; and the
mean 1 - HQNR by decile of predicted error (quintiles under 100 blocks, terciles under 25).

    .venv/bin/python benchmarks/bench_uncertainty.py [--seen] [--json out.json] [--png p.png]
    .venv/bin/python benchmarks/bench_uncertainty.py --full-resolution [--block 64 128] ...
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from generalist_data import DATA, families  # noqa: E402

UNSEEN = ("ge1_grip", "wv2_grip", "wv3_cristianics")


def score_scene(folder: str, protocol: str, png: str | None = None) -> dict:
    """Rank correlation, deciles and cost of ``--uncertainty`` on one scene at reduced resolution."""
    from ssdiff_cli.evaluate import _read, reduced_pair_files
    from ssdiff_cli.pipeline import SharpenOptions, sharpen
    from ssdiff_cli.quality.reliability import deciles, monotone, rank_correlation

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmp = Path(tmp)
        rp = reduced_pair_files(DATA / folder / "pan.tif", DATA / folder / "ms.tif", tmp,
                                protocol=protocol)
        def run(out: str, uncertainty: str | None):
            opts = SharpenOptions(method="ssdiff", sensor=rp.sensor, dtype="float32", force=True,
                                  tile_size=512, workers=1, uncertainty=uncertainty)
            return sharpen(rp.pan, rp.ms, str(tmp / out), opts)
        plain = run("plain.tif", None)
        report = run("fused.tif", str(tmp / "error.tif"))
        fused, fused_valid = _read(tmp / "fused.tif")
        predicted, _ = _read(tmp / "error.tif")
        ref = rp.pair.reference
        h, w = min(fused.shape[1], ref.shape[1]), min(fused.shape[2], ref.shape[2])
        valid = fused_valid[:h, :w]
        if rp.pair.reference_valid is not None:
            valid = valid & rp.pair.reference_valid[:h, :w]
        actual = np.abs(fused[:, :h, :w] - ref[:, :h, :w])
        predicted = predicted[:, :h, :w]
        rows = deciles(predicted, actual, valid)
        if png:
            _picture(rp.pair.pan[:h, :w], fused[:, :h, :w], predicted, actual, valid,
                     rp.preset.rgb, png, folder)
        return {"scene": folder, "spearman": rank_correlation(predicted, actual, valid),
                "monotone": monotone(rows), "deciles": rows,
                "mean_predicted": float(predicted[:, valid].mean()),
                "mean_actual": float(actual[:, valid].mean()),
                "cost": report.seconds / max(plain.seconds, 1e-9)}


def _picture(pan, fused, predicted, actual, valid, rgb, png, title) -> None:
    from ssdiff_cli.quality.quicklook import heat_map, stretch_limits, to_uint8, write_panel

    p = pan[None].repeat(3, axis=0)
    img = fused[list(rgb)]
    pred, act = predicted.mean(axis=0), actual.mean(axis=0)
    limit = float(np.percentile(act[valid], 99))
    write_panel([(f"PAN ({title}, reduced)", to_uint8(p, stretch_limits(p, valid), valid)),
                 ("sharpened", to_uint8(img, stretch_limits(img, valid), valid)),
                 ("predicted |error|", heat_map(pred, valid, limit)),
                 ("actual |error|", heat_map(act, valid, limit))], png, columns=4)


def score_scene_full(folder: str, sizes=(64, 128)) -> dict:
    """Per block of each size, the predicted error against the block's full-resolution indices,
    on the pair sharpened as it is (see the module's docstring)."""
    from ssdiff_cli.evaluate import FusedSceneInputs, _read, _registered
    from ssdiff_cli.pipeline import SharpenOptions, sharpen
    from ssdiff_cli.quality.full_blocks import block_means, block_std, full_resolution_blocks
    from ssdiff_cli.quality.masks import block_all
    from ssdiff_cli.scene import fill_values

    pan, ms = DATA / folder / "pan.tif", DATA / folder / "ms.tif"
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fused, err = Path(tmp) / "fused.tif", Path(tmp) / "error.tif"
        opts = SharpenOptions(method="ssdiff", dtype="float32", force=True, tile_size=512,
                              workers=1, uncertainty=str(err))
        report = sharpen(pan, ms, str(fused), opts)
        scene, det, sample, _ = _registered(pan, [ms], None, None)  # the MS where sharpen put it
        inputs = FusedSceneInputs(fused, scene, fill_values(sample))
        try:
            c, h, w = inputs.shape
            rows = inputs.rows(0, h)
            ms_a, valid = np.array(rows.ms, np.float64), np.array(rows.valid, bool)
            grids = {s: full_resolution_blocks(inputs, scene.ratio, det.preset.ms_gnyq,
                                               det.preset.pan_gnyq, size=s, workers=1)
                     for s in sizes}
        finally:
            inputs.close()
        predicted, pred_valid = _read(err)
    predicted, valid = predicted[:, :h, :w], valid & pred_valid[:h, :w]
    r = scene.ratio
    ms_valid = block_all(valid, r)
    band_mean = np.array([predicted[b][valid].mean() for b in range(c)])[:, None, None]
    band_std = np.array([ms_a[b][ms_valid].std() for b in range(c)])[:, None, None]
    out = {"scene": folder, "ratio": r, "size": [h, w], "seconds": report.seconds, "blocks": {}}
    for s, g in grids.items():
        pm, frac = block_means(predicted, valid, s)
        sd = block_std(ms_a, ms_valid, s // r)
        keep = (g["scored"] >= 0.5) & (frac >= 0.5) & np.all(sd > 0, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            x = {"contrast": (pm / sd).mean(axis=0), "control": (band_mean / sd).mean(axis=0),
                 "band_scale": (pm / band_std).mean(axis=0)}
        y = {"1-HQNR": 1 - g["HQNR"], "D_s": g["D_s"], "D_lambda": g["D_lambda"]}
        out["blocks"][s] = _block_stats(x, y, keep)
    return out


def _block_stats(x: dict, y: dict, keep: np.ndarray) -> dict:
    """Spearman over the kept blocks of the predictors ``x`` against the indices ``y`` (block
    grids), and the mean 1 - HQNR by bin of the contrast-normalised predicted error."""
    from ssdiff_cli.quality.reliability import deciles, monotone, rank_correlation

    n = int(keep.sum())
    ones = np.ones((1, n), bool)

    def v(a):
        return a[keep][None, None, :]

    def rho(a, b):
        return rank_correlation(v(a), v(b), ones)

    bins = 10 if n >= 100 else 5 if n >= 25 else 3
    rows = deciles(v(x["contrast"]), v(y["1-HQNR"]), ones, bins) if n else []
    return {"blocks": n, "of": int(keep.size), "bins": bins,
            "spearman": {k: rho(x["contrast"], b) for k, b in y.items()},
            "control_1-HQNR": rho(x["control"], y["1-HQNR"]),
            "band_scale_1-HQNR": rho(x["band_scale"], y["1-HQNR"]),
            "monotone": monotone(rows), "bins_table": rows}


def main_full(chosen: list[str], fams: dict, per_family: int, sizes, json_path) -> None:
    """``--full-resolution``: one table row per scene and block size."""
    results = []
    print(f"{'family':28s} {'scene':22s} {'px':>4s} {'blocks':>7s} {'1-HQNR':>6s} {'D_s':>6s} "
          f"{'D_lam':>6s} {'ctrl':>6s} {'bscale':>6s} {'rises':>5s}  mean 1-HQNR by bin of predicted")
    for fam in chosen:
        for folder in fams[fam][:per_family]:
            r = score_scene_full(folder, sizes)
            r.update(family=fam, seen=fam not in UNSEEN)
            results.append(r)
            name = fam + (" (seen)" if r["seen"] else "")
            for s, b in r["blocks"].items():
                sp = b["spearman"]
                bins = " ".join(f"{d['actual']:.3f}" for d in b["bins_table"])
                print(f"{name:28s} {folder:22s} {s:4d} {b['blocks']:3d}/{b['of']:<3d} "
                      f"{sp['1-HQNR']:6.2f} {sp['D_s']:6.2f} {sp['D_lambda']:6.2f} "
                      f"{b['control_1-HQNR']:6.2f} {b['band_scale_1-HQNR']:6.2f} "
                      f"{str(b['monotone']):>5s}  {bins}", flush=True)
    if json_path:
        Path(json_path).write_text(json.dumps({"mode": "full-resolution", "scenes": results},
                                              indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocol", choices=("ssdiff", "toolbox"), default="ssdiff")
    ap.add_argument("--seen", action="store_true", help="also the families the model trained on")
    ap.add_argument("--per-family", type=int, default=2)
    ap.add_argument("--families", nargs="*")
    ap.add_argument("--json")
    ap.add_argument("--png", help="draw the first scene of --png-family")
    ap.add_argument("--png-family", default="landsat_istanbul")
    ap.add_argument("--full-resolution", action="store_true",
                    help="score per block against the no-reference indices instead")
    ap.add_argument("--block", type=int, nargs="+", default=[64, 128],
                    help="block sides (PAN px) of --full-resolution")
    args = ap.parse_args()
    fams = families()
    if not fams:
        sys.exit(f"bench_uncertainty: no shared scenes under {DATA}; nothing to measure")
    chosen = args.families or [f for f in fams if f in UNSEEN or args.seen]
    if args.full_resolution:
        return main_full(chosen, fams, args.per_family, args.block, args.json)
    results = []
    print(f"{'family':28s} {'scene':22s} {'spearman':>8s} {'monotone':>8s} {'pred/act':>8s} "
          f"{'cost':>5s}  actual error by decile of predicted")
    for fam in chosen:
        for folder in fams[fam][: args.per_family]:
            png = args.png if args.png and fam == args.png_family and folder == fams[fam][0] else None
            r = score_scene(folder, args.protocol, png)
            r.update(family=fam, seen=fam not in UNSEEN)
            results.append(r)
            ratio = r["mean_predicted"] / max(r["mean_actual"], 1e-12)
            dec = " ".join(f"{d['actual']:.3g}" for d in r["deciles"])
            print(f"{fam + (' (seen)' if r['seen'] else ''):28s} {folder:22s} {r['spearman']:8.3f} "
                  f"{str(r['monotone']):>8s} {ratio:8.2f} {r['cost']:5.2f}  {dec}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"protocol": args.protocol, "scenes": results},
                                              indent=1))


if __name__ == "__main__":
    main()
