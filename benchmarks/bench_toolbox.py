"""Benchmark: ssdiff's MTF-GLP-FS / MTF-GLP-HPM against the pansharpening toolbox's, under
``evaluate --protocol toolbox``.

The peer is a re-implementation of the MATLAB toolbox's ``MTF_GLP_FS.m`` and ``MTF_GLP_HPM.m``
(Vivone et al. 2018 / 2021) as they run in its reduced-resolution demo, kept here as an *oracle*
(not in the package: it is what ssdiff is compared with), on exactly the degraded pair that
``evaluate --protocol toolbox`` hands to ssdiff's methods:

* the lms: ``interp23tap`` of the degraded MS (:func:`ssdiff_cli.toolbox_filters.interp23tap`);
* per band, ``PAN_LP``: the (equalised, for HPM) PAN filtered with the band's ``genMTF`` FIR
  (edges replicated), decimated by ``imresize(.., 1/ratio, 'nearest')`` and brought back with
  ``interp23tap``;
* FS: ``F_i = lms_i + g_i (PAN - PAN_LP_i)``, ``g_i = cov(lms_i, PAN) / cov(PAN_LP_i, PAN)``;
* HPM: the PAN equalised to each band, ``(PAN - mean(PAN)) std(lms_i) / std(LP(PAN)) +
  mean(lms_i)`` with ``LP`` the toolbox's ``LPfilterGauss`` (the same FIR design, gain 0.3,
  ``alpha`` from ``N`` rather than ``N - 1`` taps), then ``F_i = lms_i PAN_i / (PAN_LP_i + eps)``
  with nothing bounded (a band whose equalised PAN crosses zero makes spikes, as in MATLAB).

The toolbox knows no nodata: on scenes that have some, the oracle fills the degraded pair's
invalid pixels as ssdiff's tile reader does (:func:`ssdiff_cli.filters.fill_invalid`) and takes
its statistics over the valid ones; every row is scored on the same valid pixels.

Each shared scene (one crop per ``l7_fusebox`` acquisition) is degraded once per placement and
scored with the toolbox's conventions (:func:`ssdiff_cli.quality.reduced.toolbox_reduced_resolution`).
``--placement none`` is the protocol itself (the pair handed without georeferencing: a method
must find the MS/PAN phase itself; ``--coregister`` passes ssdiff's registration setting). The
other placements georeference the degraded pair, which the toolbox never does, to measure a
base apart from its phase finding (``evaluate.PLACEMENTS``; ssdiff's registration is then off,
or it would move the MS again): ``samples`` where the degradation
took each sample (the MS then lies 0.375 PAN px from a block-centred reading at ratio 4, 0.25 at
ratio 2), ``reference`` with the MS where the reference has it (0.5 PAN px: the toolbox's own
interp23tap convention).

    python benchmarks/bench_toolbox.py [--placement none samples reference] [--coregister off]
        [--scenes ge1_grip l7_fusebox/07 ...] [--json out.json] [--markdown]

Prints, per scene and placement, ERGAS and SAM of the oracle's FS and HPM and of ssdiff's
``mtf-glp-fs`` and ``mtf-glp-hpm``, and ssdiff / oracle ERGAS ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from ssdiff_cli import filters, toolbox_filters  # noqa: E402
from ssdiff_cli.evaluate import evaluate_reduced  # noqa: E402
from ssdiff_cli.pipeline import SharpenOptions  # noqa: E402
from ssdiff_cli.quality.reduced import toolbox_reduced_resolution  # noqa: E402

#: The first crop of each of the five l7_fusebox acquisitions.
L7_ONE_PER_ACQUISITION = ("07", "13", "19", "25", "32")
#: MATLAB's eps (the HPM denominator's guard).
EPS = float(np.finfo(np.float64).eps)
#: LPfilterGauss: the genMTF design with gain 0.3 and alpha from N = 41 rather than N - 1, i.e.
#: toolbox_filters.toolbox_mtf_kernel at the gain whose (N - 1)-based alpha equals it.
LPFILTERGAUSS_GNYQ = 0.3 ** ((40 / 41) ** 2)


def shared_scenes() -> list[str]:
    """Every scene folder of ../shared/data (one crop per l7_fusebox acquisition)."""
    names = []
    for d in sorted(DATA.iterdir()):
        if d.name == "l7_fusebox":
            names += [f"l7_fusebox/{n}" for n in L7_ONE_PER_ACQUISITION if (d / n).is_dir()]
        elif (d / "pan.tif").exists():
            names.append(d.name)
    return names


def _cov(a: np.ndarray, b: np.ndarray) -> float:
    """MATLAB's ``cov(a(:), b(:))`` off-diagonal term (n - 1 normalisation)."""
    return float(np.dot(a - a.mean(), b - b.mean())) / (a.size - 1)


def _pan_lp(pan: np.ndarray, gnyq: float, ratio: int) -> np.ndarray:
    """The toolbox's ``PAN_LP``: FIR, nearest decimation, interp23tap back."""
    return toolbox_filters.interp23tap(toolbox_filters.toolbox_degrade(pan, gnyq, ratio), ratio)


def oracle_fs(pan: np.ndarray, ms_lr: np.ndarray, ratio: int, gnyq, valid=None) -> np.ndarray:
    """The toolbox's ``MTF_GLP_FS(interp23tap(ms_lr), pan, sensor, ratio)`` (statistics over
    ``valid`` pixels when given)."""
    lms = toolbox_filters.interp23tap(ms_lr, ratio)
    sel = np.ones(pan.shape, bool) if valid is None else valid
    out = np.empty_like(lms)
    for i, g in enumerate(gnyq):
        lp = _pan_lp(pan, g, ratio)
        gain = _cov(lms[i][sel], pan[sel]) / _cov(lp[sel], pan[sel])
        out[i] = lms[i] + gain * (pan - lp)
    return out


def oracle_hpm(pan: np.ndarray, ms_lr: np.ndarray, ratio: int, gnyq, valid=None) -> np.ndarray:
    """The toolbox's ``MTF_GLP_HPM(interp23tap(ms_lr), pan, sensor, ratio)`` (statistics over
    ``valid`` pixels when given)."""
    lms = toolbox_filters.interp23tap(ms_lr, ratio)
    sel = np.ones(pan.shape, bool) if valid is None else valid
    lp_gauss = toolbox_filters.toolbox_lowpass(pan, LPFILTERGAUSS_GNYQ, ratio)
    out = np.empty_like(lms)
    for i, g in enumerate(gnyq):
        # std2 on both sides: their n - 1 normalisations cancel
        scale = lms[i][sel].std() / lp_gauss[sel].std()
        pan_eq = (pan - pan[sel].mean()) * scale + lms[i][sel].mean()
        out[i] = lms[i] * (pan_eq / (_pan_lp(pan_eq, g, ratio) + EPS))
    return out


def _filled(arr: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """The degraded array with its invalid pixels filled as ssdiff's tile reader fills them."""
    arr = np.asarray(arr, np.float64)
    if valid is None or valid.all():
        return arr
    means = arr[..., valid].mean(axis=-1) if arr.ndim == 3 else float(arr[valid].mean())
    return filters.fill_invalid(arr.astype(np.float32), valid, means).astype(np.float64)


def run_scene(name: str, placement: str | None, options: SharpenOptions) -> dict:
    """ssdiff's two MTF-GLPs and the oracle's on one scene under ``--protocol toolbox``."""
    pan, ms = DATA / name / "pan.tif", DATA / name / "ms.tif"
    keep: dict = {}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = evaluate_reduced(pan, [ms], ["mtf-glp-fs", "mtf-glp-hpm"], options=options,
                              keep=keep, protocol="toolbox", placement=placement)
    pair, ref, mask = keep["degraded"], keep["reference"], keep["mask"]
    r, gnyq = pair.ratio, ev.details["mtf_gnyq"]["ms"]  # the gains the degradation used
    pv = pair.pan_valid
    p_lr = _filled(pair.pan, pv)
    m_lr = _filled(pair.ms, pair.ms_valid)
    sel = None if pv is None else np.asarray(pv, bool)
    rows = {}
    for label, fn in (("toolbox FS", oracle_fs), ("toolbox HPM", oracle_hpm)):
        fused = fn(p_lr, m_lr, r, gnyq, sel)[:, : ref.shape[1], : ref.shape[2]]
        rows[label] = toolbox_reduced_resolution(fused, ref, r, mask=mask)
    rows["ssdiff mtf-glp-fs"] = ev.rows["mtf-glp-fs"]
    rows["ssdiff mtf-glp-hpm"] = ev.rows["mtf-glp-hpm"]
    rows["upsample (ssdiff)"] = ev.rows["upsample (baseline)"]
    ran = ev.details.get("ran", {})
    return {"scene": name, "ratio": r, "bands": int(ref.shape[0]), "shape": list(ref.shape[1:]),
            "placement": placement or "none", "seconds": round(time.perf_counter() - start, 1),
            "rows": {k: {c: v[c] for c in ("ERGAS", "SAM", "Q2n", "SCC")} for k, v in rows.items()},
            "ran": {k: v for k, v in ran.items() if k.startswith("mtf")}}


def _ratio(a: float, b: float) -> float:
    return a / b if b and math.isfinite(a) and math.isfinite(b) else math.nan


def print_table(results: list[dict], markdown: bool) -> None:
    """One line per scene and placement: ERGAS (SAM) of each row and the ssdiff/oracle ratios."""
    head = ("scene", "r", "placement", "toolbox FS", "ssdiff FS", "FS ratio", "toolbox HPM",
            "ssdiff HPM", "HPM ratio")
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
    else:
        print("  ".join(f"{h:>14s}" for h in head))
    for res in results:
        if "error" in res:
            cells = [res["scene"], "", res["placement"], res["error"]]
            print(("| " + " | ".join(cells) + " |") if markdown else "  ".join(cells))
            continue
        rw = res["rows"]

        def cell(k, rw=rw):
            return f"{rw[k]['ERGAS']:.4f} ({rw[k]['SAM']:.3f})"

        fs = _ratio(rw["ssdiff mtf-glp-fs"]["ERGAS"], rw["toolbox FS"]["ERGAS"])
        hpm = _ratio(rw["ssdiff mtf-glp-hpm"]["ERGAS"], rw["toolbox HPM"]["ERGAS"])
        cells = [res["scene"], str(res["ratio"]), res["placement"], cell("toolbox FS"),
                 cell("ssdiff mtf-glp-fs"), f"{fs:.4f}", cell("toolbox HPM"),
                 cell("ssdiff mtf-glp-hpm"), f"{hpm:.4f}"]
        if markdown:
            print("| " + " | ".join(cells) + " |")
        else:
            print("  ".join(f"{c:>14s}" for c in cells))


def main(argv=None) -> None:
    """Run the scenes and placements asked for; print the table (and write JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", nargs="*", default=None, help="scene folders under ../shared/data")
    ap.add_argument("--placement", nargs="*", default=["none"],
                    choices=["none", "samples", "reference"])
    ap.add_argument("--coregister", default=None, help="ssdiff's --coregister for the bare pair")
    ap.add_argument("--resampling", default=None, help="ssdiff's -r (default: the methods')")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        sys.exit(f"{DATA}: the shared scenes are not there")
    kwargs = {k: v for k, v in (("coregister", args.coregister), ("resampling", args.resampling))
              if v is not None}
    options = SharpenOptions(**kwargs)
    results = []
    for name in args.scenes or shared_scenes():
        for placement in args.placement:
            try:
                # a placed pair is measured as placed: registration would move it again
                opts = options if placement == "none" else replace(options, coregister="off")
                res = run_scene(name, None if placement == "none" else placement, opts)
            except Exception as exc:  # a scene the protocol cannot score is a row, not a stop
                res = {"scene": name, "placement": placement, "error": str(exc).splitlines()[0]}
            results.append(res)
            print(json.dumps(res), file=sys.stderr, flush=True)
    print_table(results, args.markdown)
    if args.json:
        args.json.write_text(json.dumps({"options": kwargs, "results": results}, indent=1))


if __name__ == "__main__":
    main()
