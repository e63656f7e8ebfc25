"""Fit the ``sharpen --uncertainty`` head on the shipped generalist's errors at reduced resolution.

Scenes: the commercial-use families the generalist trained on (its card's ``training.families``;
never GRIP or WorldView-3, which stay unseen for ``benchmarks/bench_uncertainty.py``), at most
``--per-family`` scenes each. Per scene the pair is degraded by its ratio (the project's Wald
protocol) and ``--method ssdiff``, ``mtf-glp-fs -r cubic`` and the cubic upsampling are run on it
(:mod:`ssdiff_cli.training.uncertainty`); the head is fitted on the model's actual error. Writes
the head's JSON (default: the shipped one), through a temporary file, refusing to replace it
without ``--overwrite``.

    .venv/bin/python scripts/fit_uncertainty_head.py --overwrite
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generalist_data import DATA, families, terms  # noqa: E402

from ssdiff_cli import zoo  # noqa: E402
from ssdiff_cli.methods.uncertainty import SHIPPED_HEAD  # noqa: E402
from ssdiff_cli.output import check_destination, publish_file  # noqa: E402
from ssdiff_cli.pipeline import SharpenOptions  # noqa: E402
from ssdiff_cli.training.uncertainty import fit_head, reduced_errors  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default=str(SHIPPED_HEAD))
    ap.add_argument("--model", default="ssdiff-generalist")
    ap.add_argument("--per-family", type=int, default=2)
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args()
    check_destination(args.output, overwrite=args.overwrite, role="uncertainty head")
    card = zoo.read_card(args.model)
    trained = set(card.training.get("families") or [])
    fams = {f: s[: args.per_family] for f, s in families().items() if f in trained}
    if not fams:
        sys.exit(f"fit_uncertainty_head: none of {args.model}'s training families under {DATA}")
    opts = SharpenOptions(tile_size=512, workers=1, method_options={"model": args.model})
    scenes, used = [], []
    warnings.simplefilter("ignore")
    for fam, folders in sorted(fams.items()):
        for folder in folders:
            start = time.perf_counter()
            scenes.append(reduced_errors(DATA / folder / "pan.tif", DATA / folder / "ms.tif", opts))
            used.append({"scene": folder, "family": fam, "terms": terms(fam)})
            print(f"{folder}: {time.perf_counter() - start:.0f} s", flush=True)
    head = fit_head(scenes, info={"fitted_on": {
        "model": card.name, "protocol": "ssdiff Wald protocol (reduced resolution)",
        "scenes": used}})
    out = Path(os.path.realpath(args.output))
    with tempfile.NamedTemporaryFile("w", dir=out.parent, suffix=".tmp", delete=False) as fh:
        json.dump(head.to_dict(), fh, indent=1)
        fh.write("\n")
    try:
        publish_file(Path(fh.name), out, args.overwrite)
    finally:
        Path(fh.name).unlink(missing_ok=True)
    print(f"wrote {out}: scale {head.scale}, bias {head.bias}")


if __name__ == "__main__":
    main()
