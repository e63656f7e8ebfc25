"""``ssdiff train``, ``ssdiff finetune`` and ``ssdiff models list|show``: registered on the main app
by :func:`register` (called from :mod:`ssdiff_cli.cli`)."""


import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer


class Norm(str, Enum):
    """How digital numbers are scaled for the network."""

    scene = "scene"
    bitdepth = "bitdepth"


class Variant(str, Enum):
    """Network variant."""

    fast = "fast"
    faithful = "faithful"


class TrainPrecision(str, Enum):
    """Training arithmetic."""

    auto = "auto"
    bf16 = "bf16"
    fp32 = "fp32"


def _gains(text: str | None) -> list[float] | None:
    if not text:
        return None
    from ssdiff_cli.errors import BadInputError

    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise BadInputError(f"--mtf-gains {text!r}: give numbers separated by commas") from None


class _Bar:
    """A rich progress bar on stderr (loss, steps/s, time left), only on a terminal."""

    def __init__(self, enabled: bool, label: str, console) -> None:
        self.bar = None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(),
                                TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:.2f} steps/s  "
                                           "{task.fields[left]} left"),
                                console=console, transient=True)
            self.task = self.bar.add_task(label, total=None, loss=float("nan"), rate=0.0, left="?")

    def __enter__(self):
        if self.bar:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar:
            self.bar.__exit__(*exc)

    def __call__(self, step, total, loss, rate, left) -> None:
        if self.bar and (step % 5 == 0 or step == total):
            m, s = divmod(int(left), 60)
            total = total if total < 10**8 else None
            self.bar.update(self.task, completed=step, total=total, loss=loss, rate=rate,
                            left=f"{m // 60}:{m % 60:02d}:{s:02d}")


def register(app: typer.Typer) -> None:
    """Add ``train``, ``finetune`` and the ``models`` group to ``app``."""
    from ssdiff_cli.cli import OverwriteOpt, QuietOpt, _print_json, _reporting, interrupt_exit_code, stderr
    from ssdiff_cli.errors import BadInputError

    @app.command()
    def train(
        scenes: Annotated[list[str] | None, typer.Argument(
            help="Scenes: PAN,MS pairs or folders holding pan.tif and ms.tif.", show_default=False)] = None,
        output: Annotated[Path, typer.Option("--output", "-o", help="Output prefix, e.g. my-models/NAME "
                                             "(writes NAME.safetensors, .json, .log.csv, .curves.png, "
                                             ".state.safetensors); put the folder in $SSDIFF_MODELS "
                                             "to use the model by name.")] = Path("ssdiff-custom"),
        sensor: Annotated[str | None, typer.Option("--sensor", help="Sensor preset (MTF gains, band "
                                                   "names); default: detected.")] = None,
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
        batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 16,
        crop: Annotated[int, typer.Option("--crop", min=4, help="Crop size (reduced PAN px).")] = 32,
        lr: Annotated[float, typer.Option("--lr")] = 1e-3,
        ema: Annotated[float, typer.Option("--ema", min=0.0, max=1.0)] = 0.999,
        variant: Annotated[Variant, typer.Option("--variant")] = Variant.fast,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        precision: Annotated[TrainPrecision, typer.Option("--precision")] = TrainPrecision.auto,
        threads: Annotated[int | None, typer.Option("--threads", min=1, help="Torch CPU threads.")] = None,
        device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
        resume: Annotated[bool, typer.Option("--resume", help="Continue the run saved at -o.")] = False,
        generalist: Annotated[bool, typer.Option(
            "--generalist", help="Train the band- and ratio-agnostic generalist model (every scene, "
            "ratios 2 and 4, jittered MTFs; learning rate at most 5e-4) instead of a per-sensor "
            "one.")] = False,
        init: Annotated[str | None, typer.Option(
            "--init", help="--generalist: start from this generalist model (e.g. ssdiff-generalist) "
            "to fine-tune it on your scenes.")] = None,
        overwrite: OverwriteOpt = False,
        quiet: QuietOpt = False,
        json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    ) -> None:
        """Train an SSDiff model on real scenes (Wald protocol) or PanCollection; Ctrl-C or
        SIGTERM saves."""
        if generalist:
            _train_generalist(scenes or [], output, init, max_steps, max_minutes, lr, seed,
                              threads, resume, overwrite, quiet, json_out)
            return
        with _reporting(quiet):
            from ssdiff_cli.training.crops import parse_scene_arg
            from ssdiff_cli.training.loop import TrainConfig, train_scenes

            cfg = TrainConfig(name=output.with_suffix("").name if output.suffix in (".json", ".safetensors")
                              else output.name, output=str(output), sensor=sensor, variant=variant.value,
                              crop=crop, batch=batch_size, lr=lr, ema=ema, max_steps=max_steps,
                              max_minutes=max_minutes, eval_every=eval_every, eval_steps=eval_steps,
                              seed=seed, precision=precision.value, threads=threads, device=device,
                              norm=norm.value, holdout=holdout)
            _check_run_files(output, scenes or [], pancollection, resume, overwrite)
            if device == "cpu" and threads is None:
                import torch

                torch.set_num_threads(min(torch.get_num_threads(), 2) or 1)
            with _Bar(not quiet, "training", stderr) as bar:
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
                    res = train_scenes(pairs, cfg, mtf_gains=_gains(mtf_gains), pan_gain=pan_gain,
                                       resume=resume, progress=bar, log=log)
            summary = {"step": res.step, "elapsed_s": round(res.elapsed_s, 1), "interrupted": res.interrupted,
                       "checkpoint": res.checkpoint, "state": res.state, "log": res.log,
                       "best": res.best, "last_loss": res.last_loss}
            if json_out:
                _print_json(summary)
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

    @app.command()
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
        sensor: Annotated[str | None, typer.Option("--sensor")] = None,
        holdout: Annotated[float, typer.Option("--holdout", min=0.0, max=0.9)] = 0.2,
        merge: Annotated[bool, typer.Option("--merge", help="Write a merged full checkpoint.")] = False,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        overwrite: OverwriteOpt = False,
        quiet: QuietOpt = False,
        json_out: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """L-BAF: low-rank adapters on one branch at a time, the other frozen, alternating."""
        with _reporting(quiet):
            from ssdiff_cli.output import check_destination

            prefix = output.with_suffix("") if output.suffix in (".json", ".safetensors") else output
            for path in (prefix.with_suffix(".safetensors"), prefix.with_suffix(".json")):
                check_destination(path, overwrite=overwrite, inputs=_scene_files(scenes),
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
                _print_json(summary)
            elif not quiet:
                b, a = res["before"].get("mean", {}), res["after"].get("mean", {})
                msg = f"wrote {res['path']}"
                if a:
                    msg += (f"; hold-out ERGAS {b['ERGAS']:.3f} -> {a['ERGAS']:.3f}, "
                            f"SAM {b['SAM']:.3f} -> {a['SAM']:.3f}")
                stderr.print(msg, highlight=False)

    models_app = typer.Typer(help="Shipped and trained models.", no_args_is_help=True)
    app.add_typer(models_app, name="models")

    @models_app.command("list")
    def models_list(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Table of the models: those in $SSDIFF_MODELS, then the shipped ones."""
        with _reporting(False):
            from ssdiff_cli import zoo

            rows = [_model_row(c) for c in zoo.list_models()]
            if json_out:
                _print_json({"model_dirs": [str(d) for d in zoo.model_dirs()], "models": rows})
                return
            from rich.console import Console
            from rich.table import Table

            table = Table(title="models in " + ", ".join(str(d) for d in zoo.model_dirs()))
            for col in ("name", "sensor", "bands", "ratio", "variant", "params", "SAM", "ERGAS", "Q2n",
                        "use"):
                table.add_column(col)
            for r in rows:
                table.add_row(*[_fmt(r.get(k)) for k in ("name", "sensor", "bands", "ratio", "variant",
                                                        "params", "SAM", "ERGAS", "Q2n", "use")])
            Console(width=120).print(table)
            if not rows:
                typer.echo("no models found")

    @models_app.command("show")
    def models_show(name: Annotated[str, typer.Argument(help="Zoo name or checkpoint path.")]) -> None:
        """A model's card and parameter count."""
        with _reporting(False):
            from ssdiff_cli import zoo

            card = zoo.read_card(name)
            net = zoo.build_model(card)
            data = card.to_dict()
            data["parameters"] = sum(p.numel() for p in net.parameters())
            _print_json(data)


def _scene_files(scenes: list[str]) -> list[str]:
    """The files named by SCENE arguments (PAN,MS pairs or folders holding pan.tif and ms.tif)."""
    from ssdiff_cli.training.crops import parse_scene_arg

    return [str(p) for text in scenes for p in parse_scene_arg(text)]


def _train_generalist(scenes: list[str], output: Path, init: str | None, max_steps: int,
                      max_minutes: float | None, lr: float, seed: int, threads: int | None,
                      resume: bool, overwrite: bool, quiet: bool, json_out: bool) -> None:
    """``train --generalist``: each scene is its own acquisition (family) unless they share a
    folder name; the card records every scene and its terms."""
    from ssdiff_cli.cli import _print_json, _reporting, stderr
    from ssdiff_cli.errors import BadInputError

    with _reporting(quiet):
        from ssdiff_cli.output import check_destination
        from ssdiff_cli.training.crops import parse_scene_arg, scene_terms
        from ssdiff_cli.training.generalist import GeneralistTrainConfig, train_generalist
        from ssdiff_cli.training.loop import state_path

        if not scenes:
            raise BadInputError("no scene given (SCENE is PAN,MS or a folder)")
        pairs = [parse_scene_arg(s) for s in scenes]
        prefix = output.with_suffix("") if output.suffix in (".json", ".safetensors") else output
        Path(prefix).parent.mkdir(parents=True, exist_ok=True)
        inputs = [str(p) for pair in pairs for p in pair]
        for path in (prefix.with_suffix(".safetensors"), prefix.with_suffix(".json"),
                     state_path(prefix)):
            check_destination(path, overwrite=overwrite or resume, inputs=inputs,
                              role="training output")
        cfg = GeneralistTrainConfig(output=str(prefix), name=prefix.name, max_steps=max_steps,
                                    max_minutes=max_minutes, lr=min(lr, 5e-4), seed=seed,
                                    threads=threads)
        log = (lambda m: None) if quiet or json_out else (lambda m: stderr.print(m, highlight=False))
        trainer = train_generalist(
            [(pan, ms, Path(pan).resolve().parent.name, scene_terms(pan)) for pan, ms in pairs],
            cfg, init=init, resume=resume, log=log)
        summary = {"step": trainer.step, "elapsed_s": round(trainer.elapsed, 1),
                   "checkpoint": str(prefix.with_suffix(".safetensors")),
                   "state": str(state_path(prefix))}
        if json_out:
            _print_json(summary)


def _check_run_files(output: Path, scenes: list[str], pancollection: Path | None, resume: bool,
                     overwrite: bool) -> None:
    """``train -o PREFIX`` replaces an earlier run's files only with ``--overwrite`` (or continues
    it with ``--resume``), and never an input; its folder must be writable."""
    from ssdiff_cli.output import check_destination
    from ssdiff_cli.training.loop import run_files

    prefix = output.with_suffix("") if output.suffix in (".json", ".safetensors") else output
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    inputs = _scene_files(scenes) + ([str(pancollection)] if pancollection else [])
    for path in run_files(Path(prefix)):
        check_destination(path, overwrite=overwrite or resume, inputs=inputs, role="training output")


def _model_row(card) -> dict:
    from ssdiff_cli import zoo

    try:
        params = sum(p.numel() for p in zoo.build_model(card, device="meta").parameters())
    except Exception:
        params = None
    hold = (card.metrics.get("unseen_scenes") or card.metrics.get("holdout", {})
            or card.metrics.get("holdout_training_eval", {}))
    mean = hold.get("mean", {}) if isinstance(hold, dict) else {}
    general = zoo.is_generalist(card)
    return {"name": card.name, "sensor": card.sensor,
            "bands": "-".join(map(str, zoo.GENERALIST_BANDS)) if general else card.bands,
            "ratio": "-".join(map(str, zoo.GENERALIST_RATIOS)) if general else card.ratio,
            "variant": card.model.get("variant") or card.model.get("family"), "params": params,
            "SAM": mean.get("SAM"), "ERGAS": mean.get("ERGAS"), "Q2n": mean.get("Q2n"),
            "use": zoo.terms_summary(card), "terms": card.training.get("terms", [])}


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if v < 100 else f"{v:.0f}"
    if isinstance(v, int) and v > 10000:
        return f"{v / 1e6:.2f} M"
    return str(v)
