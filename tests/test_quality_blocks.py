"""Block kernels: which blocks are scored, exact centring of constant blocks, the UIQI formula
and its degenerate cases, and the threaded block sums against a per-block computation."""

from __future__ import annotations

import numpy as np
import pytest

from ssdiff_cli.quality.blocks import block_valid, centre, q_q2n_sums, row_blocks, uiqi_moments
from ssdiff_cli.quality.strips import worker_pool


def test_block_valid_drops_the_block_of_an_invalid_pixel_and_the_leftovers():
    mask = np.ones((70, 100), bool)
    mask[40, 75] = False  # block (1, 2)
    mask[69, 99] = False  # in the leftover rows and columns: not a block
    v = block_valid(mask, mask.shape, 32)
    assert v.shape == (2, 3)
    assert v.tolist() == [[True, True, True], [True, True, False]]
    assert block_valid(None, (70, 100), 32).all()


def test_row_blocks_gathers_the_blocks_of_one_row():
    img = np.arange(2 * 8 * 24, dtype=np.uint16).reshape(2, 8, 24)
    got = row_blocks([img[:, :8], img[:1, :8]], 8, 1, 3)  # blocks 1 and 2, bands 0, 1 and 0 again
    assert got.dtype == np.float64 and got.shape == (2, 3, 64)
    assert got[0, 1].tolist() == img[1, :8, 8:16].ravel().tolist()
    assert got[1, 2].tolist() == img[0, :8, 16:24].ravel().tolist()
    sel = np.array([False, True])
    assert row_blocks([img], 8, 1, 3, sel).tolist() == got[1:, :2].tolist()


def test_centre_gives_constant_blocks_exact_zeros():
    rng = np.random.default_rng(0)
    xb = np.stack([np.full(1024, 0.1 * 3), rng.normal(5, 1, 1024)])[None]  # 0.30000000000000004
    x0 = xb.copy()
    m, ss, const = centre(xb)
    assert const.tolist() == [[True, False]]
    assert ss[0, 0] == 0.0 and not xb[0, 0].any()
    assert m[0, 1] == pytest.approx(x0[0, 1].mean(), rel=1e-15)
    assert ss[0, 1] == pytest.approx(((x0[0, 1] - x0[0, 1].mean()) ** 2).sum(), rel=1e-12)


def _uiqi_direct(x, y):
    """Wang & Bovik's Q in one expression (population statistics)."""
    mx, my = x.mean(), y.mean()
    sxy = ((x - mx) * (y - my)).mean()
    return 4 * sxy * mx * my / ((x.var() + y.var()) * (mx * mx + my * my))


def test_uiqi_moments_is_wang_bovik_with_defined_degenerate_cases():
    rng = np.random.default_rng(1)
    x, y = rng.normal(10, 2, 256), rng.normal(10, 2, 256) + 0.5 * rng.normal(10, 2, 256)
    cxy = ((x - x.mean()) * (y - y.mean())).mean()
    assert uiqi_moments(x.mean(), y.mean(), x.var(), y.var(), cxy) == pytest.approx(_uiqi_direct(x, y))
    assert uiqi_moments(0.0, 0.0, 1.0, 1.0, 1.0) == 1.0  # both means 0: luminance term 1
    assert uiqi_moments(3.0, 3.0, 0.0, 0.0, 0.0) == 1.0  # both constant and equal
    assert uiqi_moments(3.0, 3.0, 0.0, 1.0, 0.0) == 0.0  # one constant: no covariance


def test_block_sums_match_a_per_block_computation_and_do_not_depend_on_threads():
    rng = np.random.default_rng(2)
    r = rng.normal(100, 20, (3, 96, 160))
    f = r + rng.normal(0, 10, r.shape)
    valid = np.ones((3, 5), bool)
    valid[1, 2] = False
    q, q2, n = q_q2n_sums(f, r, 32, valid)
    assert n == 14
    expected = np.zeros(3)
    for by, bx in zip(*np.nonzero(valid), strict=True):
        sl = np.s_[by * 32 : by * 32 + 32, bx * 32 : bx * 32 + 32]
        expected += [_uiqi_direct(f[c][sl], r[c][sl]) for c in range(3)]
    assert q == pytest.approx(expected, rel=1e-10)
    with worker_pool(2) as pool:
        qp, q2p, n_p = q_q2n_sums(f, r, 32, valid, pool)
    assert (qp.tolist(), q2p, n_p) == (q.tolist(), q2, n)  # bit for bit
