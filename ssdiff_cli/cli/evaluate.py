"""``ssdiff evaluate``: score methods (Wald protocol or full resolution) or fused images, by
:mod:`ssdiff_cli.evaluate`; a table, or JSON."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ssdiff_cli.cli.options import (
    Coregister,
    EvalMethod,
    JsonOpt,
    OverwriteOpt,
    QuietOpt,
    SensorOpt,
    TileOpt,
    WorkersOpt,
)
from ssdiff_cli.cli.reporting import print_json, progress_bar, reporting


class Protocol(str, Enum):
    """``evaluate --protocol``: how ``--reduced`` degrades and scores (the library's
    ``evaluate.PROTOCOLS``; listed here so that ``--help`` needs no import of the library)."""

    ssdiff = "ssdiff"
    toolbox = "toolbox"


def evaluate(
    fused: Annotated[list[Path] | None, typer.Argument(
        help="Fused image(s) made by any tool, scored with --reference or --pan/--ms.",
        show_default=False)] = None,
    reduced: Annotated[tuple[str, str] | None, typer.Option(
        help="PAN MS: Wald protocol (degrade, fuse with each --method, score vs the MS).",
        show_default=False)] = None,
    full: Annotated[tuple[str, str] | None, typer.Option(
        help="PAN MS: fuse with each --method at full resolution, score without reference.",
        show_default=False)] = None,
    method: Annotated[list[EvalMethod] | None, typer.Option(
        "--method", "-m", help="Method to evaluate; repeat for several.")] = None,
    protocol: Annotated[Protocol, typer.Option(
        help="--reduced: ssdiff (its own degradation and scoring) or toolbox (the pansharpening "
        "toolbox's: FIR, nearest decimation, pair without georeferencing, 21-px border cut, its "
        "Q2n and SCC).")] = Protocol.ssdiff,
    model: Annotated[str | None, typer.Option(
        help="Model for -m ssdiff or -m ksdiff (zoo name or path).")] = None,
    steps: Annotated[int | None, typer.Option(min=1, max=1000, help="DDIM steps for -m ssdiff.")] = None,
    adapt: Annotated[int | None, typer.Option(
        min=0, help="-m ssdiff adapts to each (degraded) scene for N steps first (-m ksdiff: "
        "its prior z).")] = None,
    reference: Annotated[Path | None, typer.Option(help="Reference image for FUSED.")] = None,
    pan: Annotated[str | None, typer.Option(help="PAN for scoring FUSED without reference.")] = None,
    ms: Annotated[list[str] | None, typer.Option(help="MS for scoring FUSED without reference.")] = None,
    sensor: SensorOpt = None,
    tile_size: TileOpt = None,
    workers: WorkersOpt = None,
    quicklook: Annotated[Path | None, typer.Option(
        help="PNG panel: composites with one stretch and per-method error maps.")] = None,
    coregister: Annotated[Coregister, typer.Option(
        "--coregister", help="Registration of every fused method (as sharpen's): auto moves "
        "the MS where it was measured when confident, on whenever measured, off never.")
    ] = Coregister.auto,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Score methods or fused images with SAM, ERGAS, Q2n, SCC, Q, PSNR, D_lambda, D_s, HQNR, QNR."""
    with reporting(quiet):
        from ssdiff_cli import evaluate as ev_lib
        from ssdiff_cli.errors import BadInputError, UsageError
        from ssdiff_cli.pipeline import SharpenOptions, default_workers

        modes = sum(x is not None for x in (reduced, full)) + bool(fused)
        if modes != 1:
            raise BadInputError("give exactly one of --reduced PAN MS, --full PAN MS, or FUSED...")
        if protocol is not Protocol.ssdiff and reduced is None:
            raise UsageError(f"--protocol {protocol.value} applies to --reduced only")
        methods = [m.value for m in method] if method else ["gsa", "mtf-glp"]
        model_options = {k: v for k, v in (("model", model), ("steps", steps), ("adapt", adapt))
                         if v is not None}
        options = SharpenOptions(tile_size=tile_size, workers=workers or default_workers(),
                                 method_options=model_options, coregister=coregister.value)
        if quicklook is not None:
            from ssdiff_cli.output import check_destination

            inputs = [*(fused or []), *(reduced or ()), *(full or ()), *(ms or [])]
            inputs += [p for p in (reference, pan) if p is not None]
            check_destination(quicklook, overwrite=overwrite, inputs=inputs, role="quicklook")
        keep = {} if quicklook else None
        with progress_bar(not quiet, "evaluate") as progress:
            if reduced is not None:
                result = ev_lib.evaluate_reduced(reduced[0], [reduced[1]], methods, sensor,
                                                 options, progress, keep,
                                                 protocol=protocol.value)
            elif full is not None:
                result = ev_lib.evaluate_full(full[0], [full[1]], methods, sensor, options,
                                              progress, keep)
            else:
                result = ev_lib.evaluate_images(list(fused), reference, pan, ms, sensor, progress, keep)
        if keep is not None:  # asked for a quicklook
            from ssdiff_cli.pipeline import write_png

            write_png(quicklook, overwrite,
                      lambda tmp: ev_lib.write_evaluation_quicklook(keep, tmp, result.protocol))
        if json_out:
            print_json(result.to_dict())
        else:
            _print_table(result)


def _print_table(result) -> None:
    from rich.table import Table

    title = f"{result.protocol} resolution" if result.protocol != "reference" else "against the reference"
    if result.protocol == "reduced":
        title += f", {result.details['protocol']['name']} protocol"
    table = Table(title=title, show_lines=False)
    table.add_column("method / image")
    for c in result.columns:
        table.add_column(c, justify="right")
    best = {c: result.best(c) for c in result.columns}
    for name, scores in result.rows.items():
        cells = []
        for c in result.columns:
            value = scores.get(c)
            text = "-" if value is None else (f"{value:.2f}" if c == "seconds" else f"{value:.4f}")
            cells.append(f"[bold green]{text}*[/]" if best[c] == name and c != "seconds" else text)
        table.add_row(name, *cells)
    Console().print(table)
    Console().print("* best in column; ideal: SAM, ERGAS, D_lambda, D_s = 0; Q2n, SCC, Q, HQNR, QNR = 1")
