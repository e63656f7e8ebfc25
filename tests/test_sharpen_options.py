"""sharpen's GDAL-style overrides on real scenes (issue 14, items 2, 9 and 10): the bit depth
taken from the data or --bit-depth, --nodata, and -r/--resampling."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from ssdiff_cli.cli import app
from ssdiff_cli.errors import EXIT_USAGE
from tests.conftest import requires_data, scene_paths

pytestmark = requires_data
runner = CliRunner()


def _copy(src, dst, transform_data=None, **profile_changes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(src) as ds:
            data, profile, tags = ds.read(), ds.profile, ds.tags()
        if transform_data is not None:
            data = transform_data(data)
        profile.update(profile_changes)
        with rasterio.open(dst, "w", **profile) as out:
            out.write(data)
            out.update_tags(**tags)
    return dst


def _run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def _read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path) as ds:
            return ds.read(), ds.read_masks(1) > 0


@pytest.fixture(scope="module")
def bright_wv2(tmp_path_factory):
    """wv2_solaris_2 (tagged WorldView-2, BIT_DEPTH=11) with values x4: up to about 7600, as a
    13-bit product relabelled 11-bit would be."""
    tmp = tmp_path_factory.mktemp("bright")
    pan, ms = scene_paths("wv2_solaris_2")
    return (_copy(pan, tmp / "pan.tif", lambda d: d * 4),
            _copy(ms, tmp / "ms.tif", lambda d: d * 4))


def test_bit_depth_taken_from_the_data(tmp_path, bright_wv2):
    """Values above the preset's (and the tag's) 11 bits are kept, with a warning, instead of
    being cut at 2047."""
    pan, ms = bright_wv2
    out = tmp_path / "out.tif"
    result = _run("sharpen", pan, ms, "-o", out, "-m", "upsample", "--json")
    assert result.exit_code == 0, result.output
    assert "above the 11-bit range" in result.stderr and "13 bits" in result.stderr
    data, valid = _read(out)
    with rasterio.open(ms) as src:
        top = int(src.read().max())
    assert data[:, valid].max() >= 0.9 * top > 2047
    assert (data[:, valid] == 2047).mean() < 0.001  # nothing piles up at the old cap
    import json

    assert json.loads(result.stdout)["sensor"]["bit_depth"] == 13


def test_bit_depth_option_wins(tmp_path, bright_wv2):
    """--bit-depth 11 is obeyed, as gdal_pansharpen -bitdepth is: the result is capped."""
    pan, ms = bright_wv2
    out = tmp_path / "out.tif"
    result = _run("sharpen", pan, ms, "-o", out, "-m", "upsample", "--bit-depth", "11")
    assert result.exit_code == 0, result.output
    assert "above the" not in result.stderr
    data, valid = _read(out)
    assert data[:, valid].max() == 2047


def test_bit_depth_left_alone_when_the_data_fit(tmp_path):
    pan, ms = scene_paths("wv2_solaris_2")
    result = _run("info", pan, ms, "--json")
    assert result.exit_code == 0
    import json

    assert json.loads(result.stdout)["sensor"]["bit_depth"] == 11


def test_nodata_override_restores_a_missing_nodata(tmp_path):
    """wv2_solaris_2 with its nodata=0 stripped fuses the image edge as data; --nodata 0 gives
    back exactly the result of the original file."""
    pan, ms = scene_paths("wv2_solaris_2")
    pan_bare = _copy(pan, tmp_path / "pan.tif", nodata=None)
    ms_bare = _copy(ms, tmp_path / "ms.tif", nodata=None)
    ref, bare, fixed = tmp_path / "ref.tif", tmp_path / "bare.tif", tmp_path / "fixed.tif"
    for p, m, out, extra in ((pan, ms, ref, []), (pan_bare, ms_bare, bare, []),
                             (pan_bare, ms_bare, fixed, ["--nodata", "0"])):
        result = _run("sharpen", p, m, "-o", out, "-m", "gsa", "-q", *extra)
        assert result.exit_code == 0, result.output
    ref_data, ref_valid = _read(ref)
    bare_data, bare_valid = _read(bare)
    fixed_data, fixed_valid = _read(fixed)
    assert 0.2 < 1 - ref_valid.mean() < 0.5  # the scene's edge: about a third is nodata
    assert bare_valid.all()  # without nodata the edge counted as data
    np.testing.assert_array_equal(fixed_valid, ref_valid)
    np.testing.assert_array_equal(fixed_data, ref_data)


def test_nodata_none_ignores_the_files_value(tmp_path):
    pan, ms = scene_paths("wv2_solaris_2")
    out = tmp_path / "out.tif"
    result = _run("sharpen", pan, ms, "-o", out, "-m", "upsample", "-q", "--nodata", "none")
    assert result.exit_code == 0, result.output
    _, valid = _read(out)
    assert valid.all()
    bad = _run("sharpen", pan, ms, "-o", tmp_path / "x.tif", "--nodata", "zero")
    assert bad.exit_code == EXIT_USAGE


def test_resampling_nearest_and_bilinear(tmp_path):
    """-r nearest repeats each MS pixel ratio x ratio times; -r bilinear interpolates linearly
    between MS pixel centres (interior checked against numpy's interp); cubic is the default."""
    pan, ms = scene_paths("wv2_grip")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(ms) as src:
            msd = src.read().astype(np.float64)
    outs = {}
    for kernel in ("nearest", "bilinear", "cubic"):
        out = tmp_path / f"{kernel}.tif"
        result = _run("sharpen", pan, ms, "-o", out, "-m", "upsample", "-q", "-r", kernel,
                      "--dtype", "float32", "--coregister", "off")  # the grids' own placement
        assert result.exit_code == 0, result.output
        outs[kernel] = _read(out)[0]
    r = 4
    np.testing.assert_array_equal(outs["nearest"], np.repeat(np.repeat(msd, r, 1), r, 2))
    band = msd[4]
    centres = np.arange(band.shape[1]) + 0.5
    fine = (np.arange(band.shape[1] * r) + 0.5) / r
    rows = np.stack([np.interp(fine, centres, row) for row in band])
    expect = np.stack([np.interp(fine, centres, col) for col in rows.T]).T
    inner = (slice(8, -8), slice(8, -8))
    np.testing.assert_allclose(outs["bilinear"][4][inner], expect[inner], rtol=1e-5, atol=1e-2)
    assert not np.allclose(outs["cubic"][4][inner], expect[inner], atol=1)


def test_resampling_refused_for_the_model(tmp_path):
    pan, ms = scene_paths("wv2_grip")
    result = _run("sharpen", pan, ms, "-o", tmp_path / "o.tif", "-m", "ssdiff", "-r", "nearest")
    assert result.exit_code == EXIT_USAGE, result.output
    assert "cubic" in result.stderr


@requires_data
def test_no_calibrate_applies_to_the_model_only(tmp_path):
    pan, ms = scene_paths("landsat8_satellite")
    result = _run("sharpen", pan, ms, "-o", tmp_path / "o.tif", "-m", "gsa", "--no-calibrate")
    assert result.exit_code == EXIT_USAGE, result.output
    assert "--no-calibrate" in result.stderr and "gsa" in result.stderr


@requires_data
def test_calibration_is_on_by_default_and_off_with_no_calibrate(tmp_path):
    import json

    pan, ms = scene_paths("landsat8_satellite")
    runs = {}
    for flag in ([], ["--no-calibrate"]):
        out = tmp_path / f"o{len(flag)}.tif"
        result = _run("sharpen", pan, ms, "-o", out, "-m", "ssdiff", "--json", "-q", *flag)
        assert result.exit_code == 0, result.output
        runs[bool(flag)] = json.loads(result.stdout)["method"]
    on, off = runs[False], runs[True]
    assert on["calibrate"] is True and len(on["calibration"]["gains"]) == 4
    assert all(0.0 <= g <= 1.0 for g in on["calibration"]["gains"])
    assert off["calibrate"] is False and "calibration" not in off
