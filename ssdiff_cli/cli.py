"""The ``ssdiff`` command line: parses options, reports progress, maps errors to exit codes.

Every command calls one library function; nothing here computes anything.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import traceback
import warnings
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
import typer.core
from rich.console import Console

from ssdiff_cli import __version__
from ssdiff_cli.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_MISREGISTERED,
    EXIT_MODEL,
    EXIT_OUTPUT,
    EXIT_RUNTIME,
    EXIT_SIGNAL_BASE,
    SsdiffError,
    Terminated,
    UsageError,
)

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 2 usage error; "
    f"{EXIT_BAD_INPUT} bad input (missing/unreadable file, CRS or grid mismatch, sensor mismatch); "
    f"{EXIT_MISREGISTERED} misregistration refused (see --force); "
    f"{EXIT_OUTPUT} output not writable or exists (see --overwrite); "
    f"{EXIT_MODEL} model does not fit the input; "
    f"{EXIT_RUNTIME} runtime failure (or a degenerate result, not written); "
    f"{EXIT_INTERRUPTED} interrupted; 129 / 143 hung up / terminated."
)

app = typer.Typer(
    name="ssdiff",
    help="Pansharpen whole satellite scenes with SSDiff or classical fusion.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
stderr = Console(stderr=True)
_state = {"verbose": False, "quiet": False}


class Extent(str, Enum):
    """Output extent on the PAN grid."""

    intersection = "intersection"
    union = "union"


class Device(str, Enum):
    """Where the model runs."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Precision(str, Enum):
    """Arithmetic precision of the model (auto: bf16 where the hardware computes it natively)."""

    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


class AdaptObjective(str, Enum):
    """What ``--adapt`` optimises for a generalist model."""

    full = "full"
    reduced = "reduced"
#: ``--method`` names (tests check them against ssdiff_cli.methods' registry).
METHODS = ("auto", "ssdiff", "brovey", "gsa", "mtf-glp", "mtf-glp-fs", "upsample")
Method = Enum("Method", {m.replace("-", "_"): m for m in METHODS}, type=str)
#: ``evaluate -m`` names: the methods themselves (``auto`` picks one, nothing to compare).
EvalMethod = Enum("EvalMethod", {m.replace("-", "_"): m for m in METHODS if m != "auto"},
                  type=str)
#: ``--dtype`` choices: GDAL's integer and float types.
DType = Enum("DType", {t: t for t in ("uint8", "uint16", "int16", "uint32", "int32",
                                      "float32", "float64")}, type=str)
#: ``--compress`` choices (ssdiff_cli.gdal_formats.COMPRESSION).
Compress = Enum("Compress", {c: c for c in ("deflate", "lzw", "zstd", "none")}, type=str)
#: ``-r/--resampling`` choices (ssdiff_cli.filters.UPSAMPLING_KERNELS).
Resampling = Enum("Resampling", {r: r for r in ("nearest", "bilinear", "cubic", "cubicspline")},
                  type=str)
#: ``-of`` choices (ssdiff_cli.gdal_formats.FORMATS).
OutputFormat = Enum("OutputFormat", {f: f for f in ("COG", "GTiff")}, type=str)


# Shared options, defined once so a flag means the same in every command.
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or warnings.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary to stdout.")]
SensorOpt = Annotated[
    str | None, typer.Option("--sensor", help="Sensor preset; overrides detection.")
]
WorkersOpt = Annotated[int | None, typer.Option(
    "--workers", "-j", min=1, help="Worker threads (default: one per CPU core).")]
TileOpt = Annotated[int | None, typer.Option(
    "--tile-size", min=64, help="Tile core size (PAN px; default: the method's, 1024 classical, "
    "512 ssdiff).")]
DeviceOpt = Annotated[Device, typer.Option("--device", help="Model device.")]
PrecisionOpt = Annotated[Precision, typer.Option("--precision", help="Model precision.")]


def _print_version(value: bool) -> None:
    """``--version``: eager, so it works without a command."""
    if value:
        typer.echo(f"ssdiff {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[bool, typer.Option("--version", help="Print the version.",
                                          callback=_print_version, is_eager=True)] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Tracebacks on errors.")] = False,
) -> None:
    """Pansharpen whole satellite scenes."""
    _state["verbose"] = verbose


class _PairCommand(typer.core.TyperCommand):
    """A command whose usage line shows ``PAN MS...`` as required: they are, except where an
    option (``--batch``, ``--sensors``) replaces them, which click cannot express."""

    def collect_usage_pieces(self, ctx):
        names = {"[PAN]": "PAN", "[MS...]...": "MS..."}
        return [names.get(piece, piece) for piece in super().collect_usage_pieces(ctx)]


def _warn(message: str) -> None:
    if not _state["quiet"]:
        stderr.print(f"[yellow]ssdiff: warning:[/] {message}", highlight=False, soft_wrap=True)


def interrupt_exit_code() -> int:
    """Exit code after an interruption: 130 for Ctrl-C, 128 + N after signal N (SIGTERM 143)."""
    signum = _state.get("signal")
    return EXIT_SIGNAL_BASE + signum if signum else EXIT_INTERRUPTED


@contextmanager
def _termination_as_interrupt():
    """SIGTERM and SIGHUP unwind like Ctrl-C (a :class:`Terminated` KeyboardInterrupt), so work
    files are removed and training state is saved; later signals are ignored while unwinding."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = [s for s in ("SIGTERM", "SIGHUP") if hasattr(signal, s)]
    old = {name: signal.getsignal(getattr(signal, name)) for name in names}

    def handler(signum, frame):
        for name in names:
            signal.signal(getattr(signal, name), signal.SIG_IGN)
        _state["signal"] = signum
        raise Terminated(signum)

    for name in names:
        signal.signal(getattr(signal, name), handler)
    try:
        yield
    finally:
        for name, h in old.items():
            signal.signal(getattr(signal, name), h)


@contextmanager
def _reporting(quiet: bool = False):
    """Turn library errors into one-line messages and exit codes; warnings into one line."""
    _state["quiet"] = quiet
    _state["signal"] = None
    # GDAL's messages reach Python's logging; unhandled, they would be printed as noise around
    # the one-line error (the error itself carries what matters). -v shows them.
    if not _state["verbose"] and not logging.getLogger("rasterio").handlers:
        logging.getLogger("rasterio").addHandler(logging.NullHandler())

    def show(message, category, filename, lineno, file=None, line=None):
        _warn(str(message))

    old = warnings.showwarning
    warnings.showwarning = show
    try:
        with _termination_as_interrupt(), warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.filterwarnings("ignore", module="rasterio")
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*matmul.*")
            yield
    except SsdiffError as exc:
        stderr.print(f"[red]ssdiff: error:[/] {exc}", highlight=False, soft_wrap=True)
        if _state["verbose"]:
            traceback.print_exc()
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        how = "terminated" if _state.get("signal") == getattr(signal, "SIGTERM", None) else (
            "hung up" if _state.get("signal") else "interrupted")
        stderr.print(f"[red]ssdiff: {how}[/]")
        raise typer.Exit(interrupt_exit_code()) from None
    except (typer.Exit, typer.Abort, typer.TyperException):  # click's own: usage errors
        raise
    except Exception as exc:  # a bug or an environment failure: say so, one line
        stderr.print(
            f"[red]ssdiff: runtime failure:[/] {type(exc).__name__}: {exc}",
            highlight=False, soft_wrap=True,
        )
        if _state["verbose"]:
            traceback.print_exc()
        else:
            stderr.print("(run with -v for the traceback)")
        raise typer.Exit(EXIT_RUNTIME) from None
    finally:
        warnings.showwarning = old


@contextmanager
def _progress_bar(enabled: bool, label: str):
    """A rich progress bar on stderr when it is a terminal; yields a ``progress`` callback."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("tiles  {task.fields[mps]:.2f} MP/s"), TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=stderr, transient=True) as bar:
        task = bar.add_task(label, total=None, mps=0.0)
        import time

        start = time.perf_counter()

        def update(done: int, total: int, pixels: int) -> None:
            rate = pixels / 1e6 / max(time.perf_counter() - start, 1e-6)
            bar.update(task, completed=done, total=total, mps=rate)

        yield update


def _print_json(data: dict) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


@app.command(cls=_PairCommand)
def sharpen(
    pan: Annotated[str | None, typer.Argument(
        metavar="PAN", help="Panchromatic raster: a path or any GDAL dataset name (/vsicurl/..., "
        "/vsizip/..., /vsis3/..., /vsistdin/). Required unless --batch.",
        show_default=False)] = None,
    ms: Annotated[
        list[str] | None,
        typer.Argument(metavar="MS...",
                       help="Multispectral raster, or one single-band file per band; "
                       "ms.tif,band=5,3,2 selects bands. Required unless --batch.",
                       show_default=False),
    ] = None,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", help="Output .tif, or - for stdout (a streamable GeoTIFF that "
        "gdalinfo /vsistdin/ reads); with --batch: output folder.")] = None,
    method: Annotated[Method, typer.Option(
        "--method", "-m", help="auto: ssdiff where a model fits the sensor, else mtf-glp.")
    ] = Method.auto,
    model: Annotated[str | None, typer.Option(
        help="SSDiff model: zoo name or checkpoint path (default: by sensor).")] = None,
    adapter: Annotated[Path | None, typer.Option(help="L-BAF adapter applied on the model.")] = None,
    steps: Annotated[int | None, typer.Option(
        min=1, max=1000, help="DDIM sampling steps (ssdiff), at most T = 1000.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the diffusion noise (ssdiff).")] = 0,
    adapt: Annotated[int, typer.Option(
        min=0, help="Fine-tune the model N steps on this scene before fusing it (ssdiff).")] = 0,
    adapt_objective: Annotated[AdaptObjective, typer.Option(
        help="--adapt objective of a generalist model: full (unsupervised, full resolution, "
        "Z-PNN style) or reduced (Wald protocol on the scene).")] = AdaptObjective.full,
    device: DeviceOpt = Device.auto,
    precision: PrecisionOpt = Precision.auto,
    sensor: SensorOpt = None,
    extent: Annotated[Extent, typer.Option(help="Output extent on the PAN grid.")] = Extent.intersection,
    tile_size: TileOpt = None,
    overlap: Annotated[int | None, typer.Option(
        "--overlap", min=0, help="Blend width between tiles (PAN px); default: the method's.")] = None,
    workers: WorkersOpt = None,
    dtype: Annotated[DType | None, typer.Option(
        help="Output data type (default: the MS type); values outside its range are clipped "
        "(a warning says how many) unless --scale.")] = None,
    scale: Annotated[bool, typer.Option(
        "--scale", help="Map the MS range (0..2^bit-depth-1, or the data's range) linearly onto "
        "the output type's (0..1 for floats), like gdal_translate -scale.")] = False,
    bit_depth: Annotated[int | None, typer.Option(
        "--bit-depth", min=1, max=32, help="MS bit depth (as gdal_pansharpen -bitdepth); "
        "default: the sensor's, raised to fit the data.")] = None,
    bands: Annotated[list[int] | None, typer.Option(
        "--band", "-b", min=1, help="MS band to use, repeatable, in order (as gdal_pansharpen -b).")
    ] = None,
    nodata: Annotated[str | None, typer.Option(
        "--nodata", help="Nodata value of the inputs (a number, nan, or none to ignore theirs).")
    ] = None,
    resampling: Annotated[Resampling, typer.Option(
        "--resampling", "-r", help="MS upsampling of the classical methods.")] = Resampling.cubic,
    weights: Annotated[list[float] | None, typer.Option(
        "--weight", "-w", help="Brovey pseudo-PAN weight, once per band (as gdal_pansharpen -w).")] = None,
    force: Annotated[bool, typer.Option(help="Fuse even when misregistration is refused.")] = False,
    warn_px: Annotated[float, typer.Option(help="Warn above this PAN/MS shift (PAN px).")] = 0.5,
    refuse_px: Annotated[float | None, typer.Option(
        help="Refuse above this shift (PAN px; default 2.0); when given, a pair whose shift "
        "cannot be measured is refused too.", show_default=False)] = None,
    check_only: Annotated[bool, typer.Option(help="Print the co-registration report and exit.")] = False,
    coregister: Annotated[bool, typer.Option(
        "--coregister", help="Move the MS grid by the measured PAN/MS shift before fusing "
        "(the residual shift is what --warn-px/--refuse-px judge).")] = False,
    compress: Annotated[Compress, typer.Option(help="Output compression.")] = Compress.deflate,
    output_format: Annotated[OutputFormat | None, typer.Option(
        "--format", "-of", help="Output format (default: COG; for -o -, a streamable GTiff).",
        show_default=False)] = None,
    creation_options: Annotated[list[str] | None, typer.Option(
        "--co", help="GDAL creation option KEY=VALUE, repeatable (BLOCKSIZE, LEVEL, PREDICTOR, "
        "BIGTIFF...); applied after ssdiff's own.")] = None,
    quicklook: Annotated[Path | None, typer.Option(
        help="Also write a true-colour PNG of the result.")] = None,
    scheduler: Annotated[str | None, typer.Option(
        help="Run tiles on a dask.distributed cluster (tcp://HOST:8786).")] = None,
    cluster: Annotated[str | None, typer.Option(
        help="Start a local dask cluster: local:N worker processes.")] = None,
    batch: Annotated[str | None, typer.Option(
        help="Many pairs: a CSV (pan,ms,out) or a glob of scene folders; skips existing outputs.")] = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Pansharpen PAN + MS into a Cloud-Optimized GeoTIFF on the PAN grid."""
    with _reporting(quiet):
        if batch is None and (pan is None or not ms or output is None):
            missing = "PAN and MS" if pan is None or not ms else "-o OUTPUT"
            raise UsageError(f"missing {missing}: give PAN MS... -o OUTPUT (or --batch PAIRS)")
        if batch is not None and (pan is not None or ms):
            raise UsageError("--batch replaces the PAN and MS arguments; give one or the other")
        from ssdiff_cli.gdal_formats import parse_creation_options
        from ssdiff_cli.pipeline import SharpenOptions, default_workers
        from ssdiff_cli.pipeline import sharpen as run_sharpen

        method = method.value
        options = SharpenOptions(
            method=method, sensor=sensor, extent=extent.value, tile_size=tile_size,
            overlap=overlap, workers=workers or default_workers(),
            dtype=dtype.value if dtype else None,
            overwrite=overwrite, force=force,
            warn_px=warn_px, refuse_px=refuse_px, check_only=check_only,
            compress=compress.value,
            method_options=_method_options(method, weights, model, adapter, steps, seed,
                                           device.value, precision.value, adapt),
            quicklook=str(quicklook) if quicklook else None,
            adapt_objective=adapt_objective.value,
            bit_depth=bit_depth, scale=scale, bands=bands, nodata=_nodata_value(nodata),
            resampling=resampling.value, coregister=coregister,
            output_format=output_format.value if output_format else None,
            creation_options=parse_creation_options(creation_options),
        )
        if json_out and output == "-" and not check_only:
            raise UsageError("--json and -o - both want stdout; choose one")
        from ssdiff_cli.executors import open_executor

        with open_executor(scheduler=scheduler, cluster=cluster) as (executor, where):
            if executor is not None:
                options.workers = max(options.workers, executor.nthreads)
            with _progress_bar(not quiet, f"sharpen {method}") as progress:
                if batch is not None:
                    results = _run_batch(batch, output, options, executor, progress)
                else:
                    report = run_sharpen(pan, ms, output, options, progress=progress,
                                         executor=executor)
        if batch is not None:
            _finish_batch(results, json_out, quiet)
        else:
            _finish(report, json_out, quiet, check_only)


def _nodata_value(text: str | None) -> float | str | None:
    """``--nodata``: a number, ``nan``, or ``none`` (ignore the files' nodata)."""
    if text is None or text.lower() == "none":
        return None if text is None else "none"
    try:
        return float(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a number, nan or none",
                                 param_hint="--nodata") from None


def _run_batch(batch: str, output: str | None, options, executor, progress) -> list[dict]:
    from ssdiff_cli.batch import read_batch, sharpen_batch

    items = read_batch(batch, out_dir=output)
    return sharpen_batch(items, options, executor=executor, progress=progress,
                         skip_existing=not options.overwrite)


def _finish_batch(results: list[dict], json_out: bool, quiet: bool) -> None:
    if json_out:
        _print_json({"pairs": results})
    elif not quiet:
        for r in results:
            detail = r.get("error") or r.get("out") or ""
            stderr.print(f"{r['status']:8s} {r.get('pan', '')}  {detail}", highlight=False)
    failed = [r for r in results if r["status"] == "failed"]
    if failed:
        raise typer.Exit(max(r.get("exit_code") or EXIT_RUNTIME for r in failed))


def _method_options(method, weights, model, adapter, steps, seed, device, precision,
                    adapt=0) -> dict:
    """Options for the method's constructor; model options only when they can apply."""
    options = {"weights": weights} if weights else {}
    if method in ("ssdiff", "auto"):
        options.update(model=model, adapter=str(adapter) if adapter else None, steps=steps,
                       seed=seed, device=device, precision=precision, adapt=adapt)
    elif model or adapter or steps or adapt:
        raise UsageError(
            f"--model, --adapter, --steps and --adapt apply to --method ssdiff, not {method}")
    return options


def _finish(report, json_out: bool, quiet: bool, check_only: bool) -> None:
    if json_out:
        _print_json(report.to_dict())
    elif check_only:
        typer.echo(report.shift["summary"])
        typer.echo(f"verdict: {report.shift['verdict']}")
    elif not quiet:
        stderr.print(
            f"wrote {report.output}: {report.grid['width']}x{report.grid['height']} px, "
            f"{report.method['name']}, {report.tiles} tiles, {report.seconds:.1f} s "
            f"({report.megapixels_per_second:.2f} MP/s)",
            highlight=False,
        )
    if check_only and report.shift["verdict"] == "refuse":
        raise typer.Exit(EXIT_MISREGISTERED)


@app.command(cls=_PairCommand)
def info(
    pan: Annotated[str | None, typer.Argument(
        metavar="PAN", help="Panchromatic raster (path or GDAL dataset name).",
        show_default=False)] = None,
    ms: Annotated[list[str] | None, typer.Argument(
        metavar="MS...", help="Multispectral raster(s).", show_default=False)] = None,
    sensor: SensorOpt = None,
    sensors: Annotated[bool, typer.Option(
        "--sensors", help="List the sensor presets with their MTF gains and sources instead.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Show the detected sensor (and why), the grids, and the measured PAN/MS shift."""
    with _reporting():
        if sensors:
            _print_sensors(json_out)
            return
        if pan is None or not ms:
            raise UsageError("missing PAN and MS (or give --sensors)")
        from ssdiff_cli.pipeline import SharpenOptions
        from ssdiff_cli.pipeline import sharpen as run_sharpen

        report = run_sharpen(pan, ms, "-", SharpenOptions(sensor=sensor, check_only=True))
        if json_out:
            _print_json(report.to_dict())
            return
        lines = [
            f"sensor:  {report.sensor['name']}  ({report.sensor['source']})",
            f"         {report.sensor['reason']}",
            f"bits:    {report.sensor['bit_depth']}",
            f"ratio:   {report.ratio}",
            f"grid:    {report.grid['width']}x{report.grid['height']} PAN px, "
            f"CRS {report.grid['crs']}",
            f"shift:   {report.shift['summary']}  -> {report.shift['verdict']}",
        ]
        lines += [f"note:    {n}" for n in report.notes]
        typer.echo("\n".join(lines))


def _print_sensors(json_out: bool) -> None:
    from ssdiff_cli.sensors import list_presets

    presets = list_presets()
    if json_out:
        _print_json({"sensors": [
            {"key": p.key, "name": p.name, "aliases": list(p.aliases), "bands": list(p.band_names),
             "ratio": p.ratio, "bit_depth": p.bit_depth, "ms_gnyq": list(p.ms_gnyq),
             "pan_gnyq": p.pan_gnyq, "mtf_source": p.mtf_source} for p in presets]})
        return
    for p in presets:
        typer.echo(f"{p.key:10s} {p.name}: {p.n_bands} bands ({', '.join(p.band_names)}), "
                   f"ratio {p.ratio}, {p.bit_depth or 'float'}-bit")
        typer.echo(f"{'':10s} GNyq MS {', '.join(f'{g:g}' for g in p.ms_gnyq)}; PAN {p.pan_gnyq:g}"
                   f"  [{p.mtf_source}]")


@app.command()
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
    model: Annotated[str | None, typer.Option(help="Model for -m ssdiff (zoo name or path).")] = None,
    steps: Annotated[int | None, typer.Option(min=1, max=1000, help="DDIM steps for -m ssdiff.")] = None,
    adapt: Annotated[int | None, typer.Option(
        min=0, help="-m ssdiff adapts to each (degraded) scene for N steps first.")] = None,
    reference: Annotated[Path | None, typer.Option(help="Reference image for FUSED.")] = None,
    pan: Annotated[str | None, typer.Option(help="PAN for scoring FUSED without reference.")] = None,
    ms: Annotated[list[str] | None, typer.Option(help="MS for scoring FUSED without reference.")] = None,
    sensor: SensorOpt = None,
    tile_size: TileOpt = None,
    workers: WorkersOpt = None,
    quicklook: Annotated[Path | None, typer.Option(
        help="PNG panel: composites with one stretch and per-method error maps.")] = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Score methods or fused images with SAM, ERGAS, Q2n, SCC, Q, PSNR, D_lambda, D_s, HQNR, QNR."""
    with _reporting(quiet):
        from ssdiff_cli import evaluate as ev_lib
        from ssdiff_cli.errors import BadInputError
        from ssdiff_cli.pipeline import SharpenOptions, default_workers

        modes = sum(x is not None for x in (reduced, full)) + bool(fused)
        if modes != 1:
            raise BadInputError("give exactly one of --reduced PAN MS, --full PAN MS, or FUSED...")
        methods = [m.value for m in method] if method else ["gsa", "mtf-glp"]
        model_options = {k: v for k, v in (("model", model), ("steps", steps), ("adapt", adapt))
                         if v is not None}
        options = SharpenOptions(tile_size=tile_size, workers=workers or default_workers(),
                                 method_options=model_options)
        if quicklook is not None:
            from ssdiff_cli.output import check_destination

            inputs = [*(fused or []), *(reduced or ()), *(full or ()), *(ms or [])]
            inputs += [p for p in (reference, pan) if p is not None]
            check_destination(quicklook, overwrite=overwrite, inputs=inputs, role="quicklook")
        keep = {} if quicklook else None
        with _progress_bar(not quiet, "evaluate") as progress:
            if reduced is not None:
                result = ev_lib.evaluate_reduced(reduced[0], [reduced[1]], methods, sensor,
                                                 options, progress, keep)
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
            _print_json(result.to_dict())
        else:
            _print_table(result)


def _print_table(result) -> None:
    from rich.table import Table

    table = Table(title=f"{result.protocol} resolution" if result.protocol != "reference"
                  else "against the reference", show_lines=False)
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


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    app(args=argv, prog_name="ssdiff")



def _register_commands() -> None:
    from ssdiff_cli.cli_train import register

    register(app)


_register_commands()
