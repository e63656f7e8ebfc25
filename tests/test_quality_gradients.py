"""Sobel gradients and the streaming SCC: the kernel against scipy, the moments against numpy,
and strips of any height against one strip and the whole-array functions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ssdiff_cli.quality.gradients import (
    Moments,
    SccAccumulator,
    sobel_dtype,
    sobel_rows,
    sobel_zero_padded,
)
from ssdiff_cli.quality.reference import scc, scc_pearson
from ssdiff_cli.quality.strips import worker_pool


def test_sobel_rows_is_scipys_sobel_magnitude():
    ndimage = pytest.importorskip("scipy.ndimage")
    a = np.random.default_rng(0).normal(size=(2, 12, 17))
    def mag(b):
        return np.hypot(ndimage.sobel(b, axis=-1, mode="reflect"), ndimage.sobel(b, axis=-2, mode="reflect"))

    expected = np.stack([mag(b) for b in a])
    assert sobel_rows(a) == pytest.approx(expected[:, 1:-1], rel=1e-12, abs=1e-12)


def test_sobel_zero_padded_is_imfilter_with_fspecial_sobel():
    """MATLAB's ``imfilter(I, fspecial('sobel'))`` (and the transpose): correlation, zero padding."""
    ndimage = pytest.importorskip("scipy.ndimage")
    a = np.random.default_rng(1).normal(5.0, 1.0, size=(2, 9, 13))
    k = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])
    gy = np.stack([ndimage.correlate(b, k, mode="constant") for b in a])
    gx = np.stack([ndimage.correlate(b, k.T, mode="constant") for b in a])
    np.testing.assert_allclose(sobel_zero_padded(a), np.hypot(gx, gy), rtol=1e-13, atol=1e-12)
    # the border sees the zeros: a constant image has gradients there, none inside
    flat = sobel_zero_padded(np.full((1, 6, 6), 10.0))
    assert (flat[0, 1:-1, 1:-1] == 0).all() and (flat[0, 0] > 0).all()


def test_sobel_dtype():
    assert sobel_dtype(np.float32, np.uint16) is np.float32
    assert sobel_dtype(np.int16, np.uint8) is np.float32
    assert sobel_dtype(np.float32, np.float64) is np.float64
    assert sobel_dtype(np.uint32) is np.float64


def test_moments_merge_to_the_whole_samples_statistics():
    rng = np.random.default_rng(1)
    a = rng.normal(3, 2, 1000)
    b = 0.5 * a + rng.normal(0, 1, 1000)
    m = Moments()
    for k in range(0, 1000, 137):
        m.add(a[k : k + 137], b[k : k + 137])
    assert m.n == 1000
    assert m.corr() == pytest.approx(np.corrcoef(a, b)[0, 1], rel=1e-12)
    assert m.cosine() == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b), rel=1e-12)
    assert math.isnan(Moments().corr()) and math.isnan(Moments().cosine())
    const = Moments()
    const.add(np.full(5, 2.0), np.full(5, 2.0))
    assert const.corr() == 1.0


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(2)
    r = rng.normal(100, 20, (3, 75, 41)).cumsum(axis=2)  # some structure for the gradients
    f = r + rng.normal(0, 5, r.shape)
    mask = np.ones(r.shape[1:], bool)
    mask[30:34, 10:20] = False
    f[:, ~mask] = np.nan  # never enters a sum
    return f, r, mask


@pytest.mark.parametrize("heights", [(75,), (32, 32, 11), (1, 2, 3, 69), (40, 35)])
def test_strips_of_any_height_give_the_whole_array_scc(pair, heights):
    f, r, mask = pair
    acc = SccAccumulator()
    y = 0
    for h in heights:
        acc.update(f[:, y : y + h], r[:, y : y + h], mask[y : y + h])
        y += h
    assert acc.scc() == pytest.approx(scc(f, r, mask), rel=1e-12)
    assert acc.scc_pearson() == pytest.approx(scc_pearson(f, r, mask), rel=1e-12)
    assert 0.5 < acc.scc() < 1.0


def test_threads_do_not_change_the_result(pair):
    f, r, mask = pair
    serial, threaded = SccAccumulator(), SccAccumulator()
    serial.update(f, r, mask)
    with worker_pool(2) as pool:
        threaded.update(f, r, mask, pool)
    assert (threaded.scc(), threaded.scc_pearson()) == (serial.scc(), serial.scc_pearson())


def test_finish_is_idempotent_and_the_mask_is_checked(pair):
    f, r, mask = pair
    acc = SccAccumulator()
    acc.update(f, r, mask)
    first = acc.scc()
    acc.finish()
    assert acc.scc() == first
    with pytest.raises(ValueError, match="already finished"):
        acc.update(f, r, mask)
    with pytest.raises(ValueError, match="mask shape"):
        SccAccumulator().update(f, r, mask[:-1])
