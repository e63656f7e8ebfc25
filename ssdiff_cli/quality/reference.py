"""Whole-array reference definitions of the quality indices, one function per index: SAM,
ERGAS, PSNR, Q2n, UIQI / Q, SCC at reduced resolution; Khan's D_lambda, D_s, HQNR and Alparone's
QNR at full resolution. They state each formula plainly (and take options the streaming scorers
do not, such as a sliding UIQI window or an injected UIQI); the scorers of
:mod:`ssdiff_cli.quality.reduced` and :mod:`ssdiff_cli.quality.full` agree with them."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .. import filters
from .blocks import block_valid, q_q2n_sums, uiqi_moments
from .gradients import SccAccumulator, sobel_zero_padded
from .masks import as_mask, full_res_masks
from .pixels import spectral_angles


def sam(F: np.ndarray, R: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Spectral Angle Mapper, in degrees: mean over valid pixels of
    ``arccos(<F_p, R_p> / (|F_p| |R_p|))``. Ideal 0. Pixels where either spectral vector has zero
    norm are excluded (the angle is undefined)."""
    F, R = np.asarray(F, np.float64), np.asarray(R, np.float64)
    mask = as_mask(mask, F.shape[1:])
    if mask is not None:
        F, R = F[:, mask], R[:, mask]
    ang, ok = spectral_angles(F, R)
    return math.degrees(float(ang[ok].mean())) if ok.any() else math.nan


def _band_mse(F: np.ndarray, R: np.ndarray, mask: np.ndarray | None):
    """Per-band mean squared error and reference mean over the valid pixels (float64)."""
    F, R = np.asarray(F, np.float64), np.asarray(R, np.float64)
    mask = as_mask(mask, F.shape[1:])
    if mask is not None:
        F, R = F[:, mask], R[:, mask]
    else:
        F, R = F.reshape(F.shape[0], -1), R.reshape(R.shape[0], -1)
    return np.mean((F - R) ** 2, axis=1), R.mean(axis=1)


def ergas(F: np.ndarray, R: np.ndarray, ratio: int, mask: np.ndarray | None = None) -> float:
    """ERGAS = ``(100 / ratio) * sqrt(mean_b(MSE_b / mean(R_b)^2))`` over the valid pixels,
    where ``ratio`` is PAN resolution / MS resolution (4 for 4x). Dimensionless, ideal 0."""
    mse, ref_mean = _band_mse(F, R, mask)
    return 100.0 / ratio * math.sqrt(float(np.mean(mse / ref_mean**2)))


def psnr(F: np.ndarray, R: np.ndarray, data_range: float, mask: np.ndarray | None = None) -> np.ndarray:
    """PSNR per band in dB: ``10 log10(data_range^2 / MSE_b)`` over valid pixels (inf when equal).
    ``data_range`` is the peak, e.g. ``2**bit_depth - 1``."""
    mse, _ = _band_mse(F, R, mask)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range**2 / mse)


def q2n(F: np.ndarray, R: np.ndarray, block: int = 32, mask: np.ndarray | None = None) -> float:
    """Q2n (Q4 for 4 bands, Q8 for 8): hypercomplex UIQI of Garzelli & Nencini, as in the
    standard toolbox. Mean over non-overlapping ``block x block`` blocks (blocks with any invalid
    pixel skipped) of the modulus of the block's hypercomplex quality, with bands normalised by
    the reference block's mean and std and zero-padded to a power of two. See
    :func:`ssdiff_cli.quality.hypercomplex.q2n_stats` for the exact formula and the
    constant-block value. Ideal 1, range [0, 1].
    """
    F, R = np.asarray(F), np.asarray(R)
    mask = as_mask(mask, F.shape[1:])
    bv = block_valid(mask, F.shape[1:], block)
    if not bv.any():
        return math.nan
    _, q2, nb = q_q2n_sums(F, R, block, bv)
    return q2 / nb


def uiqi(
    x: np.ndarray,
    y: np.ndarray,
    block: int = 32,
    stride: int | None = None,
    mask: np.ndarray | None = None,
) -> float:
    """Universal Image Quality Index of two bands ``(H, W)``: mean of the block UIQI (as defined
    in :mod:`ssdiff_cli.quality.indices`) over ``block x block`` windows. Ideal 1, range [-1, 1].

    ``stride=None`` (default) uses non-overlapping blocks; ``stride=1`` slides the window over
    every position where it fits inside the image (the toolbox's ``img_qi``; window sums from
    float64 integral images of the mean-removed data). Windows with any invalid pixel are skipped.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    mask = as_mask(mask, x.shape)
    if stride is None or stride == block:
        bv = block_valid(mask, x.shape, block)
        if not bv.any():
            return math.nan
        q, _, nb = q_q2n_sums(x[None], y[None], block, bv)
        return float(q[0] / nb)
    # sliding windows via integral images of the mean-removed data (limits cancellation)
    gx, gy = x.mean(), y.mean()
    x = x - gx
    y = y - gy

    def wmean(a):
        s = np.zeros((a.shape[0] + 1, a.shape[1] + 1))
        s[1:, 1:] = a.cumsum(0).cumsum(1)
        out = s[block:, block:] - s[:-block, block:] - s[block:, :-block] + s[:-block, :-block]
        return out[::stride, ::stride] / (block * block)

    mx, my = wmean(x), wmean(y)
    vx = np.maximum(wmean(x * x) - mx * mx, 0.0)
    vy = np.maximum(wmean(y * y) - my * my, 0.0)
    cxy = wmean(x * y) - mx * my
    q = uiqi_moments(mx + gx, my + gy, vx, vy, cxy)
    if mask is not None:
        bad = wmean((~mask).astype(np.float64)) > 0.5 / (block * block)
        q = q[~bad]
    return float(q.mean()) if q.size else math.nan


def q_index(
    F: np.ndarray, R: np.ndarray, block: int = 32, stride: int | None = None, mask=None
) -> np.ndarray:
    """Per-band UIQI ``Q(F_b, R_b)`` (:func:`uiqi`), as an array of length C. Ideal 1."""
    return np.array([uiqi(f, r, block, stride, mask) for f, r in zip(F, R, strict=True)])


def scc(F: np.ndarray, R: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Spatial Correlation Coefficient with the toolbox's formula (``SCC.m``): the Sobel gradient
    magnitudes ``sqrt(Gx^2 + Gy^2)`` of ``F`` and ``R`` compared by their uncentred normalised
    inner product ``sum(gF gR) / sqrt(sum(gF^2) sum(gR^2))``, pooled over all bands, over the
    interior pixels (``[2:end-1]``) whose 3x3 neighbourhood is valid, gradients taken with
    reflected edges. The toolbox instead crops to the interior first and filters the crop with
    zero padding, so the crop's own border (gradients of the image's level against zero) counts
    there: :func:`scc_toolbox`. Ideal 1."""
    return _scc_of(F, R, mask).scc()


def scc_toolbox(F: np.ndarray, R: np.ndarray, mask: np.ndarray | None = None) -> float:
    """SCC exactly as the toolbox's ``SCC.m`` computes it (reference §9): both images cropped to
    ``[2:end-1]`` first, the crop filtered with ``fspecial('sobel')`` and its transpose with zero
    padding (:func:`ssdiff_cli.quality.gradients.sobel_zero_padded`), then
    ``sum(gF gR) / sqrt(sum(gF^2) sum(gR^2))`` over all bands and pixels, no mean removed. With
    a ``mask`` (the toolbox has none) only crop pixels whose 3x3 neighbourhood is valid count
    (neighbours in the zero padding count as valid). Ideal 1."""
    f = sobel_zero_padded(np.asarray(F)[:, 1:-1, 1:-1])
    r = sobel_zero_padded(np.asarray(R)[:, 1:-1, 1:-1])
    mask = as_mask(mask, F.shape[1:])
    if mask is not None:
        keep = filters.erode(mask[1:-1, 1:-1], 1)
        f, r = f[:, keep], r[:, keep]
    den = math.sqrt(float(np.vdot(f, f)) * float(np.vdot(r, r)))
    return float(np.vdot(f, r)) / den if den > 0 else math.nan


def scc_pearson(F: np.ndarray, R: np.ndarray, mask: np.ndarray | None = None) -> float:
    """The Pearson variant of :func:`scc` (means removed), over every pixel whose 3x3
    neighbourhood is valid, image edges extended by half-sample reflection. Both gradient
    fields constant: 1; only one constant: 0."""
    return _scc_of(F, R, mask).scc_pearson()

def _scc_of(F, R, mask) -> SccAccumulator:
    """An :class:`SccAccumulator` fed ``F``, ``R`` as one strip."""
    acc = SccAccumulator()
    acc.update(F, R, as_mask(mask, F.shape[1:]))
    return acc


def d_lambda_khan(F: np.ndarray, lms: np.ndarray, ratio: int, ms_gnyq, mask=None, block: int = 32) -> float:
    """Khan's spectral distortion ``D_lambda = 1 - Q2n(lms, LP_MTF(F))``: the fused image is
    low-passed with the MS sensor's MTF-matched Gaussian (:func:`ssdiff_cli.filters.lowpass`, no
    decimation) and compared, as Q2n on ``block`` blocks, with the lms as reference. Ideal 0
    (0 exactly when ``lms`` equals the low-passed ``F``). ``mask`` is eroded by
    :func:`full_res_erosion`."""
    m, _ = full_res_masks(mask, ratio)
    return 1.0 - q2n(filters.lowpass(F, ms_gnyq, ratio), lms, block, m)


def pan_lowpass(pan: np.ndarray, ratio: int, pan_gnyq: float) -> np.ndarray:
    """``PAN_LP``: the PAN degraded by the ratio (MTF Gaussian + decimation) and upsampled back
    with the cubic interpolator (:func:`ssdiff_cli.filters.upsample_cubic`)."""
    return filters.upsample_cubic(filters.degrade(pan, pan_gnyq, ratio), ratio)


def d_s(
    F: np.ndarray,
    pan: np.ndarray,
    lms: np.ndarray,
    ratio: int,
    pan_gnyq: float,
    mask=None,
    block: int = 32,
) -> float:
    """Spatial distortion of the HQNR: ``D_s = mean_b |Q(F_b, PAN) - Q(lms_b, PAN_LP)|`` with
    ``PAN_LP`` from :func:`pan_lowpass` and plain UIQI (:func:`uiqi`) on ``block`` blocks. Ideal 0.
    (The toolbox evaluates this UIQI through its q2n routine, which normalises each block by the
    first image's mean and std; plain UIQI is used here.) ``mask`` eroded by
    :func:`full_res_erosion`."""
    m, _ = full_res_masks(mask, ratio)
    p_lp = pan_lowpass(pan, ratio, pan_gnyq)
    return float(
        np.mean(
            [
                abs(uiqi(f, pan, block, mask=m) - uiqi(lm, p_lp, block, mask=m))
                for f, lm in zip(F, lms, strict=True)
            ]
        )
    )


def hqnr(
    F: np.ndarray,
    pan: np.ndarray,
    lms: np.ndarray,
    ratio: int,
    ms_gnyq,
    pan_gnyq: float,
    mask=None,
    block: int = 32,
) -> float:
    """Hybrid QNR ``(1 - D_lambda_Khan)(1 - D_s)`` (:func:`d_lambda_khan`, :func:`d_s`). Ideal 1."""
    return (1.0 - d_lambda_khan(F, lms, ratio, ms_gnyq, mask, block)) * (
        1.0 - d_s(F, pan, lms, ratio, pan_gnyq, mask, block)
    )


UiqiFn = Callable[[np.ndarray, np.ndarray], float]


def _qnr_uiqis(mask, ratio: int, block: int, uiqi_fn: UiqiFn | None):
    """The UIQI functions of the QNR at PAN and at MS resolution: ``uiqi_fn`` for both when
    given, else :func:`uiqi` on ``block`` and ``block // ratio`` blocks with the eroded masks."""
    if uiqi_fn is not None:
        return uiqi_fn, uiqi_fn
    m, m_lr = full_res_masks(mask, ratio)
    lb = max(1, block // ratio)
    return (lambda x, y: uiqi(x, y, block, mask=m)), (lambda x, y: uiqi(x, y, lb, mask=m_lr))


def d_lambda_qnr(
    F: np.ndarray,
    ms: np.ndarray,
    ratio: int,
    mask=None,
    block: int = 32,
    uiqi_fn: UiqiFn | None = None,
) -> float:
    """Alparone's spectral distortion
    ``D_lambda = 1/(C(C-1)) sum_{i != j} |Q(F_i, F_j) - Q(MS_i, MS_j)|`` (exponent p = 1).
    Ideal 0. UIQI on ``block`` blocks at PAN resolution and ``block // ratio`` at MS resolution,
    unless ``uiqi_fn(x, y) -> float`` is given (then used at both resolutions, mask ignored)."""
    qf, qm = _qnr_uiqis(mask, ratio, block, uiqi_fn)
    c = F.shape[0]
    tot = 0.0
    for i in range(c):
        for j in range(i + 1, c):
            tot += 2.0 * abs(qf(F[i], F[j]) - qm(ms[i], ms[j]))
    return tot / (c * (c - 1)) if c > 1 else 0.0


def d_s_qnr(
    F: np.ndarray,
    pan: np.ndarray,
    ms: np.ndarray,
    ratio: int,
    pan_gnyq: float,
    mask=None,
    block: int = 32,
    pan_lr: np.ndarray | None = None,
    uiqi_fn: UiqiFn | None = None,
) -> float:
    """Alparone's spatial distortion ``D_s = mean_b |Q(F_b, PAN) - Q(MS_b, PAN_lr)|`` (q = 1),
    ``PAN_lr`` = the PAN degraded to MS size (MTF Gaussian + decimation) unless given. Ideal 0.
    UIQI blocks as in :func:`d_lambda_qnr`; ``uiqi_fn`` as there."""
    qf, qm = _qnr_uiqis(mask, ratio, block, uiqi_fn)
    if pan_lr is None:
        pan_lr = filters.degrade(pan, pan_gnyq, ratio)
    return float(np.mean([abs(qf(f, pan) - qm(mb, pan_lr)) for f, mb in zip(F, ms, strict=True)]))


def qnr(
    F: np.ndarray,
    pan: np.ndarray,
    ms: np.ndarray,
    ratio: int,
    pan_gnyq: float,
    mask=None,
    block: int = 32,
) -> float:
    """Quality with No Reference (Alparone et al. 2008) with exponents 1:
    ``QNR = (1 - D_lambda)(1 - D_s)`` (:func:`d_lambda_qnr`, :func:`d_s_qnr`). Ideal 1."""
    return (1.0 - d_lambda_qnr(F, ms, ratio, mask, block)) * (
        1.0 - d_s_qnr(F, pan, ms, ratio, pan_gnyq, mask, block)
    )
