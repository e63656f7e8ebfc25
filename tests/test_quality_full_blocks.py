"""The full-resolution indices per block: against the scene's indices (one block, and Khan's
D_lambda as a block-weighted mean), strips, sizes, block means; and on a real scene, a block
spoilt on purpose is the one whose indices worsen."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ssdiff_cli.quality.full import full_resolution, full_resolution_from
from ssdiff_cli.quality.full_blocks import (
    BlockScorer,
    block_means,
    block_std,
    block_unit,
    full_resolution_blocks,
)
from ssdiff_cli.quality.full_inputs import ArrayInputs
from tests.conftest import detail_injected_scene, requires_data, scene_paths

GAINS = [0.3, 0.3, 0.28, 0.25]
PAN_GAIN = 0.15
KEYS = ("D_lambda", "D_s", "HQNR", "QNR_D_lambda", "QNR_D_s", "QNR")


@pytest.fixture(scope="module")
def scene():
    """conftest's detail-injected synthetic scene (320 x 256 PAN px, 4 bands, ratio 4)."""
    return detail_injected_scene(GAINS)


def test_one_block_over_the_scene_is_the_scenes_indices(scene):
    F, pan, lms, ms = (*(a[..., :256, :] for a in scene[:3]), scene[3][:, :64])
    whole = full_resolution(F, pan, lms, ms, 4, GAINS, PAN_GAIN)
    got = full_resolution_blocks(ArrayInputs(F, pan, lms, ms, 4), 4, GAINS, PAN_GAIN, size=256)
    assert got["HQNR"].shape == (1, 1) and got["scored"][0, 0] == 1.0
    for k in KEYS:
        assert got[k][0, 0] == pytest.approx(whole[k], rel=1e-12, abs=1e-12)


def test_khans_d_lambda_is_the_block_weighted_mean_and_strips_do_not_matter(scene):
    F, pan, lms, ms = scene
    mask = np.ones(pan.shape, bool)
    mask[10:70, 150:200] = False  # eroded by 36 px: a few blocks lose some or all sub-blocks
    whole = full_resolution(F, pan, lms, ms, 4, GAINS, PAN_GAIN, mask=mask)
    got = full_resolution_blocks(ArrayInputs(F, pan, lms, ms, 4, mask), 4, GAINS, PAN_GAIN, size=64)
    assert got["D_lambda"].shape == (5, 4)
    assert 0.0 in got["scored"] and 0.0 < got["scored"].min(initial=1, where=got["scored"] > 0) < 1.0
    n = got["scored"] * 4  # sub-blocks of 32 px scored per block
    ok = n > 0
    assert np.isnan(got["D_lambda"][~ok]).all() and np.isfinite(got["D_lambda"][ok]).all()
    weighted = (got["D_lambda"][ok] * n[ok]).sum() / n[ok].sum()
    assert weighted == pytest.approx(whole["D_lambda"], rel=1e-10)
    # D_s takes the mean over bands of a difference of sums: not the blocks' mean, only close
    assert np.nanmean(got["D_s"]) != pytest.approx(whole["D_s"], rel=1e-6)
    strips = full_resolution_from(ArrayInputs(F, pan, lms, ms, 4, mask), 4, GAINS, PAN_GAIN,
                                  strip_rows=128, scorer=BlockScorer(4, 4, 256, 64))
    # float32 filters cut at other rows round differently: a block's index moves by ~1e-7
    for k in KEYS + ("scored",):
        np.testing.assert_allclose(strips[k], got[k], rtol=1e-6, atol=1e-9)


def test_block_sizes_and_strips_must_align(scene):
    assert block_unit(4) == 32 and block_unit(2) == 32 and block_unit(3) == 480
    with pytest.raises(ValueError, match="not a multiple of 32"):
        BlockScorer(4, 4, 256, 48)
    with pytest.raises(ValueError, match="partial row of blocks"):
        full_resolution_from(ArrayInputs(*scene, 4), 4, GAINS, PAN_GAIN, strip_rows=96,
                             scorer=BlockScorer(4, 4, 256, 64))


def test_block_means_and_std_on_known_values():
    rng = np.random.default_rng(1)
    x = rng.normal(5, 2, (2, 9, 13))
    valid = rng.random((9, 13)) > 0.3
    valid[4:8, 8:12] = False  # block (1, 2) of 4 px has no valid pixel
    means, frac = block_means(x, valid, 4)
    std = block_std(x, valid, 4)
    assert means.shape == std.shape == (2, 2, 3) and frac.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            v = valid[4 * i : 4 * i + 4, 4 * j : 4 * j + 4]
            assert frac[i, j] == v.mean()
            for b in range(2):
                blk = x[b, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4][v]
                if blk.size:
                    assert means[b, i, j] == pytest.approx(blk.mean(), rel=1e-12)
                    assert std[b, i, j] == pytest.approx(blk.std(), rel=1e-9, abs=1e-12)
                else:
                    assert np.isnan(means[b, i, j]) and np.isnan(std[b, i, j])
    assert block_means(x, None, 4)[1].min() == 1.0


@requires_data
def test_a_block_spoilt_on_purpose_is_the_one_that_worsens(tmp_path):
    """wv3_cristianics fused by MTF-GLP through ``sharpen``, read as ``evaluate`` reads it; a copy
    has one 64 px block shifted by 3 PAN px against the PAN: that block's D_s and 1 - HQNR rise
    tenfold, and blocks out of the filters' reach do not change at all."""
    import rasterio

    from ssdiff_cli.evaluate import FusedSceneInputs, _registered
    from ssdiff_cli.pipeline import SharpenOptions, sharpen
    from ssdiff_cli.scene import fill_values

    pan, ms = scene_paths("wv3_cristianics")
    out = tmp_path / "fused.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sharpen(pan, ms, str(out), SharpenOptions(method="mtf-glp", dtype="float32", force=True,
                                                   workers=1))
        sc, det, sample, _ = _registered(pan, [ms], None, None)
    fills = fill_values(sample)
    spoilt = tmp_path / "spoilt.tif"
    with rasterio.open(out) as ds:
        profile, data = ds.profile, ds.read()
    y, x = slice(128, 192), slice(192, 256)  # block (2, 3)
    data[:, y, x] = data[:, 131:195, 195:259]
    with rasterio.open(spoilt, "w", **profile) as dst:
        dst.write(data)

    def grid(path):
        inputs = FusedSceneInputs(path, sc, fills)
        try:
            return full_resolution_blocks(inputs, sc.ratio, det.preset.ms_gnyq, det.preset.pan_gnyq,
                                          size=64, workers=1)
        finally:
            inputs.close()

    a, b = grid(out), grid(spoilt)
    assert a["HQNR"].shape == (572 // 64, 576 // 64)
    assert b["D_s"][2, 3] > 5 * a["D_s"][2, 3]  # measured 0.022 -> 0.220
    assert 1 - b["HQNR"][2, 3] > 5 * (1 - a["HQNR"][2, 3])  # 0.033 -> 0.385
    far = np.ones(a["HQNR"].shape, bool)
    far[1:4, 2:5] = False
    for k in KEYS:
        np.testing.assert_array_equal(a[k][far], b[k][far])
