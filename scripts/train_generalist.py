"""Train the generalist SSDiff model on the shared scenes (all commercial-use families, or all
but one leave-one-acquisition-out fold).

    python scripts/train_generalist.py -o ssdiff_cli/models/ssdiff-generalist --minutes 60
    python scripts/train_generalist.py -o runs/fold-A --exclude-fold A --minutes 30
    python scripts/train_generalist.py -o runs/fold-A --exclude-fold A --resume
    python scripts/train_generalist.py -o runs/generalist-phase --init ssdiff-generalist --lr 2e-4

SIGINT/SIGTERM save the state; ``--resume`` continues it.
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
    ap = run_arguments(__doc__.splitlines()[0], "ssdiff-generalist")
    ap.add_argument("--init", help="fine-tune this generalist (a model name or checkpoint path); "
                    "pass it again with --resume so the card keeps it")
    args = ap.parse_args()

    from ssdiff_cli.training.generalist import GeneralistTrainConfig, train_generalist

    if args.init and (Path(args.init).exists() or Path(args.init).with_suffix(".json").exists()):
        args.init = str(Path(args.init).resolve())  # a path, not a zoo name: it must survive chdir
    scenes, extra = training_scenes(args)
    cfg = GeneralistTrainConfig(output=args.output, name=args.name, max_minutes=args.minutes,
                                max_steps=args.steps, threads=args.threads, seed=args.seed,
                                lr=args.lr, **(SINGLE_PHASE if args.single_phase else {}))
    extra["pairs"] = ("Wald protocol at ratios 2 and 4 with MTF gains jittered (x exp(U(-0.25, "
                      "0.25))) around the sensor's; base = MTF-GLP-FS with the nominal gains"
                      + ("" if args.single_phase else
                         "; decimation phase drawn per version (block-centred, the toolbox's "
                         "ratio/2 + ratio*k, or U(-0.5, 0.5) px per axis; PAN and MS alike), then "
                         "half the versions' MS moved by U(-0.3, 0.3) reduced-PAN px per axis "
                         "(decimation_phases)"))
    inputs = []
    if args.init and not args.resume:  # the model fine-tuned is read: never replaced
        from ssdiff_cli.zoo import model_files

        inputs = [str(p) for p in model_files(args.init)]
    check_run_outputs(args, inputs)
    train_generalist(scenes, cfg, init=args.init, resume=args.resume, extra=extra,
                     log=lambda m: print(m, flush=True))

if __name__ == "__main__":
    from ssdiff_cli.errors import SsdiffError

    try:
        main()
    except SsdiffError as exc:  # a user error: one line and its exit code
        print(f"train_generalist: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
