"""The pansharpening toolbox's filters (Vivone et al. 2015, 2021; reference §9), for
``evaluate --protocol toolbox`` and for a classical base matched to the toolbox's:

* ``genMTF`` / ``MTF_PAN``: the MTF-matched 2-D FIR designed by frequency sampling with a
  Kaiser window (:func:`toolbox_mtf_kernel`), applied with edges replicated
  (:func:`toolbox_lowpass`, :func:`fir_filter`);
* ``imresize(.., 1/ratio, 'nearest')``: :func:`decimate_nearest` (samples ``ratio // 2 +
  ratio * k``); the two make :func:`toolbox_degrade`;
* ``interp23tap``: dyadic 23-tap interpolation with circular borders (:func:`interp23tap`), and
  its continuous kernel (:func:`interp23_weights`), which ``filters.upsample(..,
  kernel="interp23tap")`` samples at any phase and ratio.

Float64 throughout, as MATLAB computes; whole arrays (no tiling).
"""

from __future__ import annotations

import functools
import math

import numpy as np

#: Taps of the toolbox's MTF FIR (``N = 41``).
FIR_TAPS = 41


#: Half of the toolbox's 23-tap interpolation kernel, centre first (``interp23tap``'s CDF23
#: before its factor 2): a half-band filter, zero at every even offset but the centre.
INTERP23_HALF = (0.5, 0.305334091185, 0.0, -0.072698593239, 0.0, 0.021809577942, 0.0,
                 -0.005192756653, 0.0, 0.000807762146, 0.0, -0.000060081482)

#: Kaiser window parameter of the toolbox's FIR design (MATLAB's ``kaiser(N)`` default).
TOOLBOX_KAISER_BETA = 0.5


def huang_window(window: np.ndarray) -> np.ndarray:
    """The circularly symmetric 2-D window MATLAB's ``fwind1`` makes from a 1-D ``window`` of
    ``n`` samples (Huang's method): ``w(t1, t2) = window(sqrt(t1^2 + t2^2))`` with ``t`` running
    over ``[-1, 1]`` in ``n`` steps, linearly interpolated, and 0 beyond radius 1."""
    window = np.asarray(window, np.float64)
    n = len(window)
    t = np.linspace(-1.0, 1.0, n)
    radius = np.hypot(t[:, None], t[None, :])
    return np.where(radius <= 1.0, np.interp(radius, t, window), 0.0)


def toolbox_mtf_kernel(gnyq: float, ratio: int, taps: int = FIR_TAPS) -> np.ndarray:
    """The toolbox's MTF-matched 2-D FIR (``genMTF`` / ``MTF_PAN``), ``taps x taps`` (odd).

    A Gaussian frequency response with ``alpha = sqrt(((taps - 1) fcut / 2)^2 / (-2 ln gnyq))``
    frequency samples, ``fcut = 1 / ratio``, normalised to peak 1, is turned into a filter by
    frequency sampling (the inverse DFT, centred: MATLAB's ``fsamp2``) and windowed with
    :func:`huang_window` of a Kaiser window (beta :data:`TOOLBOX_KAISER_BETA`): MATLAB's
    ``fwind1(Hd, kaiser(N))``. It is not renormalised (its DC gain is 0.998-0.999). The
    response equals ``gnyq`` at the ``(taps - 1) / (2 ratio)``-th DFT frequency,
    ``(taps - 1) / (2 ratio taps)`` cycles per pixel, just below the low-res Nyquist
    ``1 / (2 ratio)`` (where it is a little lower), up to the window's effect.
    """
    if taps % 2 == 0:
        raise ValueError(f"the toolbox FIR has an odd number of taps, got {taps}")
    if not 0.0 < gnyq < 1.0:
        raise ValueError(f"MTF gain at Nyquist must lie in (0, 1), got {gnyq}")
    alpha = math.sqrt(((taps - 1) * (1.0 / ratio) / 2) ** 2 / (-2.0 * math.log(gnyq)))
    x = np.arange(taps) - (taps - 1) / 2
    g = np.exp(-0.5 * (x / alpha) ** 2)
    response = np.outer(g, g)  # fspecial('gaussian') divided by its maximum
    h = np.real(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(response))))
    return h * huang_window(np.kaiser(taps, TOOLBOX_KAISER_BETA))


def response_at(kernel: np.ndarray, f: float) -> float:
    """Magnitude of a centred 1-D kernel's, or a 2-D kernel's along its rows (axis 0),
    frequency response at ``f`` cycles per pixel."""
    k = np.asarray(kernel, np.float64)
    k = k.sum(axis=1) if k.ndim == 2 else k
    n = np.arange(len(k)) - (len(k) - 1) / 2.0
    return float(abs(np.sum(k * np.exp(-2j * np.pi * f * n))))


def _fast_len(n: int) -> int:
    """The smallest 2-3-5-smooth length >= ``n`` (where FFTs are fastest)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def fir_filter(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Filter ``img`` (``(H, W)`` or ``(..., H, W)``) with a centred 2-D ``kernel`` (odd sides),
    edges replicated: MATLAB's ``imfilter(img, kernel, 'replicate')`` (a correlation), computed
    by FFT in float64. Returns float64 of the input's shape."""
    img = np.asarray(img, np.float64)
    k = np.asarray(kernel, np.float64)
    ph, pw = k.shape[0] // 2, k.shape[1] // 2
    h, w = img.shape[-2:]
    lead = [(0, 0)] * (img.ndim - 2)
    padded = np.pad(img, lead + [(ph, ph), (pw, pw)], mode="edge")
    shape = (_fast_len(padded.shape[-2] + 2 * ph), _fast_len(padded.shape[-1] + 2 * pw))
    # correlation with k is convolution with k flipped
    spectrum = np.fft.rfft2(k[::-1, ::-1], shape)
    full = np.fft.irfft2(np.fft.rfft2(padded, shape) * spectrum, shape)
    return full[..., 2 * ph : 2 * ph + h, 2 * pw : 2 * pw + w]


def toolbox_gaussian_gnyq(gnyq: float, taps: int = FIR_TAPS) -> float:
    """The gain at Nyquist to give :func:`ssdiff_cli.filters.mtf_sigma`'s Gaussian so that it has
    the width of the toolbox FIR's (:func:`toolbox_mtf_kernel`): the toolbox places its design
    gain at the ``(taps - 1) / (2 ratio)``-th of ``taps`` DFT samples, which makes its Gaussian
    ``taps / (taps - 1)`` times wider in space; ``sigma`` scales as ``sqrt(-ln gnyq)``."""
    return float(gnyq) ** ((taps / (taps - 1)) ** 2)


def toolbox_lowpass(img: np.ndarray, gnyq: float | np.ndarray, ratio: int) -> np.ndarray:
    """``img`` (``(H, W)`` or ``(C, H, W)``) filtered with :func:`toolbox_mtf_kernel` of its
    gain (one, or one per band), edges replicated: the toolbox's ``MTF`` / ``MTF_PAN``. Float64."""
    img = np.asarray(img, np.float64)
    if img.ndim == 2:
        return fir_filter(img, toolbox_mtf_kernel(float(np.atleast_1d(gnyq)[0]), ratio))
    gains = np.broadcast_to(np.asarray(gnyq, np.float64), (img.shape[0],))
    out = np.empty_like(img)
    done: dict[float, np.ndarray] = {}
    for i, g in enumerate(gains):
        key = round(float(g), 9)
        if key not in done:
            done[key] = toolbox_mtf_kernel(key, ratio)
        out[i] = fir_filter(img[i], done[key])
    return out


def decimate_nearest(img: np.ndarray, ratio: int) -> np.ndarray:
    """The toolbox's decimation, ``imresize(img, 1/ratio, 'nearest')``: keeps the 0-based
    samples ``ratio // 2 + ratio * k`` on both axes (2, 6, 10 ... at ratio 4; 1, 3, 5 ... at
    ratio 2): for an even ratio half a pixel past each block's centre. Sizes must divide."""
    h, w = img.shape[-2:]
    if h % ratio or w % ratio:
        raise ValueError(f"image size {h}x{w} is not a multiple of the ratio {ratio}")
    s = ratio // 2
    return np.ascontiguousarray(img[..., s::ratio, s::ratio])


def toolbox_degrade(img: np.ndarray, gnyq: float | np.ndarray, ratio: int) -> np.ndarray:
    """The toolbox's degradation: :func:`toolbox_lowpass` then :func:`decimate_nearest`."""
    return decimate_nearest(toolbox_lowpass(img, gnyq, ratio), ratio)


def interp23tap_kernel() -> np.ndarray:
    """The toolbox's 23-tap interpolation kernel (``2 * CDF23``, symmetric; sums to 2: the
    gain that makes up for the zeros inserted between samples)."""
    half = 2.0 * np.asarray(INTERP23_HALF)
    return np.concatenate([half[:0:-1], half])


def _circular_filter_axis(x: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """Circular correlation of ``x`` with a centred odd ``kernel`` along ``axis`` (by FFT)."""
    n = x.shape[axis]
    taps = np.zeros(n)
    c = len(kernel) // 2
    for j, v in enumerate(kernel):  # out[i] = sum_j k[j] x[i + j - c]: wrap the taps
        taps[(c - j) % n] += v
    return np.fft.irfft(np.fft.rfft(x, axis=axis) * _along(np.fft.rfft(taps), axis, x.ndim),
                        n, axis=axis)


def _along(v: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    shape = [1] * ndim
    shape[axis] = len(v)
    return v.reshape(shape)


def interp23tap(img: np.ndarray, ratio: int) -> np.ndarray:
    """The toolbox's ``interp23tap``: upsample ``(..., h, w)`` by ``ratio`` (a power of two) in
    dyadic stages, each inserting zeros between samples (the first stage puts the samples at
    the odd positions, later stages at the even ones) and filtering both axes with
    :func:`interp23tap_kernel`, borders circular. Low-res sample ``k`` lands on high-res index
    ``ratio * k + ratio / 2`` (the phase :func:`decimate_nearest` takes it from). Float64.

    Another ratio raises ``ValueError``: the toolbox prints an error and returns its input
    unchanged (its loop also runs ``ratio / 2`` stages, so at ratio 8 it would upsample x16;
    here there are ``log2(ratio)``)."""
    if ratio < 2 or ratio & (ratio - 1):
        raise ValueError(f"interp23tap needs a power-of-two ratio, got {ratio}")
    out = np.asarray(img, np.float64)
    k = interp23tap_kernel()
    for stage in range(int(math.log2(ratio))):
        h, w = out.shape[-2:]
        up = np.zeros(out.shape[:-2] + (2 * h, 2 * w))
        s = 1 if stage == 0 else 0
        up[..., s::2, s::2] = out
        out = _circular_filter_axis(_circular_filter_axis(up, k, -1), k, -2)
    return out


#: Levels of dyadic refinement tabulating the 23-tap kernel (:func:`interp23_table`): samples
#: 1/4096 coarse pixel apart, between which it is interpolated linearly (error below 1e-7).
INTERP23_LEVELS = 12
#: Coarse pixels the 23-tap kernel is kept to either side: beyond 8 its values are below 3e-8.
INTERP23_REACH = 8


@functools.cache
def interp23_table() -> tuple[np.ndarray, np.ndarray]:
    """The continuous kernel of the toolbox's 23-tap interpolator: positions (coarse pixels) and
    values. The kernel is interpolating (zero at every even offset but the centre), so the
    dyadic refinement that ``interp23tap`` runs keeps every sample it has and only fills the
    new ones between them; refining a unit impulse ``INTERP23_LEVELS`` times therefore gives
    the limit function exactly at every ``1/2^L`` point, and ``interp23tap`` at ratio ``2^m``
    is this kernel sampled at ``1/2^m`` steps. Sampling it at any other offset gives the same
    interpolator with a sub-pixel phase, or at any ratio."""
    k = interp23tap_kernel()
    x = np.zeros(2 * (len(k) // 2) + 1)
    x[len(x) // 2] = 1.0
    for _ in range(INTERP23_LEVELS):
        up = np.zeros(2 * len(x) - 1)
        up[::2] = x
        x = np.convolve(up, k, mode="same")
    pos = (np.arange(len(x)) - len(x) // 2) / 2.0**INTERP23_LEVELS
    keep = np.abs(pos) <= INTERP23_REACH
    return pos[keep], x[keep]


def interp23_weights(t: np.ndarray) -> np.ndarray:
    """The 23-tap kernel's weights over offsets ``-7 .. 8`` for a sample at fractional ``t``,
    normalised to sum to one (the kernel reproduces constants; this keeps it exact)."""
    pos, val = interp23_table()
    offsets = np.arange(1 - INTERP23_REACH, INTERP23_REACH + 1, dtype=np.float64)
    t = np.asarray(t, np.float64)
    w = np.interp(t[..., None] - offsets, pos, val, left=0.0, right=0.0)
    w /= w.sum(axis=-1, keepdims=True)
    return np.moveaxis(w, -1, 0)
