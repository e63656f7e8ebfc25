"""The full-resolution (no reference) indices per block of a scene: where, not only how well, a
fused image keeps the MS's spectra and the PAN's detail. :class:`BlockScorer` hands each
``size x size`` block of every strip to its own :class:`~ssdiff_cli.quality.full.FullScorer`;
:func:`full_resolution_blocks` streams any :class:`FullResInputs` into it (the filters and the
mask erosion see the whole scene, so a block's index is the scene's, restricted to the block);
:func:`block_means` and :func:`block_std` give any image's mean and standard deviation per band
and block, to set beside them."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .full import FullScorer, full_resolution_from, full_strip_rows
from .full_inputs import FullResInputs


def block_unit(ratio: int, block: int = 32) -> int:
    """The side (PAN px) every block of :class:`BlockScorer` must be a multiple of: the index's
    own UIQI block, the ratio and the low-res block's footprint (32 at ratios 2 and 4)."""
    return math.lcm(block, ratio, max(1, block // ratio) * ratio)


class BlockScorer:
    """:class:`FullScorer`'s interface (``update``, ``result``) over the ``size x size`` blocks
    of a ``width`` px wide scene: one scorer per block. Strips arrive top to bottom, each a
    multiple of ``size`` rows but the last; the rows and columns of a last partial block are not
    scored. ``size`` must be a multiple of :func:`block_unit`."""

    def __init__(self, ratio: int, bands: int, width: int, size: int, block: int = 32):
        if size <= 0 or size % block_unit(ratio, block):
            raise ValueError(f"block size {size} is not a multiple of {block_unit(ratio, block)} "
                             f"(the {block} px UIQI block and ratio {ratio})")
        self.ratio, self.bands, self.size, self.block = ratio, bands, size, block
        self.nx = width // size
        self._rows: list[list[dict]] = []
        self._scored: list[list[float]] = []
        self._ended = False

    def update(self, F, F_lp, pan, pan_lp, lms, ms, pan_lr, mask=None, mask_lr=None, pool=None) -> None:
        """Add one strip (the arrays of :meth:`FullScorer.update`): score each of its whole
        blocks on its own."""
        if self._ended:
            raise ValueError(f"a strip came after a partial row of blocks: every strip but the "
                             f"last must be whole rows of {self.size} px blocks")
        s, r, b = self.size, self.ratio, self.block
        n = F.shape[1]
        self._ended = n % s != 0
        for k in range(n // s):
            y, ly = slice(k * s, (k + 1) * s), slice(k * s // r, (k + 1) * s // r)
            row, scored = [], []
            for j in range(self.nx):
                x, lx = slice(j * s, (j + 1) * s), slice(j * s // r, (j + 1) * s // r)
                sc = FullScorer(r, self.bands, b)
                m = None if mask is None else mask[y, x]
                sc.update(F[:, y, x], F_lp[:, y, x], pan[y, x], pan_lp[y, x], lms[:, y, x],
                          ms[:, ly, lx], pan_lr[ly, lx], m,
                          None if mask_lr is None else mask_lr[ly, lx], pool=pool)
                row.append(sc.result())
                scored.append(1.0 if m is None else float(
                    m.reshape(s // b, b, s // b, b).all(axis=(1, 3)).mean()))
            self._rows.append(row)
            self._scored.append(scored)

    def result(self) -> dict:
        """``{index: (ny, nx) array}`` for every index of :meth:`FullScorer.result` (NaN where
        no ``block`` px sub-block of a block is valid), and ``"scored"``: the fraction of each
        block's sub-blocks that the index scored (valid after the mask's erosion)."""
        keys = FullScorer(self.ratio, self.bands, self.block).result().keys()
        out = {k: np.array([[cell[k] for cell in row] for row in self._rows],
                           dtype=np.float64).reshape(len(self._rows), self.nx) for k in keys}
        out["scored"] = np.array(self._scored, dtype=np.float64).reshape(len(self._rows), self.nx)
        return out


def full_resolution_blocks(
    inputs: FullResInputs,
    ratio: int,
    ms_gnyq,
    pan_gnyq: float,
    size: int = 64,
    block: int = 32,
    workers: int | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> dict:
    """The full-resolution indices of :func:`~ssdiff_cli.quality.full.full_resolution_from`
    for each ``size x size`` PAN px block of the scene (:meth:`BlockScorer.result`): block
    ``(i, j)`` covers rows ``i*size ..`` and columns ``j*size ..``; memory is bounded by the
    strip, as the scene's indices."""
    c, _, w = inputs.shape
    step = max(size, full_strip_rows(ratio, w, c, block) // size * size)
    sc = BlockScorer(ratio, c, w, size, block)
    return full_resolution_from(inputs, ratio, ms_gnyq, pan_gnyq, block, step, workers, progress,
                                scorer=sc)


def block_means(x: np.ndarray, valid: np.ndarray | None, size: int):
    """The mean of each band of ``x`` ``(C, H, W)`` over the valid pixels of each whole
    ``size x size`` block -> ``(C, H // size, W // size)`` (NaN where a block has none), and
    each block's valid fraction ``(H // size, W // size)``."""
    c, h, w = x.shape
    ny, nx = h // size, w // size
    v = (np.ones((h, w), bool) if valid is None else np.asarray(valid, bool))[: ny * size, : nx * size]
    v = v.reshape(ny, size, nx, size)
    xb = np.asarray(x[:, : ny * size, : nx * size], dtype=np.float64).reshape(c, ny, size, nx, size)
    count = v.sum(axis=(1, 3))
    sums = np.where(v[None], xb, 0.0).sum(axis=(2, 4))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(count > 0, sums / np.maximum(count, 1), np.nan)
    return means, count / float(size * size)


def block_std(x: np.ndarray, valid: np.ndarray | None, size: int) -> np.ndarray:
    """The standard deviation of each band of ``x`` ``(C, H, W)`` over the valid pixels of each
    whole ``size x size`` block -> ``(C, H // size, W // size)`` (NaN where a block has none)."""
    x = np.asarray(x, dtype=np.float64)
    m, _ = block_means(x, valid, size)
    m2, _ = block_means(x * x, valid, size)
    return np.sqrt(np.maximum(m2 - m * m, 0.0))
