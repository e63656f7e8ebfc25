"""Pixel kernels of the pixel indices (SAM, ERGAS, PSNR): spectral angles, and the sums a strip
contributes over its valid pixels."""

from __future__ import annotations

import numpy as np


def spectral_angles(f: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Angles (radians) between spectral vectors ``(C, ...)`` and the usable-pixel flag.

    Uses the stable form ``2 atan2(|u - v|, |u + v|)`` of unit vectors ``u, v`` (exactly 0 for
    identical vectors). Pixels where either vector has zero norm are flagged unusable.
    """
    shape = f.shape[1:]
    f = np.asarray(f, np.float64).reshape(f.shape[0], -1)
    r = np.asarray(r, np.float64).reshape(r.shape[0], -1)
    nf = np.sqrt(np.einsum("cn,cn->n", f, f))
    nr = np.sqrt(np.einsum("cn,cn->n", r, r))
    ok = (nf > 0) & (nr > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = f / nf
        v = r / nr
        d = u - v
        u += v
        ang = 2.0 * np.arctan2(np.sqrt(np.einsum("cn,cn->n", d, d)), np.sqrt(np.einsum("cn,cn->n", u, u)))
    return ang.reshape(shape), ok.reshape(shape)


PIXEL_ROWS = 8  # rows per chunk for the per-pixel work (SAM, ERGAS, PSNR, Sobel)


def pixel_sums(f: np.ndarray, r: np.ndarray, valid: np.ndarray | None):
    """SAM, ERGAS and PSNR sums over the valid pixels of a few rows ``(C, k, W)``:
    ``(n, sam_sum, sam_n, sse, sum_r, rmax)``."""
    f = np.asarray(f, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    if valid is not None and not valid.all():
        f, r = f[:, valid], r[:, valid]  # (C, n)
    else:
        f, r = f.reshape(f.shape[0], -1), r.reshape(r.shape[0], -1)
    n = f.shape[1]
    if n == 0:
        return 0, 0.0, 0, 0.0, 0.0, -np.inf
    ang, ok = spectral_angles(f, r)
    if ok.all():
        sam_sum, sam_n = float(ang.sum()), n
    else:
        sam_sum, sam_n = float(ang[ok].sum()), int(ok.sum())
    d = f - r
    return n, sam_sum, sam_n, np.vecdot(d, d), r.sum(axis=1), float(r.max())
