"""Running a diffusion network over arrays: the one inference path of every SSDiff model.

``sharpen`` (per tile), ``evaluate`` (through ``sharpen``), the ``--method auto`` guard, training's
and fine-tuning's hold-out scoring all come here:

* :class:`Sampling` is what sampling needs besides the network's inputs: the model card's
  scheduler, steps and ``t_start`` (:meth:`Sampling.from_card`), the device and the autocast
  dtype; :meth:`Sampling.sample` runs :func:`ssdiff_cli.diffusion.sample`, the one DDIM loop,
  with the network under autocast;
* :func:`run_chunks` runs a *local* network over a window in chunks of at most ``chunk`` px a
  side, each carrying the network's halo: memory is bounded by the chunk, and the result equals
  one run over the whole window (the network is aligned to its window grid) up to float
  rounding;
* :func:`run_patches` runs a *global* (faithful) network over 64x64 patches at stride 32 and
  blends them with raised-cosine weights (the released inference, batched).

One network evaluation runs at a time per process (:data:`NETWORK_LOCK`): a second one would
double the activations and, with every thread of PyTorch's pool on each, not run faster.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ssdiff_cli.engine import report_progress
from ssdiff_cli.tiling import chunk_spans

FAITHFUL_PATCH = 64
FAITHFUL_STRIDE = 32

#: One network evaluation at a time per process (see the module docstring).
NETWORK_LOCK = threading.Lock()


def inference_network(net, device: str):
    """``net`` ready for inference on ``device``: eval mode, channels-last weights (oneDNN then
    runs the convolutions without reordering: 1.3x to 1.8x measured on the 2-core CPU, fp32 and
    bf16). Every inference path prepares its network here, so a compiled graph meets the same
    weights whether ``sharpen`` or ``models compile`` built it."""
    import torch

    return net.to(device).eval().to(memory_format=torch.channels_last)


def card_scheduler(card):
    """The DDIM scheduler of a model card's ``diffusion`` section (the default schedule when the
    card has none): what the model was trained with and is sampled with."""
    from ssdiff_cli.diffusion import DDIMScheduler, DiffusionConfig

    return DDIMScheduler(DiffusionConfig.from_dict(card.diffusion) if card.diffusion else None)


@dataclass
class Sampling:
    """How a network is sampled: the card's DDIM scheduler, steps and start timestep
    (``t_start`` None: the released schedule, 900, 800, ..., 0 for 10 steps; cards of
    x0-predictors give T - 1, so that one step is the network's guess from pure noise), the
    device and the autocast dtype (None: float32)."""

    scheduler: object
    steps: int
    t_start: int | None
    device: str = "cpu"
    dtype: object = None

    @classmethod
    def from_card(cls, card, steps: int | None = None, device: str = "cpu",
                  dtype=None) -> Sampling:
        """The sampling a model card asks for (``steps`` overrides ``sampling.steps``)."""
        return cls(card_scheduler(card), steps or int(card.sampling.get("steps", 1)),
                   card.sampling.get("t_start"), device, dtype)

    def sample(self, call: Callable, x_t):
        """DDIM from ``x_t`` (a tensor on the device) with ``call(x, t)`` the network under its
        conditions, run under autocast; returns the x0 estimate (a tensor)."""
        import torch

        from ssdiff_cli.diffusion import sample

        dev = "cuda" if str(self.device).startswith("cuda") else "cpu"
        dtype = self.dtype

        def model_fn(x, t):
            with torch.autocast(device_type=dev, dtype=dtype, enabled=dtype is not None):
                return call(x, t).float()

        return sample(model_fn, x_t, self.scheduler, steps=self.steps, t_start=self.t_start)


def denoise_batch(net, sampling: Sampling, inputs: list[np.ndarray]) -> np.ndarray:
    """A per-sensor network's residual over a batch of windows: ``inputs`` is
    ``[noise, lms, pan, ms]`` (normalised numpy, batched); the list is emptied as the arrays
    become tensors, so that they are not held while the network runs."""
    import torch

    dev = sampling.device
    tensors = []
    while inputs:
        a = inputs.pop(0)
        tensors.append(torch.from_numpy(np.ascontiguousarray(a)).to(dev)
                       .contiguous(memory_format=torch.channels_last))
        del a
    x_t, t_lms, t_pan, t_ms = tensors
    del tensors
    with torch.inference_mode():
        out = sampling.sample(lambda x, t: net(x, t, t_lms, t_pan, t_ms), x_t)
    return out.float().cpu().numpy()


def run_chunks(height: int, width: int, keep: int, halo: int, granularity: int, chunk: int,
               inputs: Callable, sample: Callable, emit: Callable, lock=None) -> None:
    """A local network over a ``height x width`` window in chunks.

    Only ``[keep, height - keep)`` (both axes) is computed, cut into cores whose inner
    boundaries lie on the network's window grid (``granularity`` from ``keep``); each core is
    run with ``halo`` px of context around it (clipped to the window) so that every chunk is at
    most ``chunk`` px a side. Per chunk: ``inputs(y0, y1, x0, x1)`` prepares the network's input
    over the context window, ``sample(prepared)`` runs the network on it under ``lock`` (one
    chunk in the network at a time) and returns ``(C, y1 - y0, x1 - x0)``, and
    ``emit(y0, y1, x0, x1, core)`` receives the result over the core. Progress is reported
    after each chunk."""
    rows = chunk_spans(keep, height - keep, chunk - 2 * halo, granularity)
    cols = chunk_spans(keep, width - keep, chunk - 2 * halo, granularity)
    total, done = max(1, (height - 2 * keep) * (width - 2 * keep)), 0
    for y0, y1 in rows:
        for x0, x1 in cols:
            iy0, iy1 = max(y0 - halo, 0), min(y1 + halo, height)
            ix0, ix1 = max(x0 - halo, 0), min(x1 + halo, width)
            prepared = inputs(iy0, iy1, ix0, ix1)
            with lock if lock is not None else contextlib.nullcontext():
                result = sample(prepared)
            del prepared
            emit(y0, y1, x0, x1, result[:, y0 - iy0:y1 - iy0, x0 - ix0:x1 - ix0])
            del result
            done += (y1 - y0) * (x1 - x0)
            report_progress(done / total)


def patch_weights(size: int) -> np.ndarray:
    """Separable raised-cosine weights with a positive floor (edges still count a little)."""
    t = (np.arange(size) + 0.5) / size
    w = 0.05 + np.sin(np.pi * t) ** 2
    return np.outer(w, w).astype(np.float32)


def patch_corners(height: int, width: int, ratio: int, cover_edges: bool = False
                  ) -> list[tuple[int, int]]:
    """Upper-left corners of the faithful network's patches: every ``FAITHFUL_STRIDE`` px from
    0. A tile's halo covers what the last stride leaves out; ``cover_edges`` adds a last patch
    flush with each far edge (aligned down to the ratio, so that its MS crop is whole pixels),
    for whole arrays that have no halo."""
    p, s = FAITHFUL_PATCH, FAITHFUL_STRIDE
    ys = list(range(0, max(height - p, 0) + 1, s))
    xs = list(range(0, max(width - p, 0) + 1, s))
    if cover_edges:
        ys = sorted({*ys, max(height - p, 0) // ratio * ratio})
        xs = sorted({*xs, max(width - p, 0) // ratio * ratio})
    return [(y, x) for y in ys for x in xs]


def run_patches(noise: np.ndarray, lms: np.ndarray, pan: np.ndarray, ms: np.ndarray, ratio: int,
                sample: Callable, batch: int, lock=None, cover_edges: bool = False) -> np.ndarray:
    """A global network over patches (:func:`patch_corners`) of the normalised window arrays
    ``noise``, ``lms`` (C, H, W), ``pan`` (1, H, W) and ``ms`` (C, H/r, W/r), ``batch`` patches
    per ``sample([noise, lms, pan, ms])`` call (under ``lock``), blended with
    :func:`patch_weights`; returns the residual (C, H, W), zero where no patch reached."""
    bands, h, w = lms.shape
    p, r = FAITHFUL_PATCH, ratio
    acc = np.zeros((bands, h, w), np.float32)
    wsum = np.zeros((h, w), np.float32)
    weight = patch_weights(p)
    corners = patch_corners(h, w, r, cover_edges)
    for i in range(0, len(corners), batch):
        part = corners[i : i + batch]
        with lock if lock is not None else contextlib.nullcontext():
            res = sample([
                np.stack([noise[:, y : y + p, x : x + p] for y, x in part]),
                np.stack([lms[:, y : y + p, x : x + p] for y, x in part]),
                np.stack([pan[:, y : y + p, x : x + p] for y, x in part]),
                np.stack([ms[:, y // r : (y + p) // r, x // r : (x + p) // r] for y, x in part]),
            ])
        for (y, x), patch in zip(part, res):
            ph, pw = patch.shape[-2:]
            wt = weight[:ph, :pw]
            acc[:, y : y + ph, x : x + pw] += patch * wt
            wsum[y : y + ph, x : x + pw] += wt
        report_progress((i + len(part)) / len(corners))
    return acc / np.maximum(wsum, 1e-12)
