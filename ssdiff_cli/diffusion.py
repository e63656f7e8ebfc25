"""Noise schedule and DDIM sampler for SSDiff; knows nothing of the network's insides.

Everything here lives in *residual space*: ``x0 = gt - lms`` (normalised values). Training noises
the residual (:meth:`DDIMScheduler.add_noise`), the network predicts x0 directly, and sampling
returns a residual; the caller (the pipeline) forms the image as ``x0 + lms``.

Symbols (Song et al. 2021, DDIM; Nichol & Dhariwal 2021, cosine schedule)::

    alpha_bar[t]   cumulative product of (1 - beta)        ``alphas_cumprod[t]``
    x_t            sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) eps
    eps_hat        (x_t - sqrt(alpha_bar[t]) x0_hat) / sqrt(1 - alpha_bar[t])
    x_prev         sqrt(alpha_bar[t_prev]) x0_hat + sqrt(1 - alpha_bar[t_prev]) eps_hat   (eta=0)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class DiffusionConfig:
    """Diffusion hyper-parameters (saved as JSON beside checkpoints and outputs).

    Parameters
    ----------
    num_train_timesteps : int
        T; training draws integer t uniformly from [0, T).
    cosine_s : float
        Offset s of the cosine schedule.
    max_beta : float
        Cap on each beta_t.
    clip_range : (float, float) or None
        Bounds that the predicted x0 (the residual) is clamped to in :meth:`DDIMScheduler.step`;
        (-1, 1) is the widest range a residual of [0, 1] images can take. None: no clamping.
    """

    num_train_timesteps: int = 1000
    cosine_s: float = 0.008
    max_beta: float = 0.999
    clip_range: tuple[float, float] | None = (-1.0, 1.0)

    def __post_init__(self) -> None:
        if self.num_train_timesteps < 1:
            raise ValueError(f"num_train_timesteps must be >= 1, got {self.num_train_timesteps}")
        if not 0.0 < self.max_beta < 1.0:
            raise ValueError(f"max_beta must be in (0, 1), got {self.max_beta}")
        if self.clip_range is not None:
            lo, hi = (float(v) for v in self.clip_range)
            if lo >= hi:
                raise ValueError(f"clip_range must be (low, high) with low < high, got {(lo, hi)}")
            object.__setattr__(self, "clip_range", (lo, hi))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if out["clip_range"] is not None:
            out["clip_range"] = list(out["clip_range"])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiffusionConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown DiffusionConfig keys: {', '.join(unknown)}")
        data = dict(data)
        if data.get("clip_range") is not None:
            data["clip_range"] = tuple(data["clip_range"])
        return cls(**data)


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Cosine schedule (Nichol & Dhariwal 2021, eq. 17), float64.

    alpha_bar(t) = f(t) / f(0), f(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2);
    beta_t = min(1 - alpha_bar(t + 1) / alpha_bar(t), max_beta).
    """
    x = np.arange(timesteps + 1, dtype=np.float64) / timesteps
    f = np.cos((x + s) / (1.0 + s) * math.pi / 2.0) ** 2
    alpha_bar = f / f[0]
    return np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], max_beta)


@dataclass
class DDIMStepOutput:
    """Result of :meth:`DDIMScheduler.step`."""

    prev_sample: torch.Tensor  # x_{t_prev}
    pred_original_sample: torch.Tensor  # x0_hat after clamping


class DDIMScheduler:
    """Cosine-schedule DDIM (eta = 0) for an x0-predicting network; not an ``nn.Module``.

    The schedule is computed in float64 and stored as float32 tensors on the CPU; they are moved
    to the sample's device on use.
    """

    def __init__(self, config: DiffusionConfig | None = None) -> None:
        self.config = config or DiffusionConfig()
        cfg = self.config
        betas = cosine_betas(cfg.num_train_timesteps, cfg.cosine_s, cfg.max_beta)
        alphas_cumprod = np.cumprod(1.0 - betas)
        self.betas = torch.from_numpy(betas.astype(np.float32))
        self.alphas_cumprod = torch.from_numpy(alphas_cumprod.astype(np.float32))
        self.timesteps: torch.Tensor | None = None
        self.num_inference_steps: int | None = None

    @property
    def num_train_timesteps(self) -> int:
        return self.config.num_train_timesteps

    # ---------------------------------------------------------------- training
    def sample_timesteps(
        self, batch: int, generator: torch.Generator | None = None, device=None
    ) -> torch.Tensor:
        """Integer timesteps drawn uniformly from [0, T), shape (batch,)."""
        return torch.randint(0, self.num_train_timesteps, (batch,), generator=generator, device=device)

    def _alpha_bar(self, t: torch.Tensor | int, ref: torch.Tensor) -> torch.Tensor:
        """alpha_bar[t] shaped to broadcast against ``ref`` (t < 0 means alpha_bar = 1)."""
        t = torch.as_tensor(t, device=ref.device)
        if t.is_floating_point():
            if not torch.equal(t, t.round()):
                raise ValueError("timesteps must be whole numbers (the schedule is discrete)")
            t = t.long()
        if (t >= self.num_train_timesteps).any():
            raise ValueError(f"timestep {int(t.max())} out of range for T = {self.num_train_timesteps}")
        table = self.alphas_cumprod.to(ref.device)
        ab = torch.where(t >= 0, table[t.clamp(min=0)], torch.ones((), device=ref.device))
        return ab.to(ref.dtype).reshape(-1, *([1] * (ref.ndim - 1)))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """q(x_t | x0): ``sqrt(alpha_bar[t]) * x0 + sqrt(1 - alpha_bar[t]) * noise``.

        ``t`` is an integer (or integer-valued) scalar or a (B,) tensor.
        """
        ab = self._alpha_bar(t, x0)
        return ab.sqrt() * x0 + (1.0 - ab).sqrt() * noise

    # ---------------------------------------------------------------- sampling
    def set_timesteps(self, num_inference_steps: int, t_start: int | None = None) -> torch.Tensor:
        """Choose the sampling timesteps.

        Default rule: ``t_i = (i * T) // n`` for i = n-1, ..., 0; for T = 1000 and n = 10 this is
        [900, 800, ..., 0] (the released schedule). With ``t_start`` (e.g. T - 1 = 999) the
        steps are instead spaced evenly from ``t_start`` down ("trailing"): the first step is
        ``t_start`` itself, so one step is the network's single guess from pure noise, which is
        what an x0-predictor needs (the default rule's one step would be [0]). Stored in
        ``self.timesteps`` (int64) and returned.

        Raises
        ------
        ValueError
            If n < 1, n > T, or ``t_start`` is outside [n - 1, T - 1] (the numbers are quoted).
        """
        n, big_t = int(num_inference_steps), self.num_train_timesteps
        if n < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {n}")
        if n > big_t:
            raise ValueError(f"num_inference_steps ({n}) cannot exceed the {big_t} training timesteps")
        if t_start is None:
            steps = [(i * big_t) // n for i in range(n - 1, -1, -1)]
        else:
            if not n - 1 <= t_start <= big_t - 1:
                raise ValueError(f"t_start ({t_start}) must lie in [{n - 1}, {big_t - 1}] for {n} steps")
            steps = [((t_start + 1) * (i + 1)) // n - 1 for i in reversed(range(n))]
        self.num_inference_steps = n
        self.timesteps = torch.tensor(steps)
        return self.timesteps

    def previous_timestep(self, t: int) -> int:
        """The timestep after ``t`` in the current schedule, or -1 after the last one."""
        if self.timesteps is None:
            raise RuntimeError("call set_timesteps(n) before step() without an explicit t_prev")
        steps = self.timesteps.tolist()
        if t not in steps:
            raise ValueError(f"timestep {t} is not in the current schedule {steps}")
        i = steps.index(t)
        return steps[i + 1] if i + 1 < len(steps) else -1

    def step(
        self,
        x0_pred: torch.Tensor,
        t: int,
        t_prev: int | None,
        x_t: torch.Tensor,
        *,
        clip: tuple[Any, Any] | None = None,
    ) -> DDIMStepOutput:
        """One deterministic DDIM update (eta = 0) from the network's x0 prediction.

        Parameters
        ----------
        x0_pred : tensor
            The network's x0 (residual) estimate at ``x_t``.
        t : int
            Current timestep.
        t_prev : int or None
            Next (smaller) timestep, -1 for the final step (alpha_bar = 1, returns x0); None:
            the timestep after ``t`` in :meth:`set_timesteps` (an error if it was not called).
        x_t : tensor
            Current sample.
        clip : (low, high), optional
            Bounds for x0 (numbers or tensors broadcastable to x0, e.g. ``(-lms, 1 - lms)`` to
            keep the image in [0, 1]); default ``config.clip_range``.
        """
        if t_prev is None:
            t_prev = self.previous_timestep(int(t))
        clip = self.config.clip_range if clip is None else clip
        if clip is not None:
            lo, hi = clip
            x0_pred = torch.minimum(torch.maximum(x0_pred, torch.as_tensor(lo)), torch.as_tensor(hi))
        ab_t = self._alpha_bar(t, x_t)
        ab_prev = self._alpha_bar(t_prev, x_t)
        eps = (x_t - ab_t.sqrt() * x0_pred) / (1.0 - ab_t).sqrt()
        prev = ab_prev.sqrt() * x0_pred + (1.0 - ab_prev).sqrt() * eps
        return DDIMStepOutput(prev_sample=prev, pred_original_sample=x0_pred)


def sample(
    model_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    noise: torch.Tensor,
    scheduler: DDIMScheduler | None = None,
    steps: int = 10,
    clip: tuple[Any, Any] | None = None,
    t_start: int | None = None,
) -> torch.Tensor:
    """DDIM sampling loop (eta = 0) in residual space; returns the final x0 estimate.

    Parameters
    ----------
    model_fn : callable
        ``model_fn(x_t, t) -> x0``, ``t`` a float (B,) tensor of the timestep; close over the
        conditions, e.g. ``lambda x, t: net(x, t, lms, pan, ms)``.
    noise : tensor
        The starting sample x_T ~ N(0, 1), supplied by the caller (see :func:`position_noise`).
    scheduler : DDIMScheduler, optional
        Default: a new one with the default :class:`DiffusionConfig`.
    steps : int
        Number of DDIM steps (timesteps from :meth:`DDIMScheduler.set_timesteps`).
    clip : (low, high), optional
        Passed to :meth:`DDIMScheduler.step`.

    Returns
    -------
    Tensor like ``noise``: the residual; the image is this plus lms.
    """
    scheduler = scheduler or DDIMScheduler()
    timesteps = scheduler.set_timesteps(steps, t_start=t_start).tolist()
    x = noise
    x0 = noise
    for i, t in enumerate(timesteps):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        t_batch = torch.full((x.shape[0],), float(t), device=x.device)
        out = scheduler.step(model_fn(x, t_batch), t, t_prev, x, clip=clip)
        x, x0 = out.prev_sample, out.pred_original_sample
    return x0


# ------------------------------------------------------------------ position-keyed noise
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (Steele et al. 2014) on uint64 arrays (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _key(values: np.ndarray) -> np.ndarray:
    """Signed integers -> uint64 (two's complement), mixed."""
    return _mix64(np.asarray(values, dtype=np.int64).astype(np.uint64) + _GOLDEN)


def position_noise(
    seed: int,
    bands: int,
    row_off: int,
    col_off: int,
    height: int,
    width: int,
    step: int = 0,
) -> np.ndarray:
    """N(0, 1) noise keyed by (seed, band, global row, global column, step) only.

    Each value is a counter-based hash (splitmix64) of its key turned into two uniforms and then
    a normal (Box-Muller, cosine branch), so any window of the global grid gets the same values
    at the pixels it shares with any other window, whatever the tiling or tile order.

    Parameters
    ----------
    seed : int
        Global seed (any integer).
    bands : int
        Number of bands (band index 0..bands-1).
    row_off, col_off : int
        Global PAN-grid position (PAN px) of the window's first row and column; may be negative.
    height, width : int
        Window size (PAN px).
    step : int
        Sampling-step counter, for samplers that need fresh noise per step.

    Returns
    -------
    (bands, height, width) float32 array.
    """
    if bands < 0 or height < 0 or width < 0:
        raise ValueError(f"bands, height, width must be >= 0, got {(bands, height, width)}")
    out = np.empty((bands, height, width), dtype=np.float32)
    with np.errstate(over="ignore"):
        h = _mix64(_key(np.array(seed)) ^ _key(np.array(step)))
        hbs = _mix64(h ^ _key(np.arange(bands)))
        rows = _key(np.arange(row_off, row_off + height))[:, None]
        cols = _key(np.arange(col_off, col_off + width))[None, :]
        # Band by band: the 64-bit temporaries are then (height, width), not (bands, ...).
        for b in range(bands):
            hp = _mix64(_mix64(hbs[b] ^ rows) ^ cols)
            u1 = ((_mix64(hp ^ _M1) >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
            u2 = (_mix64(hp ^ _M2) >> np.uint64(11)).astype(np.float64) * 2.0**-53
            out[b] = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)
    return out
