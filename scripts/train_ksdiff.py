"""Train a KSDiff model on the shared scenes, as ``scripts/train_generalist.py`` trains the
generalist (the same scenes, terms, folds and training pairs, random decimation phases
included): stage 1 (PLFE1 + kernel generator + regressor), then stage 2 (the latent denoiser
jointly with the regressor); see :mod:`ssdiff_cli.training.ksdiff`.

    python scripts/train_ksdiff.py -o runs/ksdiff --minutes 40 --threads 1
    python scripts/train_ksdiff.py -o runs/ksdiff-fold-A --exclude-fold A --minutes 30
    python scripts/train_ksdiff.py -o runs/ksdiff --resume --minutes 80

SIGINT/SIGTERM save the state; ``--resume`` continues it (``--minutes`` is the run's total).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generalist_data import DATA, FOLDS, commercial, families, terms  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--exclude-fold", choices=sorted(FOLDS))
    ap.add_argument("--non-profit", action="store_true", help="also train on non-profit-only scenes")
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--steps", type=int, default=100000)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--overwrite", action="store_true", help="replace an earlier run at -o")
    ap.add_argument("--name", default="ksdiff")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--stage1", type=float, default=0.5,
                    help="share of the run (of --minutes) spent in stage 1")
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--save-every", type=int, default=200)
    ap.add_argument("--single-phase", action="store_true",
                    help="block-centred samples only, no misregistration")
    args = ap.parse_args()

    from ssdiff_cli.families import FAMILIES, training_entry
    from ssdiff_cli.training.ksdiff import KSDiffTrainConfig

    train = training_entry(FAMILIES["ksdiff"])
    fams = families()
    chosen = {f: s for f, s in fams.items()
              if f != "wv3_cristianics" and (commercial(f) or args.non_profit)
              and not (args.exclude_fold and f in FOLDS[args.exclude_fold])}
    # Scenes are named relative to the data folder: the card records where each came from.
    args.output = str(Path(args.output).resolve())
    os.chdir(DATA)
    phases = {"phases": ("block",), "misregistration": 0.0} if args.single_phase else {}
    cfg = KSDiffTrainConfig(output=args.output, name=args.name, max_minutes=args.minutes,
                            max_steps=args.steps, threads=args.threads, seed=args.seed,
                            lr=args.lr, stage1=args.stage1, crop=args.crop,
                            save_every=args.save_every, **phases)
    scenes = [(Path(folder) / "pan.tif", Path(folder) / "ms.tif", fam, terms(fam))
              for fam, folders in sorted(chosen.items()) for folder in folders]
    extra = {"commercial_use": all(commercial(f) for f in chosen),
             "excluded_fold": args.exclude_fold,
             "never_seen": sorted(set(fams) - set(chosen)),
             "pairs": "the generalist's: Wald protocol at ratios 2 and 4 with MTF gains jittered "
                      "(x exp(U(-0.25, 0.25))) around the sensor's; base = MTF-GLP-FS with the "
                      "nominal gains" + ("" if args.single_phase else
                                         "; decimation phase drawn per version, half the "
                                         "versions' MS misregistered (decimation_phases)")}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    from ssdiff_cli.output import check_destination
    from ssdiff_cli.training.loop import run_files

    for path in run_files(Path(args.output)):
        check_destination(path, overwrite=args.overwrite or args.resume, inputs=[],
                          role="training output")
    train(scenes, cfg, resume=args.resume, extra=extra, log=lambda m: print(m, flush=True))


if __name__ == "__main__":
    from ssdiff_cli.errors import SsdiffError

    try:
        main()
    except SsdiffError as exc:  # a user error: one line and its exit code
        print(f"train_ksdiff: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
