"""The command line as a user meets it: exit codes, one-line errors, no partial output, stdout,
JSON, and agreement with GDAL's gdal_pansharpen.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from affine import Affine
from typer.testing import CliRunner

from ssdiff_cli.cli import app
from ssdiff_cli.errors import EXIT_BAD_INPUT, EXIT_MISREGISTERED, EXIT_OUTPUT
from tests.conftest import requires_data, scene_paths

pytestmark = requires_data
runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def assert_clean_failure(result, code, *words, out=None):
    """Non-zero exit with the expected code, a one-line message naming the problem, no
    traceback, and no output file."""
    assert result.exit_code == code, result.output
    message = result.stderr.strip()
    assert "Traceback" not in result.output and "Traceback" not in message
    assert len(message.splitlines()) == 1, message
    for word in words:
        assert word in message, message
    if out is not None:
        assert not out.exists()
        assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def _copy_with(tmp_path, src, name, **changes):
    """A copy of ``src`` with profile changes (crs, transform...)."""
    with rasterio.open(src) as ds:
        data = ds.read()
        profile = ds.profile
        tags = ds.tags()
    profile.update(changes)
    dst = tmp_path / name
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
        out.update_tags(**tags)
    return dst


def test_missing_file(tmp_path):
    pan, ms = scene_paths("landsat8_satellite")
    out = tmp_path / "out.tif"
    result = invoke("sharpen", tmp_path / "nope.tif", ms, "-o", out)
    assert_clean_failure(result, EXIT_BAD_INPUT, "nope.tif", "does not exist", out=out)


def test_file_that_is_not_a_raster(tmp_path):
    _, ms = scene_paths("landsat8_satellite")
    bogus = tmp_path / "pan.tif"
    bogus.write_text("this is not an image\n")
    out = tmp_path / "out.tif"
    result = invoke("sharpen", bogus, ms, "-o", out)
    assert_clean_failure(result, EXIT_BAD_INPUT, "pan.tif", "not a raster", out=out)


def test_crs_mismatch(tmp_path):
    pan, ms = scene_paths("landsat8_satellite")
    other = _copy_with(tmp_path, ms, "ms.tif", crs="EPSG:32633")
    out = tmp_path / "out.tif"
    result = invoke("sharpen", pan, other, "-o", out)
    assert_clean_failure(result, EXIT_BAD_INPUT, "ms.tif", "CRS", out=out)


def test_non_integer_ratio(tmp_path):
    pan, ms = scene_paths("landsat8_satellite")
    with rasterio.open(ms) as ds:
        t = ds.transform
    other = _copy_with(tmp_path, ms, "ms.tif", transform=Affine(25.0, 0, t.c, 0, -25.0, t.f))
    out = tmp_path / "out.tif"
    result = invoke("sharpen", pan, other, "-o", out)
    assert_clean_failure(result, EXIT_BAD_INPUT, "ms.tif", "not a whole number", out=out)


def test_disjoint_extents(tmp_path):
    pan, ms = scene_paths("landsat8_satellite")
    with rasterio.open(ms) as ds:
        t = ds.transform
    other = _copy_with(tmp_path, ms, "ms.tif", transform=t @ Affine.translation(5000, 0))
    out = tmp_path / "out.tif"
    result = invoke("sharpen", pan, other, "-o", out)
    assert_clean_failure(result, EXIT_BAD_INPUT, "ms.tif", "does not overlap", out=out)


def test_band_count_contradicting_sensor(tmp_path):
    pan, ms = scene_paths("wv2_grip")
    out = tmp_path / "out.tif"
    result = invoke("sharpen", pan, ms, "-o", out, "--sensor", "GeoEye-1")
    assert_clean_failure(result, EXIT_BAD_INPUT, "ms.tif", "8", "GeoEye-1", out=out)


def test_existing_output_is_kept_without_overwrite(tmp_path):
    pan, ms = scene_paths("landsat8_satellite")
    out = tmp_path / "out.tif"
    out.write_bytes(b"precious")
    result = invoke("sharpen", pan, ms, "-o", out)
    assert result.exit_code == EXIT_OUTPUT
    assert "already exists" in result.stderr and "--overwrite" in result.stderr
    assert out.read_bytes() == b"precious"
    result = invoke("sharpen", pan, ms, "-o", out, "--overwrite", "-q")
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as ds:
        assert ds.count == 4


def test_output_folder_not_writable(tmp_path):
    pan, ms = scene_paths("landsat8_satellite")
    # /proc refuses new files even to root, unlike a chmod-ed folder.
    result = invoke("sharpen", pan, ms, "-o", "/proc/ssdiff-out.tif")
    assert result.exit_code == EXIT_OUTPUT
    assert "not writable" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_misregistration_is_refused_unless_forced(tmp_path):
    pan, ms = scene_paths("wv3_cristianics")  # about 1.2-1.4 PAN px of real shift in y
    out = tmp_path / "out.tif"
    # left where the geotransforms put it (the default registration would correct it)
    result = invoke("sharpen", pan, ms, "-o", out, "--refuse-px", "1.0", "--coregister", "off")
    assert_clean_failure(result, EXIT_MISREGISTERED, "shifted", "--force", out=out)
    result = invoke("sharpen", pan, ms, "-o", out, "--refuse-px", "1.0", "--force", "-q", "-m",
                    "mtf-glp", "--coregister", "off")
    assert result.exit_code == 0 and out.exists()


def test_check_only_reports_the_shift_and_writes_nothing(tmp_path):
    pan, ms = scene_paths("wv3_cristianics")
    out = tmp_path / "out.tif"
    result = invoke("sharpen", pan, ms, "-o", out, "--check-only", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    # measured, corrected by default, and judged on what is left
    assert report["shift"]["applied"] and report["shift"]["verdict"] == "ok"
    assert 0.6 < abs(report["shift"]["dy"]) < 2.0
    off = json.loads(invoke("sharpen", pan, ms, "-o", out, "--check-only", "--json",
                            "--coregister", "off").stdout)
    assert off["shift"]["verdict"] == "warn" and not off["shift"]["applied"]
    assert not out.exists()


def test_json_summary(tmp_path):
    pan, ms = scene_paths("landsat8_satellite")
    out = tmp_path / "out.tif"
    result = invoke("sharpen", pan, ms, "-o", out, "--json", "-q", "--method", "gsa")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["sensor"]["name"] == "Landsat-8"
    assert report["method"]["name"] == "gsa"
    assert report["grid"]["crs"] == "EPSG:32632"
    assert report["ratio"] == 2 and report["tiles"] >= 1 and report["output"] == str(out)


def test_output_to_stdout_for_pipelines(tmp_path):
    pan, ms = scene_paths("landsat8_satellite")
    proc = subprocess.run(
        [sys.executable, "-m", "ssdiff_cli", "sharpen", str(pan), str(ms), "-o", "-", "-q"],
        capture_output=True, check=True,
    )
    piped = tmp_path / "piped.tif"
    piped.write_bytes(proc.stdout)
    with rasterio.open(piped) as ds:
        assert ds.count == 4 and ds.crs.to_epsg() == 32632 and ds.nodata == -32768


def test_multiband_ms_as_single_band_files(tmp_path):
    pan, ms = scene_paths("landsat8_satellite")
    parts = []
    with rasterio.open(ms) as ds:
        profile = ds.profile
        profile.update(count=1)
        for b in range(1, ds.count + 1):
            path = tmp_path / f"B{b}.tif"
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(ds.read(b), 1)
            parts.append(path)
    one, many = tmp_path / "one.tif", tmp_path / "many.tif"
    assert invoke("sharpen", pan, ms, "-o", one, "-q").exit_code == 0
    result = invoke("sharpen", pan, *parts, "-o", many, "-q", "--sensor", "landsat-8")
    assert result.exit_code == 0, result.output
    with rasterio.open(one) as a, rasterio.open(many) as b:
        assert np.array_equal(a.read(), b.read())


def test_info_says_what_was_detected_and_why():
    pan, ms = scene_paths("wv3_cristianics")
    result = invoke("info", pan, ms)
    assert result.exit_code == 0
    assert "WorldView-3" in result.stdout and "pixel-size" in result.stdout
    assert "shift" in result.stdout


@pytest.mark.skipif(shutil.which("gdal_pansharpen.py") is None,
                    reason="gdal_pansharpen.py (Debian's gdal-bin) not installed")
def test_brovey_agrees_with_gdal_pansharpen(tmp_path):
    pan, ms = scene_paths("wv2_grip")
    weights = ["-w", "0.125"] * 8
    gdal_out, ours = tmp_path / "gdal.tif", tmp_path / "ours.tif"
    subprocess.run(
        ["gdal_pansharpen.py", str(pan), str(ms), str(gdal_out), *weights, "-bitdepth", "11",
         "-q"], check=True,
    )
    # GDAL puts the MS where the grids say: so does ssdiff with --coregister off
    result = invoke("sharpen", pan, ms, "-o", ours, "-m", "brovey", *weights, "-q",
                    "--coregister", "off")
    assert result.exit_code == 0, result.output
    with rasterio.open(gdal_out) as a, rasterio.open(ours) as b:
        diff = np.abs(a.read().astype(np.int64) - b.read().astype(np.int64))
    # Away from the outermost pixels, where GDAL's RasterIO and its warper extrapolate the cubic
    # kernel differently, the outputs agree to the rounding of the upsampled MS: all but a few
    # pixels next to near-zero (saturated-dark) MS values are within one digital number.
    interior = diff[:, 6:-6, 6:-6]
    assert np.mean(interior <= 1) > 0.999
    assert np.mean(interior == 0) > 0.99
