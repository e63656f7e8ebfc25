"""The scene package (``ssdiff_cli.scene``): grids, opening a pair, reading tiles, the scene sample
and scene preparation, checked on the shared real pairs against the files' own values."""

from __future__ import annotations

import math
import shutil
import threading
import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import Resampling, reproject
from scipy import ndimage
from typer.testing import CliRunner

from ssdiff_cli.cli import app
from ssdiff_cli.errors import (
    BadInputError,
    BitDepthWarning,
    GridMismatchError,
    NotGeoreferencedWarning,
)
from ssdiff_cli.scene import (
    Grid,
    fill_values,
    ms_files,
    ms_maximum,
    open_pair,
    prepare_scene,
    read_arrays,
    read_tile,
    reader_for,
    scene_sample,
)
from ssdiff_cli.scene.grid import whole_ratio
from tests.conftest import requires_data, scene_paths

runner = CliRunner()


def _open(name: str, **kwargs):
    pan, ms = scene_paths(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return open_pair(pan, ms, **kwargs)


def _read(path, masks: bool = False):
    with rasterio.open(path) as ds:
        return (ds.read_masks() if masks else ds.read()), ds.nodata, ds.profile


def _write(path, data, profile, **changes):
    profile = {**profile, "count": data.shape[0], **changes}
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    return path


def _footprint_centres(grid: Grid):
    """x and y of the first and last pixel centres of a grid."""
    t = grid.transform
    x0, y0 = t @ (0.5, 0.5)
    x1, y1 = t @ (grid.width - 0.5, grid.height - 0.5)
    return min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)


# --------------------------------------------------------------------------------------------
# Grids


def test_grid_resolution_and_bounds_of_a_north_up_transform():
    grid = Grid(Affine(0.5, 0, 1000.0, 0, -0.5, 2000.0), 40, 30, "EPSG:32631")
    assert grid.res == (0.5, 0.5)
    assert grid.bounds == (1000.0, 1985.0, 1020.0, 2000.0)
    assert grid.to_dict()["transform"] == [0.5, 0, 1000.0, 0, -0.5, 2000.0]


def test_whole_ratio_tolerates_rounding_and_refuses_fractions():
    assert whole_ratio(4.003, 3.998, "ms.tif") == 4
    with pytest.raises(GridMismatchError, match=r"ms\.tif: .*2\.500 x 2\.500, not a whole number"):
        whole_ratio(2.5, 2.5, "ms.tif")


@requires_data
@pytest.mark.parametrize("name", ["landsat8_satellite", "wv3_cristianics"])
def test_output_grid_on_the_pan_lattice_over_the_intersection_or_the_union(name):
    inter, union = _open(name), _open(name, extent="union")
    pan, ms = inter.pan_grid, inter.spec.ms_grid
    for scene in (inter, union):
        out, pan_t = scene.spec.out, pan.transform
        col, row = ~pan_t @ (out.transform.c, out.transform.f)  # whole PAN pixels from its corner
        assert (round(row), round(col)) == scene.spec.pan_offset
        assert abs(col - round(col)) < 1e-6 and abs(row - round(row)) < 1e-6
        assert out.res == pan.res and out.crs == pan.crs
    # intersection: every output pixel centre lies inside both footprints
    xl, xr, yb, yt = _footprint_centres(inter.spec.out)
    for grid in (pan, ms):
        left, bottom, right, top = grid.bounds
        assert left <= xl and xr <= right and bottom <= yb and yt <= top
    # union: the output covers both footprints
    left, bottom, right, top = union.spec.out.bounds
    for grid in (pan, ms):
        g_left, g_bottom, g_right, g_top = grid.bounds
        assert left <= g_left and g_right <= right and bottom <= g_bottom and g_top <= top
    # the coarse grid is the output grid with pixels ratio times larger, from the same corner
    spec = union.spec
    assert spec.coarse.transform == spec.out.transform @ Affine.scale(spec.ratio)
    assert spec.coarse.width == math.ceil(spec.out.width / spec.ratio)
    assert spec.coarse.height == math.ceil(spec.out.height / spec.ratio)


@requires_data
def test_landsat_half_pan_pixel_offset_is_a_quarter_ms_pixel_phase():
    # Landsat's PAN grid is offset by half a PAN pixel from the MS grid: the MS is upsampled from
    # its own grid with a phase of a quarter MS pixel (or three quarters), not warped twice.
    spec = _open("landsat8_satellite").spec
    assert spec.ratio == 2 and spec.ms_offset is None
    _, _, phase_row, phase_col = spec.ms_subpixel
    assert {round(phase_row, 6), round(phase_col, 6)} <= {0.25, 0.75}


# --------------------------------------------------------------------------------------------
# Opening


@requires_data
def test_an_ungeoreferenced_pair_warns_and_aligns_the_upper_left_corners():
    pan, ms = scene_paths("wv2_grip")
    with pytest.warns(NotGeoreferencedWarning, match="no georeferencing"):
        scene = open_pair(pan, ms)
    spec = scene.spec
    assert spec.ratio == 4 and spec.bands == 8 and not spec.georeferenced
    assert (spec.out.width, spec.out.height) == (1280, 1280) and spec.ms_offset == (0, 0)
    assert any("not georeferenced" in note for note in scene.notes)


@requires_data
def test_band_selection_reads_those_ms_bands_in_that_order():
    scene = _open("wv2_grip", bands=[5, 3, 2])
    assert scene.bands == 3 and any("5, 3, 2" in note for note in scene.notes)
    _, _, ms, ms_valid = read_arrays(scene.spec)
    data, _, _ = _read(scene_paths("wv2_grip")[1])
    assert ms_valid.all()
    np.testing.assert_array_equal(ms, data[[4, 2, 1]].astype(np.float32))


@requires_data
def test_per_band_ms_files_read_as_the_stacked_file(tmp_path):
    pan, ms = scene_paths("landsat8_satellite")
    data, _, profile = _read(ms)
    singles = [_write(tmp_path / f"b{i + 1}.tif", data[i : i + 1], profile) for i in range(4)]
    stacked, split = open_pair(pan, ms), open_pair(pan, singles)
    assert ms_files(split.spec) == [str(p.resolve()) for p in singles]
    for a, b in zip(read_arrays(stacked.spec), read_arrays(split.spec), strict=True):
        np.testing.assert_array_equal(a, b)


@requires_data
def test_ms_file_names_survive_the_vrt_xml(tmp_path):
    pan, ms = scene_paths("landsat8_satellite")
    odd = tmp_path / "a&b <c> 'd'"
    odd.mkdir()
    shutil.copy(ms, odd / "ms.tif")
    scene = open_pair(pan, odd / "ms.tif")
    assert ms_files(scene.spec) == [str((odd / "ms.tif").resolve())]
    np.testing.assert_array_equal(read_arrays(scene.spec)[2], read_arrays(open_pair(pan, ms).spec)[2])


@requires_data
def test_nodata_override_applies_to_both_inputs():
    assert _open("landsat8_satellite").spec.ms_nodata == -32768
    spec = _open("landsat8_satellite", nodata="none").spec
    assert spec.pan_nodata is None and spec.ms_nodata is None
    spec = _open("landsat8_satellite", nodata=5).spec
    assert spec.pan_nodata == 5.0 and spec.ms_nodata == 5.0


@requires_data
def test_open_pair_refusals_name_the_file(tmp_path):
    pan, ms = scene_paths("landsat8_satellite")
    with pytest.raises(BadInputError, match="PAN must have one band, it has 4"):
        open_pair(ms, ms)
    with pytest.raises(BadInputError, match="extent must be"):
        open_pair(pan, ms, extent="everything")
    with pytest.raises(BadInputError, match="unknown resampling"):
        open_pair(pan, ms, resampling="lanczos9")
    with pytest.raises(BadInputError, match=r"nothing\.tif: MS file does not exist"):
        open_pair(pan, tmp_path / "nothing.tif")
    with pytest.raises(BadInputError, match=r"ms\.tif: band selection \[5\] outside 1\.\.4"):
        open_pair(pan, ms, bands=[5])
    # the MS moved 10 km east: no overlap
    data, _, profile = _read(ms)
    far = _write(tmp_path / "far.tif", data, profile,
                 transform=Affine.translation(10_000, 0) @ profile["transform"])
    with pytest.raises(GridMismatchError, match=r"far\.tif: its footprint does not overlap pan\.tif"):
        open_pair(pan, far)
    # 37.5 m MS pixels do not pair with the 15 m PAN (ratio 2.5)
    coarse = _write(tmp_path / "coarse.tif", data, profile,
                    transform=profile["transform"] @ Affine.scale(1.25))
    with pytest.raises(GridMismatchError, match="not a whole number"):
        open_pair(pan, coarse)


# --------------------------------------------------------------------------------------------
# Reading


@requires_data
def test_read_arrays_gives_the_files_values_and_masks(tmp_path):
    # wv3_cristianics: the MS corner falls on PAN pixel (row 1, col 2), MS pixels on the coarse
    # grid, nodata 0 in both files; a copy with a nodata hole in each.
    pan_file, pan_nodata, pan_profile = _read(scene_paths("wv3_cristianics")[0])
    ms_file, ms_nodata, ms_profile = _read(scene_paths("wv3_cristianics")[1])
    pan_file[:, 100:110, 200:230] = pan_nodata
    ms_file[:, 50:60, 70:90] = ms_nodata
    pan = _write(tmp_path / "pan.tif", pan_file, pan_profile)
    ms = _write(tmp_path / "ms.tif", ms_file, ms_profile)
    spec = open_pair(pan, ms).spec
    assert spec.pan_offset == (1, 2) and spec.ms_offset == (0, 0)
    pan, pan_valid, ms, ms_valid = read_arrays(spec)
    h, w = spec.out.height, spec.out.width
    expected_pan = pan_file[0, 1 : 1 + h, 2 : 2 + w]
    np.testing.assert_array_equal(pan_valid, expected_pan != pan_nodata)
    np.testing.assert_array_equal(pan[pan_valid], expected_pan[pan_valid])
    assert not pan_valid[99:109, 198:228].any()
    expected_ms = ms_file[:, : spec.coarse.height, : spec.coarse.width]
    np.testing.assert_array_equal(ms_valid, np.all(expected_ms != ms_nodata, axis=0))
    np.testing.assert_array_equal(ms[:, ms_valid], expected_ms[:, ms_valid])
    assert not ms_valid[50:60, 70:90].any() and np.isnan(ms[:, ~ms_valid]).all()


@requires_data
@pytest.mark.parametrize("name, extent", [
    ("wv3_cristianics", "union"),  # MS on its own grid, a sub-pixel phase
    ("wv2_solaris_2", "intersection"),  # 32 % nodata, the MS through GDAL's warper
    ("wv2_grip", "intersection"),  # MS pixels on the coarse grid
])
def test_read_tile_does_not_depend_on_the_window(name, extent):
    scene, _, sample = prepare_scene(*scene_paths(name), extent=extent)
    spec, r, fills = scene.spec, scene.ratio, fill_values(sample)
    height, width = spec.out.height // r * r, spec.out.width // r * r
    whole = read_tile(spec, 0, 0, height, width, fills, want_ms=True)
    assert np.isfinite(whole.lms).all() and np.isfinite(whole.pan).all()
    for row, col, h, w in ((8 * r, 4 * r, 16 * r, 20 * r), (0, 0, 4 * r, 4 * r),
                           (height - 12 * r, width - 8 * r, 12 * r, 8 * r)):
        part = read_tile(spec, row, col, h, w, fills, want_ms=True)
        window = (slice(row, row + h), slice(col, col + w))
        np.testing.assert_array_equal(part.lms, whole.lms[:, window[0], window[1]])
        np.testing.assert_array_equal(part.pan, whole.pan[window])
        np.testing.assert_array_equal(part.valid, whole.valid[window])
        np.testing.assert_array_equal(
            part.ms, whole.ms[:, row // r : (row + h) // r, col // r : (col + w) // r])
    # a window reaching outside the grid: nothing valid there, everything filled
    outside = read_tile(spec, -4 * r, -4 * r, 8 * r, 8 * r, fills)
    assert not outside.valid[: 4 * r].any() and not outside.valid[:, : 4 * r].any()
    assert np.isfinite(outside.lms).all() and np.isfinite(outside.pan).all()


@requires_data
def test_read_tile_refuses_a_window_off_the_coarse_grid():
    scene, _, sample = prepare_scene(*scene_paths("landsat8_satellite"))
    with pytest.raises(ValueError, match="not aligned to the ratio 2"):
        read_tile(scene.spec, 1, 0, 8, 8, fill_values(sample))


@requires_data
def test_reader_for_keeps_one_reader_per_thread():
    spec = _open("landsat8_satellite").spec
    here = reader_for(spec)
    assert reader_for(spec) is here
    other = []
    thread = threading.Thread(target=lambda: other.append(reader_for(spec)))
    thread.start()
    thread.join()
    assert other[0] is not here and other[0].spec == spec


# --------------------------------------------------------------------------------------------
# The scene sample and its statistics


@requires_data
def test_scene_sample_is_bounded_and_averages_the_scene():
    spec = _open("wv2_grip").spec
    sample = scene_sample(spec, max_side=100)
    # 320 coarse pixels a side, decimated by 4 to stay within 100: 16 PAN pixels a sample pixel
    assert sample.factor == 16 and sample.pan.shape == (80, 80) and sample.ms.shape == (8, 80, 80)
    assert sample.valid.all()
    pan_file, _, _ = _read(scene_paths("wv2_grip")[0])
    ms_file, _, _ = _read(scene_paths("wv2_grip")[1])
    block_means = pan_file[0].astype(np.float64).reshape(80, 16, 80, 16).mean(axis=(1, 3))
    np.testing.assert_allclose(sample.pan, block_means, atol=0.5)  # GDAL rounds integer averages
    np.testing.assert_allclose(sample.ms.mean(axis=(1, 2)), ms_file.mean(axis=(1, 2)), rtol=1e-3)
    # small enough already: the sample is the MS itself
    full = scene_sample(spec)
    assert full.factor == 4
    np.testing.assert_array_equal(full.ms, ms_file.astype(np.float32))


@requires_data
@pytest.mark.parametrize("name", ["wv2_solaris_2", "wv3_cristianics", "landsat8_satellite"])
def test_fill_values_are_the_means_of_the_valid_scene(name):
    scene, _, sample = prepare_scene(*scene_paths(name))
    ms_means, pan_mean = fill_values(sample)
    ms_file, nodata, _ = _read(scene_paths(name)[1])
    valid = np.all(ms_file != nodata, axis=0)
    np.testing.assert_allclose(ms_means, ms_file[:, valid].mean(axis=1), rtol=2e-3)
    pan_file, pan_nodata, _ = _read(scene_paths(name)[0])
    pan_valid = pan_file[0] != pan_nodata if pan_nodata is not None else np.ones_like(pan_file[0], bool)
    assert pan_mean == pytest.approx(pan_file[0][pan_valid].mean(), rel=0.02)


@requires_data
@pytest.mark.parametrize("name", ["wv3_cristianics", "landsat8_satellite", "wv2_grip"])
def test_ms_maximum_is_the_largest_valid_value(name):
    ms_file, nodata, _ = _read(scene_paths(name)[1])
    valid = ms_file != nodata if nodata is not None else np.ones(ms_file.shape, bool)
    assert ms_maximum(_open(name).spec, rows_per_read=7) == ms_file[valid].max()


# --------------------------------------------------------------------------------------------
# Preparation


@requires_data
def test_prepare_scene_detects_opens_and_samples():
    scene, detection, sample = prepare_scene(*scene_paths("wv2_solaris_2"))
    assert detection.preset.key == "wv2-4band" and scene.bands == 4 and sample.valid.any()
    scene, detection, sample = prepare_scene(*scene_paths("wv2_solaris_2"), with_sample=False)
    assert sample is None and detection.preset.n_bands == scene.bands == 4


@requires_data
def test_prepare_scene_band_selection_restricts_the_preset():
    pan, ms = scene_paths("wv2_grip")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        scene, detection, _ = prepare_scene(pan, [f"{ms},band=5,3,2"])
        assert scene.bands == 3
        assert detection.preset.band_names == ("red", "green", "blue")
        assert detection.preset.ms_gnyq == (0.35, 0.35, 0.35)
        _, detection, _ = prepare_scene(pan, [ms], bands=[5, 3, 2])
        assert detection.preset.band_names == ("red", "green", "blue")


@requires_data
def test_values_beyond_the_presets_bit_depth_raise_it(tmp_path):
    pan, ms = scene_paths("wv2_solaris_2")
    data, _, profile = _read(ms)
    data[:, 70:80, 70:80] = 3000  # above the 11-bit range of WorldView-2
    hot = _write(tmp_path / "ms.tif", data, profile)
    with pytest.warns(BitDepthWarning, match="values reach 3000, above the 11-bit range"):
        _, detection, _ = prepare_scene(pan, [hot])
    assert detection.bit_depth == 12
    with warnings.catch_warnings():
        warnings.simplefilter("error", BitDepthWarning)
        _, detection, _ = prepare_scene(pan, [hot], bit_depth=11)
    assert detection.bit_depth == 11


@requires_data
def test_prepare_scene_refuses_a_missing_file(tmp_path):
    pan, _ = scene_paths("wv2_solaris_2")
    with pytest.raises(BadInputError, match=r"ms\.tif: file does not exist"):
        prepare_scene(pan, [tmp_path / "ms.tif"])


# --------------------------------------------------------------------------------------------
# Offset MS grids are resampled once (issue 14, item 5): on wv3_cristianics, whose MS corner falls
# inside a PAN pixel, ``-m upsample --extent union`` equals GDAL's cubic warp of the MS onto the
# same grid (before: a warp to the coarse grid and a second cubic pass, p90 3.7 %, p99 15 % apart).


def _upsample(tmp_path, name, *extra):
    pan, ms = scene_paths("wv3_cristianics")
    out = tmp_path / name
    # the MS where its geotransform puts it (what gdalwarp does): no registration correction
    result = runner.invoke(app, ["sharpen", str(pan), str(ms), "-o", str(out), "-m", "upsample",
                                 "--extent", "union", "-q", "--coregister", "off", *extra])
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as ds:
        return ds.read().astype(np.float64), ds.read_masks(1) > 0, ds.transform, ds.crs


@requires_data
def test_offset_grid_is_one_cubic_pass_like_gdalwarp(tmp_path):
    pan, ms = scene_paths("wv3_cristianics")
    scene = open_pair(pan, ms, extent="union")
    assert scene.spec.ms_offset is None and scene.spec.ms_subpixel is not None
    ours, valid, transform, crs = _upsample(tmp_path, "ours.tif")
    with rasterio.open(ms) as src:
        gdal = np.zeros(ours.shape, np.float32)
        reproject(src.read(), gdal, src_transform=src.transform, src_crs=src.crs,
                  src_nodata=src.nodata, dst_transform=transform, dst_crs=crs, dst_nodata=0,
                  resampling=Resampling.cubic)
    # compare where GDAL's 4x4 support (2 MS px = 8 PAN px) holds no nodata pixel
    far = ndimage.binary_erosion(valid & (gdal != 0).all(axis=0), iterations=8)
    assert far.mean() > 0.8
    rel = np.abs(ours - gdal)[:, far] / np.abs(gdal[:, far])
    p90, p99 = np.percentile(rel, [90, 99])
    assert p90 < 1e-5 and p99 < 1e-5, (p90, p99)


@requires_data
def test_offset_grid_result_does_not_depend_on_the_tile_size(tmp_path):
    whole, *_ = _upsample(tmp_path, "a.tif")
    tiled, *_ = _upsample(tmp_path, "b.tif", "--tile-size", "64")
    np.testing.assert_array_equal(whole, tiled)


# --------------------------------------------------------------------------------------------
# The MS's own masks: an alpha band, an internal or .msk dataset mask (issue 25, items 5 and 6)


def _masked_ms(src, path, rows, cols, how: str):
    """A copy of the MS ``src`` at ``path`` whose pixels ``rows`` x ``cols`` are invalid by
    ``how``: "internal" or "msk" (a GDAL dataset mask), or "alpha" (an extra band marked alpha);
    the values there are kept, so only the mask can say they are invalid."""
    from rasterio.enums import ColorInterp

    data, _, profile = _read(src)
    mask = np.full(data.shape[1:], 255, dtype=np.uint8)
    mask[rows, cols] = 0
    if how == "alpha":
        with rasterio.open(path, "w", **{**profile, "count": data.shape[0] + 1}) as ds:
            ds.write(data, list(range(1, data.shape[0] + 1)))
            ds.write(mask.astype(data.dtype), data.shape[0] + 1)
            ds.colorinterp = [ColorInterp.gray] + [ColorInterp.undefined] * (data.shape[0] - 1) \
                + [ColorInterp.alpha]
        return path
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=how == "internal"), \
            rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        ds.write_mask(mask)
    assert (path.with_name(path.name + ".msk").exists()) == (how == "msk")
    return path


@requires_data
@pytest.mark.parametrize("name", ["ge1_grip", "landsat8_satellite"])  # coarse grid; sub-pixel
@pytest.mark.parametrize("how", ["internal", "msk", "alpha"])
def test_the_ms_mask_marks_its_pixels_invalid_everywhere(tmp_path, name, how):
    pan, src = scene_paths(name)
    rows, cols = slice(10, 20), slice(15, 30)
    ms = _masked_ms(src, tmp_path / "ms.tif", rows, cols, how)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        scene, detection, sample = prepare_scene(pan, [ms])
        plain_scene, _, plain = prepare_scene(pan, [src])
    spec = scene.spec
    assert scene.bands == detection.preset.n_bands == _read(src)[0].shape[0]
    assert spec.ms_subpixel is None if name == "ge1_grip" else spec.ms_subpixel is not None
    # the coarse MS (through GDAL's warper for the sub-pixel grid), on the coarse grid
    _, _, values, ms_valid = read_arrays(spec)
    plain_valid = read_arrays(plain_scene.spec)[3]
    assert plain_valid[rows, cols].all() and not ms_valid[11:19, 16:29].any()
    assert np.isnan(values[:, ~ms_valid]).all()
    assert abs(int((plain_valid & ~ms_valid).sum()) - 10 * 15) <= 2 * (10 + 15)
    # a tile's validity on the PAN grid, and the scene sample
    r = spec.ratio
    tile = read_tile(spec, 0, 0, 40 * r, 40 * r, fill_values(sample))
    assert not tile.valid[11 * r:19 * r, 16 * r:29 * r].any() and tile.valid[:8 * r].any()
    invalid = plain.valid & ~sample.valid
    assert sample.factor == r and invalid[11:19, 16:29].all()
    assert abs(int(invalid.sum()) - 10 * 15) <= 2 * (10 + 15)
    assert detection.alpha == (scene.bands + 1 if how == "alpha" else None)


@requires_data
def test_an_alpha_band_is_the_mask_whatever_the_sensor_and_a_nir_marked_alpha_stays_a_band(tmp_path):
    pan, src = scene_paths("ge1_grip")
    ms = _masked_ms(src, tmp_path / "ms.tif", slice(100, 160), slice(50, 120), "alpha")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        for sensor in (None, "ge1"):
            scene, detection, _ = prepare_scene(pan, [ms], sensor=sensor)
            assert detection.preset.name == "GeoEye-1" and detection.alpha == 5
            assert scene.bands == 4 and scene.spec.ms_alpha == (str(ms), 5)
        # ge1_grip's own MS marks its NIR band alpha (RGBA): read as the fourth band, no mask
        with rasterio.open(src) as ds:
            assert ds.colorinterp[3] == rasterio.enums.ColorInterp.alpha
        scene, detection, _ = prepare_scene(pan, [src])
        assert scene.bands == 4 and detection.alpha is None and scene.spec.ms_alpha is None
        assert read_arrays(scene.spec)[3].all()
