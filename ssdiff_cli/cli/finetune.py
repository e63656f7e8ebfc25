"""``ssdiff finetune``: L-BAF adapters (or a merged checkpoint) for a model on your scenes, by
:func:`ssdiff_cli.training.finetune.finetune`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ssdiff_cli.cli.options import OverwriteOpt, QuietOpt, json_option, seed_option, sensor_option
from ssdiff_cli.cli.reporting import print_json, reporting, stderr
from ssdiff_cli.cli.train import scene_files


def finetune(
    scenes: Annotated[list[str], typer.Argument(help="Scenes: PAN,MS pairs or folders.",
                                                show_default=False)],
    model: Annotated[str, typer.Option("--model", "-m", help="Base model (zoo name or path).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Adapter prefix (or merged "
                                         "checkpoint prefix with --merge).")],
    steps: Annotated[int, typer.Option("--steps", min=1)] = 1000,
    rank: Annotated[int, typer.Option("--rank", min=1)] = 4,
    switch_every: Annotated[int, typer.Option("--switch-every", min=1, help="Steps per branch "
                                              "(spatial first, then alternating).")] = 100,
    lr: Annotated[float, typer.Option("--lr")] = 5e-4,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 16,
    sensor: Annotated[str | None, sensor_option(None)] = None,
    holdout: Annotated[float, typer.Option("--holdout", min=0.0, max=0.9)] = 0.2,
    merge: Annotated[bool, typer.Option("--merge", help="Write a merged full checkpoint.")] = False,
    seed: Annotated[int, seed_option()] = 0,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    json_out: Annotated[bool, json_option(None)] = False,
) -> None:
    """L-BAF: low-rank adapters on one branch at a time, the other frozen, alternating."""
    with reporting(quiet):
        from ssdiff_cli.output import check_destination
        from ssdiff_cli.zoo import model_files

        prefix = output.with_suffix("") if output.suffix in (".json", ".safetensors") else output
        inputs = [*scene_files(scenes), *map(str, model_files(model))]  # the base model is read
        for path in (prefix.with_suffix(".safetensors"), prefix.with_suffix(".json")):
            check_destination(path, overwrite=overwrite, inputs=inputs,
                              role="adapter" if not merge else "checkpoint")
        from ssdiff_cli.training.crops import parse_scene_arg
        from ssdiff_cli.training.finetune import FinetuneConfig
        from ssdiff_cli.training.finetune import finetune as run_finetune

        cfg = FinetuneConfig(steps=steps, rank=rank, switch_every=switch_every, lr=lr,
                             batch=batch_size, seed=seed)
        pairs = [parse_scene_arg(s) for s in scenes]
        res = run_finetune(model, pairs, output, cfg, sensor=sensor, holdout=holdout, merge=merge)
        summary = {k: v for k, v in res.items() if k != "losses"}
        if json_out:
            print_json(summary)
        elif not quiet:
            b, a = res["before"].get("mean", {}), res["after"].get("mean", {})
            msg = f"wrote {res['path']}"
            if a:
                msg += (f"; hold-out ERGAS {b['ERGAS']:.3f} -> {a['ERGAS']:.3f}, "
                        f"SAM {b['SAM']:.3f} -> {a['SAM']:.3f}")
            stderr.print(msg, highlight=False)
