"""Reduced-resolution (Wald protocol) indices, streamed: :class:`ReducedScorer` accumulates SAM,
ERGAS, Q2n, SCC, Q and PSNR over row strips; :func:`reduced_resolution` runs it over whole
(possibly memory-mapped, integer) arrays, one strip at a time in floating point.
:func:`toolbox_reduced_resolution` scores whole arrays with the pansharpening toolbox's own
conventions instead (border cut, padded Q2n blocks, its SCC), for ``--protocol toolbox``."""

from __future__ import annotations

import math

import numpy as np

from . import reference
from .blocks import block_valid, q_q2n_sums
from .gradients import SccAccumulator
from .masks import as_mask
from .pixels import PIXEL_ROWS, pixel_sums
from .strips import rows_per_strip, worker_pool


class ReducedScorer:
    """Accumulates the reduced-resolution indices of a fused image ``F`` against a reference
    ``R`` over row strips fed top to bottom with :meth:`update`.

    Every strip but the last must have a height that is a multiple of ``block`` (so that blocks
    line up); the last may be shorter, its incomplete block row is then not scored by Q/Q2n.
    SCC needs each pixel's vertical neighbours: the scorer's :class:`SccAccumulator` keeps the
    last two rows of the previous strip (and finishes the image's last row in :meth:`result`), so
    strips need no overlap; the top and bottom image rows are extended by reflection, like the
    left and right columns.

    ``data_range`` is the PSNR peak (e.g. ``2**bit_depth - 1``); ``None`` uses the maximum of the
    reference over the valid pixels of all bands.
    """

    def __init__(self, ratio: int, bands: int, data_range: float | None = None, block: int = 32):
        self.ratio = ratio
        self.bands = bands
        self.data_range = data_range
        self.block = block
        self._n = 0
        self._sam_sum = 0.0
        self._sam_n = 0
        self._sse = np.zeros(bands)
        self._sum_r = np.zeros(bands)
        self._rmax = -np.inf
        self._q_sum = np.zeros(bands)
        self._q2n_sum = 0.0
        self._nblocks = 0
        self._scc = SccAccumulator()
        self._ragged = False

    def update(self, f: np.ndarray, r: np.ndarray, mask: np.ndarray | None = None, pool=None) -> None:
        """Add a strip ``F, R`` ``(C, s, W)`` with an optional ``(s, W)`` validity mask.

        ``pool`` (an executor) spreads the work, a few rows or a group of blocks per job, over
        threads; partial sums are added in a fixed order, so the result does not depend on it."""
        if self._ragged:
            raise ValueError(f"only the last strip may have a height that is not a multiple of {self.block}")
        if f.shape != r.shape or f.ndim != 3 or f.shape[0] != self.bands:
            raise ValueError(f"expected F and R of shape ({self.bands}, s, W), got {f.shape}, {r.shape}")
        s, w = f.shape[1:]
        mask = as_mask(mask, (s, w))
        self._ragged = s % self.block != 0
        f = np.asarray(f)
        r = np.asarray(r)
        run = pool.map if pool is not None else map
        # pixel indices, a few rows at a time (float64 temporaries stay in the cache)
        chunks = [slice(y0, min(s, y0 + PIXEL_ROWS)) for y0 in range(0, s, PIXEL_ROWS)]
        for sums in run(lambda c: pixel_sums(f[:, c], r[:, c], None if mask is None else mask[c]), chunks):
            self._add_pixel_sums(*sums)
        # Q and Q2n on blocks
        bvalid = block_valid(mask, (s, w), self.block)
        if bvalid.any():
            q, q2, nb = q_q2n_sums(f, r, self.block, bvalid, pool)
            self._q_sum += q
            self._q2n_sum += q2
            self._nblocks += nb
        # SCC
        self._scc.update(f, r, mask, pool)

    def _add_pixel_sums(self, n, sam_sum, sam_n, sse, sum_r, rmax) -> None:
        if n == 0:
            return
        self._n += n
        self._sam_sum += sam_sum
        self._sam_n += sam_n
        self._sse += sse
        self._sum_r += sum_r
        self._rmax = max(self._rmax, rmax)

    def result(self) -> dict:
        """``{"SAM", "ERGAS", "Q2n", "SCC", "Q", "PSNR"}``; ``Q`` and ``PSNR`` are per-band lists
        (their band means are ``"Q_mean"`` and ``"PSNR_mean"``). Call once, after the last strip."""
        n = self._n
        sam = math.degrees(self._sam_sum / self._sam_n) if self._sam_n else math.nan
        if n:
            mse = self._sse / n
            mean_r = self._sum_r / n
            with np.errstate(divide="ignore", invalid="ignore"):
                erg = 100.0 / self.ratio * math.sqrt(float(np.mean(mse / mean_r**2)))
                peak = self.data_range if self.data_range is not None else self._rmax
                psnr_b = 10.0 * np.log10(peak**2 / mse)
        else:
            erg, psnr_b = math.nan, np.full(self.bands, math.nan)
        if self._nblocks:
            q = self._q_sum / self._nblocks
            q2n_v = self._q2n_sum / self._nblocks
        else:
            q, q2n_v = np.full(self.bands, math.nan), math.nan
        return {
            "SAM": sam,
            "ERGAS": erg,
            "Q2n": q2n_v,
            "SCC": self._scc.scc(),
            "SCC_pearson": self._scc.scc_pearson(),
            "Q": [float(v) for v in q],
            "Q_mean": float(np.mean(q)),
            "PSNR": [float(v) for v in psnr_b],
            "PSNR_mean": float(np.mean(psnr_b)),
        }


def reduced_resolution(
    F: np.ndarray,
    R: np.ndarray,
    ratio: int,
    mask: np.ndarray | None = None,
    data_range: float | None = None,
    block: int = 32,
    strip_rows: int | None = None,
    workers: int | None = None,
) -> dict:
    """All reduced-resolution indices of ``F`` against the reference ``R`` (``(C, H, W)``,
    any dtype, memory-mapped arrays welcome) run strip by strip through :class:`ReducedScorer`,
    on ``workers`` threads (:func:`worker_pool`; the result does not depend on their number).

    Returns ``{"SAM" (deg, ideal 0), "ERGAS" (ideal 0), "Q2n" (ideal 1), "SCC" (ideal 1),
    "Q" (per band, ideal 1), "Q_mean", "PSNR" (dB per band, ideal inf), "PSNR_mean"}``.
    """
    if F.shape != R.shape or F.ndim != 3:
        raise ValueError(f"F and R must be (C, H, W) of one shape, got {F.shape} and {R.shape}")
    mask = as_mask(mask, F.shape[1:])
    sc = ReducedScorer(ratio, F.shape[0], data_range=data_range, block=block)
    step = rows_per_strip(F.shape[2], 2 * F.shape[0], block, strip_rows)
    with worker_pool(workers) as pool:
        for y in range(0, F.shape[1], step):
            sl = slice(y, y + step)
            sc.update(F[:, sl], R[:, sl], None if mask is None else mask[sl], pool)
    return sc.result()


#: The toolbox's reduced-resolution demo (``Demo_Reduced_Resolution`` / ``indexes_evaluation``):
#: ``flag_cut_bounds = 1, dim_cut = 21`` (both images cut to ``dim_cut:end-dim_cut``, MATLAB's
#: 1-based inclusive range: 20 rows and columns off the top and left, 21 off the bottom and
#: right) and ``Qblocks_size = 32`` (Q2n on 32x32 blocks shifted by 32).
TOOLBOX_CUT = 21
TOOLBOX_BLOCK = 32


def toolbox_cut(arr: np.ndarray, cut: int = TOOLBOX_CUT) -> np.ndarray:
    """The last two axes of ``arr`` cut as the toolbox's ``indexes_evaluation`` does,
    ``arr(dim_cut:end-dim_cut, dim_cut:end-dim_cut)`` (``cut = 0``: unchanged). A view."""
    if cut <= 0:
        return arr
    return arr[..., cut - 1 : arr.shape[-2] - cut, cut - 1 : arr.shape[-1] - cut]


def toolbox_q2n(F: np.ndarray, R: np.ndarray, block: int = TOOLBOX_BLOCK,
                mask: np.ndarray | None = None) -> float:
    """Q2n as the toolbox's ``q2n.m`` computes it: both images extended at the bottom and the
    right by mirror reflection (edge pixels repeated) to whole blocks, cast to ``uint16``
    (rounded, negatives to 0: the toolbox's cast, harmless for integer data, a quantisation for
    small float values), then the hypercomplex UIQI on ``block x block`` blocks
    (:func:`ssdiff_cli.quality.reference.q2n`). A mask (the toolbox has none) is extended the
    same way; blocks holding an invalid pixel are skipped."""
    h, w = F.shape[-2:]
    ph, pw = -h % block, -w % block
    pad = ((0, 0), (0, ph), (0, pw))

    def cast(a):
        a = np.pad(np.asarray(a, np.float64), pad, mode="symmetric")
        return np.floor(np.clip(np.nan_to_num(a), 0.0, 65535.0) + 0.5)

    m = None if mask is None else np.pad(as_mask(mask, (h, w)), pad[1:], mode="symmetric")
    return reference.q2n(cast(F), cast(R), block, m)


def toolbox_reduced_resolution(F: np.ndarray, R: np.ndarray, ratio: int,
                               mask: np.ndarray | None = None, data_range: float | None = None,
                               cut: int = TOOLBOX_CUT, block: int = TOOLBOX_BLOCK) -> dict:
    """The reduced-resolution indices of ``F`` against ``R`` (``(C, H, W)``) with the
    pansharpening toolbox's conventions (reference §9, ``indexes_evaluation.m`` as its
    reduced-resolution demo calls it): both images cut by :func:`toolbox_cut` (``cut``, 21),
    then SAM and ERGAS (the same formulas as :mod:`ssdiff_cli.quality.reference`), Q2n by
    :func:`toolbox_q2n` (``block``, 32), SCC by
    :func:`ssdiff_cli.quality.reference.scc_toolbox`, ``Q_mean`` the band mean of the UIQI on
    sliding 32x32 windows (the toolbox's ``Q.m`` / ``img_qi``). Values are not clipped to the
    dynamic range (``thvalues = 0``). ``PSNR`` (not a toolbox index) is computed on the cut
    images as elsewhere. ``mask`` (the toolbox has none) excludes pixels as in
    :func:`reduced_resolution`.

    Raises ``ValueError`` when the cut leaves less than one block.
    """
    if F.shape != R.shape or F.ndim != 3:
        raise ValueError(f"F and R must be (C, H, W) of one shape, got {F.shape} and {R.shape}")
    f = toolbox_cut(np.asarray(F, np.float64), cut)
    r = toolbox_cut(np.asarray(R, np.float64), cut)
    if min(f.shape[-2:]) < block:
        raise ValueError(f"{R.shape[2]}x{R.shape[1]} px leave {max(0, f.shape[2])}x"
                         f"{max(0, f.shape[1])} after the toolbox's {cut}-px border cut: "
                         f"less than one {block}x{block} block")
    m = None if mask is None else toolbox_cut(as_mask(mask, F.shape[1:]), cut)
    peak = data_range if data_range is not None else float(r[:, m].max() if m is not None else r.max())
    q = reference.q_index(f, r, block, stride=1, mask=m)
    psnr_b = reference.psnr(f, r, peak, m)
    return {
        "SAM": reference.sam(f, r, m),
        "ERGAS": reference.ergas(f, r, ratio, m),
        "Q2n": toolbox_q2n(f, r, block, m),
        "SCC": reference.scc_toolbox(f, r, m),
        "SCC_ssdiff": reference.scc(f, r, m),
        "Q": [float(v) for v in q],
        "Q_mean": float(np.mean(q)),
        "PSNR": [float(v) for v in psnr_b],
        "PSNR_mean": float(np.mean(psnr_b)),
    }
