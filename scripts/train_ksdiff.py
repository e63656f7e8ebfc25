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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generalist_data import (  # noqa: E402
    SINGLE_PHASE,
    check_run_outputs,
    run_arguments,
    training_scenes,
)


def main() -> None:
    ap = run_arguments(__doc__.splitlines()[0], "ksdiff")
    ap.add_argument("--stage1", type=float, default=0.5,
                    help="share of the run (of --minutes) spent in stage 1")
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--save-every", type=int, default=200)
    args = ap.parse_args()

    from ssdiff_cli.families import FAMILIES, training_entry
    from ssdiff_cli.training.ksdiff import KSDiffTrainConfig

    train = training_entry(FAMILIES["ksdiff"])
    scenes, extra = training_scenes(args)
    cfg = KSDiffTrainConfig(output=args.output, name=args.name, max_minutes=args.minutes,
                            max_steps=args.steps, threads=args.threads, seed=args.seed,
                            lr=args.lr, stage1=args.stage1, crop=args.crop,
                            save_every=args.save_every,
                            **(SINGLE_PHASE if args.single_phase else {}))
    extra["pairs"] = ("the generalist's: Wald protocol at ratios 2 and 4 with MTF gains jittered "
                      "(x exp(U(-0.25, 0.25))) around the sensor's; base = MTF-GLP-FS with the "
                      "nominal gains" + ("" if args.single_phase else
                                         "; decimation phase drawn per version, half the "
                                         "versions' MS misregistered (decimation_phases)"))
    check_run_outputs(args, [])
    train(scenes, cfg, resume=args.resume, extra=extra, log=lambda m: print(m, flush=True))

if __name__ == "__main__":
    from ssdiff_cli.errors import SsdiffError

    try:
        main()
    except SsdiffError as exc:  # a user error: one line and its exit code
        print(f"train_ksdiff: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
