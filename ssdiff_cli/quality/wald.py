"""Reduced-resolution simulation (Wald protocol).

At reduced resolution the original MS image becomes the reference: both the PAN and the MS are
low-passed with Gaussians matched to their sensor's MTF gain at Nyquist and decimated by the ratio
(:func:`ssdiff_cli.filters.degrade`), a fusion method is run on the degraded pair, and its output is
compared with the original MS.

Sizes: :func:`degrade_pair` needs the MS size to be a multiple of the ratio and the PAN to be
exactly ``ratio`` times the MS. :func:`crop_pair` gets there by cropping the bottom rows and the
right columns (never resampling): the MS to a multiple of ``ratio`` and the PAN to ``ratio`` times
the cropped MS. :func:`degrade_pair` applies it itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import filters, toolbox_filters


@dataclass(frozen=True)
class ReducedPair:
    """A Wald-degraded pair and its validity masks.

    ``pan`` is ``(H/r, W/r)`` float32, ``ms`` is ``(C, h/r, w/r)`` float32 (``h = H/r``);
    ``pan_valid`` / ``ms_valid`` are bool masks on those grids, or ``None`` when no mask was
    given. ``reference`` is the (cropped) original MS, the ground truth at reduced resolution;
    ``reference_valid`` its mask (``None`` when no mask was given).
    """

    pan: np.ndarray
    ms: np.ndarray
    reference: np.ndarray
    ratio: int
    pan_valid: np.ndarray | None = None
    ms_valid: np.ndarray | None = None
    reference_valid: np.ndarray | None = None


def crop_to_multiple(arr: np.ndarray, multiple: int) -> np.ndarray:
    """Crop the last two axes of ``arr`` (bottom rows, right columns) to multiples of
    ``multiple``. Returns a view."""
    if multiple < 1:
        raise ValueError(f"multiple must be positive, got {multiple}")
    h, w = arr.shape[-2:]
    return arr[..., : h - h % multiple, : w - w % multiple]


def crop_pair(pan: np.ndarray, ms: np.ndarray, ratio: int, multiple: int | None = None):
    """Crop a PAN ``(H, W)`` and MS ``(C, h, w)`` so that the MS size is a multiple of
    ``multiple`` (default: ``ratio``, what :func:`degrade_pair` needs) and the PAN is exactly
    ``ratio`` times the MS. Crops bottom rows and right columns only; returns views.

    Raises ``ValueError`` when the PAN is smaller than ``ratio`` times the cropped MS.
    """
    multiple = ratio if multiple is None else multiple
    # an MS with one coarse row or column more than the PAN covers (a PAN size that is not a
    # multiple of the ratio) loses it; any larger difference is an error
    if any(m > -(-p // ratio) for m, p in zip(ms.shape[-2:], pan.shape[-2:])):
        raise ValueError(f"PAN {pan.shape[-2]}x{pan.shape[-1]} < ratio {ratio} x MS "
                         f"{ms.shape[-2]}x{ms.shape[-1]}")
    ms = crop_to_multiple(ms[..., : pan.shape[-2] // ratio, : pan.shape[-1] // ratio], multiple)
    h, w = ms.shape[-2:]
    return pan[..., : h * ratio, : w * ratio], ms


def mask_halo_lowres(ratio: int) -> int:
    """Erosion radius, in low-res pixels, applied to degraded validity masks: the degradation
    kernel's half-support (:func:`ssdiff_cli.filters.support`, high-res pixels) rounded up to
    whole low-res pixels (6 for ratio 4)."""
    return math.ceil(filters.support(ratio) / ratio)


def degrade_mask(valid: np.ndarray, ratio: int, erode: int | None = None) -> np.ndarray:
    """Bring a validity mask ``(H, W)`` (or ``(C, H, W)``, combined over bands) down by ``ratio``.

    A low-res pixel is valid only when every high-res pixel of its ``ratio x ratio`` block is
    valid; the result is then eroded by ``erode`` low-res pixels (default
    :func:`mask_halo_lowres`) so that no kept pixel's filtered value was reached by a nodata
    pixel through the MTF filter. Pixels outside the image count as valid (the filters mirror).
    """
    valid = np.asarray(valid, dtype=bool)
    if valid.ndim == 3:
        valid = valid.all(axis=0)
    valid = crop_to_multiple(valid, ratio)
    h, w = valid.shape
    low = valid.reshape(h // ratio, ratio, w // ratio, ratio).all(axis=(1, 3))
    erode = mask_halo_lowres(ratio) if erode is None else erode
    if erode > 0 and not low.all():
        low = filters.erode(low, erode)
    return low


def degrade_phased(img: np.ndarray, gnyq: float | np.ndarray, ratio: int,
                   phase: tuple[float, float] = (0.0, 0.0), taps: int = filters.MTF_TAPS) -> np.ndarray:
    """:func:`ssdiff_cli.filters.degrade` with the kept samples moved ``phase`` = ``(dy, dx)``
    high-res pixels (any real numbers) from each block's centre: output ``k`` is the low-passed
    image at ``ratio * k + (ratio - 1) / 2 + d``. ``(0, 0)`` is ``filters.degrade`` itself;
    ``d = ratio // 2 - (ratio - 1) / 2`` (0.5 at even ratios) keeps the samples ``ratio // 2 +
    ratio * k``, the toolbox's ``imresize(.., 'nearest')`` after its MTF filter (reference §9).
    The Gaussian is sampled at the fractional offset, so no second interpolation blurs the
    result."""
    if not any(phase):
        return filters.degrade(img, gnyq, ratio, taps)
    img = np.asarray(img, dtype=np.float32)
    h, w = img.shape[-2:]
    if h % ratio or w % ratio:
        raise ValueError(f"image size {h}x{w} is not a multiple of the ratio {ratio}")
    planes = img.reshape((-1, h, w))
    gains = np.broadcast_to(np.asarray(gnyq, dtype=np.float64), (planes.shape[0],))
    out = []
    for band, g in zip(planes, gains):
        sigma = filters.mtf_sigma(float(g), ratio)
        for axis, d in ((-2, phase[0]), (-1, phase[1])):
            pos = (ratio - 1) / 2.0 + float(d)  # where output 0 lies
            start = math.floor(pos + 0.5)
            k = filters.gaussian_taps(sigma, taps, phase=start - pos).astype(np.float32)
            n = band.shape[axis]
            band = filters.correlate_axis(band, k, axis=axis, start=start, step=ratio, count=n // ratio)
        out.append(band)
    return np.stack(out).reshape(img.shape[:-2] + out[0].shape)


def degrade_pair(
    pan: np.ndarray,
    ms: np.ndarray,
    ratio: int,
    ms_gnyq,
    pan_gnyq: float,
    pan_valid: np.ndarray | None = None,
    ms_valid: np.ndarray | None = None,
    pan_phase: tuple[float, float] = (0.0, 0.0),
    ms_phase: tuple[float, float] = (0.0, 0.0),
) -> ReducedPair:
    """Simulate the reduced-resolution pair of the Wald protocol.

    ``pan`` ``(H, W)`` and ``ms`` ``(C, h, w)`` are first cropped with :func:`crop_pair`; then
    each is low-passed with its MTF-matched Gaussian (``pan_gnyq``; ``ms_gnyq`` one gain or one
    per band) and decimated by ``ratio`` (:func:`ssdiff_cli.filters.degrade`):
    PAN -> ``(H/r, W/r)``, MS -> ``(C, h/r, w/r)``.

    Validity masks (``True`` = valid; PAN ``(H, W)``, MS ``(h, w)`` or ``(C, h, w)``) are
    degraded with :func:`degrade_mask`: all-valid blocks, then eroded by the kernel's half-support
    in low-res pixels (:func:`mask_halo_lowres`, 6 at ratio 4). The MS mask also comes back,
    cropped, as ``reference_valid``. Nodata values are filtered like any other value; the erosion
    is what keeps them out of the valid pixels.

    ``pan_phase`` / ``ms_phase`` ``(dy, dx)`` move the kept samples that many pixels of the
    image being decimated from each block's centre (:func:`degrade_phased`;
    training draws them so that a model does not rely on one decimation phase).
    """
    pan = np.asarray(pan)
    ms = np.asarray(ms)
    if pan.ndim != 2 or ms.ndim != 3:
        raise ValueError(f"expected PAN (H, W) and MS (C, h, w), got {pan.shape} and {ms.shape}")
    pan, ms = crop_pair(pan, ms, ratio)
    pan_lr = degrade_phased(pan, pan_gnyq, ratio, pan_phase)
    ms_lr = degrade_phased(ms, ms_gnyq, ratio, ms_phase)
    return _reduced(pan_lr, ms_lr, ms, ratio, pan.shape, pan_valid, ms_valid)


def _finite(a: np.ndarray) -> np.ndarray:
    """``a`` as float64 with its non-finite values (NaN marks invalid pixels) set to 0."""
    a = np.asarray(a, np.float64)
    return a if np.isfinite(a).all() else np.where(np.isfinite(a), a, 0.0)


def _reduced(pan_lr, ms_lr, reference, ratio: int, pan_shape, pan_valid, ms_valid) -> ReducedPair:
    """A :class:`ReducedPair` of degraded arrays and the cropped ``reference``, with the masks
    (given on the original grids) degraded by :func:`degrade_mask`."""
    pv = mv = rv = None
    if pan_valid is not None:
        pv = degrade_mask(np.asarray(pan_valid)[: pan_shape[0], : pan_shape[1]], ratio)
    if ms_valid is not None:
        m = np.asarray(ms_valid, dtype=bool)
        if m.ndim == 3:
            m = m.all(axis=0)
        rv = m[: reference.shape[-2], : reference.shape[-1]]
        mv = degrade_mask(rv, ratio)
    return ReducedPair(pan=pan_lr, ms=ms_lr, reference=reference, ratio=ratio, pan_valid=pv,
                       ms_valid=mv, reference_valid=rv)


def upsample_ms(ms: np.ndarray, ratio: int) -> np.ndarray:
    """The "lms": MS ``(C, h, w)`` brought onto the PAN grid ``(C, h*r, w*r)`` (float32).

    Uses :func:`ssdiff_cli.filters.upsample_cubic` (Keys bicubic, a = -0.5, area-centred grids);
    bicubic replaces the toolbox's 23-tap polynomial interpolator (interp23tap), a common
    substitute, so absolute index values differ slightly from the toolbox's.
    """
    return filters.upsample_cubic(ms, ratio)


def degrade_pair_toolbox(
    pan: np.ndarray,
    ms: np.ndarray,
    ratio: int,
    ms_gnyq,
    pan_gnyq: float,
    pan_valid: np.ndarray | None = None,
    ms_valid: np.ndarray | None = None,
) -> ReducedPair:
    """The reduced-resolution pair as the pansharpening toolbox makes it (reference §9): each
    MS band and the PAN filtered with the toolbox's MTF-matched FIR of its own gain
    (:func:`ssdiff_cli.toolbox_filters.toolbox_lowpass`: ``genMTF`` / ``MTF_PAN``, edges replicated),
    then decimated by nearest neighbour (:func:`ssdiff_cli.toolbox_filters.decimate_nearest`: samples
    ``ratio // 2 + ratio * k``). Sizes are cropped first as by :func:`degrade_pair`, and masks
    degraded as there; arrays come back float32.

    The PAN follows §9 (``MTF_PAN`` then nearest decimation: ``resize_images`` with
    ``flag_PAN_MTF = 1``). The toolbox's ``resize_images`` defaults to ``flag_PAN_MTF = 0``,
    which decimates the PAN with ``imresize(.., 1/ratio)`` (antialiased bicubic, block-centred)
    instead; that variant is not reproduced here.
    """
    pan = np.asarray(pan)
    ms = np.asarray(ms)
    if pan.ndim != 2 or ms.ndim != 3:
        raise ValueError(f"expected PAN (H, W) and MS (C, h, w), got {pan.shape} and {ms.shape}")
    pan, ms = crop_pair(pan, ms, ratio)
    # the FIR runs by FFT, which would spread a NaN over the whole band: invalid pixels enter
    # as zeros (the masks' erosion keeps them out of the valid degraded pixels)
    pan_lr = toolbox_filters.toolbox_degrade(_finite(pan), pan_gnyq, ratio).astype(np.float32)
    ms_lr = toolbox_filters.toolbox_degrade(_finite(ms), ms_gnyq, ratio).astype(np.float32)
    return _reduced(pan_lr, ms_lr, ms, ratio, pan.shape, pan_valid, ms_valid)
