"""The output: what the file says about itself (issue 14, items 3 and 6: no invented nodata (an
internal mask instead), non-georeferenced stays so, RGB colour interpretation, and --dtype /
--scale saying what they do) on the real scenes; and each module of ``ssdiff_cli.output`` (the
output spec, destination checks, work files, the tile writer, streams) on the generated pairs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
from affine import Affine
from typer.testing import CliRunner

from ssdiff_cli.cli import app
from ssdiff_cli.errors import (
    BadInputError,
    ClippingWarning,
    DegenerateOutputError,
    OutputError,
    UsageError,
)
from ssdiff_cli.output import (
    _HOST,
    OutputSpec,
    OutputTarget,
    TileWriter,
    check_destination,
    ifd_follows_header,
    is_stream,
    output_spec,
    remove_stale_work_files,
    same_file,
    to_output_dtype,
    value_range,
    work_stem,
    write_streamable,
)
from ssdiff_cli.scene import open_pair, scene_sample
from ssdiff_cli.sensors import detect_sensor
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
    text = re.sub(r"\s+", " ", result.output)
    assert "One of: uint8, uint16, int16, uint32, int32, float32, float64." in text
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


# ------------------------------------------------------------------------------------------
# The output package's modules, on the generated pairs (tests/make_fixtures.py)


def _prepared(fixture_pairs, name):
    """(scene, detection, sample) of a generated pair, as ``sharpen`` prepares them."""
    pan, ms = fixture_pairs[name]
    detection = detect_sensor(pan, [ms])
    scene = open_pair(pan, ms, expected_bands=detection.preset.n_bands)
    return scene, detection, scene_sample(scene.spec)


METHOD = SimpleNamespace(name="brovey")


def test_output_spec_keeps_the_ms_type_range_nodata_and_grid(fixture_pairs):
    scene, detection, sample = _prepared(fixture_pairs, "ms4_r4")
    notes = []
    spec = output_spec(scene, detection, sample, None, METHOD, notes=notes)
    assert (spec.dtype, spec.bands, spec.nodata) == ("uint16", 4, 0)
    assert (spec.value_min, spec.value_max) == (0, 4095)  # the BIT_DEPTH tag's 12 bits
    assert (spec.width, spec.height, spec.crs) == (64, 64, scene.spec.out.crs)
    assert spec.transform == scene.spec.out.transform and spec.scale is None
    # the file names no band: the detected preset's names are used
    assert scene.band_names == ["band 1", "band 2", "band 3", "band 4"]
    assert spec.band_names == list(detection.preset.band_names) != scene.band_names
    assert spec.rgb == tuple(detection.preset.rgb)
    assert spec.tags == {"SSDIFF_METHOD": "brovey", "SENSOR": detection.preset.name}
    assert notes == []


def test_output_spec_clips_with_a_warning_or_scales_the_range(fixture_pairs):
    scene, detection, sample = _prepared(fixture_pairs, "ms4_r4")
    notes = []
    with pytest.warns(ClippingWarning, match="uint8 clips to 0..255"):
        spec = output_spec(scene, detection, sample, "uint8", METHOD, notes=notes)
    assert (spec.value_min, spec.value_max, spec.nodata) == (0, 255, 0)
    assert "values clipped to 0..255" in notes[0]
    notes = []
    spec = output_spec(scene, detection, sample, "uint8", METHOD, scale=True, notes=notes)
    assert spec.scale == pytest.approx((255 / 4095, 0.0))
    assert spec.nodata is None  # a nodata value of the input type means nothing after scaling
    assert notes == ["values scaled from 0..4095 to 0..255 (uint8, --scale)"]
    with pytest.raises(BadInputError, match="unsupported output type"):
        output_spec(scene, detection, sample, "complex64", METHOD)


def test_output_spec_of_float_data_and_streams(fixture_pairs):
    scene, detection, sample = _prepared(fixture_pairs, "ms3_r2")
    spec = output_spec(scene, detection, sample, None, METHOD)
    assert (spec.dtype, spec.nodata, spec.value_min) == ("float32", -9999.0, 0.0)
    assert spec.value_max == np.finfo(np.float32).max
    notes = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reflectances (0..1) all fit 0..255: nothing to warn of
        spec = output_spec(scene, detection, sample, "uint8", METHOD, notes=notes)
    assert spec.nodata is None
    assert notes == ["output uint8: values clipped to 0..255",
                     "nodata -9999 does not fit uint8: the output uses a mask"]
    # a stream carries no mask: the lowest value is nodata
    assert output_spec(scene, detection, sample, "uint8", METHOD, to_stdout=True).nodata == 0


def _spec(dtype="uint16", nodata=0.0, lo=0.0, hi=4095.0, bands=2, scale=None, size=8):
    return OutputSpec(transform=Affine(1, 0, 0, 0, -1, size), width=size, height=size,
                      crs="EPSG:32633", dtype=dtype, bands=bands, nodata=nodata,
                      band_names=[f"b{i}" for i in range(bands)], value_min=lo, value_max=hi,
                      scale=scale)


def test_to_output_dtype_clips_rounds_and_keeps_nodata_for_invalid_pixels_only():
    data = np.array([[[-5.0, 0.2, 0.5, 1.5, 4094.6, 9999.0]]], np.float32)
    valid = np.array([[True, True, True, True, True, False]])
    out = to_output_dtype(data, valid, _spec(bands=1))
    # 0.2 rounds to the nodata value 0 on a valid pixel: nudged to 1; the invalid pixel is 0
    assert out.dtype == np.uint16 and out.tolist() == [[[1, 1, 1, 2, 4095, 0]]]
    scaled = to_output_dtype(np.full((1, 1, 2), 100.0, np.float32), np.ones((1, 2), bool),
                             _spec(dtype="uint8", nodata=None, hi=255, bands=1, scale=(0.5, 3.0)))
    assert scaled.tolist() == [[[53, 53]]]
    floats = to_output_dtype(np.ones((1, 1, 2), np.float32), np.array([[True, False]]),
                             _spec(dtype="float32", nodata=float("nan"), hi=1e30, bands=1))
    assert floats[0, 0, 0] == 1.0 and np.isnan(floats[0, 0, 1])
    assert value_range("uint16", 11) == (0.0, 2047.0) and value_range("int16") == (-32768.0, 32767.0)


def _hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_tile_writer_publishes_a_cog_that_reads_back(tmp_path):
    spec = _spec(size=64)
    spec.rgb, spec.tags = None, {"SSDIFF_METHOD": "test"}
    rng = np.random.default_rng(0)
    data = rng.uniform(1, 4000, (2, 64, 64)).astype(np.float32)
    valid = np.ones((64, 64), bool)
    valid[:5, :7] = False
    out = tmp_path / "out.tif"
    with TileWriter(OutputTarget(str(out)), spec) as writer:
        for r0 in (0, 32):  # two regions, as the blender hands them over
            writer.write(r0, 0, data[:, r0:r0 + 32], valid[r0:r0 + 32])
        assert _hidden(tmp_path) == [writer.work_path.name]
        writer.check_result(np.array([True, True]))
        writer.publish()
    assert _hidden(tmp_path) == []
    with rasterio.open(out) as ds:
        assert ds.driver == "GTiff" and ds.nodata == 0 and ds.descriptions == ("b0", "b1")
        assert ds.crs.to_epsg() == 32633 and ds.tags()["SSDIFF_METHOD"] == "test"
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        got = ds.read()
    np.testing.assert_array_equal(got, to_output_dtype(data, valid, spec))
    with pytest.raises(OutputError, match="already exists"):
        OutputTarget(str(out)).check()


@pytest.mark.parametrize("fill", [np.nan, 7.0])
def test_writer_refuses_nan_or_constant_results(tmp_path, fill):
    spec = OutputSpec(transform=Affine.identity(), width=64, height=64, crs=None, dtype="uint16",
                      bands=2, nodata=0, band_names=["a", "b"], value_min=0, value_max=65535)
    out = tmp_path / "out.tif"
    with pytest.raises(DegenerateOutputError), \
            TileWriter(OutputTarget(str(out)), spec) as writer:
        data = np.full((2, 64, 64), fill, np.float32)
        data[1] = np.linspace(1, 100, 64 * 64).reshape(64, 64)  # band 2 fine
        writer.write(0, 0, data, np.ones((64, 64), bool))
        writer.check_result(np.array([True, True]))
        writer.publish()
    assert not out.exists() and not _hidden(tmp_path)


def test_check_destination_refusals(tmp_path):
    src = tmp_path / "in.tif"
    src.write_bytes(b"x")
    os.link(src, tmp_path / "hard.tif")
    os.symlink(src, tmp_path / "soft.tif")
    for alias in ("hard.tif", "soft.tif", "sub/../in.tif"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(BadInputError, match="would replace the input"):
            check_destination(tmp_path / alias, overwrite=True, inputs=[src])
    with pytest.raises(UsageError, match="also the output"):
        check_destination(tmp_path / "q.png", overwrite=True, others=[("output", tmp_path / "q.png")])
    with pytest.raises(OutputError, match="already exists"):
        check_destination(src, overwrite=False)
    check_destination(src, overwrite=True)
    with pytest.raises(OutputError, match="is a folder"):
        check_destination(tmp_path / "sub", overwrite=True)
    with pytest.raises(OutputError, match="does not exist"):
        check_destination(tmp_path / "nowhere" / "o.tif", overwrite=True)
    check_destination("/dev/null", overwrite=False)  # a stream: written into, never replaced
    assert is_stream("/dev/null") and same_file(tmp_path / "hard.tif", src)


def test_work_files_of_dead_runs_are_removed_and_long_names_shortened(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".out.tif.{_HOST}-{dead.pid}-deadbeef.work.tif"
    live = tmp_path / f".out.tif.{_HOST}-{os.getpid()}-0badcafe.work.tif"
    other = tmp_path / f".other.tif.{_HOST}-{dead.pid}-deadbeef.work.tif"
    for p in (stale, live, other):
        p.write_bytes(b"\0")
    assert remove_stale_work_files(tmp_path, "out.tif") == [stale]
    assert _hidden(tmp_path) == sorted([live.name, other.name])
    long = "é" * 200 + ".tif"
    short = work_stem(long)
    assert len(short.encode()) <= 96 and short != work_stem("é" * 201 + ".tif")
    assert work_stem("out.tif") == "out.tif"


def test_streamable_layout_puts_the_ifd_after_the_header(tmp_path, fixture_pairs):
    pan, _ = fixture_pairs["ms3_r2"]
    streamed = tmp_path / "s.tif"
    write_streamable(pan, streamed, {})
    assert ifd_follows_header(streamed)
    with rasterio.open(streamed) as a, rasterio.open(pan) as b:
        np.testing.assert_array_equal(a.read(), b.read())
        assert a.crs == b.crs and a.transform == b.transform
    (tmp_path / "not.tif").write_bytes(b"PK\3\4" + b"\0" * 20)
    assert not ifd_follows_header(tmp_path / "not.tif")
