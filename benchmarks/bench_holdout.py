"""Shipped models against the classical methods on each training scene's hold-out area.

The hold-out is the strip of columns ``ssdiff train`` never samples (right 20 % by default, the
same rule as training: :func:`ssdiff_cli.training.crops.build_scene`). Each hold-out strip is cut
out as its own PAN + MS pair (same georeference and tags) and scored with the ordinary commands:

    ssdiff evaluate --reduced PAN MS -m ssdiff --model M -m brovey -m gsa -m mtf-glp -m mtf-glp-fs --json
    ssdiff evaluate --full    PAN MS -m ssdiff --model M -m brovey -m gsa -m mtf-glp -m mtf-glp-fs --json

and a table is printed, with the acceptance check of issue 5: the model beats the best classical
method on SAM and ERGAS, and its HQNR is no worse. A scene a model was *not* trained on is marked
"unseen" (a transfer test, no acceptance).

    .venv/bin/python benchmarks/bench_holdout.py [--work /tmp/ssdiff-holdout]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings
from pathlib import Path

import rasterio
from rasterio.windows import Window

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLASSICAL = ["brovey", "gsa", "mtf-glp", "mtf-glp-fs"]
# model -> (scenes it was trained on, extra scenes to try it on)
RUNS = {
    "ssdiff-4band": (["ge1_grip"], []),
    "ssdiff-8band": (["wv2_grip"], ["wv3_cristianics"]),
}


def cut_holdout(scene: str, work: Path, fraction: float = 0.2) -> tuple[Path, Path]:
    """Write the hold-out columns of a shared scene as a PAN + MS pair; returns the paths."""
    from ssdiff_cli.training.crops import build_scene

    pan_src, ms_src = DATA / scene / "pan.tif", DATA / scene / "ms.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = build_scene(pan_src, ms_src, holdout=fraction).holdout_start  # MS column
        with rasterio.open(pan_src) as pan_ds:
            ratio = round(pan_ds.width / rasterio.open(ms_src).width)
    out = work / scene
    out.mkdir(parents=True, exist_ok=True)
    for src_path, off, name in ((pan_src, ratio * start, "pan.tif"), (ms_src, start, "ms.tif")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(src_path) as src:
                win = Window(off, 0, src.width - off, src.height)
                profile = src.profile
                profile.update(width=src.width - off, height=src.height)
                if src.crs is not None:
                    profile["transform"] = src.window_transform(win)
                else:
                    profile.pop("transform", None)
                    profile.pop("crs", None)
                data, tags, names = src.read(window=win), src.tags(), src.descriptions
            with rasterio.open(out / name, "w", **profile) as dst:
                dst.write(data)
                dst.update_tags(**tags)
                dst.descriptions = names
    return out / "pan.tif", out / "ms.tif"


def evaluate(mode: str, pan: Path, ms: Path, model: str) -> dict:
    """Run ``ssdiff evaluate --MODE`` and return its JSON rows."""
    ssdiff = str(Path(sys.executable).with_name("ssdiff"))
    cmd = [ssdiff, "evaluate", f"--{mode}", str(pan), str(ms), "-m", "ssdiff", "--model", model]
    for m in CLASSICAL:
        cmd += ["-m", m]
    cmd += ["--json", "-q"]
    print("$", " ".join(cmd[1:]), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr.strip())
    return json.loads(proc.stdout)["rows"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/ssdiff-holdout"))
    parser.add_argument("--models", nargs="+", default=list(RUNS))
    args = parser.parse_args()
    if not (DATA / "ge1_grip" / "pan.tif").exists():
        print(f"skipped: shared real scenes not found at {DATA}")
        return
    from ssdiff_cli import zoo

    lines = []
    for model in args.models:
        try:
            zoo.read_card(model)
        except Exception as exc:  # a model not shipped in this checkout
            print(f"{model}: {exc}")
            continue
        trained, extra = RUNS[model]
        for scene in trained + extra:
            pan, ms = cut_holdout(scene, args.work)
            reduced = evaluate("reduced", pan, ms, model)
            full = evaluate("full", pan, ms, model)
            best_sam = min(reduced[m]["SAM"] for m in CLASSICAL)
            best_ergas = min(reduced[m]["ERGAS"] for m in CLASSICAL)
            best_hqnr = max(full[m]["HQNR"] for m in CLASSICAL)
            for name in ["ssdiff", *CLASSICAL]:
                r, f = reduced[name], full[name]
                label = f"{model}" if name == "ssdiff" else name
                lines.append(f"| {scene} | {label} | {r['SAM']:.3f} | {r['ERGAS']:.3f} | "
                             f"{r['Q2n']:.3f} | {f['HQNR']:.3f} |")
            s = reduced["ssdiff"]
            verdict = ("unseen scene (transfer)" if scene in extra else
                       "PASS" if s["SAM"] < best_sam and s["ERGAS"] < best_ergas
                       and full["ssdiff"]["HQNR"] >= best_hqnr else "FAIL")
            lines.append(f"| {scene} | acceptance | best classical SAM {best_sam:.3f}, ERGAS "
                         f"{best_ergas:.3f}, HQNR {best_hqnr:.3f} | | | {verdict} |")
    print("\n| hold-out of | method | SAM | ERGAS | Q2n | HQNR |")
    print("|---|---|---|---|---|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
