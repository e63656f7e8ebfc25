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


# --- Sub-pixel refinement at PAN resolution --------------------------------------------------
#
# Phase correlation on the decimated scene sample (above) finds the shift to about 0.1-0.2 PAN
# px: both images are aliased at MS resolution and the PAN is box-averaged, which biases the
# sub-pixel peak. The refinement below models the MS sampling instead: each MS pixel is taken to
# be an affine combination of the bands' MTF-blurred view of the PAN at its centre, and the
# centres' common displacement is solved for by Gauss-Newton, the PAN low-pass being evaluated
# exactly at the displaced centres (a Gaussian sampled at each centre: no interpolation).

#: Per-window acceptance: least correlation between the PAN low-pass and the fitted intensity.
MIN_FIT_CORRELATION = 0.5
#: A window whose own standard error (PAN px) exceeds this is not used.
MAX_WINDOW_STDERR = 0.25
#: A combined estimate is confident when its standard error (PAN px) is at most this.
CONFIDENT_STDERR = 0.1
#: Gauss-Newton iterations at most, and the step (PAN px) below which a fit has converged.
FIT_ITERATIONS = 12
FIT_TOLERANCE = 1e-3


def _gaussian_taps(centres: np.ndarray, n: int, sigma: float):
    """The samples ``idx`` ``(len(centres), T)`` within 4 sigma of each centre (pixel-index
    coordinates over ``0..n-1``; clipped indices carry zero weight), their unit-sum Gaussian
    weights and the weights' derivative with respect to the centre."""
    reach = int(math.ceil(4.0 * sigma))
    base = np.floor(centres).astype(int)
    idx = base[:, None] + np.arange(-reach, reach + 2)[None, :]
    d = idx - centres[:, None]
    g = np.exp(-0.5 * (d / sigma) ** 2)
    g[(np.abs(d) > 4.0 * sigma) | (idx < 0) | (idx >= n)] = 0.0
    dg = g * d / sigma**2  # d g / d centre
    total = g.sum(axis=1, keepdims=True)
    total = np.where(total > 0, total, 1.0)
    w = g / total
    return np.clip(idx, 0, n - 1), w, dg / total - w * (dg.sum(axis=1, keepdims=True) / total)


def _apply_rows(img: np.ndarray, idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``out[k, :] = sum_t weights[k, t] * img[idx[k, t], :]``: a banded product along rows."""
    return np.einsum("kt,ktw->kw", weights, img[idx])


def sample_lowpass(pan: np.ndarray, ys: np.ndarray, xs: np.ndarray, sigma: float) -> np.ndarray:
    """The PAN blurred by a Gaussian of ``sigma`` PAN px, evaluated at rows ``ys`` x columns
    ``xs`` (pixel-index coordinates of ``pan``, any fraction): ``(len(ys), len(xs))``."""
    iy, wy, _ = _gaussian_taps(ys, pan.shape[0], sigma)
    ix, wx, _ = _gaussian_taps(xs, pan.shape[1], sigma)
    return _apply_rows(_apply_rows(pan, iy, wy).T, ix, wx).T


def _lowpass_and_gradient(pan: np.ndarray, ys: np.ndarray, xs: np.ndarray, sigma: float):
    """:func:`sample_lowpass` and its derivatives with respect to a common shift of ``ys`` and
    of ``xs``: three ``(len(ys), len(xs))`` arrays."""
    iy, wy, dwy = _gaussian_taps(ys, pan.shape[0], sigma)
    ix, wx, dwx = _gaussian_taps(xs, pan.shape[1], sigma)
    down = pan[iy]  # (len(ys), T, W): the rows each output row reads
    rows = np.einsum("kt,ktw->kw", wy, down)
    drows = np.einsum("kt,ktw->kw", dwy, down)
    # along columns: the same banded product on the transposed row results
    low = _apply_rows(rows.T, ix, wx).T
    return low, _apply_rows(drows.T, ix, wx).T, _apply_rows(rows.T, ix, dwx).T


@dataclass
class WindowFit:
    """One window of :func:`fit_displacement`: ``dy``/``dx`` in PAN px in this module's sign
    convention (where the MS content lies relative to the PAN), ``stderr`` the fit's own
    standard error (PAN px), ``correlation`` between the PAN low-pass and the fitted intensity.
    ``row``/``col``/``height``/``width`` locate the window on the MS grid."""

    row: int
    col: int
    height: int
    width: int
    dy: float = math.nan
    dx: float = math.nan
    stderr: float = math.nan
    correlation: float = math.nan
    iterations: int = 0
    accepted: bool = False
    reason: str = ""


def fit_displacement(pan: np.ndarray, ms: np.ndarray, valid: np.ndarray, ys: np.ndarray,
                     xs: np.ndarray, sigma: float, start: tuple[float, float] = (0.0, 0.0),
                     fit: WindowFit | None = None) -> WindowFit:
    """Fit the displacement of an MS window relative to the PAN, at PAN resolution.

    ``pan`` (H, W) is a PAN window (finite everywhere: fill holes first), ``ms`` (C, h, w) the MS
    window on its own grid, ``valid`` (h, w) the MS pixels to use (valid MS whose PAN support is
    valid too). ``ys`` (h,) and ``xs`` (w,) are the MS pixel centres where the grids place them,
    in ``pan``'s pixel-index coordinates; ``sigma`` the MTF-matched Gaussian's (PAN px).
    ``start`` is a first guess in this module's convention (``(dy, dx)``, PAN px).

    Model: ``L(ys + ey, xs + ex) = a + sum_b w_b ms_b`` with ``L`` the blurred PAN. The band
    weights are eliminated (variable projection) and ``e`` found by Gauss-Newton; the result is
    ``(dy, dx) = -e``: samples really taken ``e`` further on show the MS content ``e`` behind.
    """
    h, w = valid.shape
    res = fit or WindowFit(0, 0, h, w)
    n = int(valid.sum())
    bands = ms.shape[0]
    if n < 8 * (bands + 3):
        res.reason = f"too few valid pixels ({n})"
        return res
    bands_at = ms[:, valid].T.astype(np.float64)
    bands_at = (bands_at - bands_at.mean(axis=0)) / np.maximum(bands_at.std(axis=0), 1e-12)
    design = np.concatenate([bands_at, np.ones((n, 1))], axis=1)
    gram_inv = np.linalg.pinv(design.T @ design)  # standardised columns: well conditioned
    pan = np.asarray(pan, dtype=np.float64)

    def blurred(e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The PAN low-pass at the displaced centres (valid pixels) and its Jacobian, both
        projected off the span of the bands: what the weights cannot explain."""
        low, gy, gx = _lowpass_and_gradient(pan, ys + e[0], xs + e[1], sigma)
        jac = np.stack([gy[valid], gx[valid]], axis=1)
        low = low[valid]
        return low, off_span(low), off_span(jac)

    def off_span(v: np.ndarray) -> np.ndarray:
        return v - design @ (gram_inv @ (design.T @ v))

    e = -np.array(start, dtype=np.float64)
    step = np.full(2, np.inf)
    low, resid, jp = blurred(e)
    while res.iterations < FIT_ITERATIONS and np.abs(step).max() >= FIT_TOLERANCE:
        normal = jp.T @ jp
        if not np.all(np.isfinite(normal)) or np.linalg.cond(normal) > 1e12:
            res.reason = "flat texture"
            return res
        step = np.clip(np.linalg.solve(normal, -jp.T @ resid), -1.0, 1.0)  # trust region
        e = e + step
        low, resid, jp = blurred(e)
        res.iterations += 1
    fitted = low - resid
    var = float(resid @ resid) / max(n - bands - 3, 1)
    cov = var * np.linalg.inv(jp.T @ jp)
    res.dy, res.dx = float(-e[0]), float(-e[1])
    res.stderr = float(math.sqrt(max(cov[0, 0], 0) + max(cov[1, 1], 0)))
    sd = float(np.std(low)) * float(np.std(fitted))
    res.correlation = float(np.mean((low - low.mean()) * (fitted - fitted.mean())) / sd) if sd > 0 else 0.0
    if np.abs(step).max() >= FIT_TOLERANCE:
        res.reason = "did not converge"
    elif res.correlation < MIN_FIT_CORRELATION:
        res.reason = f"low correlation ({res.correlation:.2f})"
    elif res.stderr > MAX_WINDOW_STDERR:
        res.reason = f"imprecise ({res.stderr:.2f} PAN px)"
    else:
        res.accepted = True
    return res


@dataclass
class Registration:
    """The MS displacement relative to the PAN measured at PAN resolution (:func:`combine`).

    ``dy``/``dx`` (PAN px, this module's convention) are the median over the accepted windows
    (NaN when none); ``stderr`` the standard error of that estimate (the windows' robust spread
    over the square root of their number, never below their own errors); ``confident`` when it
    is at most :data:`CONFIDENT_STDERR` PAN px. ``applied`` and ``reason`` say what the pipeline
    did with it; ``residual`` is the displacement measured again after applying it.
    """

    dy: float
    dx: float
    stderr: float
    spread: float
    n_used: int
    windows: list[WindowFit] = field(default_factory=list)
    applied: bool = False
    reason: str = ""
    residual: Registration | None = None

    @property
    def measured(self) -> bool:
        return self.n_used > 0

    @property
    def confident(self) -> bool:
        return self.measured and self.stderr <= CONFIDENT_STDERR

    @property
    def magnitude(self) -> float:
        return float(math.hypot(self.dy, self.dx))

    def summary(self) -> str:
        if not self.measured:
            reasons = "; ".join(sorted({w.reason for w in self.windows})) or "no window"
            return f"displacement not measurable ({reasons})"
        return (f"MS vs PAN displacement dy={self.dy:+.3f} dx={self.dx:+.3f} PAN px "
                f"(+-{self.stderr:.3f}; {self.n_used}/{len(self.windows)} windows)")

    def to_dict(self) -> dict:
        """JSON-friendly form (rounded to 1/1000 PAN px)."""
        def num(v):
            return None if not math.isfinite(v) else round(v, 4)
        out = {"dy": num(self.dy), "dx": num(self.dx), "magnitude": num(self.magnitude),
               "stderr": num(self.stderr), "spread": num(self.spread),
               "windows": self.n_used, "windows_tried": len(self.windows),
               "confident": self.confident, "applied": self.applied, "reason": self.reason}
        if self.residual is not None:
            out["residual"] = {k: v for k, v in self.residual.to_dict().items()
                               if k in ("dy", "dx", "magnitude", "stderr", "windows")}
        return out


def combine(fits: list[WindowFit]) -> Registration:
    """The scene's displacement from its windows' fits: the median of the accepted ones, with
    a robust standard error (see :class:`Registration`)."""
    used = [f for f in fits if f.accepted]
    if not used:
        return Registration(math.nan, math.nan, math.nan, math.nan, 0, fits)
    dy = np.array([f.dy for f in used])
    dx = np.array([f.dx for f in used])
    my, mx = float(np.median(dy)), float(np.median(dx))
    own = float(np.median([f.stderr for f in used]))
    if len(used) > 2:
        mad = 1.4826 * math.hypot(float(np.median(np.abs(dy - my))), float(np.median(np.abs(dx - mx))))
        spread = max(mad, float(np.hypot(np.std(dy), np.std(dx))) * 0.5)
    else:
        spread = float(np.hypot(np.std(dy), np.std(dx))) if len(used) == 2 else own
    # the median's standard error is about 1.25 sigma / sqrt(n)
    stderr = max(1.25 * spread / math.sqrt(len(used)), own / math.sqrt(len(used)))
    return Registration(my, mx, stderr, spread, len(used), fits)
