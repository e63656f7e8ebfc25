"""``ssdiff train``: a model of one family (``--family``, :mod:`ssdiff_cli.families`): a
per-sensor SSDiff model from real scenes (Wald protocol) or PanCollection, or a band- and
ratio-agnostic one (the generalist, KSDiff) from every scene given, each by its family's
training entry in :mod:`ssdiff_cli.training`."""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Annotated

import typer

from ssdiff_cli.cli.options import (
    Norm,
    OverwriteOpt,
    QuietOpt,
    TrainDeviceOpt,
    TrainPrecision,
    TrainPrecisionOpt,
    Variant,
    json_option,
    seed_option,
    sensor_option,
)
from ssdiff_cli.cli.reporting import (
    interrupt_exit_code,
    print_json,
    progress_bar,
    reporting,
    require_stdout,
    stderr,
)
from ssdiff_cli.errors import BadInputError, UsageError
from ssdiff_cli.families import FAMILIES, LEGACY_FAMILY

#: ``--family``: the registry's families.
FamilyName = enum.Enum("FamilyName", {name: name for name in FAMILIES}, type=str)


def train(
    scenes: Annotated[list[str] | None, typer.Argument(
        help="Scenes: PAN,MS pairs or folders holding pan.tif and ms.tif.", show_default=False)] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output prefix, e.g. my-models/NAME "
                                         "(writes NAME.safetensors, .json, .log.csv, .curves.png, "
                                         ".state.safetensors); put the folder in $SSDIFF_MODELS "
                                         "to use the model by name.")] = Path("ssdiff-custom"),
    sensor: Annotated[str | None, sensor_option(
        "Sensor preset (MTF gains, band names); default: detected.")] = None,
    pancollection: Annotated[Path | None, typer.Option(
        "--pancollection", help="Train from a PanCollection HDF5 file instead (needs h5py).")] = None,
    pc_scale: Annotated[float, typer.Option("--pc-scale", help="PanCollection value scale.")] = 2047.0,
    mtf_gains: Annotated[str | None, typer.Option(
        "--mtf-gains", help="MS gains at Nyquist, one or one per band, comma-separated.")] = None,
    pan_gain: Annotated[float | None, typer.Option("--pan-gain", help="PAN gain at Nyquist.")] = None,
    norm: Annotated[Norm, typer.Option("--norm", help="scene: divide by the PAN's 99th percentile; "
                                       "bitdepth: by 2**bits - 1.")] = Norm.scene,
    holdout: Annotated[float, typer.Option("--holdout", min=0.0, max=0.9,
                                           help="Right fraction of columns never sampled.")] = 0.2,
    eval_every: Annotated[int, typer.Option("--eval-every", min=0, help="Score the hold-out every N "
                                            "steps (0: never); the best ERGAS is kept.")] = 500,
    eval_steps: Annotated[int, typer.Option("--eval-steps", min=1, help="DDIM steps from t=999.")] = 1,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1)] = 20000,
    max_minutes: Annotated[float | None, typer.Option("--max-minutes", min=0.0)] = None,
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", min=1, help="Crops a step (per version for the band- and ratio-agnostic "
        "families); default: the family's (16; generalist 2 x 8, ksdiff 2 x 4).")] = None,
    crop: Annotated[int | None, typer.Option("--crop", min=4, help="Crop size (reduced PAN px); "
                                             "default: the family's (32; ksdiff 64).")] = None,
    lr: Annotated[float, typer.Option("--lr")] = 1e-3,
    ema: Annotated[float, typer.Option("--ema", min=0.0, max=1.0)] = 0.999,
    variant: Annotated[Variant, typer.Option("--variant")] = Variant.fast,
    seed: Annotated[int, seed_option()] = 0,
    precision: TrainPrecisionOpt = TrainPrecision.auto,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="Torch CPU threads.")] = None,
    device: TrainDeviceOpt = "cpu",
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run saved at -o.")] = False,
    family: Annotated[FamilyName | None, typer.Option(
        "--family", help="Model family: ssdiff (per-sensor, the default), or a band- and "
        "ratio-agnostic one, generalist or ksdiff (two stages), from every scene (ratios 2 and "
        "4, jittered MTFs and decimation phases; learning rate at most 5e-4).",
        show_default=False)] = None,
    generalist: Annotated[bool, typer.Option(
        "--generalist", help="The same as --family generalist.")] = False,
    init: Annotated[str | None, typer.Option(
        "--init", help="--family generalist: start from this generalist model (e.g. "
        "ssdiff-generalist) to fine-tune it on your scenes.")] = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    json_out: Annotated[bool, json_option("Print a JSON summary.")] = False,
) -> None:
    """Train a model (per-sensor SSDiff, the generalist or KSDiff: --family) on real scenes
    (Wald protocol) or PanCollection; Ctrl-C or SIGTERM saves."""
    if json_out:
        with reporting(quiet):
            require_stdout("the JSON summary")
    with reporting(quiet):
        fam = FAMILIES[_family_name(family, generalist)]
        from ssdiff_cli.families import training_config, training_entry

        entry, config_class = training_entry(fam), training_config(fam)
    sizes = {k: v for k, v in (("crop", crop), ("batch", batch_size)) if v is not None}
    if fam.any_layout:
        _train_any_layout(entry, config_class, scenes or [], output, init, max_steps,
                          max_minutes, lr, seed, threads, sizes, resume, overwrite, quiet,
                          json_out)
        return
    with reporting(quiet):
        from ssdiff_cli.training.crops import parse_scene_arg

        if init is not None:
            raise UsageError("--init applies to --family generalist only")
        cfg = config_class(name=output.with_suffix("").name if output.suffix in (".json", ".safetensors")
                           else output.name, output=str(output), sensor=sensor, variant=variant.value,
                           lr=lr, ema=ema, max_steps=max_steps, max_minutes=max_minutes,
                           eval_every=eval_every, eval_steps=eval_steps, seed=seed,
                           precision=precision.value, threads=threads, device=device,
                           norm=norm.value, holdout=holdout, **sizes)
        _check_run_files(output, scenes or [], pancollection, resume, overwrite)
        if device == "cpu" and threads is None:
            import torch

            torch.set_num_threads(min(torch.get_num_threads(), 2) or 1)
        with progress_bar(not quiet, "training", training=True) as bar:
            if pancollection is not None:
                from ssdiff_cli.training.pancollection import train_pancollection

                if scenes:
                    raise BadInputError("give scenes or --pancollection, not both")
                res = train_pancollection(pancollection, cfg, scale=pc_scale, sensor=sensor or "wv3",
                                          resume=resume, progress=bar)
            else:
                if not scenes:
                    raise BadInputError("no scene given (SCENE is PAN,MS or a folder)")
                pairs = [parse_scene_arg(s) for s in scenes]
                log = None if quiet else (lambda m: stderr.print(m, highlight=False))
                res = entry(pairs, cfg, mtf_gains=_gains(mtf_gains), pan_gain=pan_gain,
                            resume=resume, progress=bar, log=log)
        summary = {"step": res.step, "elapsed_s": round(res.elapsed_s, 1), "interrupted": res.interrupted,
                   "checkpoint": res.checkpoint, "state": res.state, "log": res.log,
                   "best": res.best, "last_loss": res.last_loss}
        if json_out:
            print_json(summary)
        elif not quiet:
            best = res.best.get("mean", {})
            stderr.print(f"step {res.step}, {res.elapsed_s / 60:.1f} min; checkpoint {res.checkpoint}"
                         + (f"; hold-out SAM {best['SAM']:.3f} ERGAS {best['ERGAS']:.3f} "
                            f"Q2n {best['Q2n']:.4f} (step {res.best['step']})" if best else ""),
                         highlight=False)
        if res.interrupted:
            stderr.print(f"ssdiff: interrupted at step {res.step}; state saved to {res.state} "
                         "(continue with --resume)", highlight=False)
            raise typer.Exit(interrupt_exit_code())


def _family_name(family, generalist: bool) -> str:
    """``--family`` (``--generalist`` is ``--family generalist``); the per-sensor family by
    default."""
    name = getattr(family, "value", family)
    if generalist:
        if name not in (None, "generalist"):
            raise UsageError(f"--generalist and --family {name} contradict each other")
        return "generalist"
    return name or LEGACY_FAMILY


def _gains(text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise BadInputError(f"--mtf-gains {text!r}: give numbers separated by commas") from None


def scene_files(scenes: list[str]) -> list[str]:
    """The files named by SCENE arguments (PAN,MS pairs or folders holding pan.tif and ms.tif)."""
    from ssdiff_cli.training.crops import parse_scene_arg

    return [str(p) for text in scenes for p in parse_scene_arg(text)]


def _train_any_layout(entry, config_class, scenes: list[str], output: Path, init: str | None,
                      max_steps: int, max_minutes: float | None, lr: float, seed: int,
                      threads: int | None, sizes: dict, resume: bool, overwrite: bool,
                      quiet: bool, json_out: bool) -> None:
    """``train --family generalist|ksdiff``: the family's training ``entry`` with its
    ``config_class`` (:mod:`ssdiff_cli.families`); each scene is its own acquisition (family)
    unless they share a folder name; the card records every scene and its terms."""
    with reporting(quiet):
        import inspect

        from ssdiff_cli.output import check_destination
        from ssdiff_cli.training.crops import parse_scene_arg, scene_terms
        from ssdiff_cli.training.loop import state_path

        if init is not None and "init" not in inspect.signature(entry).parameters:
            raise UsageError("--init applies to --family generalist only")
        if not scenes:
            raise BadInputError("no scene given (SCENE is PAN,MS or a folder)")
        pairs = [parse_scene_arg(s) for s in scenes]
        prefix = output.with_suffix("") if output.suffix in (".json", ".safetensors") else output
        inputs = [str(p) for pair in pairs for p in pair]
        if init is not None and not resume:  # the model fine-tuned is read: never replaced
            from ssdiff_cli.zoo import model_files

            inputs += [str(p) for p in model_files(init)]
        for path in (prefix.with_suffix(".safetensors"), prefix.with_suffix(".json"),
                     state_path(prefix)) if _folder_exists(prefix) else ():
            check_destination(path, overwrite=overwrite or resume, inputs=inputs,
                              role="training output")
        cfg = config_class(output=str(prefix), name=prefix.name, max_steps=max_steps,
                           max_minutes=max_minutes, lr=min(lr, 5e-4), seed=seed,
                           threads=threads, **sizes)
        log = (lambda m: None) if quiet or json_out else (lambda m: stderr.print(m, highlight=False))
        trainer = entry(
            [(pan, ms, Path(pan).resolve().parent.name, scene_terms(pan)) for pan, ms in pairs],
            cfg, resume=resume, log=log, **({"init": init} if init is not None else {}))
        summary = {"step": trainer.step, "elapsed_s": round(trainer.elapsed, 1),
                   "checkpoint": str(prefix.with_suffix(".safetensors")),
                   "state": str(state_path(prefix))}
        if json_out:
            print_json(summary)


def _check_run_files(output: Path, scenes: list[str], pancollection: Path | None, resume: bool,
                     overwrite: bool) -> None:
    """``train -o PREFIX`` replaces an earlier run's files only with ``--overwrite`` (or continues
    it with ``--resume``), and never an input; its folder must be writable."""
    from ssdiff_cli.output import check_destination
    from ssdiff_cli.training.loop import run_files

    prefix = output.with_suffix("") if output.suffix in (".json", ".safetensors") else output
    inputs = scene_files(scenes) + ([str(pancollection)] if pancollection else [])
    for path in run_files(Path(prefix)) if _folder_exists(prefix) else ():
        check_destination(path, overwrite=overwrite or resume, inputs=inputs, role="training output")


def _folder_exists(prefix: Path) -> bool:
    """Whether the folder of ``-o PREFIX`` exists. A missing one is made at the run's first
    write, once its inputs are read (a failed run leaves no empty folders), so its nearest
    existing parent must be a writable folder now: :class:`OutputError` (exit 5) otherwise."""
    import tempfile

    from ssdiff_cli.errors import OutputError

    folder = Path(os.path.abspath(prefix)).parent
    if folder.is_dir():
        return True
    parent = folder
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    try:
        if not parent.is_dir():
            raise OSError(f"{parent} is not a folder")
        with tempfile.TemporaryDirectory(dir=parent, prefix=".ssdiff-probe-"):
            pass
    except OSError as exc:
        raise OutputError(f"{prefix}: folder {folder} does not exist and cannot be made "
                          f"({exc.strerror or exc})") from None
    return False
