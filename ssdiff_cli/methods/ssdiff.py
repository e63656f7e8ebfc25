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
after each chunk or patch batch.
"""

from __future__ import annotations

import math
import threading
import warnings

import numpy as np

from ssdiff_cli import zoo
from ssdiff_cli.errors import ModelError, SsdiffWarning
from ssdiff_cli.methods.base import FusionMethod, SceneContext, report_progress
from ssdiff_cli.scene import TileData
from ssdiff_cli.tiling import chunk_spans

FAITHFUL_PATCH = 64
FAITHFUL_STRIDE = 32
#: Side (PAN px) of the central window whose reduced-resolution crops ``--adapt`` trains on.
ADAPT_WINDOW = 1024
#: Default tile core size (PAN px) and largest window (halo included) run through a local network
#: at once: its activations, about 1 KB per PAN px in bf16, set the process's peak memory.
TILE_SIZE = 512
CHUNK = 768

#: One network evaluation at a time per process: a second one would double the activations and,
#: with every thread of PyTorch's pool on each, not run faster.
_NETWORK_LOCK = threading.Lock()


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


def _patch_weights(size: int) -> np.ndarray:
    """Separable raised-cosine weights with a positive floor (edges still count a little)."""
    t = (np.arange(size) + 0.5) / size
    w = 0.05 + np.sin(np.pi * t) ** 2
    return np.outer(w, w).astype(np.float32)


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
    chunk : int
        Largest window side (PAN px, halo included) a local network is run on at once.
    adapt : int
        Scene adaptation: L-BAF steps on reduced-resolution crops of the scene being sharpened
        (a central window of at most ``ADAPT_WINDOW`` PAN px a side) before fusing it.
    """

    name = "ssdiff"
    needs_ms = True

    def __init__(self, model: str | None = None, adapter: str | None = None,
                 steps: int | None = None, seed: int = 0, device: str = "auto",
                 precision: str = "auto", batch: int = 16, adapt: int = 0, chunk: int = CHUNK):
        from ssdiff_cli.nn.precision import PRECISIONS

        if precision not in PRECISIONS:
            raise ModelError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
        self.model_name = model
        self.adapter = adapter
        self.steps = steps
        self.seed = int(seed)
        self.device_request = device
        self.precision = precision
        self.batch = batch
        self.adapt = int(adapt)
        self.chunk = int(chunk)
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
            card = zoo.find_model_for(scene.bands, scene.ratio, getattr(ctx.sensor, "key", None))
            if card is None:
                raise ModelError(
                    f"{scene.ms_paths[0]}: no shipped model for {scene.bands} bands at ratio "
                    f"{scene.ratio}; pass --model, train one (ssdiff train), or use a classical "
                    "--method"
                )
            name = card.name
            sensor_key = getattr(ctx.sensor, "key", None)
            if card.sensor != sensor_key and not zoo.is_generalist(card):
                warnings.warn(
                    f"{scene.ms_paths[0]}: using model {card.name}, made for {card.sensor} data, on "
                    f"{getattr(ctx.sensor, 'name', 'this sensor')}; it may not transfer (consider "
                    "--adapt N, ssdiff finetune, or a classical --method)",
                    SsdiffWarning, stacklevel=2,
                )
        self.device = resolve_device(self.device_request)
        net, card = zoo.load_checkpoint(name, device="cpu")
        zoo.check_fits(card, scene.bands, scene.ratio, str(scene.ms_paths[0]))
        if self.adapter:
            from ssdiff_cli.training.finetune import apply_adapter

            net = apply_adapter(net, self.adapter, card)
        if self.adapt > 0 and not zoo.is_generalist(card):  # generalists: pipeline.adapt_scene
            net = self._adapt(net, card, ctx)
        import torch

        from ssdiff_cli.nn.precision import resolve_precision

        self.dtype = resolve_precision(self.precision, self.device)
        # Channels-last: oneDNN runs the convolutions without reordering (1.3x to 1.8x measured
        # on the 2-core CPU, fp32 and bf16).
        self.net = net.to(self.device).eval().to(memory_format=torch.channels_last)
        self.card = card
        self.steps = self.steps or int(card.sampling.get("steps", 1))
        # Cards of x0-predictors start sampling from pure noise at T - 1 (one step is one guess);
        # without t_start the released schedule (900, 800, ..., 0 for 10 steps) is used.
        self.t_start = card.sampling.get("t_start")
        from ssdiff_cli.diffusion import DDIMScheduler, DiffusionConfig

        self.scheduler = DDIMScheduler(DiffusionConfig.from_dict(card.diffusion)
                                       if card.diffusion else None)
        if zoo.is_generalist(card):
            self._prepare_generalist(ctx)
            return
        self.scale = self._scale(card.normalisation, ctx)
        granularity = self.net.granularity
        if self.net.receptive_field is not None:  # fast: exact tiling with a halo
            self.align = granularity
            self.halo = int(math.ceil(self.net.receptive_field / granularity) * granularity)
            self.overlap = granularity
            if self.chunk < 2 * self.halo + granularity:
                raise ModelError(f"chunk {self.chunk} PAN px leaves no room inside the network's "
                                 f"halo of {self.halo} px; use at least "
                                 f"{2 * self.halo + granularity}")
        else:  # faithful: 64x64 patches inside each tile, tiles overlap by one patch
            self.align = math.lcm(granularity, FAITHFUL_STRIDE)
            self.halo = FAITHFUL_STRIDE
            self.overlap = FAITHFUL_PATCH

    @property
    def network_lock(self) -> threading.Lock:
        """The process-wide lock that lets one network evaluation run at a time."""
        return _NETWORK_LOCK

    def _prepare_generalist(self, ctx: SceneContext) -> None:
        """A generalist model corrects MTF-GLP-FS: fit the base, take its tile geometry."""
        from ssdiff_cli.methods.generalist import GeneralistFusion

        self.generalist = GeneralistFusion(self.net, self.scheduler, self.steps, self.t_start,
                                           self.seed, self.device, self.dtype)
        self.generalist.prepare(ctx)
        # Its activations grow with the band count (bands are folded into the batch): keep a
        # chunk's pixels x bands about what CHUNK allows 4 bands.
        g = self.net.granularity
        self.chunk = min(self.chunk, max(g, int(CHUNK * math.sqrt(4 / ctx.scene.bands)) // g * g))
        self.needs_ms = False
        self.align, self.halo, self.overlap = (self.generalist.align, self.generalist.halo,
                                               self.generalist.overlap)
        least = 2 * self.generalist.net_halo + self.net.granularity
        if self.chunk < least:
            raise ModelError(f"chunk {self.chunk} PAN px leaves no room inside the network's "
                             f"halo of {self.generalist.net_halo} px; use at least {least}")
        # A tile's blend extent (core plus overlap) is one chunk's core: the network runs once
        # per tile, and no pixel is computed twice except in the overlaps.
        core = self.chunk - 2 * self.generalist.net_halo - self.overlap
        self.tile_size = max(self.align, core // self.align * self.align)

    def _adapt(self, net, card, ctx: SceneContext):
        """Fine-tune adapters on the scene itself (Wald crops of a central window), merged."""
        from ssdiff_cli.scene import read_arrays
        from ssdiff_cli.training.finetune import adapt_to_scene

        spec, r = ctx.scene.spec, ctx.scene.ratio
        side = min(ADAPT_WINDOW, spec.out.height // r * r, spec.out.width // r * r)
        row = (spec.out.height - side) // 2 // r * r
        col = (spec.out.width - side) // 2 // r * r
        pan, pan_valid, ms, ms_valid = read_arrays(spec, row, col, side, side)
        return adapt_to_scene(
            net, card, np.nan_to_num(pan), np.nan_to_num(ms), self.adapt, pan_valid=pan_valid,
            ms_valid=ms_valid, ms_gnyq=getattr(ctx.sensor, "ms_gnyq", None),
            pan_gnyq=getattr(ctx.sensor, "pan_gnyq", None), seed=self.seed, device=self.device,
        )

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
        from ssdiff_cli.diffusion import position_noise

        r = self.card.ratio
        lms = tile.lms[:, y0:y1, x0:x1] / self.scale
        pan = tile.pan[None, y0:y1, x0:x1] / self.scale
        ms = tile.ms[:, y0 // r : y1 // r, x0 // r : x1 // r] / self.scale
        noise = position_noise(self.seed, lms.shape[0], tile.row + y0, tile.col + x0,
                               y1 - y0, x1 - x0)
        return noise, lms, pan, ms

    def _fuse_chunks(self, tile: TileData, out: np.ndarray) -> None:
        """A local network over the tile in chunks: each computes the residual on its core,
        reading ``halo`` px around it; only the window inside the tile's own halo is computed
        (the rest is discarded by the engine)."""
        _, h, w = out.shape
        g, halo = self.net.granularity, self.halo
        rows = chunk_spans(halo, h - halo, self.chunk - 2 * halo, g)
        cols = chunk_spans(halo, w - halo, self.chunk - 2 * halo, g)
        total, done = (h - 2 * halo) * (w - 2 * halo), 0
        for y0, y1 in rows:
            for x0, x1 in cols:
                iy0, iy1, ix0, ix1 = y0 - halo, min(y1 + halo, h), x0 - halo, min(x1 + halo, w)
                inputs = [a[None] for a in self._inputs(tile, iy0, iy1, ix0, ix1)]
                with _NETWORK_LOCK:
                    residual = self._sample(inputs)[0]
                core = residual[:, y0 - iy0 : y1 - iy0, x0 - ix0 : x1 - ix0]
                out[:, y0:y1, x0:x1] += core * np.float32(self.scale)
                del residual, core
                done += (y1 - y0) * (x1 - x0)
                report_progress(done / total)

    def _sample(self, inputs: list[np.ndarray]) -> np.ndarray:
        """DDIM over a batch of windows: ``inputs`` is ``[noise, lms, pan, ms]`` (numpy,
        batched); the list is emptied as the arrays become tensors, so that they are not held
        while the network runs. Returns the residual (numpy)."""
        import torch

        from ssdiff_cli.diffusion import sample

        dev = self.device
        tensors = []
        while inputs:
            a = inputs.pop(0)
            tensors.append(torch.from_numpy(np.ascontiguousarray(a)).to(dev)
                           .contiguous(memory_format=torch.channels_last))
            del a
        x_t, t_lms, t_pan, t_ms = tensors
        del tensors
        dtype = self.dtype

        def model_fn(x, t):
            with torch.autocast(device_type=dev, dtype=dtype, enabled=dtype is not None):
                return self.net(x, t, t_lms, t_pan, t_ms).float()

        out = sample(model_fn, x_t, self.scheduler, steps=self.steps, t_start=self.t_start)
        return out.float().cpu().numpy()

    def _fuse_patches(self, tile: TileData, out: np.ndarray) -> None:
        """The faithful network over 64x64 patches at stride 32, blended."""
        bands, h, w = out.shape
        noise, lms, pan, ms = self._inputs(tile, 0, h, 0, w)
        p, s, r = FAITHFUL_PATCH, FAITHFUL_STRIDE, self.card.ratio
        acc = np.zeros((bands, h, w), np.float32)
        wsum = np.zeros((h, w), np.float32)
        weight = _patch_weights(p)
        corners = [(y, x) for y in range(0, max(h - p, 0) + 1, s)
                   for x in range(0, max(w - p, 0) + 1, s)]
        for i in range(0, len(corners), self.batch):
            chunk = corners[i : i + self.batch]
            with _NETWORK_LOCK:
                res = self._sample([
                    np.stack([noise[:, y : y + p, x : x + p] for y, x in chunk]),
                    np.stack([lms[:, y : y + p, x : x + p] for y, x in chunk]),
                    np.stack([pan[:, y : y + p, x : x + p] for y, x in chunk]),
                    np.stack([ms[:, y // r : (y + p) // r, x // r : (x + p) // r]
                              for y, x in chunk]),
                ])
            for (y, x), patch in zip(chunk, res):
                acc[:, y : y + p, x : x + p] += patch * weight
                wsum[y : y + p, x : x + p] += weight
            report_progress((i + len(chunk)) / len(corners))
        out += acc / np.maximum(wsum, 1e-12) * np.float32(self.scale)

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
            "adapter": self.adapter,
            "adapt_steps": self.adapt,
        }
