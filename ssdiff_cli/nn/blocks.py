"""Building blocks shared by the two branches of the SSDiff denoiser.

All modules take NCHW tensors (channels-last memory format is kept where convolutions allow).
Blocks marked *zero-initialised* start as the identity (their last conv is all zeros).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LEAK = 0.01  # LeakyReLU negative slope (PyTorch default)


def zero_(module: nn.Module) -> nn.Module:
    """Zero every parameter of ``module`` in place and return it."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def timestep_features(t: torch.Tensor, dim: int = 128, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of (float) timesteps: cosines first, then sines.

    Parameters
    ----------
    t : (B,) tensor
        Timesteps, real values (e.g. 0..999).
    dim : int
        Number of features (even).

    Returns
    -------
    (B, dim) float32 tensor.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class TimeEmbedding(nn.Module):
    """Sinusoidal features (``time_dim``) -> Linear -> SiLU -> Linear (``embed_dim``)."""

    def __init__(self, time_dim: int = 128, embed_dim: int = 512) -> None:
        super().__init__()
        self.time_dim = time_dim
        self.mlp = nn.Sequential(nn.Linear(time_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_features(t, self.time_dim))


class PixelLayerNorm(nn.Module):
    """LayerNorm over the channels of each pixel separately (no statistics across pixels)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class InputBlock(nn.Module):
    """conv3x3 in->C, then a zero-initialised residual: x + conv(drop(act(norm(x + lin(emb))))).

    ``norm`` is BatchNorm in the faithful variant and absent (identity) in the fast one.
    """

    def __init__(self, in_ch: int, ch: int, embed_dim: int, dropout: float, batch_norm: bool) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_ch, ch, 3, padding=1)
        self.emb = nn.Linear(embed_dim, ch)
        self.norm = nn.BatchNorm2d(ch) if batch_norm else nn.Identity()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv_out = zero_(nn.Conv2d(ch, ch, 3, padding=1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        return self.residual(x, emb)

    def residual(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """The zero-initialised residual part (identity at initialisation)."""
        h = x + self.emb(emb)[:, :, None, None]
        h = self.conv_out(self.drop(F.silu(self.norm(h))))
        return x + h


class ResBlock(nn.Module):
    """Spatial-branch block: x + zconv(SiLU(norm(conv(lrelu(conv(x))) + lin(emb)))).

    ``norm`` is GroupNorm(32) (faithful) or a per-pixel LayerNorm (fast).
    """

    def __init__(self, ch: int, embed_dim: int, group_norm: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch // 2, 3, padding=1)
        self.conv2 = nn.Conv2d(ch // 2, ch, 3, padding=1)
        self.emb = nn.Linear(embed_dim, ch)
        self.norm = nn.GroupNorm(32, ch) if group_norm else PixelLayerNorm(ch)
        self.conv_out = zero_(nn.Conv2d(ch, ch, 3, padding=1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.leaky_relu(self.conv1(x), LEAK))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv_out(F.silu(self.norm(h)))
        return x + h


class Down(nn.Module):
    """conv2x2 stride 2 (C->2C), LeakyReLU, conv1x1, depthwise conv3x3, LeakyReLU."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, 2 * ch, 2, stride=2)
        self.pw = nn.Conv2d(2 * ch, 2 * ch, 1)
        self.dw = nn.Conv2d(2 * ch, 2 * ch, 3, padding=1, groups=2 * ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv(x), LEAK)
        return F.leaky_relu(self.dw(self.pw(x)), LEAK)


class Up(nn.Module):
    """ConvTranspose2x2 stride 2 (2C->C), LeakyReLU, add skip, conv3x3, LeakyReLU."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(2 * ch, ch, 2, stride=2)
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.up(x), LEAK) + skip
        return F.leaky_relu(self.conv(x), LEAK)
