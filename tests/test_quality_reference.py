"""Whole-array definitions of the indices on synthetic images: analytic values, the sliding
UIQI against a window-by-window computation, masks, and the QNR's injectable UIQI; the
toolbox's SCC against the project's on a real fusion."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ssdiff_cli import filters, toolbox_filters
from ssdiff_cli.quality import reference as ref
from ssdiff_cli.quality import wald
from tests.conftest import requires_data, scene_paths


@pytest.fixture(scope="module")
def img():
    rng = np.random.default_rng(0)
    return 300 + rng.normal(0, 20, (4, 64, 96)).cumsum(axis=1)


def test_analytic_pixel_indices(img):
    r = img
    assert ref.sam(2.5 * r, r) < 1e-6  # a global gain keeps every spectral angle
    m2, m1 = (r**2).mean(axis=(1, 2)), r.mean(axis=(1, 2))
    expected = 25 * math.sqrt(float(np.mean(0.01 * m2 / m1**2)))
    assert ref.ergas(1.1 * r, r, 4) == pytest.approx(expected, rel=1e-12)
    assert ref.psnr(r + 3.0, r, 2047).tolist() == pytest.approx([10 * math.log10(2047**2 / 9)] * 4, rel=1e-12)
    assert all(math.isinf(v) for v in ref.psnr(r, r, 2047))
    mask = np.zeros(r.shape[1:], bool)
    assert math.isnan(ref.sam(r, r, mask)) and math.isnan(ref.q2n(r, r, mask=mask))


def _window_uiqi(x, y, b):
    """Mean UIQI over every b x b window (population statistics), window by window."""
    qs = []
    for i in range(x.shape[0] - b + 1):
        for j in range(x.shape[1] - b + 1):
            u, v = x[i : i + b, j : j + b], y[i : i + b, j : j + b]
            mu, mv = u.mean(), v.mean()
            c = ((u - mu) * (v - mv)).mean()
            qs.append(4 * c * mu * mv / ((u.var() + v.var()) * (mu * mu + mv * mv)))
    return float(np.mean(qs))


def test_uiqi_blocks_and_sliding_windows(img):
    x = img[0, :24, :30]
    y = x + np.random.default_rng(1).normal(0, 10, x.shape)
    assert ref.uiqi(x, x, block=8) == pytest.approx(1.0, abs=1e-12)
    assert math.isnan(ref.uiqi(x, y))  # no whole 32 x 32 block
    assert ref.uiqi(x, y, block=8, stride=1) == pytest.approx(_window_uiqi(x, y, 8), rel=1e-9)
    assert ref.uiqi(x, y, block=8, stride=8) == ref.uiqi(x, y, block=8)  # stride = block: blocks
    mask = np.ones(x.shape, bool)
    mask[:8, :8] = False
    assert ref.uiqi(x, y, 8, mask=mask) == pytest.approx(
        np.mean([ref.uiqi(x[i : i + 8, j : j + 8], y[i : i + 8, j : j + 8], 8)
                 for i in (0, 8, 16) for j in (0, 8, 16) if (i, j) != (0, 0)]), rel=1e-12)
    assert ref.q_index(img, img).tolist() == pytest.approx([1.0] * 4, abs=1e-12)


def test_scc_of_identical_images_is_one_and_a_shift_lowers_it(img):
    assert ref.scc(img, img) == pytest.approx(1.0, abs=1e-12)
    assert ref.scc_pearson(img, img) == pytest.approx(1.0, abs=1e-12)
    assert ref.scc(np.roll(img, 3, axis=2), img) < 0.9


def test_full_resolution_definitions():
    rng = np.random.default_rng(2)
    pan = 500 + rng.normal(0, 10, (128, 128)).cumsum(axis=1)
    F = np.stack([pan * g for g in (0.9, 1.0, 1.2)]) + rng.normal(0, 2, (3, 128, 128))
    gains = [0.3, 0.3, 0.3]
    # Khan: lms equal to the MTF low-pass of F gives Q2n = 1, D_lambda = 0
    lms = filters.lowpass(F, gains, 4)
    assert ref.d_lambda_khan(F, lms, 4, gains) == pytest.approx(0.0, abs=1e-12)
    assert ref.pan_lowpass(pan, 4, 0.15).shape == pan.shape
    # Alparone: at ratio 1 with F = MS the inter-band UIQIs are the same
    assert ref.d_lambda_qnr(F, F, 1) == 0.0
    ms = filters.degrade(F, gains, 4)
    off = lms + 5.0
    dl, ds = ref.d_lambda_khan(F, off, 4, gains), ref.d_s(F, pan, off, 4, 0.15)
    assert 0.0 < dl < 1.0 and 0.0 < ds < 1.0
    assert ref.hqnr(F, pan, off, 4, gains, 0.15) == pytest.approx((1 - dl) * (1 - ds), rel=1e-15)
    ds0 = ref.d_s(F, pan, lms, 4, 0.15)
    assert ref.hqnr(F, pan, lms, 4, gains, 0.15) == pytest.approx(1.0 - ds0, rel=1e-12)
    qdl, qds = ref.d_lambda_qnr(F, ms, 4), ref.d_s_qnr(F, pan, ms, 4, 0.15)
    assert ref.qnr(F, pan, ms, 4, 0.15) == pytest.approx((1 - qdl) * (1 - qds), rel=1e-15)
    assert 0.0 < qdl < 1.0 and 0.0 < qds < 1.0


def test_qnr_parts_use_an_injected_uiqi():
    rng = np.random.default_rng(3)
    F, ms, pan = rng.normal(size=(3, 16, 16)), rng.normal(size=(3, 4, 4)), rng.normal(size=(16, 16))
    seen = []

    def fake(x, y):
        seen.append(x.shape)
        return 0.5 if x.shape == (16, 16) else 0.25

    # every pair at both resolutions differs by 0.25
    assert ref.d_lambda_qnr(F, ms, 4, uiqi_fn=fake) == pytest.approx(0.25)
    assert len(seen) == 2 * 3  # three pairs, each at PAN and MS resolution
    assert ref.d_s_qnr(F, pan, ms, 4, 0.15, pan_lr=pan[::4, ::4], uiqi_fn=fake) == pytest.approx(0.25)


@pytest.fixture(scope="module")
def real_fusion():
    """A real fusion and its reference: ge1_grip degraded as the toolbox does, fused by detail
    injection on interp23tap's lms (the toolbox's MTF-GLP, unit gains)."""
    import rasterio

    pan_path, ms_path = scene_paths("ge1_grip")
    with rasterio.open(pan_path) as p, rasterio.open(ms_path) as m:
        pan, ms = p.read(1).astype(np.float64)[:512, :512], m.read().astype(np.float64)[:, :128, :128]
    pair = wald.degrade_pair_toolbox(pan, ms, 4, [0.23] * 4, 0.16)
    lms = toolbox_filters.interp23tap(pair.ms, 4)
    pan_lp = toolbox_filters.interp23tap(toolbox_filters.toolbox_degrade(pair.pan, 0.23, 4), 4)
    return lms + (pair.pan - pan_lp)[None], pair.reference.astype(np.float64)


@requires_data
def test_toolbox_scc_on_a_real_fusion_counts_the_zero_padded_border(real_fusion):
    """``scc_toolbox`` is SCC.m: crop to [2:end-1], zero-padded Sobel of the crop, uncentred
    inner product. On a real fusion it differs from the project's SCC (interior pixels, reflected
    edges) only through the crop's border: restricted to the crop's inside they agree."""
    ndimage = pytest.importorskip("scipy.ndimage")
    f, r = real_fusion
    k = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])

    def grad(img):
        c = img[:, 1:-1, 1:-1]
        return np.stack([np.hypot(ndimage.correlate(b, k, mode="constant"),
                                  ndimage.correlate(b, k.T, mode="constant")) for b in c])

    gf, gr = grad(f), grad(r)
    matlab = float((gf * gr).sum() / math.sqrt((gf**2).sum() * (gr**2).sum()))
    toolbox = ref.scc_toolbox(f, r)
    assert toolbox == pytest.approx(matlab, rel=1e-12)
    ours = ref.scc(f, r)
    assert 0.7 < ours < 1 and 0.7 < toolbox < 1
    assert abs(toolbox - ours) > 1e-4  # the border counts in the toolbox's
    inside = (slice(None), slice(1, -1), slice(1, -1))
    gi, ri = gf[inside], gr[inside]
    same = float((gi * ri).sum() / math.sqrt((gi**2).sum() * (ri**2).sum()))
    # the project's SCC over the pixels whose 3x3 neighbourhood avoids the outer ring: the
    # toolbox crop's inside, where both take the same gradients
    off_ring = np.zeros(f.shape[1:], bool)
    off_ring[1:-1, 1:-1] = True
    assert ref.scc(f, r, mask=off_ring) == pytest.approx(same, rel=1e-9)
    mask = np.ones(f.shape[1:], bool)
    mask[:, :3] = False  # a masked band of columns: the toolbox SCC skips its neighbourhood
    assert ref.scc_toolbox(f, r, mask) != toolbox
