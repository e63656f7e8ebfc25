"""Validity masks of the quality indices: checking them, and bringing them to what the
full-resolution indices score (eroded by the filters' reach, on the PAN and on the MS grid).

A mask is an ``(H, W)`` bool array, ``True`` where a pixel is valid (see
:mod:`ssdiff_cli.quality.indices` for how each index uses it).
"""

from __future__ import annotations

import numpy as np

from .. import filters


def as_mask(mask, shape) -> np.ndarray | None:
    """``mask`` as a bool array of ``shape`` (``None`` stays ``None``); a mask of another shape
    is a ``ValueError``."""
    if mask is None:
        return None
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != tuple(shape):
        raise ValueError(f"mask shape {mask.shape} does not match image shape {tuple(shape)}")
    return mask


def full_res_erosion(ratio: int) -> int:
    """Erosion radius (PAN pixels) applied to the validity mask for the full-resolution indices:
    the MTF degradation's reach (:func:`ssdiff_cli.filters.support`) plus that of the cubic
    upsampling (2 low-res pixels) and one low-res pixel of margin: 36 at ratio 4. It covers every
    filter used here (MTF low-pass of F, PAN degraded, PAN degraded and upsampled)."""
    return filters.support(ratio) + 3 * ratio


def block_all(mask: np.ndarray | None, ratio: int) -> np.ndarray | None:
    """The mask on the MS grid: a low-res pixel is valid when all its ``ratio x ratio`` PAN
    pixels are (``None`` stays ``None``)."""
    if mask is None:
        return None
    h, w = mask.shape
    return mask.reshape(h // ratio, ratio, w // ratio, ratio).all(axis=(1, 3))


def full_res_masks(mask, ratio):
    """``(PAN-grid mask, MS-grid mask)`` the full-resolution indices score: ``mask`` eroded by
    :func:`full_res_erosion`, and that brought to the MS grid by :func:`block_all`."""
    if mask is None:
        return None, None
    m = filters.erode(np.asarray(mask, bool), full_res_erosion(ratio))
    return m, block_all(m, ratio)

