"""The reduced-resolution scorer on synthetic images: strips against the whole-array
definitions, thread count, the PSNR peak, empty masks and misuse; the toolbox's conventions
(border cut, padded Q2n blocks) as formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ssdiff_cli.quality import reference as ref
from ssdiff_cli.quality.reduced import (
    ReducedScorer,
    reduced_resolution,
    toolbox_cut,
    toolbox_q2n,
    toolbox_reduced_resolution,
)


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


def test_toolbox_cut_is_matlabs_dim_cut_to_end_minus_dim_cut():
    a = np.arange(100 * 90).reshape(1, 100, 90)
    cut = toolbox_cut(a, 21)  # MATLAB a(21:end-21, 21:end-21): 1-based, inclusive
    assert cut.shape == (1, 100 - 41, 90 - 41)
    assert cut[0, 0, 0] == a[0, 20, 20] and cut[0, -1, -1] == a[0, 100 - 22, 90 - 22]
    assert toolbox_cut(a, 0) is a


def test_toolbox_q2n_pads_blocks_by_reflection_and_casts_to_uint16(pair):
    f, r, _ = pair  # 100 x 70: blocks of 32 leave 4 rows and 6 columns over
    f = np.nan_to_num(f)
    got = toolbox_q2n(f, r, 32)
    pad = ((0, 0), (0, 28), (0, 26))  # to 128 x 96, mirrored with the edge pixels repeated
    fp = np.pad(np.floor(np.clip(f, 0, 65535) + 0.5), pad, mode="symmetric")
    rp = np.pad(np.floor(np.clip(r, 0, 65535) + 0.5), pad, mode="symmetric")
    assert got == pytest.approx(ref.q2n(fp, rp, 32), rel=1e-12)
    assert got != pytest.approx(ref.q2n(f, r, 32), rel=1e-6)  # the project's drops the leftovers


def test_toolbox_scores_are_the_definitions_on_the_cut_images(pair):
    f, r, mask = pair
    got = toolbox_reduced_resolution(f, r, 4, mask=mask, cut=5, block=32)
    fc, rc, mc = toolbox_cut(f, 5), toolbox_cut(r, 5), toolbox_cut(mask, 5)
    assert got["ERGAS"] == pytest.approx(ref.ergas(fc, rc, 4, mc), rel=1e-12)
    assert got["SAM"] == pytest.approx(ref.sam(fc, rc, mc), rel=1e-12)
    assert got["SCC"] == pytest.approx(ref.scc_toolbox(fc, rc, mc), rel=1e-12)
    assert got["Q_mean"] == pytest.approx(float(np.mean(ref.q_index(fc, rc, 32, 1, mc))), rel=1e-12)
    assert got["Q2n"] == pytest.approx(toolbox_q2n(fc, rc, 32, mc), rel=1e-12)
    with pytest.raises(ValueError, match="border cut"):
        toolbox_reduced_resolution(f[:, :60, :60], r[:, :60, :60], 4)  # 60 - 41 < 32
