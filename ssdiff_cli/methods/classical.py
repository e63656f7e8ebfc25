"""Classical fusion methods: weighted Brovey, adaptive Gram-Schmidt, MTF-matched GLP.

They are the fast mode of the tool and the yardstick for the model. Scene-wide coefficients
(regressions, equalisation statistics, injection gains) come from the decimated whole-scene
sample in :meth:`prepare`, so every tile uses the same ones.
"""

from __future__ import annotations

import numpy as np

from ssdiff_cli import filters, toolbox_filters
from ssdiff_cli.errors import UsageError
from ssdiff_cli.methods.base import FusionMethod, SceneContext
from ssdiff_cli.quality.wald import degrade_phased
from ssdiff_cli.scene import TileData, fill_values, read_tile

_EPS = 1e-6
#: HPM modulation is trusted where the equalised PAN low-pass is above this fraction of the
#: band's mean (and the equalised PAN positive); elsewhere the unequalised ratio PAN / PAN_LP is
#: used (a mean/std equalisation can push dark areas of a high-contrast band through zero).
HPM_FLOOR = 0.2
#: Largest HPM modulation: no output pixel exceeds HPM_MAX_GAIN times the upsampled MS there
#: (nor goes below 0 where it is >= 0), whatever the denominators.
HPM_MAX_GAIN = 4.0
#: Side (PAN px) of the central window on which a matched MTF-GLP-FS measures its full-scale
#: injection gains (the whole scene when smaller).
FS_WINDOW = 1024


def valid_pixels(ctx: SceneContext) -> tuple[np.ndarray, np.ndarray]:
    """PAN (n,) and MS (C, n) values of the valid sample pixels."""
    s = ctx.sample
    if not s.valid.any():
        raise ValueError("the scene has no pixel where both PAN and MS are valid")
    return s.pan[s.valid].astype(np.float64), s.ms[:, s.valid].astype(np.float64)


class Brovey(FusionMethod):
    """Weighted Brovey transform as GDAL's ``gdal_pansharpen.py`` computes it.

    ``pseudo = sum_i w_i * MS_i`` and ``F_i = MS_i * PAN / pseudo`` (0 where ``pseudo`` is 0),
    with the MS brought onto the PAN grid by cubic resampling. Like GDAL, integer MS values are
    resampled into their own data type (rounded, cubic overshoots clipped at the type's range)
    before the ratio is applied. Weights default to the sensor's pseudo-PAN weights; pass GDAL's
    ``-w`` values to reproduce its output.
    """

    name = "brovey"

    def __init__(self, weights: list[float] | None = None):
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float32)

    def prepare(self, ctx: SceneContext) -> None:
        """Choose the weights: given ones, else the sensor's, else equal weights."""
        bands = ctx.scene.bands
        if self.weights is None:
            preset = getattr(ctx.sensor, "pan_weights", None)
            w = np.asarray(preset if preset is not None else [1.0 / bands] * bands, np.float32)
            self.weights = w if w.sum() > 0 else np.full(bands, 1.0 / bands, np.float32)
        if len(self.weights) != bands:
            raise UsageError(f"-w/--weight: {len(self.weights)} Brovey weights given for {bands} "
                             "MS bands; give one per band")
        dtype = np.dtype(ctx.scene.spec.ms_dtype)
        self.ms_range = (np.iinfo(dtype).min, np.iinfo(dtype).max) if dtype.kind in "ui" else None

    def fuse(self, tile: TileData) -> np.ndarray:
        """``MS_i * PAN / pseudo`` per pixel."""
        lms = tile.lms
        if self.ms_range is not None:
            lms = np.clip(np.rint(lms), *self.ms_range)
        pseudo = np.tensordot(self.weights, lms, axes=1)
        factor = np.divide(tile.pan, pseudo, out=np.zeros_like(pseudo), where=pseudo != 0)
        return lms * factor

    def describe(self) -> dict:
        """Name and weights."""
        return {"name": self.name, "weights": [round(float(w), 6) for w in self.weights]}


class GSA(FusionMethod):
    """Adaptive Gram-Schmidt (GSA, Aiazzi et al. 2007).

    The intensity ``I = a0 + sum_i a_i MS_i`` is the least-squares fit of the PAN degraded to the
    MS scale on the MS bands (so ``I`` is in PAN units); the injection gains are
    ``g_i = cov(MS_i, I) / var(I)``; ``F_i = MS_i + g_i (PAN - I)``. Both are fitted once per
    scene on the decimated scene sample.
    """

    name = "gsa"

    def prepare(self, ctx: SceneContext) -> None:
        """Fit the intensity regression and the injection gains on the scene sample."""
        pan, ms = valid_pixels(ctx)
        design = np.vstack([ms, np.ones_like(pan)]).T
        coef, *_ = np.linalg.lstsq(design, pan, rcond=None)
        self.alpha = coef[:-1].astype(np.float32)
        self.alpha0 = np.float32(coef[-1])
        intensity = design @ coef
        var = intensity.var()
        cov = ((ms - ms.mean(axis=1, keepdims=True)) * (intensity - intensity.mean())).mean(axis=1)
        self.gains = (cov / max(var, _EPS)).astype(np.float32)

    def fuse(self, tile: TileData) -> np.ndarray:
        """``MS_i + g_i (PAN - I)`` per pixel."""
        intensity = np.tensordot(self.alpha, tile.lms, axes=1) + self.alpha0
        detail = tile.pan - intensity
        return tile.lms + self.gains[:, None, None] * detail

    def describe(self) -> dict:
        """Name, regression weights and gains."""
        return {
            "name": self.name,
            "alpha": [round(float(a), 6) for a in self.alpha],
            "gains": [round(float(g), 6) for g in self.gains],
        }


class MTFGLP(FusionMethod):
    """MTF-matched generalized Laplacian pyramid (Aiazzi et al. 2006).

    For each band the PAN is low-passed with a Gaussian matched to that band's MTF gain at
    Nyquist, decimated by the ratio and interpolated back, giving ``PAN_LP_i``; the PAN is
    equalised to the band (mean and standard deviation on the scene sample). Injection:

    - ``hpm`` (default): ``F_i = MS_i * PAN_i / PAN_LP_i`` (high-pass modulation), the ratio
      taken unequalised (``PAN / PAN_LP``) where the equalised low-pass is below
      ``HPM_FLOOR`` x the band's mean, and clipped to ``[0, HPM_MAX_GAIN]``: so
      ``0 <= F_i <= HPM_MAX_GAIN * MS_i`` at every pixel (no spikes from tiny denominators);
    - ``fs``: ``F_i = MS_i + g_i (PAN_i - PAN_LP_i)`` with ``g_i`` a regression gain.

    ``matched=False`` (what the generalist model was trained on, and computes as its base):
    ``PAN_LP`` is the PAN degraded at each block's centre and interpolated back with cubic
    convolution; the FS gain is the regression of ``MS_i`` on the PAN averaged onto the MS grid
    (the scene sample).

    ``matched=True`` (the classical methods): the low-pass is made the way the MS was, as the
    toolbox's MTF-GLP does it: the Gaussian has the toolbox FIR's width
    (:func:`ssdiff_cli.toolbox_filters.toolbox_gaussian_gnyq`), the PAN is decimated at the MS's own
    sample positions (the scene's sub-pixel phase, :func:`ssdiff_cli.quality.wald.degrade_phased`)
    and interpolated back with the kernel and phase that bring the MS onto the PAN grid
    (``-r``); the FS gain is the toolbox's full-scale one (Vivone 2018),
    ``g_i = cov(lms_i, PAN) / cov(PAN_LP_i, PAN)`` on the PAN grid, and the HPM equalisation the
    toolbox's ``std(lms_i) / std(LP(PAN))`` with ``LP`` a Gaussian of gain 0.3, both measured once
    per scene on a central window of up to :data:`FS_WINDOW` px. HPM keeps its bounds.
    """

    name = "mtf-glp"

    def __init__(self, injection: str = "hpm", matched: bool = False):
        if injection not in ("hpm", "fs"):
            raise ValueError(f"MTF-GLP injection must be 'hpm' or 'fs', not {injection!r}")
        self.injection = injection
        self.matched = matched
        #: The MS upsampling the pipeline gives the method when ``-r`` is not given: the
        #: toolbox's 23-tap interpolator for the matched methods (ERGAS 1-3 % lower than cubic
        #: under the toolbox protocol), cubic for the generalist's base (what it was trained on).
        self.default_resampling = "interp23tap" if matched else "cubic"
        self.kernel = "cubic"
        self.phase = (0.0, 0.0)

    def prepare(self, ctx: SceneContext) -> None:
        """Equalisation statistics, MTF gains and (FS) injection gains from the sample; a matched
        method also takes the scene's upsampling kernel and phase, and its full-scale gains."""
        gnyq = getattr(ctx.sensor, "ms_gnyq", None)
        bands = ctx.scene.bands
        gnyq = gnyq if gnyq is not None and len(gnyq) == bands else [0.3] * bands
        if self.matched:
            spec = ctx.scene.spec
            self.kernel = spec.resampling
            sub = spec.ms_subpixel
            self.phase = (0.0, 0.0) if sub is None else (float(sub[2]), float(sub[3]))
        pan, ms = valid_pixels(ctx)
        self.fit(pan, ms, ctx.scene.ratio, gnyq)
        if self.matched:
            self._full_scale_statistics(ctx)

    def fit(self, pan: np.ndarray, ms: np.ndarray, ratio: int, gnyq) -> None:
        """Learn the statistics from valid PAN values ``(n,)`` (averaged onto the MS grid) and
        the MS values ``(C, n)`` at the same places; ``gnyq`` one MTF gain per band."""
        pan = np.asarray(pan, np.float64)
        ms = np.asarray(ms, np.float64)
        self.ratio = int(ratio)
        self.gnyq = np.asarray(gnyq, np.float64)
        self.pan_mean = np.float32(pan.mean())
        self.pan_std = np.float32(max(pan.std(), _EPS))
        ms_mean = ms.mean(axis=1)
        # Equalised PAN for band i: (PAN - mean_P) * scale_i + mean_i.
        self.ms_std = np.maximum(ms.std(axis=1), _EPS).astype(np.float32)
        self.scale = (ms.std(axis=1) / self.pan_std).astype(np.float32)
        self.ms_mean = ms_mean.astype(np.float32)
        pan_eq = (pan - pan.mean())[None] * self.scale[:, None] + ms_mean[:, None]
        cov = ((ms - ms_mean[:, None]) * (pan_eq - pan_eq.mean(axis=1, keepdims=True))).mean(1)
        self.gains = (cov / np.maximum(pan_eq.var(axis=1), _EPS)).astype(np.float32)
        # Halo: the MTF filter's support plus the interpolator's (one coarse pixel more with a
        # phase), plus the hole fill.
        self.align = self.ratio
        self.halo = filters.support(self.ratio) + (filters.kernel_reach(self.kernel) + 1) * self.ratio + 12

    def _full_scale_statistics(self, ctx: SceneContext) -> None:
        """What the toolbox measures on the whole image at full scale, here on the valid pixels
        of a central window (read with a halo, so that its edges are filtered as inside a tile):
        FS, the gains ``cov(lms_i, PAN) / cov(PAN_LP_i, PAN)``; HPM, the equalisation
        ``(PAN - mean(PAN)) std(lms_i) / std(LP(PAN)) + mean(lms_i)`` with ``LP`` the Gaussian
        of gain 0.3 (the toolbox's ``LPfilterGauss`` has exactly :func:`filters.mtf_sigma`'s
        width)."""
        spec, r = ctx.scene.spec, self.ratio
        h = min(FS_WINDOW, spec.out.height) // r * r
        w = min(FS_WINDOW, spec.out.width) // r * r
        row = (spec.out.height - h) // 2 // r * r
        col = (spec.out.width - w) // 2 // r * r
        halo = -(-self.halo // r) * r
        tile = read_tile(spec, row - halo, col - halo, h + 2 * halo, w + 2 * halo,
                         fill_values(ctx.sample))
        inner = (slice(halo, halo + h), slice(halo, halo + w))
        valid = tile.valid[inner]
        if not valid.any():
            return
        pan = tile.pan[inner][valid].astype(np.float64)
        lms = [band[inner][valid].astype(np.float64) for band in tile.lms]
        if self.injection == "hpm":
            lp = filters.lowpass(tile.pan, 0.3, r)[inner][valid].astype(np.float64)
            self.pan_mean = np.float32(pan.mean())
            self.scale = np.array([b.std() / max(lp.std(), _EPS) for b in lms], np.float32)
            self.ms_mean = np.array([b.mean() for b in lms], np.float32)
            return
        pan_lp = self.pan_lowpass(tile.pan)[:, inner[0], inner[1]]
        pan = pan - pan.mean()
        gains = np.empty(len(self.gnyq), np.float32)
        for i, band in enumerate(lms):
            lp = pan_lp[i][valid].astype(np.float64)
            den = float(np.dot(lp - lp.mean(), pan))
            gains[i] = float(np.dot(band - band.mean(), pan)) / den if abs(den) > _EPS else 0.0
        self.gains = gains

    def pan_lowpass(self, pan: np.ndarray) -> np.ndarray:
        """``PAN_LP_i`` (C, H, W): the PAN degraded with band i's MTF and interpolated back
        (H, W multiples of the ratio); bands of equal gain share one low-pass."""
        r = self.ratio
        out = np.empty((len(self.gnyq),) + pan.shape, np.float32)
        done: dict[float, int] = {}
        for i, g in enumerate(self.gnyq):
            key = round(float(g), 6)
            if key in done:
                out[i] = out[done[key]]
            elif self.matched:
                # the samples where the MS has its own: output k of degrade_phased lies at
                # r*k + (r-1)/2 + d, and the upsampling phase puts MS pixel k at r*k + (r-1)/2 - r*phase
                d = (-r * self.phase[0], -r * self.phase[1])
                low = degrade_phased(pan, toolbox_filters.toolbox_gaussian_gnyq(key), r, d)
                out[i] = filters.upsample(low, r, kernel=self.kernel, phase=self.phase)
                done[key] = i
            else:
                out[i] = filters.upsample_cubic(filters.degrade(pan, key, r), r)
                done[key] = i
        return out

    def fuse(self, tile: TileData) -> np.ndarray:
        """Detail injection per band (:meth:`fuse_arrays` on the tile)."""
        return self.fuse_arrays(tile.pan, tile.lms)

    def fuse_arrays(self, pan: np.ndarray, lms: np.ndarray, pan_lp: np.ndarray | None = None
                    ) -> np.ndarray:
        """Detail injection on arrays: PAN (H, W), lms (C, H, W), optionally the
        :meth:`pan_lowpass` already computed."""
        pan_lp = self.pan_lowpass(pan) if pan_lp is None else pan_lp
        out = np.empty_like(lms)
        for i in range(lms.shape[0]):
            pan_eq = (pan - self.pan_mean) * self.scale[i] + self.ms_mean[i]
            lp_eq = (pan_lp[i] - self.pan_mean) * self.scale[i] + self.ms_mean[i]
            if self.injection == "hpm":
                lp_i = pan_lp[i]
                raw = np.divide(pan, lp_i, out=np.ones_like(lp_i), where=lp_i > _EPS)
                ok = (lp_eq > max(HPM_FLOOR * float(self.ms_mean[i]), _EPS)) & (pan_eq > 0)
                ratio_map = np.divide(pan_eq, lp_eq, out=raw, where=ok)
                np.clip(ratio_map, 0.0, HPM_MAX_GAIN, out=ratio_map)
                out[i] = lms[i] * ratio_map
            elif self.matched:
                out[i] = lms[i] + self.gains[i] * (pan - pan_lp[i])
            else:
                out[i] = lms[i] + self.gains[i] * (pan_eq - lp_eq)
        return out

    def describe(self) -> dict:
        """Name, injection scheme, MTF gains (and, matched, the low-pass's kernel and phase)."""
        out = {
            "name": self.name,
            "injection": self.injection,
            "ms_gnyq": [float(g) for g in self.gnyq],
        }
        if self.matched:
            out.update(matched=True, kernel=self.kernel, phase=[round(p, 6) for p in self.phase])
            if self.injection == "fs":
                out["gains"] = [round(float(g), 6) for g in self.gains]
        return out


class Upsample(FusionMethod):
    """No fusion: the MS brought onto the PAN grid (cubic). The baseline every method must beat."""

    name = "upsample"

    def prepare(self, ctx: SceneContext) -> None:
        """Nothing to learn."""

    def fuse(self, tile: TileData) -> np.ndarray:
        """The upsampled MS itself."""
        return tile.lms.copy()
