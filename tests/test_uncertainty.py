"""``sharpen --uncertainty``: the expected-error image, on real scenes (landsat_istanbul, public
domain: 3 bands, ratio 2, small enough for the generalist on the CPU)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from ssdiff_cli.cli import app
from ssdiff_cli.errors import EXIT_BAD_INPUT, EXIT_MODEL, EXIT_OUTPUT, EXIT_USAGE, ModelError
from ssdiff_cli.methods.uncertainty import SHIPPED_HEAD, feature_names, load_head
from ssdiff_cli.pipeline import SharpenOptions, sharpen
from ssdiff_cli.quality.reliability import deciles, monotone, rank_correlation
from tests.conftest import requires_data, scene_paths

runner = CliRunner()
SCENE = "landsat_istanbul"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _run(pan, ms, folder, tile_size=None, method="ssdiff", **extra):
    out, err = folder / "out.tif", folder / "error.tif"
    opts = SharpenOptions(method=method, tile_size=tile_size, workers=1,
                          uncertainty=str(err), **extra)
    return sharpen(pan, ms, str(out), opts), out, err


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read().astype(np.float64), ds.read_masks(1) > 0, ds.profile, ds.descriptions


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The scene sharpened with --uncertainty at two tile sizes."""
    pan, ms = scene_paths(SCENE)
    runs = {}
    for tile in (128, 512):
        folder = tmp_path_factory.mktemp(f"tile{tile}")
        quicklook = str(folder / "look.png") if tile == 512 else None
        runs[tile] = _run(pan, ms, folder, tile_size=tile, quicklook=quicklook)
    return runs


@requires_data
def test_the_error_image_is_on_the_output_grid_with_its_mask(clean):
    report, out, err = clean[512]
    image, image_mask, image_profile, _ = _read(out)
    errors, error_mask, profile, names = _read(err)
    for key in ("width", "height", "transform", "crs"):
        assert profile[key] == image_profile[key]
    assert errors.shape == image.shape and profile["dtype"] == "float32"
    assert np.array_equal(error_mask, image_mask)
    assert all(n.endswith("expected error") for n in names)
    values = errors[:, error_mask]
    assert np.isfinite(values).all() and (values > 0).all()
    # in DN of the output: the scene's own error level, not a unit-free score
    assert report.uncertainty["path"] == str(err)
    bands = report.uncertainty["bands"]
    assert [b["band"] for b in bands] == [n.removesuffix(" expected error") for n in names]
    for b, band in zip(bands, values):
        assert b["mean"] == pytest.approx(band.mean(), rel=1e-4)
        assert b["p99"] == pytest.approx(np.percentile(band, 99), rel=0.03)


@requires_data
def test_the_quicklook_shows_the_expected_error_beside_the_result(clean):
    from PIL import Image

    _, out, _ = clean[512]
    with rasterio.open(out) as ds:
        width = ds.width
    png = np.asarray(Image.open(out.parent / "look.png").convert("RGB"))
    assert png.shape[1] == 2 * (width + 4)  # two panels: the result, its expected error
    right = png[18:, width + 4:]
    assert right[..., 0].std() > 10  # a heat map that varies, not an empty panel


@requires_data
def test_tiles_meet_exactly_and_a_seed_repeats(clean):
    # every feature at a pixel depends on pixels within the wrapper's halo only: 128 px tiles
    # (many seams) and 512 px tiles (one tile) give the same error image and the same image
    a, _, _, _ = _read(clean[128][2])
    b, _, _, _ = _read(clean[512][2])
    assert np.array_equal(a, b)
    assert np.array_equal(_read(clean[128][1])[0], _read(clean[512][1])[0])


@requires_data
def test_a_spoilt_block_gets_a_higher_predicted_error(clean, tmp_path):
    # a block of the MS moved by 3 MS px (misregistered content, as a moving object or a
    # parallax error makes): the fusion there is wrong, and the predicted error must say so
    pan, ms = scene_paths(SCENE)
    with rasterio.open(ms) as src:
        profile, data = src.profile, src.read()
    y0, y1, x0, x1 = 60, 124, 80, 160
    spoilt = data.copy()
    spoilt[:, y0:y1, x0:x1] = np.roll(data[:, y0:y1, x0:x1], (3, 3), axis=(1, 2))
    bad_ms = tmp_path / "ms_spoilt.tif"
    with rasterio.open(bad_ms, "w", **profile) as dst:
        dst.write(spoilt)
    _, _, err = _run(pan, bad_ms, tmp_path, tile_size=512, coregister="off")
    errors, mask, _, _ = _read(err)
    before, _, _, _ = _read(clean[512][2])
    r = 2  # the scene's ratio: the block on the PAN grid, less a margin of the filters' reach
    block = (slice(y0 * r + 8, y1 * r - 8), slice(x0 * r + 8, x1 * r - 8))
    inside = errors[:, block[0], block[1]].mean()
    outside = np.ma.masked_array(errors.mean(axis=0), ~mask)
    outside[block] = np.ma.masked
    assert inside > 1.3 * outside.mean()
    assert inside > 1.3 * before[:, block[0], block[1]].mean()


@requires_data
def test_a_classical_method_is_a_usage_error(tmp_path):
    pan, ms = scene_paths(SCENE)
    result = invoke("sharpen", pan, ms, "-o", tmp_path / "o.tif", "-m", "mtf-glp-fs",
                    "--uncertainty", tmp_path / "e.tif")
    assert result.exit_code == EXIT_USAGE
    assert "--uncertainty" in result.output and "classical" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "o.tif").exists() and not (tmp_path / "e.tif").exists()


@requires_data
def test_never_overwrites_without_overwrite_nor_an_input(tmp_path):
    pan, ms = scene_paths(SCENE)
    kept = tmp_path / "e.tif"
    kept.write_bytes(b"keep me")
    result = invoke("sharpen", pan, ms, "-o", tmp_path / "o.tif", "--uncertainty", kept)
    assert result.exit_code == EXIT_OUTPUT and kept.read_bytes() == b"keep me"
    assert not (tmp_path / "o.tif").exists()
    result = invoke("sharpen", pan, ms, "-o", tmp_path / "o.tif", "--uncertainty", ms,
                    "--overwrite")
    assert result.exit_code == EXIT_BAD_INPUT
    result = invoke("sharpen", pan, ms, "-o", tmp_path / "o.tif", "--uncertainty",
                    tmp_path / "o.tif", "--overwrite")
    assert result.exit_code == EXIT_USAGE
    assert not (tmp_path / "o.tif").exists()


def test_a_tampered_head_is_refused(tmp_path):
    doc = json.loads(SHIPPED_HEAD.read_text())
    assert doc["features"] == feature_names()
    load_head(SHIPPED_HEAD)
    doc["weights"][0] = math.nan
    bad = tmp_path / "head.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="not an ssdiff uncertainty head"):
        load_head(bad)
    assert EXIT_MODEL == ModelError.exit_code


def test_reliability_indices_on_known_values():
    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.1, 10, (2, 50, 50))
    actual = sigma * np.abs(rng.normal(size=sigma.shape))
    valid = np.ones((50, 50), bool)
    rows = deciles(sigma, actual, valid)
    assert monotone(rows, "predicted") and len(rows) == 10
    assert rank_correlation(sigma, actual, valid) > 0.5
    assert abs(rank_correlation(rng.uniform(size=sigma.shape), actual, valid)) < 0.05


@requires_data
def test_ksdiff_carries_its_expected_error_across_tiles_exactly(tmp_path):
    # the other model family: a random KSDiff (uncalibrated, so its correction stays), tiles
    # of 128 and 512 px
    import torch

    from tests.test_ksdiff_method import _random_ksdiff, _save

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = str(_save(_random_ksdiff(), tmp_path))
        pan, ms = scene_paths(SCENE)
        runs = []
        for tile in (128, 512):
            folder = tmp_path / str(tile)
            folder.mkdir()
            report, _, err = _run(pan, ms, folder, tile_size=tile, method="ksdiff",
                                  method_options={"model": model, "calibrate": False})
            assert report.method["name"] == "ksdiff"
            runs.append(_read(err))
    finally:
        torch.set_num_threads(threads)
    (a, mask, _, _), (b, _, _, _) = runs
    assert np.array_equal(a, b) and np.isfinite(a[:, mask]).all() and (a[:, mask] > 0).all()
