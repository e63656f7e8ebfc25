"""FMIM: fixed frequency modulation between the two branches (no learned parameters).

Before stage k the spectral features' first half of channels is multiplied by a gain b_k and the
spatial features given to APFM have their lowest frequencies scaled by s_k:

* :func:`fft_lowfreq_scale` (faithful): over the whole tensor by FFT, the central 2x2 bins of the
  shifted spectrum (DC and the -1 neighbours) multiplied by s.
* :func:`window_lowfreq_scale` (fast): the local analogue, ``x - (1 - s) * mean_window(x)`` where
  the mean is over non-overlapping windows aligned to the tensor origin (the DC of each window).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def spectral_gain(x: torch.Tensor, gain: float) -> torch.Tensor:
    """Multiply the first half of the channels of ``x`` (N, C, H, W) by ``gain``."""
    if gain == 1.0:
        return x
    half = x.shape[1] // 2
    scale = torch.ones(x.shape[1], dtype=x.dtype, device=x.device)
    scale[:half] = gain
    return x * scale[None, :, None, None]


def fft_lowfreq_scale(x: torch.Tensor, s: float) -> torch.Tensor:
    """Scale the DC bin and its three (-1) neighbours of the 2-D FFT of ``x`` by ``s``.

    In unshifted indices these are the bins (0, 0), (-1, 0), (0, -1) and (-1, -1); the result is
    the real part of the inverse transform, as in the released code. Computed in float32.
    """
    dtype = x.dtype
    spec = torch.fft.fft2(x.float())
    h, w = x.shape[-2:]
    mask = torch.ones(h, w, dtype=torch.float32, device=x.device)
    mask[0, 0] = mask[-1, 0] = mask[0, -1] = mask[-1, -1] = s
    return torch.fft.ifft2(spec * mask).real.to(dtype)


def window_lowfreq_scale(x: torch.Tensor, s: float, window: int) -> torch.Tensor:
    """``x - (1 - s) * mean`` over non-overlapping ``window`` x ``window`` blocks of ``x``.

    H and W must be multiples of ``window``; blocks start at the tensor origin.
    """
    mean = F.avg_pool2d(x, window, stride=window)
    mean = mean.repeat_interleave(window, dim=2).repeat_interleave(window, dim=3)
    return x - (1.0 - s) * mean
