"""Wald protocol: degradation kernel, pair shapes, masks, and a reduced-resolution sanity check."""

from __future__ import annotations

import numpy as np
import pytest

from ssdiff_cli import filters, toolbox_filters
from ssdiff_cli.quality import indices as qi
from ssdiff_cli.quality import wald
from tests.conftest import DATA, requires_data

WV2_MS_GNYQ = [0.35] * 7 + [0.27]


def _read(scene: str, name: str):
    import rasterio

    with rasterio.open(DATA / scene / f"{name}.tif") as ds:
        arr = ds.read()
        nodata = ds.nodata
    return (arr[0] if name == "pan" else arr), nodata


@pytest.mark.parametrize("gnyq", [0.35, 0.27, 0.23, 0.11, 0.14, 0.3])
@pytest.mark.parametrize("ratio", [2, 4])
def test_degrade_kernel_nyquist_gain_matches_preset(gnyq, ratio):
    # Both the odd-length kernel (lowpass) and the even-length, half-sample one that degrade uses
    # for even ratios. At ratio 4 the sampled Gaussian matches the preset to 1e-9; at ratio 2 it
    # is narrow (sigma about 1 px) and sampling aliases a little of it: agreement to 1e-4.
    tol = 1e-9 if ratio >= 4 else 1e-4
    k = filters.mtf_kernel(gnyq, ratio)
    assert filters.nyquist_gain(k, ratio) == pytest.approx(gnyq, abs=tol)
    even = filters.gaussian_taps(filters.mtf_sigma(gnyq, ratio), filters.MTF_TAPS + 1)
    assert filters.nyquist_gain(even, ratio) == pytest.approx(gnyq, abs=tol)


@requires_data
def test_degrade_pair_shapes_wv2():
    pan, _ = _read("wv2_grip", "pan")
    ms, _ = _read("wv2_grip", "ms")
    pair = wald.degrade_pair(pan, ms, 4, WV2_MS_GNYQ, 0.11)
    assert pair.pan.shape == (320, 320) and pair.pan.dtype == np.float32
    assert pair.ms.shape == (8, 80, 80) and pair.ms.dtype == np.float32
    assert pair.reference.shape == (8, 320, 320)
    assert pair.pan_valid is None and pair.ms_valid is None
    np.testing.assert_array_equal(pair.ms, filters.degrade(ms, WV2_MS_GNYQ, 4))
    lms = wald.upsample_ms(pair.ms, 4)
    assert lms.shape == (8, 320, 320)
    np.testing.assert_array_equal(lms, filters.upsample_cubic(pair.ms, 4))


def test_crop_helpers():
    a = np.zeros((3, 143, 145))
    assert wald.crop_to_multiple(a, 4).shape == (3, 140, 144)
    pan, ms = wald.crop_pair(np.zeros((575, 580)), np.zeros((8, 143, 144)), 4)
    assert pan.shape == (560, 576) and ms.shape == (8, 140, 144)
    with pytest.raises(ValueError):
        wald.crop_pair(np.zeros((100, 100)), np.zeros((8, 30, 30)), 4)


@requires_data
def test_degrade_pair_with_nodata_wv3():
    pan, pnd = _read("wv3_cristianics", "pan")
    ms, mnd = _read("wv3_cristianics", "ms")
    pv, mv = pan != pnd, (ms != mnd).all(axis=0)
    pair = wald.degrade_pair(pan, ms, 4, 0.33, 0.14, pan_valid=pv, ms_valid=mv)
    assert pair.pan.shape == (140, 144) and pair.ms.shape == (8, 35, 36)
    assert pair.pan_valid.shape == (140, 144) and pair.ms_valid.shape == (35, 36)
    assert pair.reference_valid.shape == (140, 144)
    # conservative: every valid low-res pixel sits on a block of valid pixels and at least the
    # erosion radius away from any invalid block
    h = wald.mask_halo_lowres(4)
    assert h == 6
    blocks = pv[:560, :576].reshape(140, 4, 144, 4).all(axis=(1, 3))
    ys, xs = np.nonzero(pair.pan_valid)
    for y, x in zip(ys[::97], xs[::97], strict=True):
        assert blocks[max(0, y - h) : y + h + 1, max(0, x - h) : x + h + 1].all()
    # garbage in the nodata pixels leaves the valid degraded values unchanged
    pan2, ms2 = pan.copy(), ms.copy()
    pan2[~pv] = 1e7
    ms2[:, ~mv] = -1e7
    pair2 = wald.degrade_pair(pan2, ms2, 4, 0.33, 0.14, pan_valid=pv, ms_valid=mv)
    np.testing.assert_allclose(pair2.pan[pair.pan_valid], pair.pan[pair.pan_valid], rtol=1e-5)
    np.testing.assert_allclose(pair2.ms[:, pair.ms_valid], pair.ms[:, pair.ms_valid], rtol=1e-5)


def test_single_invalid_pixel_invalidates_block_plus_halo():
    valid = np.ones((64, 64), bool)
    valid[33, 30] = False  # low-res pixel (8, 7)
    low = wald.degrade_mask(valid, 4)
    h = wald.mask_halo_lowres(4)
    expected = np.ones((16, 16), bool)
    expected[8 - h : 8 + h + 1, 7 - h : 7 + h + 1] = False
    np.testing.assert_array_equal(low, expected)


@requires_data
def test_reduced_resolution_brovey_beats_lms_wv2():
    pan, _ = _read("wv2_grip", "pan")
    ms, _ = _read("wv2_grip", "ms")
    pair = wald.degrade_pair(pan.astype(np.float64), ms.astype(np.float64), 4, WV2_MS_GNYQ, 0.11)
    lms = wald.upsample_ms(pair.ms, 4).astype(np.float64)
    # a tiny Brovey, for this check only: PAN matched to the lms intensity, ratio injection
    inten = lms.mean(axis=0)
    p = (pair.pan - pair.pan.mean()) * inten.std() / pair.pan.std() + inten.mean()
    brovey = lms * (p / inten)[None]
    e_lms = qi.reduced_resolution(lms, pair.reference, 4, data_range=2047)
    e_brv = qi.reduced_resolution(brovey, pair.reference, 4, data_range=2047)
    assert e_brv["ERGAS"] < e_lms["ERGAS"]
    assert e_brv["SCC"] > e_lms["SCC"]
    # Brovey only rescales each spectral vector: its SAM equals the lms's
    assert e_brv["SAM"] == pytest.approx(e_lms["SAM"], rel=1e-9)


# ------------------------------------------------------------------ filters as matrix products


@requires_data
@pytest.mark.parametrize("size", [1, 2, 5, 40, 41, 97, 640])
def test_banded_filters_match_scipy_on_real_imagery(size):
    # correlate_axis must be scipy's correlate1d (mode "mirror") with decimation, up to float32
    # rounding, for every array size including ones shorter than the kernel.
    from scipy import ndimage

    pan, _ = _read("wv2_grip", "pan")
    x = pan[:size, 100 : 100 + size + 3].astype(np.float32)
    odd = filters.mtf_kernel(0.35, 4).astype(np.float32)
    even = filters.gaussian_taps(filters.mtf_sigma(0.11, 4), filters.MTF_TAPS + 1).astype(np.float32)
    for kernel, start, step in ((odd, 0, 1), (even, 2, 4), (odd, 1, 3)):
        for axis in (-2, -1):
            ref = ndimage.correlate1d(x, kernel, axis=axis, mode="mirror")
            ref = ref[start::step] if axis == -2 else ref[:, start::step]
            got = filters.correlate_axis(x, kernel, axis=axis, start=start, step=step)
            assert got.shape == ref.shape
            np.testing.assert_allclose(got, ref, rtol=2e-6, atol=1e-3)
            # a run of outputs, written into a given array, is the same run (the last block of
            # a run may round differently, by an ulp)
            count = max(1, got.shape[axis] // 2)
            want = got[:count] if axis == -2 else got[:, :count]
            part = np.empty(want.shape, np.float32)
            filters.correlate_axis(x, kernel, axis=axis, start=start, step=step, count=count, out=part)
            np.testing.assert_allclose(part, want, rtol=1e-6)


@requires_data
def test_cubic_upsampling_of_a_window_equals_the_cropped_whole():
    # read_tile asks only for the rows and columns it keeps: they must be the same values.
    ms, _ = _read("ge1_grip", "ms")
    x = ms[:, :37, :50].astype(np.float32)
    whole = filters.upsample_cubic(x, 4)
    part = filters.upsample_cubic(x, 4, rows=(8, 101), cols=(4, 200))
    np.testing.assert_array_equal(part, whole[:, 8:101, 4:200])
    with pytest.raises(ValueError):
        filters.upsample_cubic(x, 4, rows=(3, 10))  # not on the coarse grid


@requires_data
@pytest.mark.parametrize("radius", [1, 2, 6, 36])
def test_mask_erosion_matches_scipy_on_a_real_nodata_mask(radius):
    from scipy import ndimage

    pan, nodata = _read("wv3_cristianics", "pan")
    valid = pan != nodata
    valid[100:103, 200:260] = False  # and a thin gap inside the scene
    want = ndimage.binary_erosion(valid, np.ones((2 * radius + 1,) * 2, bool), border_value=1)
    got = filters.erode(valid, radius)
    np.testing.assert_array_equal(got, want)
    assert (~valid).any() and got.sum() < valid.sum()


def test_phased_degradation_moves_the_samples_by_the_phase():
    rng = np.random.default_rng(0)
    for r in (2, 3, 4):
        x = rng.normal(size=(2, 16 * r, 16 * r)).astype(np.float32)
        assert np.array_equal(wald.degrade_phased(x, [0.3, 0.25], r), filters.degrade(x, [0.3, 0.25], r))
        # the toolbox's samples: the MTF low-pass, then every ratio-th pixel from ratio // 2
        t = r // 2 - (r - 1) / 2
        toolbox = filters.lowpass(x, [0.3, 0.25], r)[:, r // 2::r, r // 2::r]
        np.testing.assert_allclose(wald.degrade_phased(x, [0.3, 0.25], r, (t, t)), toolbox, atol=1e-6)
        # on a plane a + b*y + c*x, a sample moved (dy, dx) reads b*dy + c*dx more (interior)
        yy, xx = np.mgrid[: 16 * r, : 16 * r].astype(np.float32)
        plane = 3 + 0.5 * yy + 2.0 * xx
        for d in ((0.3, -0.45), (-1.2, 0.7)):
            moved = wald.degrade_phased(plane, 0.3, r, d) - filters.degrade(plane, 0.3, r)
            np.testing.assert_allclose(moved[4:-4, 4:-4], 0.5 * d[0] + 2.0 * d[1], atol=1e-3)


@requires_data
@pytest.mark.parametrize("scene, ratio", [("ge1_grip", 4), ("l7_fusebox/07", 2)])
def test_toolbox_pair_is_the_fir_then_nearest_decimation(scene, ratio):
    """The toolbox's degradation on a real pair: each band filtered with genMTF's FIR of its own
    gain (edges replicated: scipy's ``mode='nearest'``), the PAN with MTF_PAN's, then the samples
    ``ratio // 2 + ratio * k`` kept; the reference is the cropped MS."""
    from scipy import ndimage

    pan, _ = _read(scene, "pan")
    ms, _ = _read(scene, "ms")
    gains, pan_g = [0.23, 0.25, 0.27, 0.29, 0.31, 0.33][: ms.shape[0]], 0.16
    pair = wald.degrade_pair_toolbox(pan, ms, ratio, gains, pan_g)
    cpan, cms = wald.crop_pair(pan, ms, ratio)
    assert pair.pan.shape == (cpan.shape[0] // ratio, cpan.shape[1] // ratio)
    assert pair.ms.shape == (ms.shape[0], cms.shape[1] // ratio, cms.shape[2] // ratio)
    np.testing.assert_array_equal(pair.reference, cms)
    s = ratio // 2
    k = toolbox_filters.toolbox_mtf_kernel(pan_g, ratio)
    direct = ndimage.correlate(cpan.astype(np.float64), k, mode="nearest")[s::ratio, s::ratio]
    np.testing.assert_allclose(pair.pan, direct, rtol=1e-6, atol=1e-4)
    for b in (0, ms.shape[0] - 1):
        kb = toolbox_filters.toolbox_mtf_kernel(gains[b], ratio)
        direct = ndimage.correlate(cms[b].astype(np.float64), kb, mode="nearest")[s::ratio, s::ratio]
        np.testing.assert_allclose(pair.ms[b], direct, rtol=1e-6, atol=1e-4)
    # not ssdiff's own degradation: another filter and another sampling phase
    assert np.abs(pair.ms - wald.degrade_pair(pan, ms, ratio, gains, pan_g).ms).max() > 1.0


@requires_data
def test_toolbox_pair_masks_keep_nodata_out_of_valid_pixels_wv3():
    pan, pnd = _read("wv3_cristianics", "pan")
    ms, mnd = _read("wv3_cristianics", "ms")
    pan[:, :40] = pnd  # a nodata margin (the scene's own nodata is only a few pixels)
    ms[:, :, :10] = mnd
    pv, mv = pan != pnd, (ms != mnd).all(axis=0)
    pair = wald.degrade_pair_toolbox(pan, ms, 4, 0.33, 0.14, pan_valid=pv, ms_valid=mv)
    assert pair.pan_valid.shape == (140, 144) and not pair.pan_valid.all() and pair.pan_valid.any()
    pan2, ms2 = pan.copy(), ms.copy()
    pan2[~pv] = 1e7
    ms2[:, ~mv] = np.nan  # what a nodata read gives; the FFT filter must not spread it
    pair2 = wald.degrade_pair_toolbox(pan2, ms2, 4, 0.33, 0.14, pan_valid=pv, ms_valid=mv)
    np.testing.assert_allclose(pair2.pan[pair.pan_valid], pair.pan[pair.pan_valid], rtol=1e-5)
    np.testing.assert_allclose(pair2.ms[:, pair.ms_valid], pair.ms[:, pair.ms_valid], rtol=1e-5)
