"""KSDiff's latent denoiser: predicts the prior z0 (B, N, C_z) from a noisy z_t, the timestep and
PLFE2's condition tokens (B, N, D).

``forward(z_t, t, cond)`` is all it offers, so :func:`ssdiff_cli.diffusion.sample` runs it as it
runs any x0-predictor (``lambda z, t: denoiser(z, t, cond)``) without knowing its insides.

A small transformer over the N tokens: each token is its noisy value, its condition token (both
encoders pool with N learnt queries, so token k of either is slot k: a slot embedding names
it) and the timestep embedding, summed; every block attends from the z tokens over the z tokens
and the condition tokens together (self- and cross-attention in one), then an MLP.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import TimeEmbedding


class LatentBlock(nn.Module):
    """Pre-norm attention (queries: z tokens; keys and values: z and condition tokens) + MLP."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.norm_cond = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(),
                                 nn.Linear(2 * dim, dim))

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        q = self.norm(h)
        kv = torch.cat([q, self.norm_cond(cond)], 1)
        h = h + self.attn(q, kv, kv, need_weights=False)[0]
        return h + self.mlp(h)


class LatentDenoiser(nn.Module):
    """z0-predictor over the prior's N tokens of C_z numbers (see the module docstring)."""

    def __init__(self, tokens: int, token_dim: int, dim: int, depth: int, heads: int,
                 time_dim: int) -> None:
        super().__init__()
        self.shape = (tokens, token_dim)
        self.time = TimeEmbedding(time_dim, dim)
        self.z_in = nn.Linear(token_dim, dim)
        self.cond_in = nn.Linear(dim, dim)
        self.slot = nn.Parameter(torch.randn(tokens, dim) * dim ** -0.5)
        self.blocks = nn.ModuleList(LatentBlock(dim, heads) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, token_dim))

    def forward(self, z_t: torch.Tensor, t: torch.Tensor | float, cond: torch.Tensor) -> torch.Tensor:
        """``z_t`` (B, N, C_z), ``t`` real timesteps (B,) or a scalar, ``cond`` (B, N, D) from
        PLFE2 -> the z0 estimate (B, N, C_z)."""
        if tuple(z_t.shape[1:]) != self.shape or z_t.ndim != 3:
            raise ValueError(f"z_t must be (B, {self.shape[0]}, {self.shape[1]}), got "
                             f"{tuple(z_t.shape)}")
        b = z_t.shape[0]
        if cond.shape[0] != b or tuple(cond.shape[1:]) != (self.shape[0], self.slot.shape[1]):
            raise ValueError(f"cond must be ({b}, {self.shape[0]}, {self.slot.shape[1]}), got "
                             f"{tuple(cond.shape)}")
        t = torch.as_tensor(t, device=z_t.device).float().reshape(-1).expand(b)
        cond = self.cond_in(cond)
        h = self.z_in(z_t) + cond + self.slot + self.time(t)[:, None]
        for block in self.blocks:
            h = block(h, cond)
        return self.out(h)
