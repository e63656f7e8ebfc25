"""The reduced-resolution scorer on synthetic images: strips against the whole-array
definitions, thread count, the PSNR peak, empty masks and misuse."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ssdiff_cli.quality import reference as ref
from ssdiff_cli.quality.reduced import ReducedScorer, reduced_resolution


@pytest.fixture(scope="module")
def pair():
    """Odd sizes (leftover rows and columns), a hole in the mask, NaN under it."""
    rng = np.random.default_rng(0)
    r = 500 + rng.normal(0, 30, (4, 100, 70)).cumsum(axis=2)
    f = 0.7 * r + 0.3 * np.roll(r, 1, axis=1) + rng.normal(0, 5, r.shape)
    mask = np.ones(r.shape[1:], bool)
    mask[40:47, 5:30] = False
    f[:, ~mask] = np.nan
    return f, r, mask


def test_strips_equal_the_whole_array_definitions(pair):
    f, r, mask = pair
    got = reduced_resolution(f, r, 4, mask=mask, data_range=2047, strip_rows=32)
    assert got["SAM"] == pytest.approx(ref.sam(f, r, mask), rel=1e-12)
    assert got["ERGAS"] == pytest.approx(ref.ergas(f, r, 4, mask), rel=1e-12)
    assert got["Q2n"] == pytest.approx(ref.q2n(f, r, mask=mask), rel=1e-12)
    assert got["Q"] == pytest.approx(ref.q_index(f, r, mask=mask).tolist(), rel=1e-12)
    assert got["Q_mean"] == pytest.approx(float(np.mean(got["Q"])), rel=1e-15)
    assert got["PSNR"] == pytest.approx(ref.psnr(f, r, 2047, mask).tolist(), rel=1e-12)
    assert got["SCC"] == pytest.approx(ref.scc(f, r, mask), rel=1e-12)
    assert got["SCC_pearson"] == pytest.approx(ref.scc_pearson(f, r, mask), rel=1e-12)
    assert 0.5 < got["Q2n"] < 1.0 and got["SAM"] > 0.0


def test_threads_do_not_change_the_result(pair):
    f, r, mask = pair
    one = reduced_resolution(f, r, 4, mask=mask, strip_rows=32, workers=1)
    assert reduced_resolution(f, r, 4, mask=mask, strip_rows=32, workers=3) == one


def test_psnr_peak_defaults_to_the_reference_maximum(pair):
    f, r, mask = pair
    got = reduced_resolution(f, r, 4, mask=mask)
    assert got["PSNR"] == pytest.approx(ref.psnr(f, r, float(r[:, mask].max()), mask).tolist(), rel=1e-12)


def test_no_valid_pixel_gives_nan(pair):
    f, r, _ = pair
    got = reduced_resolution(f, r, 4, mask=np.zeros(r.shape[1:], bool))
    for key in ("SAM", "ERGAS", "Q2n", "SCC", "SCC_pearson", "Q_mean", "PSNR_mean"):
        assert math.isnan(got[key]), key


def test_misuse_is_an_error(pair):
    f, r, _ = pair
    sc = ReducedScorer(4, 4)
    with pytest.raises(ValueError, match=r"expected F and R of shape \(4, s, W\)"):
        sc.update(f[:3, :32], r[:3, :32])
    sc.update(f[:, :20], r[:, :20])  # a short strip: must be the last
    with pytest.raises(ValueError, match="only the last strip"):
        sc.update(f[:, 20:52], r[:, 20:52])
    with pytest.raises(ValueError, match="one shape"):
        reduced_resolution(f, r[:, :-1], 4)
