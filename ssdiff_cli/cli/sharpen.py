"""``ssdiff sharpen``: one pair (or ``--batch`` pairs) into a Cloud-Optimized GeoTIFF on the PAN
grid, by :func:`ssdiff_cli.pipeline.sharpen`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ssdiff_cli.cli.options import (
    AdaptObjective,
    Compile,
    CompileOpt,
    Compress,
    Coregister,
    Device,
    DeviceOpt,
    DType,
    Extent,
    JsonOpt,
    Method,
    OutputFormat,
    OverwriteOpt,
    Precision,
    PrecisionOpt,
    QuietOpt,
    Resampling,
    SensorOpt,
    TileOpt,
    WorkersOpt,
    seed_option,
)
from ssdiff_cli.cli.reporting import print_json, progress_bar, reporting, require_stdout, stderr
from ssdiff_cli.errors import EXIT_MISREGISTERED, EXIT_RUNTIME, UsageError
from ssdiff_cli.methods import MODEL_METHODS


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
        "--method", "-m", help="auto: the generalist SSDiff model, checked on the scene "
        "against MTF-GLP-FS, which it falls back to where it would be worse (MTF-GLP where no "
        "model fits).")
    ] = Method.auto,
    model: Annotated[str | None, typer.Option(
        help="SSDiff model: zoo name or checkpoint path (default: by sensor).")] = None,
    adapter: Annotated[Path | None, typer.Option(help="L-BAF adapter applied on the model.")] = None,
    steps: Annotated[int | None, typer.Option(
        min=1, max=1000, help="DDIM sampling steps (ssdiff), at most T = 1000.")] = None,
    seed: Annotated[int, seed_option("Seed of the diffusion noise (ssdiff).")] = 0,
    adapt: Annotated[int, typer.Option(
        min=0, help="Fine-tune the model N steps on this scene before fusing it (ssdiff; "
        "ksdiff: its scene prior z alone).")] = 0,
    adapt_objective: Annotated[AdaptObjective, typer.Option(
        help="--adapt objective of a generalist or KSDiff model: full (unsupervised, full "
        "resolution, Z-PNN style) or reduced (Wald protocol on the scene).")] = AdaptObjective.full,
    calibrate: Annotated[bool, typer.Option(
        help="Scale a generalist model's correction per band to what the scene's own reduced "
        "resolution supports (gains in [0, 1], fitted once per scene).")] = True,
    device: DeviceOpt = Device.auto,
    precision: PrecisionOpt = Precision.auto,
    compile: CompileOpt = Compile.auto,
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
    resampling: Annotated[Resampling | None, typer.Option(
        "--resampling", "-r", help="MS upsampling of the classical methods (default: interp23tap "
        "for mtf-glp and mtf-glp-fs, cubic otherwise).", show_default=False)] = None,
    weights: Annotated[list[float] | None, typer.Option(
        "--weight", "-w", help="Brovey pseudo-PAN weight, once per band (as gdal_pansharpen -w).")] = None,
    force: Annotated[bool, typer.Option(help="Fuse even when misregistration is refused.")] = False,
    warn_px: Annotated[float, typer.Option(help="Warn above this PAN/MS shift (PAN px).")] = 0.5,
    refuse_px: Annotated[float | None, typer.Option(
        help="Refuse above this shift (PAN px; default 2.0); when given, a pair whose shift "
        "cannot be measured is refused too.", show_default=False)] = None,
    check_only: Annotated[bool, typer.Option(help="Print the co-registration report and exit.")] = False,
    coregister: Annotated[Coregister, typer.Option(
        "--coregister", help="Measure where the MS lies on the PAN grid (always, to ~0.01 PAN "
        "px) and resample it from there: auto when the measurement is confident, on whenever "
        "measured, off never (what is left is what --warn-px/--refuse-px judge).")
    ] = Coregister.auto,
    compress: Annotated[Compress, typer.Option(help="Output compression.")] = Compress.deflate,
    output_format: Annotated[OutputFormat | None, typer.Option(
        "--format", "-of", help="Output format (default: COG; for -o -, a streamable GTiff).",
        show_default=False)] = None,
    creation_options: Annotated[list[str] | None, typer.Option(
        "--co", help="GDAL creation option KEY=VALUE, repeatable (BLOCKSIZE, LEVEL, PREDICTOR, "
        "BIGTIFF...); applied after ssdiff's own.")] = None,
    quicklook: Annotated[Path | None, typer.Option(
        help="Also write a true-colour PNG of the result (with --uncertainty, its expected "
        "error beside it).")] = None,
    uncertainty: Annotated[Path | None, typer.Option(
        "--uncertainty", help="Also write a COG of the expected absolute error of every "
        "output pixel and band (output units, same grid and mask); model methods only.",
        show_default=False)] = None,
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
    with reporting(quiet):
        if batch is None and (pan is None or not ms or output is None):
            missing = "PAN and MS" if pan is None or not ms else "-o OUTPUT"
            raise UsageError(f"missing {missing}: give PAN MS... -o OUTPUT (or --batch PAIRS)")
        if batch is not None and (pan is not None or ms):
            raise UsageError("--batch replaces the PAN and MS arguments; give one or the other")
        if batch is not None and uncertainty is not None:
            raise UsageError("--uncertainty names one file; it applies to one pair, not --batch")
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
                                           device.value, precision.value, adapt,
                                           compile.value, calibrate),
            quicklook=str(quicklook) if quicklook else None,
            adapt_objective=adapt_objective.value,
            bit_depth=bit_depth, scale=scale, bands=bands, nodata=_nodata_value(nodata),
            resampling=resampling.value if resampling else None, coregister=coregister.value,
            output_format=output_format.value if output_format else None,
            creation_options=parse_creation_options(creation_options),
            uncertainty=str(uncertainty) if uncertainty else None,
        )
        if json_out and output == "-" and not check_only:
            raise UsageError("--json and -o - both want stdout; choose one")
        if json_out or check_only or output == "-":
            require_stdout("the JSON summary" if json_out else "-o -" if output == "-" else "the report")
        from ssdiff_cli.executors import open_executor

        with open_executor(scheduler=scheduler, cluster=cluster) as (executor, where):
            if executor is not None:
                options.workers = max(options.workers, executor.nthreads)
            with progress_bar(not quiet, f"sharpen {method}") as progress:
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
        print_json({"pairs": results})
    elif not quiet:
        for r in results:
            detail = r.get("error") or r.get("out") or ""
            stderr.print(f"{r['status']:8s} {r.get('pan', '')}  {detail}", highlight=False)
    failed = [r for r in results if r["status"] == "failed"]
    if failed:
        raise typer.Exit(max(r.get("exit_code") or EXIT_RUNTIME for r in failed))


def _method_options(method, weights, model, adapter, steps, seed, device, precision,
                    adapt=0, compile="auto", calibrate=True) -> dict:
    """Options for the method's constructor; model options only when they can apply."""
    options = {"weights": weights} if weights else {}
    if method in (*MODEL_METHODS, "auto"):
        options.update(model=model, adapter=str(adapter) if adapter else None, steps=steps,
                       seed=seed, device=device, precision=precision, adapt=adapt,
                       compile=compile, calibrate=calibrate)
    elif model or adapter or steps or adapt or not calibrate:
        raise UsageError(f"--model, --adapter, --steps, --adapt and --no-calibrate apply to "
                         f"--method {' or '.join(MODEL_METHODS)}, not {method}")
    return options


def _finish(report, json_out: bool, quiet: bool, check_only: bool) -> None:
    if json_out:
        print_json(report.to_dict())
    elif check_only:
        typer.echo(report.shift["summary"])
        typer.echo(f"verdict: {report.shift['verdict']}")
    elif not quiet:
        stderr.print(
            f"wrote {report.output}: {report.grid['width']}x{report.grid['height']} px, "
            f"{report.method['name']}, {report.tiles} tiles, {report.seconds:.1f} s "
            f"({report.megapixels_per_second:.2f} MP/s)"
            + (f"; expected error in {report.uncertainty['path']}" if report.uncertainty else ""),
            highlight=False,
        )
    if check_only and report.shift["verdict"] == "refuse":
        raise typer.Exit(EXIT_MISREGISTERED)
