"""Separable filters on image arrays: MTF-matched Gaussians, decimation and cubic upsampling.

All functions work on ``(..., H, W)`` float arrays and treat the last two axes as rows and
columns. Grids are *area-centred*: low-resolution pixel ``k`` covers high-resolution pixels
``r*k .. r*k + r - 1`` and its centre lies at ``r*k + (r - 1) / 2``, the convention GDAL uses when
it resamples between the PAN and MS grids. Decimation and upsampling here follow it, so a
low-passed, decimated and re-upsampled PAN lines up with an MS band brought onto the PAN grid.

Edges are handled by mirror reflection of the array given; a caller that needs results
independent of where an array was cut (tiling) must pass a halo at least :func:`support` wide.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

#: Number of taps of the MTF-matched Gaussian filters (the toolbox's choice).
MTF_TAPS = 41


def mtf_sigma(gnyq: float, ratio: int) -> float:
    """Standard deviation (high-res pixels) of the Gaussian whose gain at the low-res Nyquist
    frequency ``1 / (2 * ratio)`` cycles per pixel equals ``gnyq``.

    The Gaussian's transfer function is ``exp(-2 pi^2 sigma^2 f^2)``; solving it for the gain
    ``gnyq`` at ``f = 1 / (2 ratio)`` gives ``sigma = ratio * sqrt(-2 ln gnyq) / pi``.
    """
    if not 0.0 < gnyq < 1.0:
        raise ValueError(f"MTF gain at Nyquist must lie in (0, 1), got {gnyq}")
    if ratio < 1:
        raise ValueError(f"ratio must be a positive integer, got {ratio}")
    return ratio * math.sqrt(-2.0 * math.log(gnyq)) / math.pi


def gaussian_taps(sigma: float, taps: int = MTF_TAPS, phase: float = 0.0) -> np.ndarray:
    """A normalised 1-D Gaussian sampled at ``k - (taps - 1) / 2 + phase``, ``k = 0..taps-1``."""
    x = np.arange(taps, dtype=np.float64) - (taps - 1) / 2.0 + phase
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def mtf_kernel(gnyq: float, ratio: int, taps: int = MTF_TAPS) -> np.ndarray:
    """The separable 1-D MTF-matched low-pass kernel (``taps`` long, sums to one)."""
    return gaussian_taps(mtf_sigma(gnyq, ratio), taps)


def nyquist_gain(kernel: np.ndarray, ratio: int) -> float:
    """Magnitude of a 1-D kernel's frequency response at ``1 / (2 * ratio)`` cycles per pixel."""
    n = np.arange(len(kernel)) - (len(kernel) - 1) / 2.0
    f = 1.0 / (2.0 * ratio)
    return float(abs(np.sum(kernel * np.exp(-2j * np.pi * f * n))))


def support(ratio: int, taps: int = MTF_TAPS) -> int:
    """Halo (high-res pixels) needed so that :func:`lowpass` and :func:`degrade` results at the
    inner pixels do not depend on the array's edges."""
    return taps // 2 + ratio


def lowpass(img: np.ndarray, gnyq: float | np.ndarray, ratio: int, taps: int = MTF_TAPS) -> np.ndarray:
    """Low-pass ``img`` (``(H, W)`` or ``(C, H, W)``) with the MTF-matched Gaussian.

    ``gnyq`` is one gain, or one per band for a 3-D array. The result keeps the input's shape and
    is float32.
    """
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 2:
        return _lowpass2d(img, float(np.atleast_1d(gnyq)[0]), ratio, taps)
    gains = np.broadcast_to(np.asarray(gnyq, dtype=np.float64), (img.shape[0],))
    return np.stack([_lowpass2d(b, float(g), ratio, taps) for b, g in zip(img, gains)])


def _lowpass2d(band: np.ndarray, gnyq: float, ratio: int, taps: int) -> np.ndarray:
    k = mtf_kernel(gnyq, ratio, taps).astype(np.float32)
    out = ndimage.correlate1d(band, k, axis=0, mode="mirror")
    return ndimage.correlate1d(out, k, axis=1, mode="mirror")


def degrade(img: np.ndarray, gnyq: float | np.ndarray, ratio: int, taps: int = MTF_TAPS) -> np.ndarray:
    """MTF-matched low-pass then decimation by ``ratio`` (the Wald protocol's degradation).

    The Gaussian is evaluated at each low-res pixel's area centre, so for an even ratio it is
    sampled at half-pixel offsets (``taps + 1`` samples) rather than shifting the image by half a
    pixel. ``img`` is ``(H, W)`` or ``(C, H, W)`` with ``H`` and ``W`` multiples of ``ratio``;
    the result is ``(.., H / ratio, W / ratio)`` float32.
    """
    img = np.asarray(img, dtype=np.float32)
    h, w = img.shape[-2:]
    if h % ratio or w % ratio:
        raise ValueError(f"image size {h}x{w} is not a multiple of the ratio {ratio}")
    if img.ndim == 2:
        return _degrade2d(img, float(np.atleast_1d(gnyq)[0]), ratio, taps)
    gains = np.broadcast_to(np.asarray(gnyq, dtype=np.float64), (img.shape[0],))
    return np.stack([_degrade2d(b, float(g), ratio, taps) for b, g in zip(img, gains)])


def _degrade2d(band: np.ndarray, gnyq: float, ratio: int, taps: int) -> np.ndarray:
    sigma = mtf_sigma(gnyq, ratio)
    if ratio % 2:
        k = gaussian_taps(sigma, taps).astype(np.float32)
        start = (ratio - 1) // 2
    else:
        # Even ratio: the block centre falls between pixels. An even-length kernel sampled at
        # half-integer offsets is centred by scipy on index len//2, which places output i at
        # position i - 0.5; block k's centre r*k + (r-1)/2 is then output index r*k + r/2.
        k = gaussian_taps(sigma, taps + 1).astype(np.float32)
        start = ratio // 2
    out = ndimage.correlate1d(band, k, axis=0, mode="mirror")[start::ratio]
    return ndimage.correlate1d(out, k, axis=1, mode="mirror")[:, start::ratio]


def _cubic_weights(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys cubic convolution weights for the 4 neighbours at offsets -1, 0, 1, 2 of a sample
    at fractional position ``t`` in [0, 1)."""
    d = np.stack([1 + t, t, 1 - t, 2 - t])
    w = np.where(
        d <= 1,
        (a + 2) * d**3 - (a + 3) * d**2 + 1,
        a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a,
    )
    return w


def upsample_cubic(img: np.ndarray, ratio: int) -> np.ndarray:
    """Upsample ``(..., h, w)`` by ``ratio`` with Keys cubic convolution (a = -0.5) on
    area-centred grids, mirroring at the edges. Returns ``(..., h*ratio, w*ratio)`` float32."""
    img = np.asarray(img, dtype=np.float32)
    out = _upsample_axis(img, ratio, axis=-2)
    return _upsample_axis(out, ratio, axis=-1)


def _upsample_axis(img: np.ndarray, ratio: int, axis: int) -> np.ndarray:
    img = np.moveaxis(img, axis, -1)
    n = img.shape[-1]
    pad = [(0, 0)] * (img.ndim - 1) + [(2, 3)]
    padded = np.pad(img, pad, mode="symmetric")
    phases = []
    for p in range(ratio):
        pos = (p + 0.5) / ratio - 0.5  # fine-pixel centre in coarse coordinates, relative to k
        base = math.floor(pos)
        w = _cubic_weights(np.array(pos - base)).astype(np.float32)
        acc = np.zeros(img.shape, dtype=np.float32)
        for m, wm in zip(range(-1, 3), w):
            s = 2 + base + m
            acc += wm * padded[..., s : s + n]
        phases.append(acc)
    out = np.stack(phases, axis=-1).reshape(*img.shape[:-1], n * ratio)
    return np.moveaxis(out, -1, axis)


def decimate_mean(img: np.ndarray, ratio: int) -> np.ndarray:
    """Block mean over ``ratio x ratio`` blocks (area-centred decimation); sizes must divide."""
    img = np.asarray(img, dtype=np.float32)
    h, w = img.shape[-2:]
    if h % ratio or w % ratio:
        raise ValueError(f"image size {h}x{w} is not a multiple of the ratio {ratio}")
    shaped = img.reshape(*img.shape[:-2], h // ratio, ratio, w // ratio, ratio)
    return shaped.mean(axis=(-3, -1))
