"""Separable filters on image arrays: MTF-matched Gaussians, decimation and upsampling (cubic and
its GDAL siblings, and the toolbox's 23-tap kernel at any phase).

All functions work on ``(..., H, W)`` float arrays and treat the last two axes as rows and
columns. Grids are *area-centred*: low-resolution pixel ``k`` covers high-resolution pixels
``r*k .. r*k + r - 1`` and its centre lies at ``r*k + (r - 1) / 2``, the convention GDAL uses when
it resamples between the PAN and MS grids. Decimation and upsampling here follow it, so a
low-passed, decimated and re-upsampled PAN lines up with an MS band brought onto the PAN grid.

Edges are handled by mirror reflection of the array given (the cubic interpolator repeats the
edge pixel); a caller that needs results independent of where an array was cut (tiling) must
pass a halo at least :func:`support` wide.

Every filter here is a banded matrix product along one axis at a time (:func:`correlate_axis`,
:func:`upsample_axis`): BLAS runs those several times faster than a loop over the taps. The
module also erodes validity masks (:func:`erode`) and fills invalid pixels from their valid
neighbours (:func:`fill_invalid`, what a tile read does before fusion).
"""

from __future__ import annotations

import math

import numpy as np

from ssdiff_cli.toolbox_filters import INTERP23_REACH, interp23_weights

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


def lowpass(img: np.ndarray, gnyq: float | np.ndarray, ratio: int, taps: int = MTF_TAPS,
            rows: tuple[int, int] | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Low-pass ``img`` (``(H, W)`` or ``(C, H, W)``) with the MTF-matched Gaussian.

    ``gnyq`` is one gain, or one per band for a 3-D array. The result keeps the input's shape and
    is float32; ``rows`` ``(start, stop)`` keeps only those output rows (computed without the
    rest), and ``out`` receives the result when given.
    """
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 2:
        return _lowpass2d(img, float(np.atleast_1d(gnyq)[0]), ratio, taps, rows, out)
    gains = np.broadcast_to(np.asarray(gnyq, dtype=np.float64), (img.shape[0],))
    if out is None:
        return np.stack([_lowpass2d(b, float(g), ratio, taps, rows) for b, g in zip(img, gains)])
    for b, g, o in zip(img, gains, out):
        _lowpass2d(b, float(g), ratio, taps, rows, o)
    return out


def _lowpass2d(band: np.ndarray, gnyq: float, ratio: int, taps: int, rows=None, out=None) -> np.ndarray:
    k = mtf_kernel(gnyq, ratio, taps)
    start, stop = rows if rows is not None else (0, band.shape[0])
    vert = correlate_axis(band, k, axis=-2, start=start, count=stop - start)
    return correlate_axis(vert, k, axis=-1, out=out)


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
        # half-integer offsets is centred by correlate_axis (as by scipy) on index len//2, which
        # places output i at position i - 0.5; block k's centre r*k + (r-1)/2 is then output
        # index r*k + r/2.
        k = gaussian_taps(sigma, taps + 1).astype(np.float32)
        start = ratio // 2
    out = correlate_axis(band, k, axis=-2, start=start, step=ratio)
    return correlate_axis(out, k, axis=-1, start=start, step=ratio)


#: Outputs per block of the banded matrix products at step 1 (fewer at larger steps): 16 keeps
#: the band matrix mostly non-zero and fits the BLAS micro-kernels (measured fastest).
_BLOCK_OUT = 16
#: Columns per panel of the vertical products, so that the rows a block reads stay in cache.
_PANEL_COLS = 1024


def mirror_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Map indices (any integers) into ``0 .. n - 1`` by mirror reflection about the edge pixels'
    centres without repeating them (``-1 -> 1``, ``n -> n - 2``), as scipy's ``mode="mirror"``."""
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= n, period - idx, idx)


def symmetric_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Map indices into ``0 .. n - 1`` by reflection about the array's edges, repeating the edge
    pixels (``-1 -> 0``, ``n -> n - 1``), as numpy's ``np.pad(mode="symmetric")``."""
    idx = np.mod(idx, 2 * n)
    return np.where(idx >= n, 2 * n - 1 - idx, idx)


def _banded_product(x, band, vertical: bool, n_out: int, first: int, advance: int, index_fn, out=None):
    """Apply a linear map along one axis of ``x`` as a product with a small band matrix.

    Output block ``b`` (``band.shape[1]`` outputs) is ``span @ band`` where ``span`` is the
    ``band.shape[0]`` inputs from ``first + advance * b`` on; inputs outside the array are taken
    at ``index_fn(idx, n)``. ``vertical`` works along axis -2 (rows), otherwise along axis -1.
    BLAS runs these products several times faster than a direct loop over the taps (and on every
    core), even counting the band matrix's zeros. ``out`` (float32, the output's shape) is
    written instead of a new array."""
    span, block = band.shape
    n = x.shape[-2] if vertical else x.shape[-1]
    shape = x.shape[:-2] + (n_out, x.shape[-1]) if vertical else x.shape[:-1] + (n_out,)
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {shape}, got {out.dtype} {out.shape}")
    if vertical:
        band = np.ascontiguousarray(band.T)
        panels = [slice(c, c + _PANEL_COLS) for c in range(0, x.shape[-1], _PANEL_COLS)]
    else:
        panels = [slice(None)]
    for cols in panels:
        xp, op = (x[..., cols], out[..., cols]) if vertical else (x, out)
        for b, m0 in enumerate(range(0, n_out, block)):
            m1 = min(n_out, m0 + block)
            s0 = first + advance * b
            inside = s0 >= 0 and s0 + span <= n
            idx = slice(s0, s0 + span) if inside else index_fn(np.arange(s0, s0 + span), n)
            if vertical:
                np.matmul(band[: m1 - m0], xp[..., idx, :], out=op[..., m0:m1, :])
            else:
                np.matmul(xp[..., idx], band[:, : m1 - m0], out=op[..., m0:m1])
    return out


def _check_axis(x: np.ndarray, axis: int) -> bool:
    """``True`` for the rows axis (-2), ``False`` for the columns axis (-1)."""
    if axis not in (-1, -2, x.ndim - 1, x.ndim - 2):
        raise ValueError(f"axis must be one of the last two, got {axis}")
    return axis in (-2, x.ndim - 2)


def correlate_axis(
    img: np.ndarray,
    kernel: np.ndarray,
    axis: int = -1,
    start: int = 0,
    step: int = 1,
    count: int | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Correlate ``img`` with a 1-D ``kernel`` along its rows (``axis=-2``) or columns
    (``axis=-1``), keeping every ``step``-th output from ``start`` (``count`` of them, default
    all); edges mirror.

    Output ``m`` is ``sum_j kernel[j] * img[start + step * m + j - len(kernel) // 2]``, which is
    scipy's ``correlate1d(img, kernel, mode="mirror")[start::step]`` (the same centring for even
    kernels) up to float32 rounding, computed as banded matrix products (decimation skips the
    outputs it would throw away; negligible end taps are skipped too). Returns float32, written
    into ``out`` when given.
    """
    x = np.asarray(img, dtype=np.float32)
    vertical = _check_axis(x, axis)
    k = np.asarray(kernel, dtype=np.float32)
    n = x.shape[-2] if vertical else x.shape[-1]
    centre = len(k) // 2
    trim = _negligible_taps(k)
    k = k[trim : len(k) - trim]
    block = max(8, _BLOCK_OUT // step)
    band = np.zeros((step * (block - 1) + len(k), block), np.float32)
    for m in range(block):  # output m reads the inputs from step * m on
        band[step * m : step * m + len(k), m] = k
    n_out = len(range(start, n, step))
    n_out = n_out if count is None else min(count, n_out)
    return _banded_product(x, band, vertical, n_out, start - centre + trim, step * block, mirror_index, out)


#: Taps smaller than this fraction of a kernel's largest are dropped from both of its ends: with
#: weights below 1e-9 of the peak they change no float32 result (whose rounding is 6e-8), and
#: the 41-tap MTF Gaussians carry many of them (only 23 of the 41 taps of the 0.35-gain one
#: are above it).
_NEGLIGIBLE_TAP = 1e-9


def _negligible_taps(k: np.ndarray) -> int:
    """How many taps can be dropped from each end of ``k`` (the same number at both ends, so
    that the kernel keeps its centre)."""
    small = np.abs(k) < _NEGLIGIBLE_TAP * np.abs(k).max()
    lead = int(np.argmin(small)) if not small.all() else 0
    tail = int(np.argmin(small[::-1])) if not small.all() else 0
    return min(lead, tail)


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


def _nearest_weights(t: np.ndarray) -> np.ndarray:
    """Nearest neighbour over offsets -1, 0, 1, 2: the coarse pixel the sample falls in."""
    return np.stack([0 * t, (t < 0.5) * 1.0, (t >= 0.5) * 1.0, 0 * t])


def _bilinear_weights(t: np.ndarray) -> np.ndarray:
    """Linear interpolation over offsets -1, 0, 1, 2."""
    return np.stack([0 * t, 1 - t, t, 0 * t])


def _bspline_weights(t: np.ndarray) -> np.ndarray:
    """Cubic B-spline weights (GDAL's ``cubicspline``: smoothing, not interpolating)."""
    d = np.stack([1 + t, t, 1 - t, 2 - t])
    return np.where(d <= 1, 2 / 3 - d**2 + d**3 / 2, (2 - d) ** 3 / 6)


#: Upsampling kernels of ``-r/--resampling`` (GDAL's names, and the toolbox's ``interp23tap``):
#: each a function of the fractional position ``t`` giving the weights of the coarse pixels at
#: offsets ``1 - reach .. reach`` (:func:`kernel_reach`: 2 for the 4-tap kernels).
UPSAMPLING_KERNELS = {
    "nearest": _nearest_weights,
    "bilinear": _bilinear_weights,
    "cubic": _cubic_weights,
    "cubicspline": _bspline_weights,
    "interp23tap": interp23_weights,
}

#: Reach of the kernels that are not 4 taps long.
_KERNEL_REACH = {"interp23tap": INTERP23_REACH}


def kernel_reach(kernel: str) -> int:
    """Coarse pixels an upsampling kernel reads on either side of a sample (the margin a tile
    read needs around its window): 2 for the 4-tap kernels, 8 for ``interp23tap``."""
    if kernel not in UPSAMPLING_KERNELS:
        raise ValueError(f"unknown upsampling kernel {kernel!r}")
    return _KERNEL_REACH.get(kernel, 2)


def upsample_cubic(img: np.ndarray, ratio: int, rows: tuple[int, int] | None = None,
                   cols: tuple[int, int] | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Upsample ``(..., h, w)`` by ``ratio`` with Keys cubic convolution (a = -0.5) on
    area-centred grids, reflecting (edge pixels repeated) at the edges. Returns
    ``(..., h*ratio, w*ratio)`` float32, or only the output rows and columns ``(start, stop)``
    asked for (starts multiples of ``ratio``), computed without the rest; written into ``out``
    when given."""
    return upsample(img, ratio, rows, cols, out, kernel="cubic")


def upsample(img: np.ndarray, ratio: int, rows: tuple[int, int] | None = None,
             cols: tuple[int, int] | None = None, out: np.ndarray | None = None,
             kernel: str = "cubic", phase: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """:func:`upsample_cubic` with any kernel of :data:`UPSAMPLING_KERNELS`, and optionally a
    sub-pixel ``phase`` (rows, columns; each in [0, 1) coarse pixels): output pixel ``r*k + p``
    then samples the input at ``k + phase + (p + 0.5)/r - 0.5`` (pixel-centre coordinates), so a
    grid offset by a fraction of a coarse pixel is resampled in this one pass."""
    img = np.asarray(img, dtype=np.float32)
    # columns first: the along-row products are the slower kind, and this way they make only
    # the coarse rows' worth of outputs
    return upsample_axis(upsample_axis(img, ratio, -1, cols, kernel=kernel, phase=phase[1]),
                         ratio, -2, rows, out, kernel=kernel, phase=phase[0])


def upsample_axis(img: np.ndarray, ratio: int, axis: int = -1,
                  span: tuple[int, int] | None = None, out: np.ndarray | None = None,
                  kernel: str = "cubic", phase: float = 0.0) -> np.ndarray:
    """Upsample ``img`` by ``ratio`` along its rows (``axis=-2``) or columns (``axis=-1``) with
    Keys cubic convolution (or another ``kernel``) on area-centred grids (see
    :func:`upsample_cubic`); ``span`` keeps only outputs ``start .. stop - 1`` (``start`` a
    multiple of ``ratio``); ``out`` receives them when given; ``phase`` (in [0, 1)) shifts the
    samples by that fraction of a coarse pixel (see :func:`upsample`)."""
    if not 0.0 <= phase < 1.0:
        raise ValueError(f"phase {phase} not in [0, 1)")
    weights = UPSAMPLING_KERNELS[kernel]
    reach = kernel_reach(kernel)
    x = np.asarray(img, dtype=np.float32)
    vertical = _check_axis(x, axis)
    n = x.shape[-2] if vertical else x.shape[-1]
    start, stop = span if span is not None else (0, n * ratio)
    if start % ratio or not 0 <= start <= stop <= n * ratio:
        raise ValueError(f"output span {start}..{stop} not within 0..{n * ratio} on the coarse grid")
    per_block = max(1, _BLOCK_OUT // ratio)  # coarse pixels whose fine pixels make one block
    # fine pixel r*k + p lies at coarse position k + pos_p and reads coarse k + base_p + 1 -
    # reach .. k + base_p + reach, with base_p in {-1, 0} (and 1 with a phase): a block reads
    # `reach` coarse pixels either side of it (one more after it with a phase)
    positions = [(p + 0.5) / ratio - 0.5 + phase for p in range(ratio)]
    extra = 1 if max(math.floor(pos) for pos in positions) > 0 else 0
    band = np.zeros((per_block + 2 * reach + extra, per_block * ratio), np.float32)
    for p, pos in enumerate(positions):
        base = math.floor(pos)
        w = weights(np.array(pos - base))
        for k in range(per_block):
            for m, wm in zip(range(1 - reach, reach + 1), w):
                band[k + base + m + reach, ratio * k + p] = wm
    first = start // ratio - reach
    return _banded_product(x, band, vertical, stop - start, first, per_block, symmetric_index, out)


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Erode a bool mask ``(H, W)`` by a ``(2 radius + 1)`` square: a pixel stays ``True`` only
    where its whole square is; pixels outside the array count as ``True``."""
    mask = np.asarray(mask, dtype=bool)
    if radius <= 0 or mask.all():
        return mask
    bad = ~mask
    for axis in (0, 1):  # a square is separable: grow the False pixels along rows, then columns
        bad = _any_within(bad, radius, axis)
    return ~bad


def _any_within(flags: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Whether any flag lies within ``radius`` along ``axis`` (window counts from cumulative
    sums)."""
    n = flags.shape[axis]
    counts = np.cumsum(flags, axis=axis, dtype=np.int32)
    counts = np.concatenate([np.zeros_like(counts.take([0], axis=axis)), counts], axis=axis)
    idx = np.arange(n)
    hi = counts.take(np.minimum(idx + radius + 1, n), axis=axis)
    lo = counts.take(np.maximum(idx - radius, 0), axis=axis)
    return hi > lo


def decimate_mean(img: np.ndarray, ratio: int) -> np.ndarray:
    """Block mean over ``ratio x ratio`` blocks (area-centred decimation); sizes must divide."""
    img = np.asarray(img, dtype=np.float32)
    h, w = img.shape[-2:]
    if h % ratio or w % ratio:
        raise ValueError(f"image size {h}x{w} is not a multiple of the ratio {ratio}")
    shaped = img.reshape(*img.shape[:-2], h // ratio, ratio, w // ratio, ratio)
    return shaped.mean(axis=(-3, -1))


# --------------------------------------------------------------------------------------------
# Hole filling (invalid pixels replaced before fusion)

#: Iterations of the local fill that replaces invalid pixels before fusion (see fill_invalid).
FILL_ITERATIONS = 12

#: Side of the chunks :func:`fill_invalid` works in: only chunks holding an invalid pixel are
#: filled (each with a halo of the fill's reach), so a window whose only holes are thin margins
#: costs little.
_FILL_CHUNK = 64


def fill_invalid(img: np.ndarray, valid: np.ndarray, fallback: np.ndarray | float,
                 iterations: int = FILL_ITERATIONS) -> np.ndarray:
    """Replace invalid pixels of ``img`` ((H, W) or (C, H, W)) by a local average of valid ones.

    Each iteration spreads valid values one pixel further with a normalised 3x3 mean; pixels
    still unreached after ``iterations`` take ``fallback`` (one value or one per band). The value
    at a pixel depends only on pixels within ``iterations`` of it, and its arithmetic not on where
    the array starts, so tiles with a halo of at least that many pixels fill identically.
    """
    if valid.all():
        return img
    squeeze = img.ndim == 2
    arr = img[None] if squeeze else img
    out = np.array(arr, dtype=np.float32)
    h, w = valid.shape
    c, k = _FILL_CHUNK, iterations
    for y in range(0, h, c):
        for x in range(0, w, c):
            if valid[y : y + c, x : x + c].all():
                continue
            y0, y1, x0, x1 = max(0, y - k), min(h, y + c + k), max(0, x - k), min(w, x + c + k)
            filled = _fill_window(arr[:, y0:y1, x0:x1], valid[y0:y1, x0:x1], fallback, k)
            out[:, y : y + c, x : x + c] = filled[:, y - y0 : y - y0 + c, x - x0 : x - x0 + c]
    return out[0] if squeeze else out


def _box3_sum(a: np.ndarray) -> np.ndarray:
    """Sum over each pixel's 3x3 neighbourhood (zeros outside), added in the same order at every
    pixel so that the result does not depend on where the array was cut."""
    s = a.copy()
    s[..., 1:, :] += a[..., :-1, :]
    s[..., :-1, :] += a[..., 1:, :]
    t = s.copy()
    t[..., 1:] += s[..., :-1]
    t[..., :-1] += s[..., 1:]
    return t


def _fill_window(arr: np.ndarray, valid: np.ndarray, fallback, iterations: int) -> np.ndarray:
    """:func:`fill_invalid` on one ``(C, h, w)`` window, whole."""
    out = np.where(valid, arr, 0.0).astype(np.float32)
    weight = valid.astype(np.float32)
    known = valid.copy()
    for _ in range(iterations):
        if known.all():
            break
        s = _box3_sum(out * weight)
        wsum = _box3_sum(weight)
        grow = (~known) & (wsum > 0)
        out = np.where(grow, s / np.maximum(wsum, 1e-12), out)
        weight = np.where(grow, 1.0, weight).astype(np.float32)
        known |= grow
    fb = np.broadcast_to(np.asarray(fallback, dtype=np.float32).reshape(-1, 1, 1), out.shape)
    return np.where(known, out, fb)
