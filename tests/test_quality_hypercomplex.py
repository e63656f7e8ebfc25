"""Q2n's hypercomplex algebra: Cayley-Dickson products against the complex numbers and
Hamilton's quaternions, and Q2n of blocks from their statistics in the cases with a known value."""

from __future__ import annotations

import numpy as np
import pytest

from ssdiff_cli.quality.blocks import centre
from ssdiff_cli.quality.hypercomplex import cd_conj, cd_mul, q2n_stats


def test_two_components_multiply_as_complex_numbers():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=2), rng.normal(size=2)
    z = complex(*x) * complex(*y)
    assert cd_mul(x, y) == pytest.approx([z.real, z.imag], rel=1e-15)


def _hamilton(p, q):
    a1, b1, c1, d1 = p
    a2, b2, c2, d2 = q
    return np.array([
        a1 * a2 - b1 * b2 - c1 * c2 - d1 * d2,
        a1 * b2 + b1 * a2 + c1 * d2 - d1 * c2,
        a1 * c2 - b1 * d2 + c1 * a2 + d1 * b2,
        a1 * d2 + b1 * c2 - c1 * b2 + d1 * a2,
    ])


def test_four_components_multiply_as_quaternions():
    rng = np.random.default_rng(1)
    for _ in range(5):
        p, q = rng.normal(size=4), rng.normal(size=4)
        assert cd_mul(p, q) == pytest.approx(_hamilton(p, q), rel=1e-12, abs=1e-14)
    i, j, k = np.eye(4)[1], np.eye(4)[2], np.eye(4)[3]
    assert cd_mul(i, j).tolist() == k.tolist()
    assert cd_mul(j, i).tolist() == (-k).tolist()  # not commutative


def test_conjugate_gives_the_squared_norm():
    x = np.random.default_rng(2).normal(size=8)  # octonion
    prod = cd_mul(x, cd_conj(x))
    assert prod[0] == pytest.approx(float(x @ x), rel=1e-12)
    assert np.abs(prod[1:]).max() < 1e-12


def _stats(r: np.ndarray, f: np.ndarray):
    """Block statistics as the block kernels hand them to q2n_stats (one block, ``(C, M)``;
    :func:`centre` gives constant bands exact zeros)."""
    rc, fc = r[None].astype(np.float64), f[None].astype(np.float64)
    mr, ssr, rconst = centre(rc)
    mf, ssf, _ = centre(fc)
    d = r.shape[1] - 1
    return mr, mf, ssr / d, ssf / d, rc @ np.swapaxes(fc, -1, -2) / d, rconst


@pytest.mark.parametrize("bands", [3, 4, 8])
def test_identical_blocks_score_one(bands):
    r = np.random.default_rng(bands).normal(100, 10, (bands, 64))
    assert q2n_stats(*_stats(r, r.copy()))[0] == pytest.approx(1.0, abs=1e-12)


def test_constant_blocks_score_their_mean_term():
    r = np.full((4, 64), 7.0)
    assert q2n_stats(*_stats(r, r))[0] == 1.0
    # reference constant (c = 1): y' = (7.7 - 7) + 1 = 1.7 in every band, x' = 1
    v = q2n_stats(*_stats(r, 1.1 * r))[0]
    assert v == pytest.approx(2 * 2 * 3.4 / (4 + 4 * 1.7**2))


def test_an_unrelated_block_scores_low():
    rng = np.random.default_rng(3)
    r, f = rng.normal(100, 10, (4, 1024)), rng.normal(100, 10, (4, 1024))
    assert 0.0 <= q2n_stats(*_stats(r, f))[0] < 0.2
