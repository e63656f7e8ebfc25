"""``ssdiff info``: what was detected in a pair (sensor and why, grids, PAN/MS shift), or the
sensor presets with ``--sensors``."""

from __future__ import annotations

from typing import Annotated

import typer

from ssdiff_cli.cli.options import JsonOpt, SensorOpt
from ssdiff_cli.cli.reporting import print_json, reporting, require_stdout
from ssdiff_cli.errors import UsageError


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
    with reporting():
        require_stdout("the report")
        if sensors:
            _print_sensors(json_out)
            return
        if pan is None or not ms:
            raise UsageError("missing PAN and MS (or give --sensors)")
        from ssdiff_cli.pipeline import SharpenOptions
        from ssdiff_cli.pipeline import sharpen as run_sharpen

        report = run_sharpen(pan, ms, "-", SharpenOptions(sensor=sensor, check_only=True))
        if json_out:
            print_json(report.to_dict())
            return
        lines = [
            f"sensor:  {report.sensor['name']}  ({report.sensor['source']})",
            f"         {report.sensor['reason']}",
            f"bits:    {report.sensor['bit_depth']}",
            f"ratio:   {report.ratio}",
            f"grid:    {report.grid['width']}x{report.grid['height']} PAN px, "
            f"CRS {report.grid['crs']}",
            f"shift:   {report.shift['summary']}  -> {report.shift['verdict']}",
            f"         sharpen {'moves the MS there' if report.shift['applied'] else 'leaves the MS'}"
            f" ({report.shift['reason']})",
        ]
        lines += [f"note:    {n}" for n in report.notes]
        typer.echo("\n".join(lines))


def _print_sensors(json_out: bool) -> None:
    from ssdiff_cli.sensors import list_presets

    presets = list_presets()
    if json_out:
        print_json({"sensors": [
            {"key": p.key, "name": p.name, "aliases": list(p.aliases), "bands": list(p.band_names),
             "ratio": p.ratio, "bit_depth": p.bit_depth, "ms_gnyq": list(p.ms_gnyq),
             "pan_gnyq": p.pan_gnyq, "mtf_source": p.mtf_source} for p in presets]})
        return
    for p in presets:
        typer.echo(f"{p.key:10s} {p.name}: {p.n_bands} bands ({', '.join(p.band_names)}), "
                   f"ratio {p.ratio}, {p.bit_depth or 'float'}-bit")
        typer.echo(f"{'':10s} GNyq MS {', '.join(f'{g:g}' for g in p.ms_gnyq)}; PAN {p.pan_gnyq:g}"
                   f"  [{p.mtf_source}]")
