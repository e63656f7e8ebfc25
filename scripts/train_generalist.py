"""Train the generalist SSDiff model on the shared scenes (all commercial-use families, or all
but one leave-one-acquisition-out fold).

    python scripts/train_generalist.py -o ssdiff_cli/models/ssdiff-generalist --minutes 60
    python scripts/train_generalist.py -o runs/fold-A --exclude-fold A --minutes 30
    python scripts/train_generalist.py -o runs/fold-A --exclude-fold A --resume
    python scripts/train_generalist.py -o runs/generalist-phase --init ssdiff-generalist --lr 2e-4

SIGINT/SIGTERM save the state; ``--resume`` continues it.
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
    ap.add_argument("--name", default="ssdiff-generalist")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", help="fine-tune this generalist (a model name or checkpoint path); "
                    "pass it again with --resume so the card keeps it")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--single-phase", action="store_true",
                    help="the earlier recipe: block-centred samples only, no misregistration")
    args = ap.parse_args()

    from ssdiff_cli.training.generalist import GeneralistTrainConfig, train_generalist

    fams = families()
    chosen = {f: s for f, s in fams.items()
              if f != "wv3_cristianics" and (commercial(f) or args.non_profit)
              and not (args.exclude_fold and f in FOLDS[args.exclude_fold])}
    # Scenes are named relative to the data folder: the card records where each came from,
    # never this machine's paths.
    args.output = str(Path(args.output).resolve())
    if args.init and (Path(args.init).exists() or Path(args.init).with_suffix(".json").exists()):
        args.init = str(Path(args.init).resolve())  # a path, not a zoo name: it must survive chdir
    os.chdir(DATA)
    phases = {"phases": ("block",), "misregistration": 0.0} if args.single_phase else {}
    cfg = GeneralistTrainConfig(output=args.output, name=args.name, max_minutes=args.minutes,
                                max_steps=args.steps, threads=args.threads, seed=args.seed,
                                lr=args.lr, **phases)
    scenes = [(Path(folder) / "pan.tif", Path(folder) / "ms.tif", fam, terms(fam))
              for fam, folders in sorted(chosen.items()) for folder in folders]
    extra = {"commercial_use": all(commercial(f) for f in chosen),
             "excluded_fold": args.exclude_fold,
             "never_seen": sorted(set(fams) - set(chosen)),
             "pairs": "Wald protocol at ratios 2 and 4 with MTF gains jittered (x exp(U(-0.25, 0.25))) "
                      "around the sensor's; base = MTF-GLP-FS with the nominal gains"
                      + ("" if args.single_phase else
                         "; decimation phase drawn per version (block-centred, the toolbox's "
                         "ratio/2 + ratio*k, or U(-0.5, 0.5) px per axis; PAN and MS alike), then "
                         "half the versions' MS moved by U(-0.3, 0.3) reduced-PAN px per axis "
                         "(decimation_phases)")}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    from ssdiff_cli.output import check_destination
    from ssdiff_cli.training.loop import run_files

    inputs = []
    if args.init and not args.resume:  # the model fine-tuned is read: never replaced
        from ssdiff_cli.zoo import model_files

        inputs = [str(p) for p in model_files(args.init)]
    for path in run_files(Path(args.output)):
        check_destination(path, overwrite=args.overwrite or args.resume, inputs=inputs,
                          role="training output")
    train_generalist(scenes, cfg, init=args.init, resume=args.resume, extra=extra,
                     log=lambda m: print(m, flush=True))


if __name__ == "__main__":
    from ssdiff_cli.errors import SsdiffError

    try:
        main()
    except SsdiffError as exc:  # a user error: one line and its exit code
        print(f"train_generalist: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
