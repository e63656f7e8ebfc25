"""Measuring the misregistration between a PAN and its MS, on arrays at MS resolution.

Sign convention, used everywhere here: a shift ``(dy, dx)`` of ``mov`` relative to ``ref`` means
that ``mov``'s content sits ``dy`` rows lower and ``dx`` columns further right than in ``ref``
(``mov(y, x) == ref(y - dy, x - dx)``). :func:`measure_shift` takes the degraded PAN as ``ref`` and
the MS intensity as ``mov``, so its result is where the MS content lies relative to the PAN, in PAN
pixels; shifting the MS by ``(-dy, -dx)`` lines it up with the PAN.

The method is phase correlation: the normalised cross-power spectrum of two Hann-windowed,
mean-removed images is inverse-transformed, its integer peak located, and the peak refined to
1/``upsample`` pixel with a matrix-multiply DFT evaluated on a small neighbourhood around it
(Guizar-Sicairos, Thurman and Fienup, 2008).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: Default thresholds of :func:`verdict`, in PAN pixels.
WARN_PX = 0.5
REFUSE_PX = 2.0
#: A window's correlation peak must exceed ``NOISE_PEAK / sqrt(pixels)``: unrelated white noise
#: gives at most about half that (measured over 100 trials at 41, 64 and 128 px windows).
NOISE_PEAK = 10.0


def _hann2d(h: int, w: int) -> np.ndarray:
    return np.outer(np.hanning(h), np.hanning(w))


def _upsampled_dft(
    spec: np.ndarray, centre: tuple[float, float], upsample: int, half_width: float = 1.5
) -> np.ndarray:
    """Inverse DFT of ``spec`` sampled at shifts ``centre + k / upsample`` for
    ``|k / upsample| <= half_width`` (real part), without computing the whole upsampled array."""
    h, w = spec.shape
    n = int(math.ceil(half_width * upsample))
    offs = np.arange(-n, n + 1) / upsample
    sy = centre[0] + offs
    sx = centre[1] + offs
    fy = np.fft.fftfreq(h)
    fx = np.fft.fftfreq(w)
    ky = np.exp(2j * np.pi * np.outer(sy, fy))  # (m, h)
    kx = np.exp(2j * np.pi * np.outer(fx, sx))  # (w, m)
    return (ky @ spec @ kx).real / (h * w)


def phase_correlation(
    ref: np.ndarray, mov: np.ndarray, window: bool = True, upsample: int = 100
) -> tuple[float, float, float]:
    """Sub-pixel shift ``(dy, dx, peak)`` of ``mov`` relative to ``ref``.

    If ``mov`` is ``ref`` moved by ``+d`` (its content lower/further right), the result is ``+d``.
    ``peak`` is the height of the phase-correlation peak, in (0, 1]: 1 for a pure translation of
    identical images, near ``1/sqrt(H W)`` for unrelated noise. Both arrays are 2-D, the same
    shape, finite. Shifts are found in ``[-H/2, H/2)`` x ``[-W/2, W/2)``; the result is refined to
    ``1/upsample`` pixel.

    Frequencies whose cross-power is below ``SPECTRUM_FLOOR`` times the strongest carry no usable
    phase (they hold the window's leakage and rounding noise, e.g. beyond the cut-off of a smooth
    image) and are left out; ``peak`` is normalised by the number of frequencies kept.
    """
    dy, dx, peak, _ = _phase_correlation(ref, mov, window, upsample)
    return dy, dx, peak


#: Relative cross-power below which a frequency is left out of the phase correlation.
SPECTRUM_FLOOR = 1e-5


def _phase_correlation(
    ref: np.ndarray, mov: np.ndarray, window: bool, upsample: int
) -> tuple[float, float, float, int]:
    ref = np.asarray(ref, dtype=np.float64)
    mov = np.asarray(mov, dtype=np.float64)
    if ref.ndim != 2 or ref.shape != mov.shape:
        raise ValueError(f"need two 2-D arrays of the same shape, got {ref.shape} and {mov.shape}")
    h, w = ref.shape
    a = ref - ref.mean()
    b = mov - mov.mean()
    if window:
        win = _hann2d(h, w)
        a = a * win
        b = b * win
    cross = np.fft.fft2(b) * np.conj(np.fft.fft2(a))
    mag = np.abs(cross)
    top = float(mag.max()) if mag.size else 0.0
    if not top > 0.0:
        return 0.0, 0.0, 0.0, 0
    keep = mag > SPECTRUM_FLOOR * top
    keep[0, 0] = False  # the mean carries no position information
    kept = int(keep.sum())
    if kept == 0:
        return 0.0, 0.0, 0.0, 0
    spec = np.where(keep, cross / np.where(keep, mag, 1.0), 0.0)
    scale = (h * w) / kept  # so that a perfect match peaks at 1
    corr = np.fft.ifft2(spec).real * scale
    iy, ix = np.unravel_index(int(np.argmax(corr)), corr.shape)
    # wrap into [-h/2, h/2)
    dy0 = ((iy + h // 2) % h) - h // 2
    dx0 = ((ix + w // 2) % w) - w // 2
    if upsample <= 1:
        return float(dy0), float(dx0), float(corr[iy, ix]), kept
    fine = _upsampled_dft(spec, (float(dy0), float(dx0)), upsample) * scale
    ky, kx = np.unravel_index(int(np.argmax(fine)), fine.shape)
    n = (fine.shape[0] - 1) // 2
    dy = dy0 + (ky - n) / upsample
    dx = dx0 + (kx - n) / upsample
    return float(dy), float(dx), float(fine[ky, kx]), kept


@dataclass
class WindowShift:
    """One window of :func:`measure_shift`; shifts in MS pixels."""

    row: int
    col: int
    height: int
    width: int
    dy: float
    dx: float
    peak: float
    valid_fraction: float
    accepted: bool
    reason: str = ""


@dataclass
class ShiftReport:
    """The robust shift of the MS relative to the PAN.

    ``dy``/``dx`` are in PAN pixels (MS-pixel shift times ``ratio``), the median over the accepted
    windows; NaN when no window could be used (see ``windows`` for why).
    """

    dy: float
    dx: float
    ratio: int
    n_used: int
    windows: list[WindowShift] = field(default_factory=list)

    @property
    def magnitude(self) -> float:
        return float(math.hypot(self.dy, self.dx))

    @property
    def dy_ms(self) -> float:
        return self.dy / self.ratio

    @property
    def dx_ms(self) -> float:
        return self.dx / self.ratio

    @property
    def rejected(self) -> list[WindowShift]:
        return [w for w in self.windows if not w.accepted]

    @property
    def measured(self) -> bool:
        return self.n_used > 0

    def summary(self) -> str:
        if not self.measured:
            reasons = "; ".join(sorted({w.reason for w in self.windows})) or "no window"
            return f"shift not measurable ({reasons})"
        spread = ""
        used = [w for w in self.windows if w.accepted]
        if len(used) > 1:
            sy = float(np.std([w.dy for w in used])) * self.ratio
            sx = float(np.std([w.dx for w in used])) * self.ratio
            spread = f", spread {sy:.2f}/{sx:.2f}"
        return (
            f"MS vs PAN shift dy={self.dy:+.2f} dx={self.dx:+.2f} PAN px "
            f"(|d|={self.magnitude:.2f}; {self.n_used}/{len(self.windows)} windows{spread})"
        )


def _window_starts(n: int, size: int, count: int) -> list[int]:
    if size >= n or count <= 1:
        return [max(0, (n - size) // 2)]
    starts = np.linspace(0, n - size, count).round().astype(int)
    return sorted(set(int(s) for s in starts))


def _grid(n_windows: int) -> tuple[int, int]:
    rows = max(1, int(math.floor(math.sqrt(n_windows))))
    cols = max(1, int(math.ceil(n_windows / rows)))
    return rows, cols


def measure_shift(
    pan_lowres: np.ndarray,
    ms_intensity: np.ndarray,
    valid: np.ndarray | None = None,
    ratio: int | None = None,
    n_windows: int = 9,
    window_size: int | None = None,
    *,
    min_peak: float = 0.05,
    min_valid: float = 0.7,
    min_texture: float = 0.05,
    upsample: int = 100,
) -> ShiftReport:
    """Measure the shift of ``ms_intensity`` relative to ``pan_lowres`` in windows over the scene.

    Both are 2-D arrays on the MS grid: the PAN degraded to MS resolution and a weighted mean of
    the MS bands. ``valid`` (same shape, bool) marks usable pixels; non-finite values are invalid
    too. ``ratio`` (required) converts MS pixels into PAN pixels.

    Windows of ``window_size`` MS pixels (default: half the smaller side, clipped to 32..128) are
    spread on a grid of about ``n_windows`` (3x3 for 9) across the scene; a scene smaller than 64
    MS pixels gets one whole-image window. In each window the mean is removed and the data scaled
    to unit variance, invalid pixels being set to the mean. A window is rejected when fewer than
    ``min_valid`` of its pixels are valid, when either input is flat there (standard deviation
    below ``min_texture`` times the scene's), or when its correlation peak is below ``min_peak`` or
    below ``NOISE_PEAK / sqrt(frequencies kept)`` (about twice the highest peak two unrelated
    noise images give through the Hann window).
    When every grid window is rejected, the whole image is tried as a last resort.
    """
    if ratio is None:
        raise TypeError("measure_shift() needs the PAN/MS ratio")
    ref = np.asarray(pan_lowres, dtype=np.float64)
    mov = np.asarray(ms_intensity, dtype=np.float64)
    if ref.ndim != 2 or ref.shape != mov.shape:
        raise ValueError(f"need two 2-D arrays of the same shape, got {ref.shape} and {mov.shape}")
    ok = np.isfinite(ref) & np.isfinite(mov)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != ref.shape:
            raise ValueError(f"valid mask shape {valid.shape} differs from {ref.shape}")
        ok &= valid
    h, w = ref.shape
    if not ok.any():
        return ShiftReport(math.nan, math.nan, ratio, 0, [])
    scene_std = (float(np.std(ref[ok])), float(np.std(mov[ok])))

    small = min(h, w) < 64
    if window_size is None:
        window_size = min(128, max(32, min(h, w) // 2))
    wy, wx = min(window_size, h), min(window_size, w)
    if small:
        boxes = [(0, 0, h, w)]
    else:
        rows, cols = _grid(n_windows)
        boxes = [
            (r, c, wy, wx) for r in _window_starts(h, wy, rows) for c in _window_starts(w, wx, cols)
        ]

    def run(box: tuple[int, int, int, int]) -> WindowShift:
        r, c, bh, bw = box
        m = ok[r : r + bh, c : c + bw]
        frac = float(m.mean())
        res = WindowShift(r, c, bh, bw, math.nan, math.nan, 0.0, frac, False)
        if frac < min_valid:
            res.reason = f"too many invalid pixels ({1 - frac:.0%})"
            return res
        pieces = []
        for arr, sstd in zip((ref, mov), scene_std, strict=True):
            a = arr[r : r + bh, c : c + bw]
            mean = float(a[m].mean())
            std = float(a[m].std())
            if not std > min_texture * sstd or std == 0.0:
                res.reason = "flat texture"
                return res
            pieces.append(np.where(m, (a - mean) / std, 0.0))
        dy, dx, peak, kept = _phase_correlation(pieces[0], pieces[1], True, upsample)
        res.dy, res.dx, res.peak = dy, dx, peak
        floor = max(min_peak, NOISE_PEAK / math.sqrt(max(kept, 1)))
        if peak < floor:
            res.reason = f"low correlation peak ({peak:.3f} < {floor:.3f})"
            return res
        res.accepted = True
        return res

    windows = [run(b) for b in boxes]
    if not any(x.accepted for x in windows) and not small:
        whole = run((0, 0, h, w))
        whole.reason = whole.reason or "whole-image fallback"
        windows.append(whole)
    used = [x for x in windows if x.accepted]
    if not used:
        return ShiftReport(math.nan, math.nan, ratio, 0, windows)
    dy = float(np.median([x.dy for x in used])) * ratio
    dx = float(np.median([x.dx for x in used])) * ratio
    return ShiftReport(dy, dx, ratio, len(used), windows)


def verdict(report: ShiftReport, warn_px: float = WARN_PX, refuse_px: float = REFUSE_PX) -> str:
    """``"ok"`` below ``warn_px`` PAN pixels, ``"refuse"`` at or above ``refuse_px``, else
    ``"warn"``; an unmeasurable shift gives ``"warn"`` (the caller cannot vouch for the pair)."""
    if not report.measured or not math.isfinite(report.magnitude):
        return "warn"
    mag = report.magnitude
    if mag >= refuse_px:
        return "refuse"
    if mag >= warn_px:
        return "warn"
    return "ok"
