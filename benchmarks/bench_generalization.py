"""Leave-one-acquisition-out: the generalist model against the classical methods on scenes it
never saw.

Every scene is scored by a model that saw neither that scene nor any other crop of the same
acquisition (``scripts/generalist_data.py``: families and folds):

* families of fold A are scored by the model trained without fold A (``--fold-a``), fold B
  likewise (``--fold-b``);
* the GRIP scenes (WorldView-2, GeoEye-1) and the WorldView-3 scene are in no training set of the
  commercial-use generalist, so the shipped model (``--model``) scores them.

Per scene: ``ssdiff evaluate --reduced`` (Wald protocol: SAM, ERGAS, Q2n; ``--protocol ssdiff``,
the project's degradation, or ``toolbox``, the toolbox's exactly: reference §9) and ``--full`` (HQNR)
with the model, optionally the model with ``--adapt`` (``--adapt N``), brovey, gsa, mtf-glp,
mtf-glp-fs and plain upsampling; a family's figure is the mean over its scenes (``--per-family``
scenes at most). With ``--seen`` the shipped model is also scored on the families it was trained
on (in distribution: not a generalisation figure, reported apart). With ``--bare`` every pair is
first copied without its georeferencing (CRS and geotransform dropped, pixels and tags kept), as
research pairs come: registration must then find the grids' relation itself.
Without ``--fold-a``/``--fold-b`` only the families no training set holds can be scored
(``--families ge1_grip wv2_grip wv3_cristianics``).

    .venv/bin/python benchmarks/bench_generalization.py --model ssdiff-generalist \\
        --fold-a runs/fold-A --fold-b runs/fold-B --json out.json
    .venv/bin/python benchmarks/bench_generalization.py --report a.json b.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from generalist_data import DATA, FOLDS, families  # noqa: E402

CLASSICAL = ["brovey", "gsa", "mtf-glp", "mtf-glp-fs", "mtf-glp-hpm"]
COLUMNS = ("SAM", "ERGAS", "Q2n", "HQNR")
#: The indices issue 10's target names (no worse than the best classical method on each).
ISSUE_COLUMNS = ("SAM", "ERGAS", "HQNR")


#: Tiles of 512 PAN px, one at a time: the generalist's activations grow with the tile and the
#: band count, and several of these runs share one small machine.
TILING = {"tile_size": 512, "workers": 1}


def _fell_back(ev, method: str) -> bool:
    """Whether ``method``'s run in an evaluation fell back to the classical base (the guard)."""
    return "fallback_from" in ev.details.get("ran", {}).get(method, {})


def strip_georeferencing(src: Path, dst: Path) -> Path:
    """A copy of ``src`` with its pixels, nodata, masks' values and tags but no CRS or
    geotransform."""
    import rasterio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(src) as ds:
            profile = {k: v for k, v in ds.profile.items() if k not in ("crs", "transform")}
            with rasterio.open(dst, "w", **profile) as out:
                out.write(ds.read())
                out.update_tags(**ds.tags())
    return dst


def score_scene(folder: str, model: str, adapt: int, objectives=("full",),
                calibrate: bool = True, protocol: str = "ssdiff", bare: Path | None = None) -> dict:
    """Reduced- and full-resolution scores of every method on one shared scene.

    ``generalist`` is the model alone (``--method ssdiff``); ``auto`` is what ``sharpen`` runs by
    default: the model with its guard, which may fall back to MTF-GLP-FS (decided on each input
    on its own: the reduced-resolution pair and the full-resolution scene). Where the guard keeps
    the model, the two rows are one run. ``protocol`` is ``evaluate --protocol``'s; ``bare``,
    a folder, scores copies of the pair without georeferencing written there.
    """
    from ssdiff_cli.evaluate import evaluate_full, evaluate_reduced
    from ssdiff_cli.pipeline import SharpenOptions

    pan, ms = DATA / folder / "pan.tif", DATA / folder / "ms.tif"
    if bare is not None:
        pan = strip_georeferencing(pan, bare / "pan.tif")
        ms = strip_georeferencing(ms, bare / "ms.tif")
    reduced = functools.partial(evaluate_reduced, protocol=protocol)
    rows: dict[str, dict] = {}
    model_opts = {"model": model, "calibrate": calibrate}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        o = SharpenOptions(method_options=model_opts, **TILING)
        scores = {}
        for name, evaluate in (("reduced", reduced), ("full", evaluate_full)):
            ev = evaluate(pan, ms, ["auto"], options=o)
            auto = ev.rows["auto"]
            alone = evaluate(pan, ms, ["ssdiff"], options=o).rows["ssdiff"] \
                if _fell_back(ev, "auto") else auto
            scores[name] = {"generalist": alone, "auto": auto,
                            "fell_back": _fell_back(ev, "auto"),
                            "guard": ev.details["ran"]["auto"].get("guard")}
        for label in ("generalist", "auto"):
            red, full = scores["reduced"][label], scores["full"][label]
            rows[label] = {"SAM": red["SAM"], "ERGAS": red["ERGAS"], "Q2n": red["Q2n"],
                           "HQNR": full["HQNR"]}
        rows["auto"]["guard_fell_back"] = {k: scores[k]["fell_back"] for k in scores}
        rows["auto"]["guard"] = {k: scores[k]["guard"] for k in scores}
        for objective in objectives if adapt else ():
            label = f"generalist --adapt {adapt} ({objective})"
            o = SharpenOptions(method_options={**model_opts, "adapt": adapt},
                               adapt_objective=objective, **TILING)
            red = reduced(pan, ms, ["ssdiff"], options=o).rows["ssdiff"]
            full = evaluate_full(pan, ms, ["ssdiff"], options=o).rows["ssdiff"]
            rows[label] = {"SAM": red["SAM"], "ERGAS": red["ERGAS"], "Q2n": red["Q2n"],
                           "HQNR": full["HQNR"]}
        red = reduced(pan, ms, CLASSICAL, options=SharpenOptions(**TILING)).rows
        full = evaluate_full(pan, ms, CLASSICAL, options=SharpenOptions(**TILING)).rows
    for m in CLASSICAL:
        rows[m] = {"SAM": red[m]["SAM"], "ERGAS": red[m]["ERGAS"], "Q2n": red[m]["Q2n"],
                   "HQNR": full[m]["HQNR"]}
    up = red["upsample (baseline)"]
    rows["upsample"] = {"SAM": up["SAM"], "ERGAS": up["ERGAS"], "Q2n": up["Q2n"], "HQNR": None}
    return rows


def _mean(rows_list: list[dict]) -> dict:
    out = {}
    for method in rows_list[0]:
        out[method] = {}
        for c in COLUMNS:
            vals = [r[method][c] for r in rows_list if r[method][c] is not None]
            out[method][c] = float(np.mean(vals)) if vals else None
        if "guard_fell_back" in rows_list[0][method]:
            out[method]["guard_fell_back"] = sum(
                sum(r[method]["guard_fell_back"].values()) for r in rows_list)
    return out


def verdict(rows: dict, model: str = "generalist") -> dict:
    """Model vs the best classical method per column (lower SAM/ERGAS, higher Q2n/HQNR)."""
    out = {}
    for c in COLUMNS:
        vals = {m: rows[m][c] for m in CLASSICAL if rows[m][c] is not None}
        if not vals or rows[model][c] is None:
            continue
        best = (min if c in ("SAM", "ERGAS") else max)(vals, key=vals.get)
        ok = rows[model][c] <= vals[best] if c in ("SAM", "ERGAS") else rows[model][c] >= vals[best]
        out[c] = {"best_classical": best, "value": vals[best], "model": rows[model][c], "ok": bool(ok)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ssdiff-generalist", help="the shipped (all-data) model")
    ap.add_argument("--fold-a", help="model trained without fold A")
    ap.add_argument("--fold-b", help="model trained without fold B")
    ap.add_argument("--adapt", type=int, default=0, help="also score the model with --adapt N")
    ap.add_argument("--adapt-objective", nargs="+", default=["full"], choices=["full", "reduced"],
                    help="adaptation objectives to score (each a column)")
    ap.add_argument("--per-family", type=int, default=99, help="scenes scored per family, at most")
    ap.add_argument("--no-calibrate", action="store_true",
                    help="score the model without its per-scene calibration")
    ap.add_argument("--families", nargs="*", help="only these families")
    ap.add_argument("--seen", action="store_true", help="also score the shipped model in distribution")
    ap.add_argument("--protocol", choices=["ssdiff", "toolbox"], default="ssdiff",
                    help="evaluate --protocol of the reduced-resolution scores")
    ap.add_argument("--bare", action="store_true",
                    help="score copies of the pairs without georeferencing")
    ap.add_argument("--json", type=Path, help="write every figure here")
    ap.add_argument("--report", type=Path, nargs="+",
                    help="print the table of earlier --json runs (over disjoint families) and stop")
    ap.add_argument("--card", type=Path,
                    help="with --report: write the figures into this model card's metrics")
    ap.add_argument("--adapt-json", type=Path, nargs="+",
                    help="with --card: a separate --adapt run (its --json files) whose median "
                         "goes into the card")
    args = ap.parse_args()
    if args.report:
        merged = {}
        for path in args.report:
            merged |= json.loads(path.read_text())
        merged = dict(sorted(merged.items()))
        print_table(merged)
        if args.card:
            card = json.loads(args.card.read_text())
            adapt = {}
            for path in args.adapt_json or ():
                adapt |= json.loads(path.read_text())
            card.setdefault("metrics", {})["unseen_scenes"] = card_metrics(merged, adapt)
            tmp = args.card.with_name(args.card.name + ".tmp")  # never a half-written card
            tmp.write_text(json.dumps(card, indent=2) + "\n")
            os.replace(tmp, args.card)
        return
    given = {"A": args.fold_a, "B": args.fold_b}
    missing = [f"--fold-{k.lower()}" for k in FOLDS if not given[k]
               and any(not args.families or f in args.families for f in FOLDS[k])]
    if missing:
        ap.error(f"{' and '.join(missing)} required to score the training families of that "
                 "fold (unless --report, or --families names only families of folds given, or "
                 "no training set holds)")
    if not DATA.is_dir():
        sys.exit(f"shared scenes not found at {DATA}: nothing to benchmark")

    fams = families()
    which = {f: args.fold_a for f in FOLDS["A"]} | {f: args.fold_b for f in FOLDS["B"]}
    results = {}
    for fam, folders in sorted(fams.items()):
        if args.families and fam not in args.families:
            continue
        model = which.get(fam, args.model)
        per_scene = {}
        for folder in folders[: args.per_family]:
            print(f"{fam}: {folder} with {model}", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory(prefix="ssdiff-bare-") as tmp:
                per_scene[folder] = score_scene(
                    folder, model, args.adapt, args.adapt_objective,
                    calibrate=not args.no_calibrate, protocol=args.protocol,
                    bare=Path(tmp) if args.bare else None)
        mean = _mean(list(per_scene.values()))
        results[fam] = {"model": model, "protocol": args.protocol, "bare": args.bare,
                        "scenes": per_scene, "mean": mean, "verdict": verdict(mean),
                        "verdict_auto": verdict(mean, "auto")}
        if args.seen and fam in which:
            seen = _mean([score_scene(f, args.model, 0, calibrate=not args.no_calibrate,
                                      protocol=args.protocol)
                          for f in folders[: args.per_family]])
            results[fam]["seen_by_shipped_model"] = seen["generalist"]
        if args.json:
            args.json.write_text(json.dumps(results, indent=1) + "\n")
    print_table(results)


def _ergas_ratios(results: dict, label: str) -> list[float]:
    """Per family: ``label``'s ERGAS over the best classical method's."""
    return [res["mean"][label]["ERGAS"] / res["verdict"]["ERGAS"]["value"]
            for res in results.values() if "ERGAS" in res["verdict"]
            and res["mean"].get(label, {}).get("ERGAS") is not None]


def _families_ok(results: dict, key: str, columns=COLUMNS) -> int:
    """Families whose ``key`` verdict is no worse than the best classical method on ``columns``."""
    return sum(all(x["ok"] for c, x in res[key].items() if c in columns)
               for res in results.values() if key in res)


def card_metrics(results: dict, adapt_results: dict | None = None) -> dict:
    """The ``unseen_scenes`` metrics of the shipped model's card: per family the scoring model,
    the scenes, the generalist's figures (alone and as ``auto``, with its guard) and the best
    classical method per index; the mean over families and the summary figures. The
    ``--adapt`` median comes from ``adapt_results``, a separate run (one scene per family)."""
    def four(v):  # figures to 4 decimals, as the card shows them
        return round(float(v), 4)

    families = {}
    for fam, res in results.items():
        model = res["model"]
        label = next((f"fold {k}" for k in FOLDS if fam in FOLDS[k]), Path(model).name)
        entry = {"scored_by": label, "scenes": ", ".join(res["scenes"]),
                 "best_classical": {c: {"method": v["best_classical"], "value": four(v["value"])}
                                    for c, v in res["verdict"].items()}}
        for m, v in res["mean"].items():
            if m.startswith("generalist") or m == "auto":
                entry[m] = {c: four(v[c]) for c in COLUMNS}
        families[fam] = entry
    mean = {c: round(float(np.mean([res["mean"]["generalist"][c] for res in results.values()])), 5)
            for c in ("SAM", "ERGAS", "Q2n")}
    out = {"note": "leave-one-acquisition-out (benchmarks/bench_generalization.py, every scene "
                   "of each family, a family's figure the mean over its scenes): each scene "
                   "scored by a model that saw neither it nor any crop of its acquisition (the "
                   "fold models for the commercial families, this model for GRIP and "
                   "WorldView-3); reduced resolution (Wald) SAM/ERGAS/Q2n, full-resolution HQNR; "
                   "one DDIM step, default precision, per-scene calibration on; 'generalist' is "
                   "the model alone (--method ssdiff), 'auto' the default (with its guard)",
           "mean": mean,
           "families": len(results),
           "families_no_worse_on_every_index": _families_ok(results, "verdict"),
           "families_no_worse_on_sam_ergas_hqnr": _families_ok(results, "verdict", ISSUE_COLUMNS),
           "families_no_worse_on_every_index (auto)": _families_ok(results, "verdict_auto"),
           "families_no_worse_on_sam_ergas_hqnr (auto)": _families_ok(
               results, "verdict_auto", ISSUE_COLUMNS),
           "median_ergas_over_best_classical": round(float(np.median(
               _ergas_ratios(results, "generalist"))), 3),
           "median_ergas_over_best_classical (auto)": round(float(np.median(
               _ergas_ratios(results, "auto"))), 3)}
    extra = adapt_results or {}
    labels = {m for res in extra.values() for m in res["mean"] if m.startswith("generalist --")}
    for label in sorted(labels):
        out[f"median_ergas_over_best_classical ({label[len('generalist '):]}, one scene per "
            f"family)"] = round(float(np.median(_ergas_ratios(extra, label))), 3)
    out["families"] = families
    return out


def print_table(results: dict) -> None:
    """One markdown table: per family, each method's SAM / ERGAS / Q2n / HQNR."""
    print("| family (never seen by its model) | method | SAM | ERGAS | Q2n | HQNR |")
    print("|---|---|---|---|---|---|")
    for fam, res in results.items():
        for method, v in res["mean"].items():
            cells = " | ".join("–" if v[c] is None else f"{v[c]:.4f}" if c in ("Q2n", "HQNR")
                               else f"{v[c]:.3f}" for c in COLUMNS)
            if method == "auto":
                inputs = 2 * len(res["scenes"])
                method = f"auto (guard fell back on {v['guard_fell_back']} of {inputs} inputs)"
            print(f"| {fam} | {method} | {cells} |")
        if "seen_by_shipped_model" in res:
            v = res["seen_by_shipped_model"]
            cells = " | ".join("–" if v[c] is None else f"{v[c]:.4f}" for c in COLUMNS)
            print(f"| {fam} | shipped model (in distribution: trained on it) | {cells} |")
    print()
    for key, label in (("verdict", "the generalist"), ("verdict_auto", "auto (generalist + guard)")):
        if not all(key in res for res in results.values()):
            continue
        print(f"families where {label} is no worse than the best classical method on every index: "
              f"{_families_ok(results, key)}/{len(results)}; on SAM, ERGAS and HQNR: "
              f"{_families_ok(results, key, ISSUE_COLUMNS)}/{len(results)}")
    labels = [m for m in next(iter(results.values()))["mean"]
              if m.startswith("generalist") or m == "auto"]
    for label in labels:
        ratios = _ergas_ratios(results, label)
        if ratios:
            print(f"median ERGAS, {label} / best classical: {np.median(ratios):.3f} "
                  f"over {len(ratios)} families")


if __name__ == "__main__":
    main()
