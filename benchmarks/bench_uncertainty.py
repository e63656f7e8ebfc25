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

    .venv/bin/python benchmarks/bench_uncertainty.py [--seen] [--json out.json] [--png p.png]
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocol", choices=("ssdiff", "toolbox"), default="ssdiff")
    ap.add_argument("--seen", action="store_true", help="also the families the model trained on")
    ap.add_argument("--per-family", type=int, default=2)
    ap.add_argument("--families", nargs="*")
    ap.add_argument("--json")
    ap.add_argument("--png", help="draw the first scene of --png-family")
    ap.add_argument("--png-family", default="landsat_istanbul")
    args = ap.parse_args()
    fams = families()
    if not fams:
        sys.exit(f"bench_uncertainty: no shared scenes under {DATA}; nothing to measure")
    chosen = args.families or [f for f in fams if f in UNSEEN or args.seen]
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
