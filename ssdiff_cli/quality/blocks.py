"""Block kernels of the block indices (UIQI, Q2n and the full-resolution ones).

Block statistics are computed one row of blocks at a time, in groups of blocks (``_GROUP``
pixels per band; a few MB of float64, within the CPU's caches, and few enough numpy calls):
each group is copied once into a contiguous float64 array ``(nb, C, M)`` (``M = block *
block``), centred in place on its block means, and reduced with matrix products (BLAS) over all
its blocks at once. Groups are independent, so the scorers spread them over threads.

The UIQI of two blocks and its degenerate cases are defined in :mod:`ssdiff_cli.quality.indices`.
"""

from __future__ import annotations

import numpy as np

from .hypercomplex import q2n_stats

_EPS = float(np.finfo(np.float64).eps)
_GROUP = 64 * 1024  # 64 blocks of 32 x 32 (measured fastest)


def block_valid(mask: np.ndarray | None, shape: tuple[int, int], b: int) -> np.ndarray:
    """``(H // b, W // b)`` flags of the ``b x b`` blocks of an ``(H, W)`` image whose pixels
    are all valid (every block when ``mask`` is ``None``)."""
    nh, nw = shape[0] // b, shape[1] // b
    if mask is None:
        return np.ones((nh, nw), bool)
    m = np.asarray(mask, bool)[: nh * b, : nw * b]
    return m.reshape(nh, b, nw, b).all(axis=(1, 3))


def row_blocks(parts, b: int, x0: int, x1: int, sel: np.ndarray | None = None) -> np.ndarray:
    """Blocks ``x0 .. x1 - 1`` of one row of blocks, as a contiguous float64 ``(nb, C, b*b)``.

    ``parts`` are ``(c_k, b, W)`` arrays (any real dtype) stacked along the band axis; ``sel``
    (bool, ``x1 - x0``) keeps only some of the blocks."""
    c = sum(p.shape[0] for p in parts)
    nb = x1 - x0
    out = np.empty((nb, c, b, b))
    k = 0
    for p in parts:
        # a contiguous copy first: read in memory order, the rows of a big strided source stream
        # in; the block transpose then gathers from the cache (measured 30 % faster)
        slab = np.ascontiguousarray(p[:, :, x0 * b : x1 * b])
        v = slab.reshape(p.shape[0], b, nb, b).transpose(2, 0, 1, 3)
        np.copyto(out[:, k : k + p.shape[0]], v, casting="unsafe")
        k += p.shape[0]
    out = out.reshape(nb, c, b * b)
    if sel is not None and not sel.all():
        out = out[sel]
    return out


def centre(xb: np.ndarray):
    """Centre blocked data ``(..., M)`` in place on its block means.

    Returns the means, the sums of squared deviations and a constant-block flag; a constant
    block gets exact zeros whatever the rounding of its mean. Only blocks whose sum of squares is
    within the rounding of the mean (``M (4 M eps |m|)^2``) can be constant; just those are
    checked exactly (on the centred values, which are all equal iff the values are)."""
    m = xb.mean(axis=-1)
    xb -= m[..., None]
    ss = np.vecdot(xb, xb)
    n = xb.shape[-1]
    cand = ss <= n * (4.0 * n * _EPS * np.abs(m)) ** 2
    const = np.zeros(m.shape, bool)
    if cand.any():
        sub = xb[cand]
        const[cand] = sub.max(axis=-1) == sub.min(axis=-1)
        xb[const] = 0.0
        ss[const] = 0.0
    return m, ss, const


def _groups(nbx: int, b: int):
    """Column ranges of blocks making up the cache-sized groups of one row of blocks."""
    g = max(1, _GROUP // (b * b))
    return [(x0, min(nbx, x0 + g)) for x0 in range(0, nbx, g)]


def uiqi_moments(mx, my, vx, vy, cxy):
    """UIQI from means, variances and covariance (any broadcastable arrays); the formula and its
    degenerate cases are in :mod:`ssdiff_cli.quality.indices`."""
    msq = mx * mx + my * my
    vsum = vx + vy
    with np.errstate(divide="ignore", invalid="ignore"):
        lum = np.where(msq > 0, 2.0 * mx * my / np.where(msq > 0, msq, 1.0), 1.0)
        con = np.where(vsum > 0, 2.0 * cxy / np.where(vsum > 0, vsum, 1.0), 1.0)
    return lum * con


def gram(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """``a @ b^T`` over the last two axes (``b = a`` when omitted)."""
    return np.matmul(a, np.swapaxes(a if b is None else b, -1, -2))


def uiqi_pairs_stats(m: np.ndarray, xc: np.ndarray) -> np.ndarray:
    """UIQI between every pair of bands of centred blocks ``(nb, C, M)`` -> ``(nb, C, C)``."""
    n = xc.shape[-1]
    cov = gram(xc) / n
    var = np.diagonal(cov, axis1=-2, axis2=-1)
    return uiqi_moments(m[..., :, None], m[..., None, :], var[..., :, None], var[..., None, :], cov)


def block_rows(h: int, w: int, b: int, valid: np.ndarray):
    """``(row, x0, x1, sel)`` for every cache-sized group of blocks holding a valid block."""
    for row in range(h // b):
        for x0, x1 in _groups(w // b, b):
            sel = valid[row, x0:x1]
            if sel.any():
                yield row, x0, x1, sel


def q_q2n_sums(f: np.ndarray, r: np.ndarray, b: int, valid: np.ndarray, pool=None):
    """Sums over the valid blocks of ``(C, H, W)`` images of the per-band UIQI ``Q(F_b, R_b)``
    (``(C,)``) and of Q2n (reference ``R``), and the number of blocks. ``pool`` (an executor)
    spreads the groups of blocks over threads; the sums are added in a fixed order."""
    q = np.zeros(f.shape[0])
    q2 = 0.0
    nblk = 0
    groups = list(block_rows(f.shape[1], f.shape[2], b, valid))
    run = pool.map if pool is not None else map
    for gq, gq2, gn in run(lambda g: _q_q2n_group(f, r, b, *g), groups):
        q += gq
        q2 += gq2
        nblk += gn
    return q, q2, nblk


def _q_q2n_group(f, r, b, row, x0, x1, sel):
    """:func:`q_q2n_sums` over one group of blocks."""
    sl = slice(row * b, row * b + b)
    fb = row_blocks([f[:, sl]], b, x0, x1, sel)
    rb = row_blocks([r[:, sl]], b, x0, x1, sel)
    mf, ssf, _ = centre(fb)
    mr, ssr, rconst = centre(rb)
    n = fb.shape[-1]
    cross = gram(rb, fb)  # sum of R_i F_j deviations  (nb, C, C)
    cfr = np.diagonal(cross, axis1=-2, axis2=-1)
    q = uiqi_moments(mf, mr, ssf / n, ssr / n, cfr / n).sum(axis=0)
    d = max(n - 1, 1)
    q2 = float(q2n_stats(mr, mf, ssr / d, ssf / d, cross / d, rconst).sum())
    return q, q2, fb.shape[0]

