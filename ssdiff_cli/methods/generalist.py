"""The generalist SSDiff model as a fusion method: MTF-GLP-FS corrected by a diffusion model.

Per tile: the classical base (MTF-GLP with full-scale regression gains, fitted once per scene)
and the PAN low-passed with each band's MTF are computed on the tile; everything is
standardised with the scene's statistics (:class:`Standardisation`); DDIM samples the
correction from position-keyed noise with the generalist network
(:class:`ssdiff_cli.nn.generalist.GeneralistDenoiser`); the image is ``base + std * correction``.
A network whose last layer is zero returns the base exactly.

:func:`calibrate` fits, once per scene, a gain per band on the correction from the scene's own
reduced resolution (the Wald protocol on a central window: the window's MS is the reference), so
that a model that over-corrects an unfamiliar sensor is scaled back towards its base (gains are
in ``[0, 1]``: calibration never amplifies the model).

:func:`guard_check` is ``--method auto``'s self-check: on a central window of the scene it
compares the full-resolution HQNR of the model and of its classical base, and says whether to
fall back to the base.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np

from ssdiff_cli.diffusion import position_noise
from ssdiff_cli.errors import SsdiffWarning
from ssdiff_cli.methods.classical import MTFGLP
from ssdiff_cli.methods.network import Sampling, run_chunks

#: Side (PAN px) of the central window the guard fuses and scores.
GUARD_WINDOW = 512
#: The model must reach the base's HQNR minus this to be kept.
GUARD_TOLERANCE = 0.0
#: Side (PAN px) of the scene degraded by the ratio that calibration fuses and scores: the window
#: read is ``ratio`` times larger (1536 PAN px at ratio 4). The network runs on it in one chunk
#: (a chunk's core is 384 px at 8 bands: 512 less the network's halo on both sides).
CALIBRATION_SIDE = 384
#: Below this many valid reference pixels (MS grid) per band, calibration has too little to fit
#: a gain on and leaves the model as it is.
CALIBRATION_MIN_PIXELS = 1024


@dataclass(frozen=True)
class Standardisation:
    """Scene statistics the network's inputs are standardised with (from the MTF-GLP fit)."""

    pan_mean: float
    pan_std: float
    ms_mean: np.ndarray
    ms_std: np.ndarray

    @classmethod
    def from_glp(cls, glp: MTFGLP) -> Standardisation:
        """The statistics an :class:`MTFGLP` learnt in ``prepare``/``fit``."""
        return cls(float(glp.pan_mean), float(glp.pan_std), np.asarray(glp.ms_mean, np.float32),
                   np.asarray(glp.ms_std, np.float32))


def standardise(pan: np.ndarray, lms: np.ndarray, pan_lp: np.ndarray, base: np.ndarray,
                stats: Standardisation) -> dict[str, np.ndarray]:
    """The network's conditions, float32: ``base``, ``lms`` ``(C, H, W)`` in band standard
    deviations around the band means; ``pan`` ``(1, H, W)`` and ``pan_lp`` ``(C, H, W)`` in PAN
    standard deviations around the PAN mean."""
    mu = stats.ms_mean[:, None, None]
    inv = (1.0 / stats.ms_std)[:, None, None]
    pinv = 1.0 / stats.pan_std
    return {
        "base": ((base - mu) * inv).astype(np.float32),
        "lms": ((lms - mu) * inv).astype(np.float32),
        "pan": ((pan[None] - stats.pan_mean) * pinv).astype(np.float32),
        "pan_lp": ((pan_lp - stats.pan_mean) * pinv).astype(np.float32),
    }


def conditions(glp: MTFGLP, stats: Standardisation, pan: np.ndarray, lms: np.ndarray
               ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The classical base (MTF-GLP-FS of ``glp``) and the network's standardised conditions
    (:func:`standardise`) for PAN (H, W) and lms (C, H, W): what inference, training and
    adaptation all feed the network."""
    pan_lp = glp.pan_lowpass(pan)
    base = glp.fuse_arrays(pan, lms, pan_lp)
    return base, standardise(pan, lms, pan_lp, base, stats)


def target(gt: np.ndarray, base: np.ndarray, stats: Standardisation) -> np.ndarray:
    """The correction the network learns: ``(gt - base)`` in band standard deviations."""
    return ((gt - base) / stats.ms_std[:, None, None]).astype(np.float32)


def apply_correction(base: np.ndarray, correction: np.ndarray, stats: Standardisation,
                     gains: np.ndarray | None = None) -> np.ndarray:
    """``base + std * correction`` (the inverse of :func:`target`), the correction scaled by one
    gain per band when ``gains`` is given (:func:`calibrate`)."""
    scale = stats.ms_std if gains is None else stats.ms_std * gains
    return base + correction * scale[:, None, None]


def reduced_window(fusion, tile) -> dict:
    """The window of ``tile`` (read with its MS) degraded by the ratio (Wald protocol, the
    fusion's MTF gains): a MTF-GLP-FS base fitted on the degraded window, the network's
    standardised conditions, the ``target`` correction against the window's own MS, and
    ``valid`` (the degraded grid's pixels whose whole block is valid)."""
    from ssdiff_cli import filters
    from ssdiff_cli.quality import wald

    r, glp = fusion.ratio, fusion.glp
    hm, wm = tile.ms.shape[1] // r * r, tile.ms.shape[2] // r * r
    gt = tile.ms[:, :hm, :wm]
    ms_lr = filters.degrade(gt, glp.gnyq, r)
    pan_lr = filters.degrade(tile.pan[: hm * r, : wm * r], fusion.pan_gnyq, r)
    lms = wald.upsample_ms(ms_lr, r)
    red = MTFGLP("fs")
    red.fit(filters.decimate_mean(pan_lr, r).ravel(), ms_lr.reshape(ms_lr.shape[0], -1), r, glp.gnyq)
    stats = Standardisation.from_glp(red)
    base, cond = conditions(red, stats, pan_lr, lms)
    valid = tile.valid[: hm * r, : wm * r].reshape(hm, r, wm, r).all(axis=(1, 3))
    return {**cond, "target": target(gt, base, stats), "valid": valid, "ratio": r}


def sample_correction(net, scheduler, cond: dict[str, np.ndarray], noise: np.ndarray, ratio: int,
                      steps: int, t_start: int | None, device: str = "cpu",
                      dtype=None) -> np.ndarray:
    """DDIM for the correction over a batch: ``cond`` arrays and ``noise`` carry a leading batch
    axis (B, ...); returns the x0 estimate (B, C, H, W) as float32 numpy."""
    import torch

    sampling = Sampling(scheduler, steps, t_start, device, dtype)
    with torch.inference_mode():
        # made here, the inputs are inference tensors like the padded ones of a compiled
        # network (one compiled graph for both: its guards check the tensor kind)
        t = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in cond.items()}
        x_t = torch.from_numpy(np.ascontiguousarray(noise)).to(device)
        out = sampling.sample(
            lambda x, tt: net(x, tt, t["base"], t["lms"], t["pan"], t["pan_lp"], ratio), x_t)
    return out.float().cpu().numpy()


def run_compiled_once(net, sampling: Sampling, bands: int, ratio: int, side: int) -> None:
    """One chunk of ``side`` px and ``bands`` bands through ``net`` compiled, on zeros, the way
    :meth:`GeneralistFusion.fuse_tile` calls it: what leaves the kernels in Inductor's cache
    for the runs that follow (``ssdiff models compile``)."""
    from ssdiff_cli.nn.compiled import FixedShapeNetwork

    def zeros(channels: int = bands) -> np.ndarray:  # one array each, as a tile's are
        return np.zeros((1, channels, side, side), np.float32)

    cond = {"base": zeros(), "lms": zeros(), "pan": zeros(1), "pan_lp": zeros()}
    sample_correction(FixedShapeNetwork(net, side), sampling.scheduler, cond, zeros(), ratio,
                      sampling.steps, sampling.t_start, sampling.device, sampling.dtype)


class GeneralistFusion:
    """The per-scene state of the generalist: the fitted base, the statistics, the geometry.

    ``net`` is a :class:`GeneralistDenoiser`; ``prepare(ctx)`` fits the MTF-GLP-FS base on the
    scene sample; :meth:`fuse_tile` corrects it. With ``compile_side`` set, the network runs
    compiled for chunks of that side (:class:`ssdiff_cli.nn.compiled.FixedShapeNetwork`, built
    at the first chunk, so after any adaptation); a compile that fails falls back to the eager
    network with a warning. ``compile_seconds`` is how long the first compiled chunk took, and
    ``compile_kernels`` where its kernels came from: ``compiled`` (built now) or ``cached``
    (the on-disk kernel cache, or this process's earlier compile).
    """

    #: What ``--adapt`` optimises: every weight of the network (the pipeline's adaptation).
    adapted = "weights"

    def __init__(self, net, scheduler, steps: int, t_start: int | None, seed: int,
                 device: str = "cpu", dtype=None) -> None:
        self.scheduler = scheduler
        self.steps, self.t_start, self.seed = steps, t_start, seed
        self.device, self.dtype = device, dtype
        self.glp = MTFGLP("fs")
        self.compile_side: int | None = None
        self.compile_seconds: float | None = None
        self.compile_failure: str | None = None
        self.compile_kernels: str | None = None
        self.gains: np.ndarray | None = None  # per band on the correction (:func:`calibrate`)
        self.net = net

    @property
    def net(self):
        """The eager network (the reference; adaptation trains it)."""
        return self._net

    @net.setter
    def net(self, net) -> None:
        self._net = net
        self._compiled = None  # a new network needs its own compiled graph

    def __getstate__(self) -> dict:
        # Sent to dask workers without its compiled graph (bound to this process): a worker
        # compiles its own at its first chunk, from the on-disk cache when it holds the kernels.
        state = dict(self.__dict__)
        state["_compiled"] = None
        if state["compile_side"] is not None:
            state["compile_seconds"] = None
        return state

    def _runner(self):
        """The network chunks run through: compiled when ``compile_side`` is set."""
        if self.compile_side is None:
            return self._net
        if self._compiled is None:
            from ssdiff_cli.nn.compiled import FixedShapeNetwork

            self._compiled = FixedShapeNetwork(self._net, self.compile_side)
        return self._compiled

    def _sample(self, window: dict, noise: np.ndarray) -> np.ndarray:
        """The correction over one chunk (called under the network lock)."""
        args = (self.scheduler, window, noise[None], self.ratio, self.steps, self.t_start,
                self.device, self.dtype)
        first = self.compile_side is not None and self.compile_seconds is None
        if not first:
            return sample_correction(self._runner(), *args)[0]
        from ssdiff_cli.nn.compiled import kernel_files

        start, before = time.perf_counter(), kernel_files()
        try:
            out = sample_correction(self._runner(), *args)[0]
        except Exception as exc:  # noqa: BLE001 - whatever the compiler raised: run the reference
            first_line = (str(exc).splitlines() or [""])[0][:200]
            self.compile_failure = f"{type(exc).__name__}: {first_line}"
            warnings.warn(f"compiling the network failed ({self.compile_failure}); running it "
                          "eagerly (slower, same model)", SsdiffWarning, stacklevel=2)
            self.compile_side = None
            return sample_correction(self._net, *args)[0]
        self.compile_seconds = round(time.perf_counter() - start, 1)
        self.compile_kernels = "compiled" if kernel_files() > before else "cached"
        return out

    def prepare(self, ctx) -> None:
        """Fit the classical base on the scene; set the tile geometry (align, halo, overlap)."""
        self.glp.prepare(ctx)
        self.pan_gnyq = float(getattr(ctx.sensor, "pan_gnyq", None) or 0.15)
        self.stats = Standardisation.from_glp(self.glp)
        self.ratio = self.glp.ratio
        g = self.net.granularity
        self.align = math.lcm(g, self.ratio)
        reach = self.net.receptive_field + self.glp.halo
        self.halo = int(math.ceil(reach / self.align) * self.align)
        self.net_halo = int(math.ceil(self.net.receptive_field / g) * g)
        # The correction is exactly local (aligned chunks equal one run, noise keyed by global
        # position, a local base): tiles meet in hard seams with nothing to blend, and every
        # pixel is computed once (tests/test_generalist.py checks tile sizes agree exactly).
        self.overlap = 0

    def fuse_tile(self, pan: np.ndarray, lms: np.ndarray, row: int, col: int, chunk: int,
                  lock=None, with_base: bool = False):
        """Fuse PAN (H, W) and lms (C, H, W), a window with a halo of ``self.halo`` whose
        upper-left pixel is at global (row, col); returns the image (and the classical base when
        ``with_base``). The network runs in chunks of at most ``chunk`` PAN px a side (halo
        included), one at a time under ``lock``: memory is bounded by the chunk, and the result
        equals one run over the whole window away from its edges (the network is local and
        aligned to its window grid). Only the part inside the window's halo is computed (all a
        caller keeps): the rest of the returned image is the classical base. Each chunk reads the
        network's halo around its core, inside the part where the base is valid."""
        base, cond = conditions(self.glp, self.stats, pan, lms)
        corr = self.correction_over(cond, chunk, lock, row, col, keep=self.halo)
        out = apply_correction(base, corr, self.stats, self.gains)
        return (out, base) if with_base else out

    def correction_over(self, cond: dict[str, np.ndarray], chunk: int, lock=None, row: int = 0,
                        col: int = 0, keep: int = 0) -> np.ndarray:
        """The network's correction (C, H, W) over a window of standardised conditions whose
        upper-left pixel is at global (row, col), computed inside a border of ``keep`` px (zero
        there) in chunks of at most ``chunk`` px (:func:`run_chunks`); with ``keep`` 0 the chunks
        at the window's edges see only what is inside it."""
        c, h, w = cond["base"].shape
        corr = np.zeros((c, h, w), np.float32)

        def inputs(y0, y1, x0, x1):
            window = {k: v[None, :, y0:y1, x0:x1] for k, v in cond.items()}
            return window, position_noise(self.seed, c, row + y0, col + x0, y1 - y0, x1 - x0)

        def emit(y0, y1, x0, x1, core):
            corr[:, y0:y1, x0:x1] = core

        run_chunks(h, w, keep, self.net_halo, self.net.granularity, chunk, inputs,
                   lambda prepared: self._sample(*prepared), emit, lock)
        return corr


def calibrate(fusion: GeneralistFusion, spec, fills, chunk: int, lock=None) -> dict:
    """Fit ``fusion.gains``: one gain per band on the model's correction, from the scene itself.

    A central window (``ratio * CALIBRATION_SIDE`` PAN px a side at most) is degraded by the
    ratio (:func:`reduced_window`); the model corrects the degraded window's base, and each
    band's gain is the least-squares scale of that correction against the true correction (the
    window's MS minus the base) over the valid pixels, clipped to ``[0, 1]``. A scene whose
    degraded window has fewer than ``CALIBRATION_MIN_PIXELS`` valid pixels is not calibrated
    (gains stay 1). Returns what it did, for the report.
    """
    from ssdiff_cli.scene import read_tile

    r = fusion.ratio
    step = r * r  # the degraded window's MS is whole pixels
    out = spec.out
    side_h = min(CALIBRATION_SIDE * r, out.height) // step * step
    side_w = min(CALIBRATION_SIDE * r, out.width) // step * step
    report: dict = {"window": None, "gains": None}
    if side_h and side_w:
        row = (out.height - side_h) // 2 // r * r
        col = (out.width - side_w) // 2 // r * r
        report["window"] = [row, col, side_h, side_w]
        tile = read_tile(spec, row, col, side_h, side_w, fills, want_ms=True)
        red = reduced_window(fusion, tile)
        valid = red["valid"]
        if int(valid.sum()) >= CALIBRATION_MIN_PIXELS:
            cond = {k: red[k] for k in ("base", "lms", "pan", "pan_lp")}
            corr = fusion.correction_over(cond, chunk, lock)[:, valid].astype(np.float64)
            true = red["target"][:, valid].astype(np.float64)
            power = (corr * corr).sum(axis=1)
            fit = np.divide((corr * true).sum(axis=1), power, out=np.ones_like(power),
                            where=power > 1e-12 * valid.sum())
            fusion.gains = np.clip(fit, 0.0, 1.0).astype(np.float32)
            report["gains"] = [round(float(g), 4) for g in fusion.gains]
            return report
    report["skipped"] = (f"the scene degraded by the ratio has fewer than "
                         f"{CALIBRATION_MIN_PIXELS} valid MS pixels to fit gains on")
    return report


def guard_check(fusion: GeneralistFusion, spec, fills, sensor, chunk: int, lock=None) -> dict:
    """Full-resolution self-check of the model on a central window of the scene.

    Fuses the window (up to ``GUARD_WINDOW`` PAN px a side) with the model, in chunks of at most
    ``chunk`` px as the tiles are, and keeps its classical base; scores both with HQNR, D_lambda and D_s
    (:func:`ssdiff_cli.quality.indices.full_resolution`); ``fallback`` is true when the model's
    HQNR is below the base's. Where the window cannot be scored (too few valid pixels), the
    scores are None, ``unmeasured`` says why, and the model is kept.
    """
    from ssdiff_cli.quality import indices
    from ssdiff_cli.scene import read_tile

    r, a = fusion.ratio, fusion.align
    out = spec.out
    side_h = min(GUARD_WINDOW, out.height) // r * r
    side_w = min(GUARD_WINDOW, out.width) // r * r
    row = (out.height - side_h) // 2 // a * a
    col = (out.width - side_w) // 2 // a * a
    halo = fusion.halo
    tile = read_tile(spec, row - halo, col - halo, side_h + 2 * halo, side_w + 2 * halo, fills,
                     want_ms=True)
    fused, base = fusion.fuse_tile(tile.pan, tile.lms, tile.row, tile.col, chunk, lock,
                                   with_base=True)
    inner = (slice(halo, halo + side_h), slice(halo, halo + side_w))
    hr = halo // r
    ms = tile.ms[:, hr:hr + side_h // r, hr:hr + side_w // r]
    pan, lms, valid = tile.pan[inner], tile.lms[:, inner[0], inner[1]], tile.valid[inner]
    gnyq = getattr(sensor, "ms_gnyq", None) or fusion.glp.gnyq
    pan_gnyq = getattr(sensor, "pan_gnyq", 0.15) or 0.15
    scores = {}
    for name, img in (("model", fused[:, inner[0], inner[1]]), ("base", base[:, inner[0], inner[1]])):
        s = indices.full_resolution(img, pan, lms, ms, r, gnyq, pan_gnyq, mask=valid)
        scores[name] = {k: round(float(s[k]), 5) if math.isfinite(s[k]) else None
                        for k in ("HQNR", "D_lambda", "D_s")}
    model_q, base_q = scores["model"]["HQNR"], scores["base"]["HQNR"]
    report = {"window": [row, col, side_h, side_w], **scores}
    if model_q is None or base_q is None:
        # no evidence either way (a window too small, or too much nodata, to score): the guard
        # falls back only on a measured loss
        return {**report, "fallback": False,
                "unmeasured": "the window has too few valid pixels to score HQNR"}
    return {**report, "fallback": bool(model_q < base_q - GUARD_TOLERANCE)}
