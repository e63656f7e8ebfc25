"""End-to-end ``sharpen`` on the real shared scenes: grids, types, COG validity, tiling, geometry,
nodata."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from ssdiff_cli import coreg
from ssdiff_cli.pipeline import SharpenOptions, sharpen
from tests.conftest import SCENES, requires_data, scene_paths

METHODS = ("brovey", "gsa", "mtf-glp")


def run(name_or_pair, out, **opts):
    pan, ms = scene_paths(name_or_pair) if isinstance(name_or_pair, str) else name_or_pair
    opts.setdefault("force", True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sharpen(pan, ms, str(out), SharpenOptions(**opts))


@requires_data
@pytest.mark.parametrize("scene", SCENES)
@pytest.mark.parametrize("method", METHODS)
def test_every_scene_sharpens_with_every_classical_method(scene, method, tmp_path):
    out = tmp_path / "out.tif"
    report = run(scene, out, method=method)
    pan_path, ms_path = scene_paths(scene)
    with rasterio.open(pan_path) as pan, rasterio.open(ms_path) as ms, rasterio.open(out) as res:
        assert res.count == ms.count
        assert res.dtypes[0] == ms.dtypes[0]
        # Band descriptions: the file's, else the sensor preset's names.
        assert all(d and not d.startswith("band ") for d in res.descriptions), res.descriptions
        assert res.crs == pan.crs
        # On the PAN lattice: same pixel size, origin on a PAN pixel corner.
        assert res.transform.a == pytest.approx(pan.transform.a)
        assert res.transform.e == pytest.approx(pan.transform.e)
        col = (res.transform.c - pan.transform.c) / pan.transform.a
        row = (res.transform.f - pan.transform.f) / pan.transform.e
        assert col == pytest.approx(round(col), abs=1e-6)
        assert row == pytest.approx(round(row), abs=1e-6)
        # The intersection of the footprints: at most a couple of PAN pixels cut per side.
        assert pan.width - 4 <= res.width <= pan.width
        assert pan.height - 4 <= res.height <= pan.height
        data = res.read(masked=True)
        assert data.count() > 0.95 * data.size  # valid almost everywhere
        assert res.overviews(1) or max(res.width, res.height) <= 512
    valid, errors, _ = cog_validate(str(out))
    assert valid, errors
    assert report.tiles >= 1 and report.output == str(out)


@requires_data
@pytest.mark.parametrize("method", METHODS)
def test_tile_size_does_not_change_the_result(method, tmp_path):
    small = run("wv2_grip", tmp_path / "small.tif", method=method, tile_size=128)
    large = run("wv2_grip", tmp_path / "large.tif", method=method, tile_size=2048)
    assert small.tiles > 50 and large.tiles == 1
    with rasterio.open(tmp_path / "small.tif") as a, rasterio.open(tmp_path / "large.tif") as b:
        x, y = a.read().astype(np.int32), b.read().astype(np.int32)
    # Float rounding may flip a rounded digital number by one, nothing more.
    assert np.abs(x - y).max() <= 1
    assert np.mean(x != y) < 1e-3


@requires_data
def test_tiles_blend_without_seams_when_overlap_is_asked(tmp_path):
    run("ge1_grip", tmp_path / "a.tif", method="mtf-glp", tile_size=256, overlap=64)
    run("ge1_grip", tmp_path / "b.tif", method="mtf-glp", tile_size=2048)
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert np.abs(a.read().astype(int) - b.read().astype(int)).max() <= 1


def _intensity(path, rows=None, cols=None):
    with rasterio.open(path) as ds:
        return ds.read().astype(np.float64).mean(axis=0)


@requires_data
@pytest.mark.parametrize("scene", ["landsat8_satellite", "wv3_cristianics"])
def test_fused_output_lines_up_with_the_pan(scene, tmp_path):
    out = tmp_path / "out.tif"
    run(scene, out, method="mtf-glp")
    pan_path, _ = scene_paths(scene)
    with rasterio.open(pan_path) as pan, rasterio.open(out) as res:
        col0 = round((res.transform.c - pan.transform.c) / pan.transform.a)
        row0 = round((res.transform.f - pan.transform.f) / pan.transform.e)
        pan_data = pan.read(1).astype(np.float64)[row0 : row0 + res.height, col0 : col0 + res.width]
        fused = res.read().astype(np.float64).mean(axis=0)
    dy, dx, peak = coreg.phase_correlation(pan_data, fused)
    assert peak > 0.2
    assert abs(dy) < 0.5 and abs(dx) < 0.5


@requires_data
def test_landsat_half_pixel_offset_is_honoured(tmp_path):
    # The Landsat PAN grid is offset by half a PAN pixel from the MS grid. The MS brought onto the
    # PAN grid (no fusion) must line up with the PAN; a corner-aligned upsampling would be off by
    # half a pixel in both axes.
    out = tmp_path / "lms.tif"
    run("landsat8_satellite", out, method="upsample")
    pan_path, ms_path = scene_paths("landsat8_satellite")
    with rasterio.open(pan_path) as pan, rasterio.open(out) as res, rasterio.open(ms_path) as ms:
        col0 = round((res.transform.c - pan.transform.c) / pan.transform.a)
        row0 = round((res.transform.f - pan.transform.f) / pan.transform.e)
        pan_data = pan.read(1).astype(np.float64)[row0 : row0 + res.height, col0 : col0 + res.width]
        lms = res.read([1, 2, 3]).astype(np.float64).mean(axis=0)
        naive = np.kron(ms.read([1, 2, 3]).astype(np.float64).mean(axis=0), np.ones((2, 2)))
    dy, dx, _ = coreg.phase_correlation(pan_data, lms)
    ndy, ndx, _ = coreg.phase_correlation(pan_data[:80, :80], naive[:80, :80])
    assert np.hypot(dy, dx) < np.hypot(ndy, ndx)
    assert abs(dy) < 0.5 and abs(dx) < 0.5


def _with_nodata_border(tmp_path, border_ms=6):
    """A copy of wv2_grip whose MS has a nodata (0) frame ``border_ms`` MS px wide, and whose
    PAN has nodata in a 40x40 PAN-px square inside the scene."""
    pan_path, ms_path = scene_paths("wv2_grip")
    with rasterio.open(pan_path) as src:
        pan = src.read()
        profile = src.profile
    pan[:, 600:640, 600:640] = 0
    profile.update(nodata=0)
    new_pan = tmp_path / "pan.tif"
    with rasterio.open(new_pan, "w", **profile) as dst:
        dst.write(pan)
        dst.update_tags(**{"SENSOR": "WV2", "BIT_DEPTH": "11"})
    with rasterio.open(ms_path) as src:
        ms = src.read()
        profile = src.profile
        descriptions = src.descriptions
    b = border_ms
    ms[:, :b, :] = 0
    ms[:, -b:, :] = 0
    ms[:, :, :b] = 0
    ms[:, :, -b:] = 0
    profile.update(nodata=0)
    new_ms = tmp_path / "ms.tif"
    with rasterio.open(new_ms, "w", **profile) as dst:
        dst.write(ms)
        dst.descriptions = descriptions
    return new_pan, new_ms


@requires_data
@pytest.mark.parametrize("method", METHODS)
def test_nodata_border_gives_nodata_exactly_there(method, tmp_path):
    pan, ms = _with_nodata_border(tmp_path)
    run((pan, ms), tmp_path / "out.tif", method=method, tile_size=256)
    run("wv2_grip", tmp_path / "ref.tif", method=method, tile_size=256)
    with rasterio.open(tmp_path / "out.tif") as res, rasterio.open(tmp_path / "ref.tif") as ref:
        assert res.nodata == 0
        data = res.read()
        reference = ref.read().astype(np.float64)
    expected_invalid = np.zeros(data.shape[1:], dtype=bool)
    expected_invalid[:24, :] = expected_invalid[-24:, :] = True
    expected_invalid[:, :24] = expected_invalid[:, -24:] = True
    expected_invalid[600:640, 600:640] = True
    invalid = np.all(data == 0, axis=0)
    assert np.array_equal(invalid, expected_invalid)
    assert not np.any(data[:, ~expected_invalid] == 0)
    # No dark fringe: along the inner edge of the frame the fused values stay close to those of
    # the scene without a frame (edge pixels only lose context, they are not mixed with zeros).
    ring = np.zeros_like(expected_invalid)
    ring[24:28, 24:-24] = True
    ring[-28:-24, 24:-24] = True
    ratio = data[:, ring].astype(np.float64).mean() / reference[:, ring].mean()
    assert 0.97 < ratio < 1.03


@requires_data
def test_union_extent_covers_both_footprints_with_nodata_outside_the_ms(tmp_path):
    inter = run("wv3_cristianics", tmp_path / "i.tif", method="gsa")
    union = run("wv3_cristianics", tmp_path / "u.tif", method="gsa", extent="union")
    pan_path, ms_path = scene_paths("wv3_cristianics")
    with rasterio.open(tmp_path / "u.tif") as u, rasterio.open(ms_path) as ms, \
            rasterio.open(pan_path) as pan:
        left, bottom, right, top = u.bounds
        for other in (ms.bounds, pan.bounds):
            assert left <= other.left + 1e-6 and right >= other.right - 1e-6
            assert bottom <= other.bottom + 1e-6 and top >= other.top - 1e-6
        data = u.read(1)
        # The PAN starts one PAN row above the MS: that row has no MS, so it is nodata.
        assert np.all(data[0] == u.nodata)
    assert union.grid["width"] >= inter.grid["width"] and union.grid["height"] > inter.grid["height"]


@requires_data
def test_dtype_option_changes_the_output_type(tmp_path):
    run("landsat8_satellite", tmp_path / "f.tif", method="gsa", dtype="float32")
    with rasterio.open(tmp_path / "f.tif") as ds:
        assert ds.dtypes[0] == "float32"
        data = ds.read(masked=True)
    assert float(data.min()) >= 0 and data.count() > 0.9 * data.size


def test_blending_does_not_depend_on_the_order_tiles_arrive_in():
    from ssdiff_cli.tiling import Blender, plan_tiles

    plan = plan_tiles(300, 300, tile_size=64, overlap=32, align=4)
    rng = np.random.default_rng(0)
    results = {t.index: rng.random((2, t.height, t.width), dtype=np.float32) * 1000 for t in plan}
    outputs = []
    for order in (list(plan), list(reversed(list(plan))), list(rng.permutation(list(plan)))):
        out = np.zeros((2, 300, 300), np.float32)

        def write(row, col, data, valid, out=out):
            out[:, row : row + data.shape[1], col : col + data.shape[2]] = data

        blender = Blender(plan, 2, write)
        for tile in order:
            blender.add(tile, results[tile.index], np.ones((tile.height, tile.width), bool))
        assert blender.finished()
        outputs.append(out)
    assert np.array_equal(outputs[0], outputs[1]) and np.array_equal(outputs[0], outputs[2])


@requires_data
def test_hole_fill_by_chunks_equals_the_whole_window_fill():
    # fill_invalid only works on the chunks that hold holes; it must give exactly what filling
    # the whole window at once gives (so tiles fill identically wherever they are cut).
    from ssdiff_cli.filters import FILL_ITERATIONS, _fill_window, fill_invalid

    with rasterio.open(scene_paths("wv2_grip")[1]) as ds:
        ms = ds.read().astype(np.float32)
    valid = np.ones(ms.shape[1:], bool)
    valid[:, :9] = False  # a margin, as read outside the scene
    valid[100:140, 200:260] = False  # a hole larger than the fill's reach
    valid[np.random.default_rng(0).random(valid.shape) < 0.002] = False  # scattered nodata
    ms[:, ~valid] = np.nan
    means = np.nanmean(ms, axis=(1, 2))
    chunked = fill_invalid(ms, valid, means)
    whole = _fill_window(ms, valid, means, FILL_ITERATIONS)
    np.testing.assert_array_equal(chunked, whole)
    assert np.isfinite(chunked).all()
    np.testing.assert_array_equal(chunked[:, valid], ms[:, valid])
