"""What the output file says about itself (issue 14, items 3 and 6): no invented nodata (an
internal mask instead), non-georeferenced stays so, RGB colour interpretation, and --dtype /
--scale saying what they do."""

from __future__ import annotations

import shutil
import subprocess
import warnings

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from ssdiff_cli.cli import app
from tests.conftest import requires_data, scene_paths

runner = CliRunner()


def _sharpen(pan, ms, out, *extra):
    result = runner.invoke(app, ["sharpen", str(pan), str(ms), "-o", str(out), *extra])
    assert result.exit_code == 0, result.output
    return result


def _copy(src, dst, transform_data=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(src) as ds:
            data, profile, tags = ds.read(), ds.profile, ds.tags()
        if transform_data is not None:
            data = transform_data(data)
        with rasterio.open(dst, "w", **profile) as out:
            out.write(data)
            out.update_tags(**tags)
    return dst


@requires_data
def test_no_nodata_invented_valid_zeros_kept(tmp_path):
    """wv2_grip declares no nodata. Valid zeros (a block set to 0 in the MS) stay 0 rather than
    being nudged to 1 to make room for an invented nodata=0; validity is an internal mask."""
    pan, ms = scene_paths("wv2_grip")

    def zero_block(data):
        data[:, 100:140, 100:140] = 0
        return data

    ms0 = _copy(ms, tmp_path / "ms0.tif", zero_block)
    out = tmp_path / "out.tif"
    _sharpen(pan, ms0, out, "-m", "upsample", "-q")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(out) as ds:
            assert ds.nodata is None
            assert all(flags == [rasterio.enums.MaskFlags.per_dataset] for flags in ds.mask_flag_enums)
            assert (ds.read_masks(1) == 255).all()
            data = ds.read()
    # the interior of the zero block (away from the cubic kernel's reach) is exactly 0
    assert (data[:, 100 * 4 + 8:140 * 4 - 8, 100 * 4 + 8:140 * 4 - 8] == 0).all()


@requires_data
def test_mask_marks_invalid_pixels_without_nodata(tmp_path):
    """wv3_cristianics with --nodata none has no nodata at all; --extent union reaches past the
    MS footprint: those pixels are masked out, not given a value."""
    pan, ms = scene_paths("wv3_cristianics")
    out = tmp_path / "out.tif"
    _sharpen(pan, ms, out, "-m", "upsample", "--extent", "union", "--nodata", "none", "-q")
    with rasterio.open(out) as ds:
        assert ds.nodata is None
        mask = ds.read_masks(1)
    assert 0 < (mask == 0).sum() < mask.size // 4
    assert (mask == 255).sum() > mask.size // 2


@requires_data
def test_not_georeferenced_stays_so(tmp_path):
    """wv2_grip has no CRS and no geotransform: nor has the output (no identity transform)."""
    pan, ms = scene_paths("wv2_grip")
    out = tmp_path / "out.tif"
    _sharpen(pan, ms, out, "-m", "brovey", "-q")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with rasterio.open(out) as ds:
            assert ds.crs is None
    assert any(issubclass(w.category, rasterio.errors.NotGeoreferencedWarning) for w in caught)
    if shutil.which("gdalinfo"):
        info = subprocess.run(["gdalinfo", str(out)], capture_output=True, text=True).stdout
        assert "Origin" not in info and "Pixel Size" not in info


@requires_data
def test_rgb_colour_interpretation(tmp_path):
    """The preset's RGB bands (WorldView-2: 5, 3, 2) are marked red, green, blue."""
    pan, ms = scene_paths("wv2_grip")
    out = tmp_path / "out.tif"
    _sharpen(pan, ms, out, "-m", "brovey", "-q")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(out) as ds:
            names = [c.name for c in ds.colorinterp]
    assert names[4] == "red" and names[2] == "green" and names[1] == "blue"
    assert "alpha" not in names and names.count("red") == 1


@requires_data
def test_dtype_clipping_is_said(tmp_path):
    """--dtype uint8 of 11-bit data clips: the warning says so and how much."""
    pan, ms = scene_paths("wv2_grip")
    out = tmp_path / "out.tif"
    result = runner.invoke(app, ["sharpen", str(pan), str(ms), "-o", str(out), "-m", "upsample",
                                 "--dtype", "uint8", "--json"])
    assert result.exit_code == 0, result.output
    assert "--dtype uint8 clips to 0..255" in result.stderr and "%" in result.stderr
    assert "--scale" in result.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(out) as ds:
            assert ds.dtypes[0] == "uint8"
            assert ds.read().max() == 255


@requires_data
def test_scale_maps_the_bit_depth_range(tmp_path):
    """--scale maps 0..2047 (11-bit) onto 0..255, as gdal_translate -scale 0 2047 0 255."""
    pan, ms = scene_paths("wv2_grip")
    ref, scaled = tmp_path / "ref.tif", tmp_path / "scaled.tif"
    _sharpen(pan, ms, ref, "-m", "upsample", "-q")
    result = _sharpen(pan, ms, scaled, "-m", "upsample", "--dtype", "uint8", "--scale")
    assert "clips" not in result.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(ref) as a, rasterio.open(scaled) as b:
            full, small = a.read().astype(np.float64), b.read().astype(np.float64)
    assert small.max() <= 255
    # both outputs are rounded: 0.5 for the uint8 one, 0.5 * 255 / 2047 for the uint16 one
    np.testing.assert_allclose(small, np.clip(full * 255 / 2047, 0, 255), atol=0.5 + 0.5 * 255 / 2047 + 1e-6)


def test_dtype_choices_in_help():
    result = runner.invoke(app, ["sharpen", "--help"], env={"COLUMNS": "300"})
    assert "uint8|uint16|int16|uint32|int32|float32|float64" in result.output
    bad = runner.invoke(app, ["sharpen", "a.tif", "b.tif", "-o", "x.tif", "--dtype", "int12"])
    assert bad.exit_code == 2


@requires_data
@pytest.mark.parametrize("scene", ["wv2_grip"])
def test_json_notes_say_what_happened(tmp_path, scene):
    import json

    pan, ms = scene_paths(scene)
    result = runner.invoke(app, ["sharpen", str(pan), str(ms), "-o", str(tmp_path / "o.tif"),
                                 "-m", "upsample", "--dtype", "uint8", "--scale", "--json"])
    notes = json.loads(result.stdout)["notes"]
    assert any("scaled from 0..2047 to 0..255" in n for n in notes), notes
