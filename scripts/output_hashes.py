"""Hash the pixels `ssdiff sharpen` writes for every method on the small shared scenes.

A refactor that must not change behaviour is checked by running this before and after and
comparing the JSON (``--compare before.json``). Outputs go to a scratch folder. Run:
``python scripts/output_hashes.py -o hashes.json [--compare before.json]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import rasterio

DATA = Path(os.environ.get("SSDIFF_TEST_DATA",
                           Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
#: scenes (folders of the shared data) run whole with every method
SCENES = ["landsat_istanbul", "wv3_cristianics", "wv2_solaris_2", "l7_fusebox/07"]
RUNS = [
    ["--method", "upsample"], ["--method", "brovey"], ["--method", "gsa"],
    ["--method", "mtf-glp"], ["--method", "mtf-glp-fs"], ["--method", "auto"],
    ["--method", "ssdiff"],
]
#: per-sensor models on the scenes they fit (the fast variant is their default)
EXTRA = {
    "ge1_grip": [["--method", "ssdiff", "--model", "ssdiff-4band"], ["--method", "mtf-glp"]],
    "wv2_grip": [["--method", "ssdiff", "--model", "ssdiff-8band"]],
}


def pixel_hash(path: Path) -> str:
    """SHA-256 of the pixel values and the dtype (not of the file's bytes)."""
    with rasterio.open(path) as src:
        a = src.read()
    return hashlib.sha256(a.tobytes() + str(a.dtype).encode()).hexdigest()[:16]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--compare")
    args = p.parse_args()
    if not DATA.is_dir():
        print(f"shared data not found at {DATA}; nothing to hash", file=sys.stderr)
        return 2
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for scene in SCENES + [s for s in EXTRA if s not in SCENES]:
            pan, ms = DATA / scene / "pan.tif", DATA / scene / "ms.tif"
            for run in (RUNS if scene in SCENES else []) + EXTRA.get(scene, []):
                key = f"{scene} {' '.join(run)}"
                out = folder / "out.tif"
                cmd = [sys.executable, "-m", "ssdiff_cli", "sharpen", str(pan), str(ms), "-o",
                       str(out), "--overwrite", "--quiet", "--seed", "0", *run]
                done = subprocess.run(cmd, capture_output=True, text=True)
                result[key] = pixel_hash(out) if done.returncode == 0 else f"exit {done.returncode}"
                print(f"{key}: {result[key]}", flush=True)
    Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    if args.compare:
        before = json.loads(Path(args.compare).read_text())
        diff = [k for k in sorted(set(before) | set(result)) if before.get(k) != result.get(k)]
        for k in diff:
            print(f"DIFFERS: {k}: {before.get(k)} -> {result.get(k)}")
        print("identical" if not diff else f"{len(diff)} differ")
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
