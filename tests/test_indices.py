"""Quality indices: ideal values, analytic cases, masks, strips, and agreement with sewar and
torchmetrics on real imagery."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ssdiff_cli import filters
from ssdiff_cli.quality import indices as qi
from ssdiff_cli.quality import wald
from tests.conftest import DATA, requires_data

WV2_MS_GNYQ = [0.35] * 7 + [0.27]
WV2_PAN_GNYQ = 0.11


def _read(scene: str, name: str) -> np.ndarray:
    import rasterio

    with rasterio.open(DATA / scene / f"{name}.tif") as ds:
        arr = ds.read()
    return arr[0] if name == "pan" else arr


@pytest.fixture(scope="module")
def wv2():
    return _read("wv2_grip", "pan").astype(np.float64), _read("wv2_grip", "ms").astype(np.float64)


@pytest.fixture(scope="module")
def ge1():
    return _read("ge1_grip", "pan").astype(np.float64), _read("ge1_grip", "ms").astype(np.float64)


@pytest.fixture(scope="module")
def fused_pair(wv2):
    """A realistic (F, R) pair at MS resolution: reference R = a 256x256 MS crop, F = a noisy,
    slightly shifted and rescaled version of it."""
    _, ms = wv2
    r = ms[:, :256, :256]
    rng = np.random.default_rng(0)
    f = 0.5 * np.roll(r * 1.02 + rng.normal(0, 10, r.shape), 1, axis=2) + 0.5 * r
    return f, r


def _hwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(a, 0, -1))


# ------------------------------------------------------------------ ideal and analytic values


@requires_data
@pytest.mark.parametrize("scene", ["wv2", "ge1"])
def test_identical_images_score_ideal(scene, request):
    _, ms = request.getfixturevalue(scene)
    r = ms[:, 32:224, 16:240]
    res = qi.reduced_resolution(r, r.copy(), 4, data_range=2047)
    assert res["SAM"] == 0.0
    assert res["ERGAS"] == 0.0
    assert res["Q2n"] == pytest.approx(1.0, abs=1e-12)
    assert res["SCC"] == pytest.approx(1.0, abs=1e-12)
    assert res["Q"] == pytest.approx([1.0] * ms.shape[0], abs=1e-12)
    assert all(math.isinf(v) for v in res["PSNR"])


@requires_data
def test_d_lambda_zero_where_it_must_be(wv2):
    pan, ms = wv2
    f = wald.upsample_ms(ms[:, :64, :64], 4)
    # Khan: lms equal to the MTF low-pass of F gives Q2n = 1, D_lambda = 0
    lms = filters.lowpass(f, WV2_MS_GNYQ, 4)
    assert qi.d_lambda_khan(f, lms, 4, WV2_MS_GNYQ) == pytest.approx(0.0, abs=1e-12)
    # Alparone: at ratio 1 with F = MS the inter-band UIQIs are the same
    assert qi.d_lambda_qnr(ms[:, :64, :64], ms[:, :64, :64], 1) == 0.0


@requires_data
def test_global_scaling_keeps_sam_and_raises_ergas_as_predicted(wv2):
    _, ms = wv2
    r = ms[:, :128, :128]
    f = 1.1 * r
    res = qi.reduced_resolution(f, r, 4)
    assert res["SAM"] < 1e-6
    # MSE_b = 0.01 E[R_b^2]  =>  ERGAS = 25 sqrt(mean_b(0.01 E[R_b^2] / E[R_b]^2))
    m2 = (r**2).mean(axis=(1, 2))
    m1 = r.mean(axis=(1, 2))
    expected = 25.0 * math.sqrt(float(np.mean(0.01 * m2 / m1**2)))
    assert res["ERGAS"] == pytest.approx(expected, rel=1e-12)
    assert res["ERGAS"] > 1.0


@requires_data
def test_one_pixel_shift_lowers_scc(wv2):
    _, ms = wv2
    r = ms[:, :128, :128]
    assert qi.scc(r, r) == pytest.approx(1.0)
    shifted = np.roll(r, 1, axis=2)
    assert qi.scc(shifted, r) < 0.95


def test_constant_blocks_give_no_nan():
    c = np.full((4, 64, 64), 7.0)
    assert qi.q2n(c, c) == 1.0
    assert qi.q_index(c, c).tolist() == [1.0] * 4
    v = qi.q2n(1.1 * c, c)  # constant reference, c = 1: y' = 1.7 -> mean term 2*2*3.4/(4+4*1.7^2)
    assert v == pytest.approx(2 * 2 * 3.4 / (4 + 4 * 1.7**2))
    # one image constant, the other not: UIQI and Q2n are finite (0 covariance)
    rng = np.random.default_rng(0)
    noisy = c + rng.normal(0, 1, c.shape)
    for v in (qi.q2n(noisy, c), qi.q2n(c, noisy), *qi.q_index(noisy, c)):
        assert np.isfinite(v)
    res = qi.reduced_resolution(c, c, 4)
    assert all(np.isfinite(res[k]).all() for k in ("SAM", "ERGAS", "Q2n", "SCC", "Q", "Q_mean"))


@requires_data
def test_masked_pixels_do_not_matter(fused_pair, wv2):
    f, r = fused_pair
    mask = np.ones(f.shape[1:], bool)
    mask[40:90, 100:170] = False
    mask[200, 7] = False
    ref = qi.reduced_resolution(f, r, 4, mask=mask, data_range=2047, strip_rows=64)
    f2, r2 = f.copy(), r.copy()
    f2[:, ~mask] = np.nan
    r2[:, ~mask] = 1e9
    got = qi.reduced_resolution(f2, r2, 4, mask=mask, data_range=2047, strip_rows=64)
    assert got == ref
    assert ref != qi.reduced_resolution(f, r, 4, data_range=2047)  # the mask does something

    pan, ms = wv2
    pan, ms = pan[:256, :256], ms[:, :64, :64]
    lms = wald.upsample_ms(ms, 4)
    fz = lms * (pan / lms.mean(axis=0))[None]
    m = np.ones(pan.shape, bool)
    m[100:150, 30:90] = False
    a = qi.full_resolution(fz, pan, lms, ms, 4, WV2_MS_GNYQ, WV2_PAN_GNYQ, mask=m)
    fz2, lms2, pan2 = fz.copy(), lms.copy(), pan.copy()
    fz2[:, ~m] = 1e6
    lms2[:, ~m] = np.nan
    pan2[~m] = -5e4
    b = qi.full_resolution(fz2, pan2, lms2, ms, 4, WV2_MS_GNYQ, WV2_PAN_GNYQ, mask=m)
    assert a == pytest.approx(b, rel=1e-12)


# ------------------------------------------------------------------ strips = whole arrays


@requires_data
def test_strips_match_whole_and_functions(fused_pair, wv2):
    f, r = fused_pair
    s32 = qi.reduced_resolution(f, r, 4, data_range=2047, strip_rows=32)
    whole = qi.reduced_resolution(f, r, 4, data_range=2047, strip_rows=4096)
    for k, v in whole.items():
        assert s32[k] == pytest.approx(v, rel=1e-12), k
    assert whole["SAM"] == pytest.approx(qi.sam(f, r), rel=1e-12)
    assert whole["ERGAS"] == pytest.approx(qi.ergas(f, r, 4), rel=1e-12)
    assert whole["Q2n"] == pytest.approx(qi.q2n(f, r), rel=1e-12)
    assert whole["Q"] == pytest.approx(qi.q_index(f, r).tolist(), rel=1e-12)
    assert whole["PSNR"] == pytest.approx(qi.psnr(f, r, 2047).tolist(), rel=1e-12)

    pan, ms = wv2
    pan, ms = pan[:512, :384], ms[:, :128, :96]
    lms = wald.upsample_ms(ms, 4)
    fz = lms * (pan / lms.mean(axis=0))[None]
    a = qi.full_resolution(fz, pan, lms, ms, 4, WV2_MS_GNYQ, WV2_PAN_GNYQ, strip_rows=64)
    b = qi.full_resolution(fz, pan, lms, ms, 4, WV2_MS_GNYQ, WV2_PAN_GNYQ, strip_rows=4096)
    # The filters are float32 matrix products whose rounding (1 ulp) depends on where the array
    # is cut, and full_resolution works on float32 strips (this fz is float64): strips, whole
    # arrays and the whole-array functions agree to a few 1e-9, not bit for bit.
    assert a == pytest.approx(b, rel=1e-8)
    args = (4, WV2_MS_GNYQ, WV2_PAN_GNYQ)
    assert b["D_lambda"] == pytest.approx(qi.d_lambda_khan(fz, lms, 4, WV2_MS_GNYQ), rel=1e-8)
    assert b["D_s"] == pytest.approx(qi.d_s(fz, pan, lms, 4, WV2_PAN_GNYQ), rel=1e-8)
    assert b["HQNR"] == pytest.approx(qi.hqnr(fz, pan, lms, *args), rel=1e-8)
    assert b["QNR_D_lambda"] == pytest.approx(qi.d_lambda_qnr(fz, ms, 4), rel=1e-8)
    assert b["QNR_D_s"] == pytest.approx(qi.d_s_qnr(fz, pan, ms, 4, WV2_PAN_GNYQ), rel=1e-8)
    assert b["QNR"] == pytest.approx(qi.qnr(fz, pan, ms, 4, WV2_PAN_GNYQ), rel=1e-8)


# ------------------------------------------------------------------ independent implementations


@requires_data
def test_agrees_with_sewar(fused_pair, ge1):
    sewar = pytest.importorskip("sewar")
    f, r = fused_pair
    # sewar.sam: mean angle in radians, zero-norm pixels excluded (same convention as ours)
    assert qi.sam(f, r) == pytest.approx(math.degrees(sewar.sam(_hwc(r), _hwc(f))), rel=1e-6)
    # sewar.ergas takes r = low / high resolution = 1 / ratio, and prefactor 100 r = 100 / ratio
    assert qi.ergas(f, r, 4) == pytest.approx(sewar.ergas(_hwc(r), _hwc(f), r=0.25), rel=1e-6)
    # sewar.q2n is a port of the toolbox's q2n (reference first, 32x32 non-overlapping blocks);
    # on sizes divisible by 32 its edge padding never happens. 8 bands (Q8), 4 (Q4), 3 (padded).
    assert qi.q2n(f, r) == pytest.approx(sewar.q2n(_hwc(r), _hwc(f), ws=32), rel=1e-6)
    _, ms = ge1
    rg = ms[:, :192, :160]
    fg = rg + np.random.default_rng(1).normal(0, 3, rg.shape)
    for bands in (slice(0, 4), slice(0, 3)):
        ours = qi.q2n(fg[bands], rg[bands])
        theirs = sewar.q2n(_hwc(rg[bands]), _hwc(fg[bands]), ws=32)
        assert ours == pytest.approx(theirs, rel=1e-6)
    # sewar.uqi is not used: it feeds window *means* (uniform_filter) into a formula written for
    # window *sums* (N*sum(xy) - sum(x)sum(y)), so it is not the UIQI except for equal inputs.
    # Per-band UIQI is checked against torchmetrics below.


def _t(a):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


@pytest.fixture
def one_torch_thread():
    """Tiny convolutions: torch's threads only add overhead. Restored afterwards."""
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@requires_data
def test_agrees_with_torchmetrics(fused_pair, one_torch_thread):
    tmi = pytest.importorskip("torchmetrics.functional.image")
    f, r = fused_pair
    f, r = f[:, :96, :128], r[:, :96, :128]
    tf, tr = _t(f)[None], _t(r)[None]
    # SAM: torchmetrics returns radians averaged over all pixels (none has zero norm here)
    sam_tm = math.degrees(tmi.spectral_angle_mapper(tf, tr).item())
    assert qi.sam(f, r) == pytest.approx(sam_tm, rel=1e-6)
    # ERGAS: torchmetrics' `ratio` is high/low resolution (4) and its prefactor 100 / ratio
    ergas_tm = tmi.error_relative_global_dimensionless_synthesis(tf, tr, ratio=4).item()
    assert qi.ergas(f, r, 4) == pytest.approx(ergas_tm, rel=1e-6)
    # UIQI: torchmetrics slides a Gaussian window (odd size) over every position where it fits
    # inside the image. With sigma = 1e8 a 21x21 Gaussian is uniform to 1e-14, which is our
    # sliding (stride 1) 21x21 UIQI; the means over windows must then agree band by band.
    ours = qi.q_index(f, r, block=21, stride=1)
    for b in range(f.shape[0]):
        tm = tmi.universal_image_quality_index(
            tf[:, b : b + 1], tr[:, b : b + 1], kernel_size=(21, 21), sigma=(1e8, 1e8)
        ).item()
        assert ours[b] == pytest.approx(tm, rel=1e-6)
    # PSNR per band with a fixed peak
    ps = qi.psnr(f, r, 2047)
    for b in range(f.shape[0]):
        tm = tmi.peak_signal_noise_ratio(tf[:, b], tr[:, b], data_range=2047.0).item()
        assert ps[b] == pytest.approx(tm, rel=1e-6)


@requires_data
def test_qnr_parts_agree_with_torchmetrics(wv2, one_torch_thread):
    """D_lambda and D_s of Alparone's QNR against torchmetrics. torchmetrics computes each UIQI
    with its Gaussian 11x11 sliding window; we inject that same UIQI (``uiqi_fn``) so that the
    comparison is about the D_lambda / D_s aggregation (pairs, absolute differences, means)."""
    tmi = pytest.importorskip("torchmetrics.functional.image")
    pan, ms = wv2
    pan, ms = pan[:128, :128], ms[:, :32, :32]
    lms = wald.upsample_ms(ms, 4).astype(np.float64)
    fz = lms * (pan / lms.mean(axis=0))[None]

    def tm_uiqi(x, y):
        return tmi.universal_image_quality_index(_t(x)[None, None], _t(y)[None, None]).item()

    # torchmetrics keeps its UIQI matrices in float32: agreement to float32 rounding
    dl_tm = tmi.spectral_distortion_index(_t(fz)[None], _t(ms)[None]).item()
    dl = qi.d_lambda_qnr(fz, ms, 4, uiqi_fn=tm_uiqi)
    assert dl == pytest.approx(dl_tm, rel=1e-6, abs=1e-7)
    pan_lr = filters.degrade(pan, WV2_PAN_GNYQ, 4).astype(np.float64)
    rep = (1, ms.shape[0], 1, 1)
    ds_tm = tmi.spatial_distortion_index(
        _t(fz)[None], _t(ms)[None], _t(pan)[None, None].repeat(*rep), _t(pan_lr)[None, None].repeat(*rep)
    ).item()
    ds = qi.d_s_qnr(fz, pan, ms, 4, WV2_PAN_GNYQ, pan_lr=pan_lr, uiqi_fn=tm_uiqi)
    assert ds == pytest.approx(ds_tm, rel=1e-6, abs=1e-7)


@requires_data
def test_scc_pearson_matches_scipy_sobel(ge1):
    """The Pearson SCC variant against an independent computation: scipy's Sobel (reflect
    edges), magnitudes of all bands pooled, numpy's corrcoef; odd sizes, several strips."""
    from scipy import ndimage

    _, ms = ge1
    r = ms[:, :200, :190]
    f = r + np.random.default_rng(1).normal(0, 3, r.shape)

    def mag(a):
        return np.hypot(ndimage.sobel(a, axis=-1, mode="reflect"), ndimage.sobel(a, axis=-2, mode="reflect"))

    expected = np.corrcoef(
        np.concatenate([mag(b).ravel() for b in f]), np.concatenate([mag(b).ravel() for b in r])
    )[0, 1]
    assert qi.reduced_resolution(f, r, 4, strip_rows=32)["SCC_pearson"] == pytest.approx(
        expected, rel=1e-9)
    assert qi.scc_pearson(f, r) == pytest.approx(expected, rel=1e-9)


def _toolbox_scc(F: np.ndarray, R: np.ndarray) -> float:
    """The pansharpening toolbox's SCC.m, line by line: imfilter (correlation, zero padding) with
    fspecial('sobel') and its transpose, magnitudes over [2:end-1, 2:end-1], uncentred
    normalised inner product pooled over bands."""
    from scipy import ndimage

    sobel = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])

    def mag(band):
        gy = ndimage.correlate(band, sobel, mode="constant", cval=0.0)
        gx = ndimage.correlate(band, sobel.T, mode="constant", cval=0.0)
        return np.sqrt(gy[1:-1, 1:-1] ** 2 + gx[1:-1, 1:-1] ** 2)

    mf = np.stack([mag(b) for b in F])
    mr = np.stack([mag(b) for b in R])
    return float((mf * mr).sum() / np.sqrt((mf**2).sum()) / np.sqrt((mr**2).sum()))


@requires_data
def test_scc_is_the_toolbox_scc_on_a_real_scene(ge1):
    """Issue 14: SCC is the toolbox's definition. On ge1_grip at reduced resolution, the fused
    image being the MS degraded by the GeoEye-1 MTF and brought back by cubic upsampling (the
    evaluate baseline), the streamed scorer (several strips) and :func:`qi.scc` equal a direct
    implementation of SCC.m, up to the float32 gradients the scorer uses for float32 data; the
    Pearson variant is a different number."""
    _, ms = ge1
    r = ms[:, :300, :276]
    f = filters.upsample_cubic(filters.degrade(r, [0.23] * 4, 4), 4)
    expected = _toolbox_scc(f.astype(np.float64), r)
    streamed = qi.reduced_resolution(f, r, 4, strip_rows=32)
    assert streamed["SCC"] == pytest.approx(expected, rel=1e-6)
    assert qi.scc(f, r) == pytest.approx(expected, rel=1e-6)
    assert qi.scc(f.astype(np.float64), r) == pytest.approx(expected, rel=1e-12)
    assert abs(streamed["SCC_pearson"] - streamed["SCC"]) > 0.01
