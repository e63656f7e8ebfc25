"""Measuring where the MS really lies on the PAN grid: a first guess by phase correlation on the
scene sample (:func:`coarse_shift`), then windows of the scene read at full PAN resolution and the
MS on its own grid, each fitted by :func:`ssdiff_cli.coreg.fit_displacement`
(:func:`measure_registration`); both for an opened scene (:func:`measure_scene`) or a pair of
files (:func:`measure_pair`).

The MS pixel centres are placed where the scene's grids put them (the geotransforms, or the
upper-left-corner alignment of a pair without georeferencing, and any correction already applied),
so what is measured is the displacement still to correct: it refines a geotransform where there
is one. Memory is bounded by the windows: at most :data:`WINDOW_PAN_PX` PAN px a side plus the
filter's margin, one at a time.
"""

from __future__ import annotations

import math

import numpy as np

from ssdiff_cli import coreg, filters
from ssdiff_cli.scene.grid import Scene, SceneSpec
from ssdiff_cli.scene.preparation import prepare_scene
from ssdiff_cli.scene.reading import reader_for
from ssdiff_cli.scene.sampling import SceneSample

#: Window side in PAN px at most (the MS side is this over the ratio, at most WINDOW_MS_PX).
WINDOW_PAN_PX = 512
WINDOW_MS_PX = 96
#: Windows on a grid of this many a side (fewer on a small scene).
GRID = 3
#: Least fraction of a window's MS pixels that must be usable.
MIN_VALID = 0.5


def _ms_centres(spec: SceneSpec, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Output-grid pixel-index coordinates (row, col) of the centres of MS pixels ``rows`` x
    ``cols`` of the MS's own grid (the grids are north-up: rows and columns separate)."""
    o, m = spec.out.transform, spec.ms_grid.transform
    ys = (m.f + m.e * (rows + 0.5) - o.f) / o.e - 0.5
    xs = (m.c + m.a * (cols + 0.5) - o.c) / o.a - 0.5
    return ys, xs


def _starts(lo: int, hi: int, size: int, count: int) -> list[int]:
    """Up to ``count`` window starts spread over ``lo .. hi - size``."""
    if hi - lo <= size or count <= 1:
        return [lo + max(0, (hi - lo - size) // 2)]
    return sorted({int(round(s)) for s in np.linspace(lo, hi - size, count)})


def window_boxes(spec: SceneSpec, margin: float) -> list[tuple[int, int, int, int]]:
    """MS-grid windows ``(row, col, height, width)`` whose pixel centres lie at least ``margin``
    PAN px inside the output grid, on a grid of up to :data:`GRID` x :data:`GRID`."""
    ms = spec.ms_grid
    ys, xs = _ms_centres(spec, np.arange(ms.height), np.arange(ms.width))
    inside_r = np.flatnonzero((ys >= margin) & (ys <= spec.out.height - 1 - margin))
    inside_c = np.flatnonzero((xs >= margin) & (xs <= spec.out.width - 1 - margin))
    if inside_r.size < 8 or inside_c.size < 8:
        return []
    side = max(8, min(WINDOW_MS_PX, WINDOW_PAN_PX // spec.ratio))
    r0, r1 = int(inside_r[0]), int(inside_r[-1]) + 1
    c0, c1 = int(inside_c[0]), int(inside_c[-1]) + 1
    h, w = min(side, r1 - r0), min(side, c1 - c0)
    return [(r, c, h, w) for r in _starts(r0, r1, h, GRID) for c in _starts(c0, c1, w, GRID)]


def measure_registration(spec: SceneSpec, ms_gnyq, start: tuple[float, float] = (0.0, 0.0),
                         ) -> coreg.Registration:
    """Measure the MS displacement relative to the PAN (PAN px, :mod:`ssdiff_cli.coreg`'s sign
    convention) in windows over the scene, starting from ``start`` (e.g. the scene sample's
    phase correlation). ``ms_gnyq`` are the MS bands' MTF gains at Nyquist: the PAN is blurred
    with the Gaussian of their mean to compare it with the MS."""
    gnyq = float(np.clip(np.mean(ms_gnyq), 0.05, 0.95))
    sigma = filters.mtf_sigma(gnyq, spec.ratio)
    reach = 4.0 * sigma + 2.0 * spec.ratio + math.hypot(*start)
    pad = int(math.ceil(reach)) + 2
    reader = reader_for(spec)
    fits = []
    for row, col, h, w in window_boxes(spec, reach):
        fit = coreg.WindowFit(row, col, h, w)
        ms = reader.read_ms(row, col, h, w)
        ys, xs = _ms_centres(spec, np.arange(row, row + h), np.arange(col, col + w))
        pr0, pc0 = int(math.floor(ys[0])) - pad, int(math.floor(xs[0])) - pad
        ph, pw = int(math.ceil(ys[-1])) + pad - pr0 + 1, int(math.ceil(xs[-1])) + pad - pc0 + 1
        pan, pan_valid = reader.read_pan(pr0, pc0, ph, pw)
        ys, xs = ys - pr0, xs - pc0
        valid = np.all(np.isfinite(ms), axis=0)
        if not pan_valid.all():
            # an MS pixel whose PAN support touches a hole is left out
            holes = coreg.sample_lowpass((~pan_valid).astype(np.float64), ys, xs, sigma)
            valid &= holes < 1e-3
            pan = np.where(pan_valid, pan, float(np.mean(pan[pan_valid])) if pan_valid.any() else 0.0)
        if valid.mean() < MIN_VALID:
            fit.reason = f"too many invalid pixels ({1 - valid.mean():.0%})"
            fits.append(fit)
            continue
        fits.append(coreg.fit_displacement(pan, np.nan_to_num(ms), valid, ys, xs, sigma,
                                           start=start, fit=fit))
    return coreg.combine(fits)


def coarse_shift(sample: SceneSample, preset) -> coreg.ShiftReport:
    """The MS-to-PAN shift by phase correlation on the scene sample (PAN px; good to 0.1-0.2
    px), the MS bands weighted by the sensor ``preset``'s PAN weights."""
    intensity = np.tensordot(preset.weights().astype(np.float32), sample.ms, axes=1)
    return coreg.measure_shift(sample.pan, intensity, valid=sample.valid, ratio=sample.factor)


def measure_scene(scene: Scene, sample: SceneSample, preset
                  ) -> tuple[coreg.Registration, coreg.ShiftReport]:
    """The scene's MS displacement at PAN resolution, started from the scene sample's phase
    correlation; returns both (the coarse one judges a pair the refinement cannot measure)."""
    coarse = coarse_shift(sample, preset)
    start = (coarse.dy, coarse.dx) if coarse.measured else (0.0, 0.0)
    return measure_registration(scene.spec, preset.ms_gnyq, start=start), coarse


def measure_pair(pan, ms, sensor: str | None = None) -> coreg.Registration:
    """:func:`measure_scene` on a pair of files (``ms``: a path or a list of per-band paths)."""
    scene, detection, sample = prepare_scene(pan, ms, sensor)
    return measure_scene(scene, sample, detection.preset)[0]


def reference_arrays(spec: SceneSpec):
    """The MS on its own grid as the files hold it (never resampled: the reference of a Wald
    protocol) and the PAN brought onto it: resampled by a cubic spline onto the fine grid of
    those MS pixels, placed where ``spec``'s MS grid puts them (its geotransform and any
    registration correction). Only MS pixels whose whole fine block lies inside the output grid
    are kept. Returns ``(pan, pan_valid, ms, ms_valid)`` as :func:`read_arrays` does (float32,
    NaN where the MS is invalid); the PAN being smooth at the scale the protocol degrades it to,
    the resampling loses nothing there, while resampling the MS would smooth the reference."""
    from scipy import ndimage

    r, out, grid = spec.ratio, spec.out, spec.ms_grid
    ys, xs = _ms_centres(spec, np.arange(grid.height), np.arange(grid.width))
    offsets = np.arange(r) - (r - 1) / 2.0

    def kept(centres: np.ndarray, n: int) -> tuple[int, int]:
        inside = np.flatnonzero((centres + offsets[0] >= 0) & (centres + offsets[-1] <= n - 1))
        if inside.size == 0:
            raise ValueError("no MS pixel lies inside the PAN")
        return int(inside[0]), int(inside[-1]) + 1

    (r0, r1), (c0, c1) = kept(ys, out.height), kept(xs, out.width)
    reader = reader_for(spec)
    pan, pan_valid = reader.read_pan(0, 0, out.height, out.width)
    pan = np.where(pan_valid, pan, np.float32(pan[pan_valid].mean()) if pan_valid.any() else 0)
    fy = (ys[r0:r1, None] + offsets[None, :]).ravel()
    fx = (xs[c0:c1, None] + offsets[None, :]).ravel()
    coords = np.meshgrid(fy, fx, indexing="ij")
    pan_on_ms = ndimage.map_coordinates(pan.astype(np.float64), coords, order=3, mode="nearest")
    valid = ndimage.map_coordinates(pan_valid.astype(np.float32), coords, order=1) > 0.999
    ms = reader.read_ms(r0, c0, r1 - r0, c1 - c0)
    return pan_on_ms.astype(np.float32), valid, ms, np.all(np.isfinite(ms), axis=0)
