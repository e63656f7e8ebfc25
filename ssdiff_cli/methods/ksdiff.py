"""KSDiff as a fusion method: the classical base corrected by one CNN pass whose kernels a
scene-level prior fixes (:class:`ssdiff_cli.nn.ksdiff.KSDiffNetwork`).

Once per scene (:meth:`KSDiffFusion.prepare`): the base is fitted as the SSDiff generalist's
(the same :class:`~ssdiff_cli.methods.generalist.GeneralistFusion` fit, MTF-GLP-FS on cubic
upsampling, and the same standardisation); PLFE2 encodes a bounded scene sample, the central
window of at most :data:`PRIOR_SIDE` PAN px a side (its cost and memory grow with the sample, so
it is capped), and the project's one DDIM sampler (:class:`~ssdiff_cli.methods.network.Sampling`)
draws the prior z from noise keyed by the seed alone (z is one per scene); z fixes every
modulated kernel. Per tile (:meth:`KSDiffFusion.correction_over`): one plain CNN pass over the
standardised conditions, in chunks that carry the network's halo, so that the result does not
depend on where tiles are cut, and memory is bounded by the chunk. An untrained model (its last
layer zero) returns the base exactly.

Everything else is the generalist's (:class:`~ssdiff_cli.methods.ssdiff.SSDiffMethod`): model
loading and checks, the family's chunk and precision policy, the tile geometry, calibration.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ssdiff_cli.diffusion import position_noise
from ssdiff_cli.errors import ModelError
from ssdiff_cli.methods.generalist import GeneralistFusion, conditions
from ssdiff_cli.methods.network import Sampling, run_chunks
from ssdiff_cli.methods.ssdiff import SSDiffMethod

#: Largest side (PAN px) of the central window the prior is computed from: PLFE2's activations
#: grow with it (8 bands, one thread: 1.4 s and 281 MB of peak RSS at 512², 6.8 s and 1.1 GB at
#: 1024²), and the training crops are smaller still.
PRIOR_SIDE = 512


class KSDiffFusion(GeneralistFusion):
    """The per-scene state of a KSDiff model: the generalist's fitted base and geometry, plus
    the prior ``z`` (1, N, C_z) and the kernels it fixes. ``prior_calls`` counts how many times
    the prior was computed (once per :meth:`prepare`)."""

    prior_calls = 0
    #: What ``--adapt`` optimises: the prior z alone (:meth:`set_prior` takes the result).
    adapted = "prior"

    def prepare(self, ctx) -> None:
        """Fit the base (as the generalist), then compute the scene's prior and its kernels."""
        super().prepare(ctx)
        from ssdiff_cli.scene import fill_values, read_tile

        out, r = ctx.scene.spec.out, self.ratio
        h = min(PRIOR_SIDE, out.height) // r * r
        w = min(PRIOR_SIDE, out.width) // r * r
        if not h or not w:
            raise ModelError(f"{ctx.scene.pan_path}: scene smaller than one MS pixel")
        row = (out.height - h) // 2 // r * r
        col = (out.width - w) // 2 // r * r
        tile = read_tile(ctx.scene.spec, row, col, h, w, fill_values(ctx.sample))
        self.prior_window = [row, col, h, w]
        self.set_prior(self.scene_prior(tile.pan, tile.lms))

    def scene_prior(self, pan: np.ndarray, lms: np.ndarray):
        """The prior z (1, N, C_z) from PAN (H, W) and lms (C, H, W) in digital numbers: PLFE2's
        condition, then DDIM over the latent denoiser from seed-keyed noise."""
        import torch

        KSDiffFusion.prior_calls += 1
        _, cond = conditions(self.glp, self.stats, pan, lms)
        n, cz = self.net.config.latent_shape
        noise = torch.from_numpy(position_noise(self.seed, 1, 0, 0, n, cz)).to(self.device)
        sampling = Sampling(self.scheduler, self.steps, self.t_start, self.device, self.dtype)
        with torch.inference_mode(), self._autocast():
            t = {k: torch.from_numpy(np.ascontiguousarray(cond[k]))[None].to(self.device)
                 for k in ("pan", "lms")}
            tokens = self.net.condition(t["pan"], t["lms"], self.ratio)
            return sampling.sample(lambda z, tt: self.net.denoise(z, tt, tokens), noise).float()

    def set_prior(self, z) -> None:
        """Fix the kernels of every tile from the prior ``z`` (1, N, C_z)."""
        import torch

        with torch.inference_mode():
            self.z = z
            self.kernels = {k: v.contiguous() for k, v in self.net.kernels(z).items()}

    def _autocast(self):
        import torch

        if self.dtype is None:
            return contextlib.nullcontext()
        dev = "cuda" if str(self.device).startswith("cuda") else "cpu"
        return torch.autocast(device_type=dev, dtype=self.dtype)

    def _sample(self, window: dict, noise=None) -> np.ndarray:
        """The correction over one chunk: one pass of the network with the scene's kernels."""
        import torch

        with torch.inference_mode(), self._autocast():
            t = {k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device)
                 .contiguous(memory_format=torch.channels_last) for k, v in window.items()}
            out = self._net(t["base"], t["lms"], t["pan"], t["pan_lp"], self.ratio, self.kernels)
        return out[0].float().cpu().numpy()

    def correction_over(self, cond: dict[str, np.ndarray], chunk: int, lock=None, row: int = 0,
                        col: int = 0, keep: int = 0) -> np.ndarray:
        """The network's correction (C, H, W) over a window of standardised conditions,
        computed inside a border of ``keep`` px (zero there) in chunks of at most ``chunk`` px
        (:func:`run_chunks`); no noise: given the kernels the pass is deterministic."""
        c, h, w = cond["base"].shape
        corr = np.zeros((c, h, w), np.float32)

        def inputs(y0, y1, x0, x1):
            return {k: v[None, :, y0:y1, x0:x1] for k, v in cond.items()}

        def emit(y0, y1, x0, x1, core):
            corr[:, y0:y1, x0:x1] = core

        run_chunks(h, w, keep, self.net_halo, self.net.granularity, chunk, inputs, self._sample,
                   emit, lock)
        return corr

    def describe(self) -> dict:
        """Where the prior came from and its size."""
        return {"prior_window": self.prior_window,
                "prior_rms": round(float(self.z.pow(2).mean().sqrt()), 5)}


class KSDiffMethod(SSDiffMethod):
    """``--method ksdiff``: a KSDiff model (see the module docstring). Options as
    :class:`~ssdiff_cli.methods.ssdiff.SSDiffMethod`'s; ``--adapt N`` optimises the scene's
    prior z alone (run by the pipeline after :meth:`prepare`, once per scene, before any
    tile), adapters do not apply yet, and its family does not run compiled (``--compile auto``
    runs it eagerly)."""

    name = "ksdiff"

    def __init__(self, model: str | None = None, adapter: str | None = None,
                 steps: int | None = None, seed: int = 0, device: str = "auto",
                 precision: str = "auto", batch: int = 16, adapt: int = 0,
                 chunk: int | None = None, compile: str = "auto", calibrate: bool = True):
        if adapter:
            raise ModelError("--adapter does not apply to --method ksdiff yet")
        super().__init__(model=model, steps=steps, seed=seed, device=device,
                         precision=precision, batch=batch, adapt=adapt, chunk=chunk,
                         compile=compile, calibrate=calibrate)

    def make_fusion(self) -> KSDiffFusion:
        """The KSDiff fusion (unprepared)."""
        return KSDiffFusion(self.net, self.scheduler, self.steps, self.t_start, self.seed,
                            self.device, self.dtype)

    def describe(self) -> dict:
        """The generalist's description, plus the prior's."""
        out = super().describe()
        if self.generalist is not None:
            out["prior"] = self.generalist.describe()
        return out
