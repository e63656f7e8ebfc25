"""SSDiff as a fusion method: a trained denoiser sampled with DDIM over scene tiles.

Per tile: normalise PAN, upsampled MS (lms) and coarse MS by the model card's scale; draw the
starting noise from each pixel's *global* position and the seed (so overlapping tiles share it
and ``--seed`` reproduces a run exactly); run DDIM in residual space (x0 = image - lms); add lms
back and undo the normalisation.

Geometry: the ``fast`` network is local and aligned to its window grid, so a tile's read window
is aligned to the network's granularity and carries a halo of its receptive field; tiles then
agree to float rounding and blending only smooths that. The ``faithful`` network attends over its
whole input, so each tile is processed as 64x64 patches at stride 32 blended with raised-cosine
weights (the released inference, batched), and tiles overlap by a patch.

Memory: a local network is run over a tile in *chunks*, windows of at most ``chunk`` PAN px a
side, each carrying the halo, so the network's working memory is bounded by ``chunk`` whatever
the tile size; and one chunk at a time is in the network per process (the other tile threads
read and prepare meanwhile), with all of PyTorch's threads on it. The method reports progress
after each chunk or patch batch. Chunks, patches and sampling are :mod:`.network`'s, shared with
the generalist and with hold-out scoring (:func:`fuse_arrays`).

Scene adaptation (``--adapt``) is not done here: inference never imports training code, so the
pipeline adapts the prepared network (:func:`ssdiff_cli.pipeline.adapt_scene`) and hands it back
with :meth:`SSDiffMethod.use_network`.
"""

from __future__ import annotations

import math
import threading
import warnings

import numpy as np

from ssdiff_cli import zoo
from ssdiff_cli.diffusion import position_noise
from ssdiff_cli.errors import ModelError, SsdiffWarning
from ssdiff_cli.methods.base import FusionMethod, SceneContext
from ssdiff_cli.methods.network import (
    FAITHFUL_PATCH,
    FAITHFUL_STRIDE,
    NETWORK_LOCK,
    Sampling,
    denoise_batch,
    inference_network,
    run_chunks,
    run_patches,
)
from ssdiff_cli.scene import TileData
from ssdiff_cli.tiling import blend_margin

#: Default tile core size (PAN px) and largest window (halo included) run through a local network
#: at once: its activations, about 1 KB per PAN px in bf16, set the process's peak memory.
TILE_SIZE = 512
CHUNK = 768
#: The generalist's largest chunk at any band count (peak 1.52 GB at 768 on the 4-band Landsat
#: demo scene, 1.19 GB on 8-band wv2_grip at 512).
GENERALIST_CHUNK = 704
#: ``--compile auto`` compiles the generalist when a scene needs at least this many chunks: a
#: first compile on a machine takes about 65 s and saves about 2 s per 512² chunk of 8 bands
#: (3.4 s eager, 1.4 s compiled on the 2-core CPU), so it pays from about 32 chunks even then
#: (about 4.7 MP of PAN), and from a few chunks once Inductor's cache holds the kernels. Decided
#: by the scene's size only, so that one scene always runs the same arithmetic.
COMPILE_MIN_CHUNKS = 32
#: The largest chunk a compiled generalist runs: it holds all bands and all attention windows at
#: once, so the image's own activations, not the bands, bound it (4 bands at 704: 1.51 GB at
#: peak; 8 bands at 512: 1.36 GB).
COMPILED_CHUNK = 576


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a CUDA GPU is present, else ``cpu``; ``cuda`` without one is an
    error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda: no CUDA GPU is available (use --device auto or cpu)")
    if device not in ("cpu", "cuda"):
        raise ModelError(f"unknown device {device!r}; choose auto, cpu or cuda")
    return device


def network_halo(net) -> int:
    """Context (px) a local network needs around a pixel, on its window grid."""
    g = net.granularity
    return int(math.ceil(net.receptive_field / g) * g)


def fuse_arrays(net, sampling: Sampling, lms: np.ndarray, pan: np.ndarray, ms: np.ndarray,
                seed: int = 0, row: int = 0, col: int = 0, chunk: int = CHUNK,
                batch: int = 16) -> np.ndarray:
    """A per-sensor network over whole normalised arrays ``lms (C,H,W)``, ``pan (1,H,W)``,
    ``ms (C,H/r,W/r)`` (hold-out scoring); returns the normalised image ``(C,H,W)``.

    The same path as a tile of ``sharpen``: noise keyed at global (``row``, ``col``), a local
    network in chunks carrying its halo (clipped at the arrays' edges), a faithful one in
    blended patches, with a last patch flush with each far edge (arrays have no halo)."""
    import torch

    c, h, w = lms.shape
    r = net.config.ratio

    def sample(inputs):
        return denoise_batch(net, sampling, inputs)

    with torch.inference_mode():
        if net.receptive_field is None:
            noise = position_noise(seed, c, row, col, h, w)
            return run_patches(noise, lms, pan, ms, r, sample, batch, cover_edges=True) + lms
        residual = np.zeros_like(lms)

        def inputs(y0, y1, x0, x1):
            noise = position_noise(seed, c, row + y0, col + x0, y1 - y0, x1 - x0)
            return [a[None] for a in (noise, lms[:, y0:y1, x0:x1], pan[:, y0:y1, x0:x1],
                                      ms[:, y0 // r:y1 // r, x0 // r:x1 // r])]

        def emit(y0, y1, x0, x1, core):
            residual[:, y0:y1, x0:x1] = core

        run_chunks(h, w, 0, network_halo(net), net.granularity, chunk, inputs,
                   lambda prepared: sample(prepared)[0], emit)
    return residual + lms


def pan_values(spec, max_side: int = 1024) -> np.ndarray:
    """Valid PAN values over the output grid, subsampled (nearest, not averaged, so their
    percentiles are those of full-resolution pixels, as in training) to at most ``max_side``
    pixels a side."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    r0, c0 = max(spec.pan_offset[0], 0), max(spec.pan_offset[1], 0)
    with rasterio.open(spec.pan_path) as ds:
        h = min(spec.out.height, ds.height - r0)
        w = min(spec.out.width, ds.width - c0)
        step = max(1, math.ceil(max(h, w) / max_side))
        shape = (math.ceil(h / step), math.ceil(w / step))
        win = Window(c0, r0, w, h)
        data = ds.read(1, window=win, out_shape=shape, resampling=Resampling.nearest)
        valid = ds.read_masks(1, window=win, out_shape=shape, resampling=Resampling.nearest) > 0
    data = data.astype(np.float32)
    return data[valid & np.isfinite(data)]


def generalist_chunk(bands: int, granularity: int, chunk: int = CHUNK) -> int:
    """The chunk side (PAN px) a generalist runs on for ``bands`` bands: its activations grow
    with the band count (bands are folded into the batch), so a chunk's pixels x bands stay about
    what ``CHUNK`` allows 4 bands, and its pixels (the image's own activations and the attention)
    within ``GENERALIST_CHUNK``; never above ``chunk`` (the caller's bound)."""
    scaled = int(CHUNK * math.sqrt(4 / bands)) // granularity * granularity
    return min(chunk, GENERALIST_CHUNK, max(granularity, scaled))


def precompile(model: str | None, bands: int, ratio: int, device: str = "auto",
               precision: str = "auto", on_start=None) -> dict:
    """Compile a generalist model for ``bands`` bands at ``ratio`` as ``sharpen`` would run it
    (its chunk side, device and precision), so that later runs find the kernels in Inductor's
    cache (:func:`ssdiff_cli.nn.compiled.cache_dir`); returns what was compiled and how long it
    took. ``model`` None: the shipped generalist. ``on_start(side)`` is called once everything
    is checked, just before compiling."""
    import time

    from ssdiff_cli.methods.generalist import run_compiled_once
    from ssdiff_cli.nn.compiled import cache_dir, compiler_missing
    from ssdiff_cli.nn.precision import precision_name, resolve_precision

    if model is None:
        card = zoo.find_model_for(bands, ratio)
        if card is None or not zoo.family(card).compiles:
            raise ModelError(f"no shipped generalist model takes {bands} bands at ratio {ratio}")
        model = card.name
    dev = resolve_device(device)
    missing = compiler_missing(dev)
    if missing:
        raise ModelError(f"cannot compile here: {missing}")
    net, card = zoo.load_checkpoint(model, device="cpu")
    if not zoo.family(card).compiles:
        raise ModelError(f"{model}: only generalist models run compiled (its family, "
                         f"{zoo.family(card).name}, does not)")
    zoo.check_fits(card, bands, ratio, model)
    net = inference_network(net, dev)
    sampling = Sampling.from_card(card, None, dev, resolve_precision(precision, dev))
    side = generalist_chunk(bands, net.granularity, COMPILED_CHUNK)
    if on_start is not None:
        on_start(side)
    start = time.perf_counter()
    run_compiled_once(net, sampling, bands, ratio, side)
    return {"model": card.name, "bands": bands, "ratio": ratio, "side": side, "device": dev,
            "precision": precision_name(sampling.dtype),
            "seconds": round(time.perf_counter() - start, 1), "cache": str(cache_dir())}


def check_family(card: zoo.ModelCard, method: str) -> None:
    """Refuse a model that ``--method method`` does not run (its family names another)."""
    family = zoo.family(card)
    if family.method != method:
        raise ModelError(f"model {card.name} is a {family.name} model; run it with --method "
                         f"{family.method}, not {method}")


def family_precision(family, precision: str) -> str:
    """``--precision``, with ``auto`` meaning what the family's policy says (``fp32`` for a
    family measured slower in bf16 on the CPU, else ``auto``: bf16 where native)."""
    return family.precision if precision == "auto" else precision


def default_model(scene, sensor, method: str = "ssdiff") -> zoo.ModelCard | None:
    """The model ``--method METHOD`` (``ssdiff`` also for ``auto``) uses on ``scene`` when none
    is named (:func:`ssdiff_cli.zoo.find_model_for`); None when no model accepts it. ``sensor``
    is the detected :class:`~ssdiff_cli.sensors.SensorPreset`."""
    return zoo.find_model_for(scene.bands, scene.ratio, getattr(sensor, "key", None), method)


class SSDiffMethod(FusionMethod):
    """The SSDiff diffusion model (see the module docstring).

    Parameters
    ----------
    model : str, optional
        Zoo name or checkpoint path; default: the shipped model for the sensor's band layout.
    adapter : str, optional
        L-BAF adapter file to apply on top of the model.
    steps : int, optional
        DDIM steps (default: the card's ``sampling.steps``).
    seed : int
        Seed of the position-keyed starting noise.
    device : {"auto", "cpu", "cuda"}
    precision : {"auto", "fp32", "bf16"}
        ``auto``: bf16 where it is native (see :func:`ssdiff_cli.nn.precision.resolve_precision`).
    batch : int
        Patches per forward for the faithful network.
    chunk : int, optional
        Largest window side (PAN px, halo included) a local network is run on at once; default:
        the model family's (:mod:`ssdiff_cli.families`).
    adapt : int
        Scene adaptation steps before fusing (run by the pipeline after :meth:`prepare`:
        :func:`ssdiff_cli.pipeline.adapt_scene`).
    compile : {"auto", "on", "off"}
        Run a generalist network compiled (:mod:`ssdiff_cli.nn.compiled`): ``auto`` on the CPU
        when the scene needs at least :data:`COMPILE_MIN_CHUNKS` chunks and a C++ compiler is
        there; ``on`` always (an error without a compiler); ``off`` never.
    """

    name = "ssdiff"
    needs_ms = True

    def __init__(self, model: str | None = None, adapter: str | None = None,
                 steps: int | None = None, seed: int = 0, device: str = "auto",
                 precision: str = "auto", batch: int = 16, adapt: int = 0, chunk: int | None = None,
                 compile: str = "auto", calibrate: bool = True):
        from ssdiff_cli.nn.compiled import COMPILE_CHOICES
        from ssdiff_cli.nn.precision import PRECISIONS

        if precision not in PRECISIONS:
            raise ModelError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
        if compile not in COMPILE_CHOICES:
            raise ModelError(f"unknown --compile {compile!r}; choose {', '.join(COMPILE_CHOICES)}")
        self.compile = compile
        self.compile_decision: dict | None = None
        self.tile_workers: int | None = None  # tile threads the pipeline may run at most
        self.model_name = model
        self.adapter = adapter
        self.steps = steps
        self.seed = int(seed)
        self.device_request = device
        self.precision = precision
        self.batch = batch
        self.adapt = int(adapt)
        self.calibrate = bool(calibrate)
        self.chunk_given = chunk is not None  # else the family's chunk (prepare)
        self.chunk = int(chunk) if chunk is not None else CHUNK
        self.tile_size = TILE_SIZE
        self.net = None
        self.card = None
        self.generalist = None

    # ------------------------------------------------------------------ preparation
    def prepare(self, ctx: SceneContext) -> None:
        """Load and check the model, choose the geometry and the normalisation scale."""
        scene = ctx.scene
        name = self.model_name
        if name is None:
            card = default_model(scene, ctx.sensor, self.name)
            if card is None:
                raise ModelError(
                    f"{scene.ms_paths[0]}: no shipped model for {scene.bands} bands at ratio "
                    f"{scene.ratio}; pass --model, train one (ssdiff train), or use a classical "
                    "--method"
                )
            name = card.name
            sensor_key = getattr(ctx.sensor, "key", None)
            if card.sensor != sensor_key and not zoo.family(card).any_layout:
                warnings.warn(
                    f"{scene.ms_paths[0]}: using model {card.name}, made for {card.sensor} data, on "
                    f"{getattr(ctx.sensor, 'name', 'this sensor')}; it may not transfer (consider "
                    "--adapt N, ssdiff finetune, or a classical --method)",
                    SsdiffWarning, stacklevel=2,
                )
        self.device = resolve_device(self.device_request)
        net, card = zoo.load_checkpoint(name, device="cpu")
        family = zoo.family(card)
        check_family(card, self.name)
        if not self.chunk_given:
            self.chunk = family.chunk
        zoo.check_fits(card, scene.bands, scene.ratio, str(scene.ms_paths[0]))
        if self.adapter:
            net = zoo.apply_adapter(net, self.adapter, card)
        from ssdiff_cli.nn.precision import resolve_precision

        self.dtype = resolve_precision(family_precision(family, self.precision), self.device)
        self.use_network(net)
        self.card = card
        # The card's scheduler, steps and t_start (:class:`Sampling`); --steps overrides steps.
        self.sampling = Sampling.from_card(card, self.steps, self.device, self.dtype)
        self.steps, self.t_start = self.sampling.steps, self.sampling.t_start
        self.scheduler = self.sampling.scheduler
        if family.base is not None:  # a correction of a classical base
            self._prepare_generalist(ctx, family)
            return
        self.scale = self._scale(card.normalisation, ctx)
        granularity = self.net.granularity
        if self.net.receptive_field is not None:  # fast: exact tiling with a halo
            self.align = granularity
            self.halo = network_halo(self.net)
            self.overlap = granularity
            if self.chunk < 2 * self.halo + granularity:
                raise ModelError(f"chunk {self.chunk} PAN px leaves no room inside the network's "
                                 f"halo of {self.halo} px; use at least "
                                 f"{2 * self.halo + granularity}")
        else:  # faithful: 64x64 patches inside each tile, tiles overlap by one patch
            self.align = math.lcm(granularity, FAITHFUL_STRIDE)
            self.halo = FAITHFUL_STRIDE
            self.overlap = FAITHFUL_PATCH

    def use_network(self, net) -> None:
        """Run ``net`` (the loaded model, or the pipeline's adaptation of it) on the method's
        device, in eval mode."""
        self.net = inference_network(net, self.device)
        if self.generalist is not None:
            self.generalist.net = self.net

    @property
    def network_lock(self) -> threading.Lock:
        """The process-wide lock that lets one network evaluation run at a time."""
        return NETWORK_LOCK

    def _prepare_generalist(self, ctx: SceneContext, family) -> None:
        """A generalist model corrects MTF-GLP-FS: fit the base, take its tile geometry; the
        family's chunk and compile policy."""
        self.generalist = self.make_fusion()
        self.generalist.prepare(ctx)
        if family.scale_chunk_by_bands:
            self.chunk = generalist_chunk(ctx.scene.bands, self.net.granularity, self.chunk)
        self.needs_ms = False
        self.align, self.halo, self.overlap = (self.generalist.align, self.generalist.halo,
                                               self.generalist.overlap)
        least = 2 * self.generalist.net_halo + self.net.granularity
        if self.chunk < least:
            raise ModelError(f"chunk {self.chunk} PAN px leaves no room inside the network's "
                             f"halo of {self.generalist.net_halo} px; use at least {least}")
        self._tile_per_chunk()
        self.compile_decision = self._decide_compile(ctx, family)
        if self.compile_decision["compiled"]:
            self.chunk = min(self.chunk, COMPILED_CHUNK)
            self._tile_per_chunk()
            self.compile_decision["side"] = self.generalist.compile_side = self.chunk
            self.tile_workers = 1

    def make_fusion(self):
        """The per-scene fusion of a model that corrects a classical base (unprepared)."""
        from ssdiff_cli.methods.generalist import GeneralistFusion

        return GeneralistFusion(self.net, self.scheduler, self.steps, self.t_start, self.seed,
                                self.device, self.dtype)

    def _tile_per_chunk(self) -> None:
        """A tile's blend extent (its core widened by the blend margin on both sides) is one
        chunk's core: the network runs once per tile, and no pixel is computed twice except in
        the overlaps."""
        margin = blend_margin(self.overlap, self.align)
        core = self.chunk - 2 * self.generalist.net_halo - 2 * margin
        self.tile_size = max(self.align, core // self.align * self.align)

    def _decide_compile(self, ctx: SceneContext, family) -> dict:
        """Whether the generalist runs compiled on this scene, and why (``--compile``)."""
        from ssdiff_cli.nn.compiled import cache_dir, compiler_missing

        grid = ctx.scene.spec.out
        chunks = math.ceil(grid.height / self.tile_size) * math.ceil(grid.width / self.tile_size)
        if self.compile == "off":
            return {"compiled": False, "why": "--compile off"}
        if not family.compiles:
            if self.compile == "on":
                raise ModelError(f"--compile on: models of the {family.name} family do not run "
                                 "compiled")
            return {"compiled": False, "why": f"the {family.name} family does not run compiled"}
        missing = compiler_missing(self.device)
        if missing:
            if self.compile == "on":
                raise ModelError(f"--compile on: {missing}")
            return {"compiled": False, "why": missing}
        if self.compile == "auto" and not self.device.startswith("cpu"):
            return {"compiled": False, "why": "--compile auto compiles on the CPU only"}
        if self.compile == "auto" and chunks < COMPILE_MIN_CHUNKS:
            return {"compiled": False,
                    "why": f"{chunks} chunks, fewer than {COMPILE_MIN_CHUNKS}: compiling would "
                           "not pay"}
        why = "--compile on" if self.compile == "on" else f"{chunks} chunks"
        return {"compiled": True, "why": why, "cache": str(cache_dir())}

    def compile_report(self) -> dict | None:
        """What ``--compile`` did on this run (None for a network it does not apply to): the
        decision, and once the first chunk ran, the seconds it took (compile included) or why
        compiling failed."""
        if self.compile_decision is None or self.generalist is None:
            return None
        out = dict(self.compile_decision)
        if self.generalist.compile_seconds is not None:
            out["first_chunk_seconds"] = self.generalist.compile_seconds
            out["kernels"] = self.generalist.compile_kernels
        if self.generalist.compile_failure is not None:
            out.update(compiled=False, why=f"compile failed: {self.generalist.compile_failure}")
        return out

    @staticmethod
    def _scale(norm: dict, ctx: SceneContext) -> float:
        kind = norm.get("kind", "fixed")
        if kind == "fixed":
            return float(norm["scale"])
        if kind == "scene":
            values = pan_values(ctx.scene.spec)
            if values.size == 0:
                raise ModelError(f"{ctx.scene.pan_path}: no valid PAN pixel to normalise by")
            return float(max(np.percentile(values, norm.get("percentile", 99.0)), 1e-6))
        raise ModelError(f"model card: unknown normalisation {kind!r}")

    # ------------------------------------------------------------------ fusion
    def fuse(self, tile: TileData) -> np.ndarray:
        """Sample the residual over the tile and add it to the upsampled MS (or, for a
        generalist model, the correction of the classical base)."""
        import torch

        if self.generalist is not None:
            return self.generalist.fuse_tile(tile.pan, tile.lms, tile.row, tile.col, self.chunk,
                                             self.network_lock)
        out = np.array(tile.lms, dtype=np.float32)  # DN; the residual is added where computed
        with torch.inference_mode():
            if self.net.receptive_field is not None:
                self._fuse_chunks(tile, out)
            else:
                self._fuse_patches(tile, out)
        return out

    def _inputs(self, tile: TileData, y0: int, y1: int, x0: int, x1: int):
        """Normalised network inputs and the position-keyed noise over a window of the tile."""
        r = self.card.ratio
        lms = tile.lms[:, y0:y1, x0:x1] / self.scale
        pan = tile.pan[None, y0:y1, x0:x1] / self.scale
        ms = tile.ms[:, y0 // r : y1 // r, x0 // r : x1 // r] / self.scale
        noise = position_noise(self.seed, lms.shape[0], tile.row + y0, tile.col + x0,
                               y1 - y0, x1 - x0)
        return noise, lms, pan, ms

    def _sample(self, inputs: list[np.ndarray]) -> np.ndarray:
        """The residual over a batch of windows (:func:`.network.denoise_batch`)."""
        return denoise_batch(self.net, self.sampling, inputs)

    def _fuse_chunks(self, tile: TileData, out: np.ndarray) -> None:
        """A local network over the tile in chunks: each computes the residual on its core,
        reading ``halo`` px around it; only the window inside the tile's own halo is computed
        (the rest is discarded by the engine)."""
        _, h, w = out.shape
        scale = np.float32(self.scale)

        def emit(y0, y1, x0, x1, core):
            out[:, y0:y1, x0:x1] += core * scale

        run_chunks(h, w, self.halo, self.halo, self.net.granularity, self.chunk,
                   lambda *window: [a[None] for a in self._inputs(tile, *window)],
                   lambda inputs: self._sample(inputs)[0], emit, NETWORK_LOCK)

    def _fuse_patches(self, tile: TileData, out: np.ndarray) -> None:
        """The faithful network over 64x64 patches at stride 32, blended."""
        _, h, w = out.shape
        noise, lms, pan, ms = self._inputs(tile, 0, h, 0, w)
        out += run_patches(noise, lms, pan, ms, self.card.ratio, self._sample, self.batch,
                           NETWORK_LOCK) * np.float32(self.scale)

    def describe(self) -> dict:
        """Model, variant, steps, seed, device, precision (resolved), chunk."""
        from ssdiff_cli.nn.precision import precision_name

        return {
            "name": self.name,
            "model": self.card.name if self.card else self.model_name,
            "variant": (self.card.model.get("variant") or self.card.model.get("family"))
            if self.card else None,
            "terms": self.card.training.get("terms") if self.card else None,
            "use": zoo.terms_summary(self.card) if self.card else None,
            "steps": self.steps,
            "seed": self.seed,
            "device": getattr(self, "device", self.device_request),
            "precision": (precision_name(self.dtype) if hasattr(self, "dtype")
                          else self.precision),
            "chunk": self.chunk,
            "compile": self.compile_report() or self.compile,
            "adapter": self.adapter,
            "adapt_steps": self.adapt,
            "calibrate": self.calibrate if self.generalist is not None else None,
        }
