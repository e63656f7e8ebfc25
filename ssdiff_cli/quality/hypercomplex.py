"""Q2n's hypercomplex algebra: Cayley-Dickson products of 2^k-ions, and Q2n of blocks computed
from their statistics (the block kernels of :mod:`ssdiff_cli.quality.blocks` supply them)."""

from __future__ import annotations

import numpy as np


def cd_conj(x: np.ndarray) -> np.ndarray:
    """Conjugate of 2^k-ions stored along axis 0 (every imaginary component negated)."""
    out = -x
    out[0] = x[0]
    return out


def cd_mul(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cayley-Dickson product of 2^k-ions stored along axis 0:
    ``(a, b)(c, d) = (ac - conj(d) b, d a + b conj(c))``."""
    n = x.shape[0]
    if n == 1:
        return x * y
    h = n // 2
    a, b, c, d = x[:h], x[h:], y[:h], y[h:]
    return np.concatenate([cd_mul(a, c) - cd_mul(cd_conj(d), b), cd_mul(d, a) + cd_mul(b, cd_conj(c))])


_STRUCTURE: dict[int, np.ndarray] = {}


def _structure(n: int) -> np.ndarray:
    """Structure constants ``T[k, i, j]`` with ``(x y)_k = sum_ij T[k, i, j] x_i y_j``."""
    if n not in _STRUCTURE:
        eye = np.eye(n)
        t = np.zeros((n, n, n))
        for i in range(n):
            for j in range(n):
                t[:, i, j] = cd_mul(eye[i], eye[j])
        _STRUCTURE[n] = t
    return _STRUCTURE[n]


def _next_pow2(n: int) -> int:
    """The smallest power of two at least ``n`` (1 for ``n = 1``)."""
    return 1 << max(0, (n - 1).bit_length())


def q2n_stats(mr, mf, var_r, var_f, cross, rconst) -> np.ndarray:
    """Q2n (modulus of the hypercomplex UIQI) of blocks from their statistics -> ``(nb,)``.

    ``mr, mf``: band means of the reference and fused blocks ``(nb, C)``; ``var_r, var_f``: their
    unbiased (M - 1) variances; ``cross``: ``cov(R_i, F_j)`` ``(nb, C, C)`` (same normalisation);
    ``rconst``: the reference block's band is constant ``(nb, C)``.

    Each band is normalised by the *reference* block's mean ``a`` and sample std ``c``:
    ``x' = (x - a) / c + 1`` for both images (``c = 1`` for a constant reference block). Bands
    are zero-padded to ``N = 2^k``; a padded band becomes the constant 1 in both images (as in
    the toolbox). With ``x`` the reference and ``y`` the fused 2^k-ion,
    ``q = 2 |m_x| |m_y| / (|m_x|^2 + |m_y|^2) * 2 cov(x, conj y) / (sum var x + sum var y)``
    where ``cov(x, conj y) = E[(x - m_x)(conj y - conj m_y)]`` uses the Cayley-Dickson product and
    the unbiased (M - 1) normalisation; Q2n of the block is ``|q|``. When both blocks are constant
    in every band, ``|q|`` is the mean term alone (1 for identical blocks), never NaN.
    """
    c = mr.shape[-1]
    n = _next_pow2(c)
    lead = mr.shape[:-1]
    std_r = np.sqrt(var_r)
    scale = np.where(rconst | (std_r == 0), 1.0, std_r)
    # normalised statistics
    mx = np.ones(lead + (n,))
    my = np.ones(lead + (n,))
    my[..., :c] = (mf - mr) / scale + 1.0
    vx = var_r / scale**2
    vy = var_f / scale**2
    cov = np.zeros(lead + (n, n))
    cov[..., :c, :c] = cross / (scale[..., :, None] * scale[..., None, :])
    cov[..., 1:] *= -1.0  # covariance with conj(y): flip the sign of y's imaginary components
    t = _structure(n).reshape(n, n * n)
    qv = cov.reshape(lead + (n * n,)) @ t.T  # (x conj y)_k for every block
    nx2 = np.sum(mx * mx, axis=-1)
    ny2 = np.sum(my * my, axis=-1)
    mean_bias = 2.0 * np.sqrt(nx2 * ny2) / (nx2 + ny2)
    t3 = vx.sum(axis=-1) + vy.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mod = np.sqrt(np.sum(qv * qv, axis=-1)) * 2.0 / np.where(t3 > 0, t3, 1.0)
    return np.where(t3 > 0, mod * mean_bias, mean_bias)
