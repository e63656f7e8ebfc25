"""Full-resolution (no reference) indices, streamed: :class:`FullScorer` accumulates Khan's
D_lambda, D_s, HQNR and Alparone's QNR over row strips; :func:`full_resolution_from` feeds it
from any :class:`~ssdiff_cli.quality.full_inputs.FullResInputs` strip by strip, filtering each
strip with its halo, and :func:`full_resolution` does so over whole arrays."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .. import filters
from .blocks import block_rows, block_valid, centre, gram, row_blocks, uiqi_moments, uiqi_pairs_stats
from .full_inputs import ArrayInputs, FullResInputs, FullResRows
from .hypercomplex import q2n_stats
from .masks import block_all, full_res_erosion
from .strips import prefetched, rows_per_strip, worker_pool


def _full_hr_sums(F, F_lp, pan, pan_lp, lms, b, row, x0, x1, sel):
    """PAN-resolution sums of :class:`FullScorer` over one group of blocks."""
    c = F.shape[0]
    sl = slice(row * b, row * b + b)
    # [F; PAN] and [lms; F_lp; PAN_LP] blocks, centred on their block means
    fb = row_blocks([F[:, sl], pan[None, sl]], b, x0, x1, sel)
    rb = row_blocks([lms[:, sl], F_lp[:, sl], pan_lp[None, sl]], b, x0, x1, sel)
    mf, ssf, _ = centre(fb)
    mr, ssr, rconst = centre(rb)
    n = fb.shape[-1]
    d = max(n - 1, 1)
    gf = gram(fb) / n  # F and PAN covariances (nb, C + 1, C + 1)
    gr = gram(rb[:, :c], rb[:, c:])  # lms against F_lp and PAN_LP, sums (nb, C, C + 1)
    # Khan: Q2n(F_lp, reference lms)
    lp = slice(c, 2 * c)
    khan = float(q2n_stats(mr[:, :c], mr[:, lp], ssr[:, :c] / d, ssr[:, lp] / d, gr[:, :, :c] / d,
                            rconst[:, :c]).sum())
    # UIQI(F_b, PAN), UIQI(lms_b, PAN_LP) and the UIQI between the bands of F
    q_f_pan = uiqi_moments(mf[:, :c], mf[:, c:], ssf[:, :c] / n, ssf[:, c:] / n, gf[:, :c, c]).sum(axis=0)
    q_lms = uiqi_moments(mr[:, :c], mr[:, 2 * c :], ssr[:, :c] / n, ssr[:, 2 * c :] / n,
                          gr[:, :, c] / n).sum(axis=0)
    var = ssf[:, :c] / n
    pairs_f = uiqi_moments(mf[:, :c, None], mf[:, None, :c], var[:, :, None], var[:, None, :],
                            gf[:, :c, :c]).sum(axis=0)
    return "hr", (khan, q_f_pan, q_lms, pairs_f, int(fb.shape[0]))


def _full_lr_sums(ms, pan_lr, lb, row, x0, x1, sel):
    """MS-resolution sums of :class:`FullScorer` over one group of blocks."""
    c = ms.shape[0]
    sl = slice(row * lb, row * lb + lb)
    xb = row_blocks([ms[:, sl], pan_lr[None, sl]], lb, x0, x1, sel)
    m, ss, _ = centre(xb)
    n = xb.shape[-1]
    mc = xb[:, :c]
    pairs_ms = uiqi_pairs_stats(m[:, :c], mc).sum(axis=0)
    cmp_ = gram(mc, xb[:, c:]).reshape(-1, c) / n
    q_ms = uiqi_moments(m[:, :c], m[:, c:], ss[:, :c] / n, ss[:, c:] / n, cmp_).sum(axis=0)
    return "lr", (pairs_ms, q_ms, int(xb.shape[0]))


class FullScorer:
    """Accumulates the full-resolution (no reference) indices over row strips.

    The caller supplies, for each strip (top to bottom; every strip but the last a multiple of
    ``block`` PAN rows and of ``ratio``): the fused image ``F`` ``(C, s, W)``, its MTF low-pass
    ``F_lp``, the PAN ``(s, W)``, the PAN degraded and re-upsampled ``pan_lp``, the ``lms``
    ``(C, s, W)``, the low-res MS ``(C, s/r, W/r)``, the PAN degraded to MS size ``pan_lr``
    ``(s/r, W/r)``, and validity masks on both grids. Filtering needs a halo around each strip;
    :func:`full_resolution` does it (halo of :func:`full_res_erosion` rows rounded up), so that
    strip results equal whole-array results. PAN-resolution UIQIs use ``block`` (32) blocks,
    MS-resolution ones ``block // ratio`` (8 at ratio 4).
    """

    def __init__(self, ratio: int, bands: int, block: int = 32):
        self.ratio, self.bands, self.block = ratio, bands, block
        self.lblock = max(1, block // ratio)
        self._nh = 0
        self._nl = 0
        self._khan = 0.0
        self._q_f_pan = np.zeros(bands)
        self._q_lms_panlp = np.zeros(bands)
        self._pairs_f = np.zeros((bands, bands))
        self._pairs_ms = np.zeros((bands, bands))
        self._q_ms_panlr = np.zeros(bands)

    def update(self, F, F_lp, pan, pan_lp, lms, ms, pan_lr, mask=None, mask_lr=None, pool=None) -> None:
        """Add one strip (see the class docstring for the arrays). ``pool`` (an executor) spreads
        the strip's groups of blocks over threads; sums are added in a fixed order, so the
        result does not depend on it."""
        b, lb = self.block, self.lblock
        hv = block_valid(mask, F.shape[1:], b)
        lv = block_valid(mask_lr, ms.shape[1:], lb)
        jobs = [(_full_hr_sums, (F, F_lp, pan, pan_lp, lms, b) + g)
                for g in block_rows(F.shape[1], F.shape[2], b, hv)]
        jobs += [(_full_lr_sums, (ms, pan_lr, lb) + g) for g in block_rows(ms.shape[1], ms.shape[2], lb, lv)]
        run = pool.map if pool is not None else map
        for kind, sums in run(lambda job: job[0](*job[1]), jobs):
            if kind == "hr":
                khan, q_f_pan, q_lms_panlp, pairs_f, nb = sums
                self._khan += khan
                self._q_f_pan += q_f_pan
                self._q_lms_panlp += q_lms_panlp
                self._pairs_f += pairs_f
                self._nh += nb
            else:
                pairs_ms, q_ms_panlr, nb = sums
                self._pairs_ms += pairs_ms
                self._q_ms_panlr += q_ms_panlr
                self._nl += nb

    def result(self) -> dict:
        """``{"D_lambda", "D_s", "HQNR", "QNR_D_lambda", "QNR_D_s", "QNR"}`` (see
        :func:`full_resolution`)."""
        c = self.bands
        nan = math.nan
        if self._nh:
            d_l = 1.0 - self._khan / self._nh
            d_s_v = float(np.mean(np.abs(self._q_f_pan - self._q_lms_panlp))) / self._nh
        else:
            d_l = d_s_v = nan
        if self._nh and self._nl:
            off = ~np.eye(c, dtype=bool)
            diff = np.abs(self._pairs_f / self._nh - self._pairs_ms / self._nl)
            qd_l = float(diff[off].mean()) if c > 1 else 0.0
            qd_s = float(np.mean(np.abs(self._q_f_pan / self._nh - self._q_ms_panlr / self._nl)))
        else:
            qd_l = qd_s = nan
        return {
            "D_lambda": d_l,
            "D_s": d_s_v,
            "HQNR": (1.0 - d_l) * (1.0 - d_s_v),
            "QNR_D_lambda": qd_l,
            "QNR_D_s": qd_s,
            "QNR": (1.0 - qd_l) * (1.0 - qd_s),
        }


def full_resolution(
    F: np.ndarray,
    pan: np.ndarray,
    lms: np.ndarray,
    ms: np.ndarray,
    ratio: int,
    ms_gnyq,
    pan_gnyq: float,
    mask: np.ndarray | None = None,
    block: int = 32,
    strip_rows: int | None = None,
    workers: int | None = None,
) -> dict:
    """All full-resolution indices, computed strip by strip (only a strip plus its halo is ever
    held in floating point; the result equals the whole-array one up to float32 rounding).

    ``F``, ``lms`` ``(C, H, W)``, ``pan`` ``(H, W)``, ``ms`` ``(C, H/r, W/r)``; ``mask`` ``(H, W)``
    (valid PAN pixels) is eroded by :func:`full_res_erosion` so that no filtered value near nodata
    is scored, and brought to the MS grid by all-valid ``r x r`` blocks.

    Returns (all dimensionless; the whole-array definitions are in
    :mod:`ssdiff_cli.quality.reference`):

    * ``D_lambda`` (Khan) = ``1 - Q2n(lms, LP_MTF(F))`` (ideal 0), see ``d_lambda_khan``;
    * ``D_s`` = ``mean_b |Q(F_b, PAN) - Q(lms_b, PAN_LP)|`` (ideal 0), see ``d_s``;
    * ``HQNR`` = ``(1 - D_lambda)(1 - D_s)`` (ideal 1);
    * ``QNR_D_lambda``, ``QNR_D_s``, ``QNR``: Alparone's QNR (ideal 0, 0, 1), see ``qnr``.
    """
    inputs = ArrayInputs(F, pan, lms, ms, ratio, mask)
    return full_resolution_from(inputs, ratio, ms_gnyq, pan_gnyq, block, strip_rows, workers)


def full_strip_rows(ratio: int, width: int, bands: int, block: int = 32,
                    requested: int | None = None) -> int:
    """Rows per strip of :func:`full_resolution_from` (:func:`rows_per_strip`), a multiple of
    the block, the ratio and the low-res block's footprint."""
    lb = max(1, block // ratio)
    return rows_per_strip(width, bands, math.lcm(block, ratio, lb * ratio), requested)


def full_res_halo(ratio: int) -> int:
    """Rows read above and below each strip: the reach of the mask erosion, which covers every
    filter's (:func:`full_res_erosion`), rounded up to a multiple of the ratio."""
    return -(-full_res_erosion(ratio) // ratio) * ratio


def full_resolution_from(
    inputs: FullResInputs,
    ratio: int,
    ms_gnyq,
    pan_gnyq: float,
    block: int = 32,
    strip_rows: int | None = None,
    workers: int | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    scorer=None,
) -> dict:
    """:func:`full_resolution` over any :class:`FullResInputs`, strip by strip (``strip_rows``
    rows, by default as many as fit :data:`STRIP_BYTES` of float32 image at this width).

    The next strip's rows are fetched on a background thread while the current one is scored
    (reading rasters then overlaps the arithmetic), and each strip's groups of blocks are spread
    over ``workers`` threads (default: one per core); sums are added in a fixed order, so the
    result does not depend on ``workers``. ``progress(strips_done, strips_total, pixels_done)``
    is called after each strip (the pipeline's progress signature). ``scorer`` (default a
    :class:`FullScorer`) receives the strips top to bottom and gives the result: anything with
    its ``update`` and ``result``, such as :class:`~ssdiff_cli.quality.full_blocks.BlockScorer`.
    """
    c, h, w = inputs.shape
    step = full_strip_rows(ratio, w, c, block, strip_rows)
    halo = full_res_halo(ratio)
    gains = np.broadcast_to(np.asarray(ms_gnyq, dtype=np.float64), (c,))
    sc = scorer if scorer is not None else FullScorer(ratio, c, block)
    strips = [(y0, min(h, y0 + step)) for y0 in range(0, h, step)]
    scratch: dict = {}  # buffers reused from strip to strip

    def fetch(strip):
        a, b = max(0, strip[0] - halo), min(h, strip[1] + halo)
        return a, inputs.rows(a, b)

    with worker_pool(workers) as pool:
        for i, (a, rows) in enumerate(prefetched(fetch, strips)):
            y0, y1 = strips[i]
            _full_strip(sc, pool, rows, a, y0, y1, ratio, gains, pan_gnyq, scratch)
            if progress is not None:
                progress(i + 1, len(strips), y1 * w)
    return sc.result()


def _full_strip(sc, pool, rows: FullResRows, a: int, y0: int, y1: int, ratio, gains, pan_gnyq,
                scratch: dict) -> None:
    """Score rows ``y0 .. y1 - 1`` from ``rows`` (which start at row ``a`` and carry the halo
    the filters and the mask erosion need, or stop at the image's edge); ``scratch`` keeps the
    low-passed strip's buffer for the next strip."""
    n = rows.pan.shape[0]
    e = full_res_erosion(ratio)
    o0, o1 = y0 - a, y1 - a
    fhalo = filters.MTF_TAPS // 2  # reach of the (undecimated) MTF low-pass of F
    fa, fb = max(0, o0 - fhalo), min(n, o1 + fhalo)
    fx = np.asarray(rows.F[:, fa:fb], dtype=np.float32)
    px = np.asarray(rows.pan, dtype=np.float32)
    shape = (fx.shape[0], o1 - o0, fx.shape[2])
    if scratch.get("f_lp") is None or scratch["f_lp"].shape != shape:
        scratch["f_lp"] = np.empty(shape, np.float32)
    f_lp = scratch["f_lp"]

    def lowpass_band(i: int) -> None:
        filters.lowpass(fx[i], gains[i], ratio, rows=(o0 - fa, o1 - fa), out=f_lp[i])

    # one job per band and one for the PAN, spread over the pool
    pan_job = pool.submit(filters.degrade, px, pan_gnyq, ratio)
    list(pool.map(lowpass_band, range(fx.shape[0])))
    p_lr_x = pan_job.result()
    p_lp = filters.upsample_cubic(p_lr_x, ratio, rows=(o0, o1))
    p_lr = p_lr_x[o0 // ratio : o1 // ratio]
    if rows.valid is not None:
        m = filters.erode(np.asarray(rows.valid, bool), e)[o0:o1]
        m_lr = block_all(m, ratio)
    else:
        m = m_lr = None
    sc.update(
        fx[:, o0 - fa : o1 - fa],
        f_lp,
        px[o0:o1],
        p_lp,
        np.asarray(rows.lms[:, o0:o1], dtype=np.float32),
        np.asarray(rows.ms[:, o0 // ratio : o1 // ratio], dtype=np.float32),
        p_lr,
        m,
        m_lr,
        pool=pool,
    )

