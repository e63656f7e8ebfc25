"""Whole-array definitions of the indices on synthetic images: analytic values, the sliding
UIQI against a window-by-window computation, masks, and the QNR's injectable UIQI."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ssdiff_cli import filters
from ssdiff_cli.quality import reference as ref


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
