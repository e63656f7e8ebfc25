"""``ssdiff models list|show|compile``: the models in $SSDIFF_MODELS and the shipped ones, from
:mod:`ssdiff_cli.zoo`; ``compile`` fills the compiled-kernel cache ahead of ``sharpen``."""

from __future__ import annotations

from typing import Annotated

import typer

from ssdiff_cli.cli.options import Device, DeviceOpt, Precision, PrecisionOpt, json_option
from ssdiff_cli.cli.reporting import print_json, reporting, require_stdout, stderr

#: The ``models`` group: ``models list``, ``models show``, ``models compile``.
app = typer.Typer(help="Shipped and trained models.", no_args_is_help=True)


@app.command("list")
def models_list(json_out: Annotated[bool, json_option(None)] = False) -> None:
    """Table of the models: those in $SSDIFF_MODELS, then the shipped ones."""
    with reporting(False):
        from ssdiff_cli import zoo

        require_stdout("the model list")
        rows = [_model_row(c) for c in zoo.list_models()]
        if json_out:
            print_json({"model_dirs": [str(d) for d in zoo.model_dirs()], "models": rows})
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


@app.command("show")
def models_show(name: Annotated[str, typer.Argument(help="Zoo name or checkpoint path.")]) -> None:
    """A model's card and parameter count."""
    with reporting(False):
        from ssdiff_cli import zoo

        card = zoo.read_card(name)
        net = zoo.build_model(card)
        data = card.to_dict()
        data["parameters"] = sum(p.numel() for p in net.parameters())
        print_json(data)


@app.command("compile")
def models_compile(
    name: Annotated[str | None, typer.Argument(
        help="Generalist model: zoo name or checkpoint path (default: the shipped one).",
        show_default=False)] = None,
    bands: Annotated[list[int] | None, typer.Option(
        "--bands", min=1, max=64, help="Band count to compile for, repeatable.")] = None,
    ratios: Annotated[list[int] | None, typer.Option(
        "--ratio", min=2, max=16, help="PAN/MS ratio to compile for, repeatable.")] = None,
    device: DeviceOpt = Device.auto,
    precision: PrecisionOpt = Precision.auto,
    json_out: Annotated[bool, json_option(None)] = False,
) -> None:
    """Compile a generalist model ahead of time (default: 4 and 8 bands at ratio 4), so that
    the first `sharpen` that runs it compiled finds its kernels cached (about a minute each
    here; in a container image, run it at build time with the cache in the image)."""
    with reporting(False):
        from ssdiff_cli.methods.ssdiff import precompile

        require_stdout("the compile report")
        done = []
        for b in bands or [4, 8]:
            for r in ratios or [4]:
                def start(side: int, b=b, r=r) -> None:
                    stderr.print(f"compiling for {b} bands at ratio {r} ({side}² px chunks)...",
                                 highlight=False)

                done.append(precompile(name, b, r, device.value, precision.value, start))
                if not json_out:
                    d = done[-1]
                    typer.echo(f"{d['model']}: {b} bands, ratio {r}, {d['side']}² px chunks, "
                               f"{d['precision']} on {d['device']}: {d['seconds']} s")
        if json_out:
            print_json({"compiled": done})
        else:
            typer.echo(f"cache: {done[-1]['cache']}")


def _model_row(card) -> dict:
    from ssdiff_cli import zoo

    try:
        params = sum(p.numel() for p in zoo.build_model(card, device="meta").parameters())
    except Exception:
        params = None
    hold = (card.metrics.get("unseen_scenes") or card.metrics.get("holdout", {})
            or card.metrics.get("holdout_training_eval", {}))
    mean = hold.get("mean", {}) if isinstance(hold, dict) else {}
    mean = mean if isinstance(mean, dict) else {}
    family = zoo.family(card)
    bands, ratio = family.layout(card.bands, card.ratio)
    return {"name": card.name, "sensor": card.sensor,
            "bands": bands if family.any_layout else card.bands,
            "ratio": ratio if family.any_layout else card.ratio,
            "family": family.name, "method": family.method,
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
