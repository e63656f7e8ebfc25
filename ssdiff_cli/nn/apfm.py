"""APFM: alternating projection fusion of the spectral (X) and spatial (Y) features.

Per head (size d) with one LayerNorm shared by both inputs, X^ = LN(X), Y^ = LN(Y)::

    Q = Y^ W1,  K = Y^ W2,  V = X^ W3,  U = X^ W4                 (bias-free)
    A_spa = softmax_rows(Q K^T / sqrt(d))                         (n x n, over tokens)
    A_spe = softmax_rows(V^T U * sqrt(d) / n)                     (d x d, over channels)
    X <- X + W_o((A_spa V) * (Q A_spe)) + b_o
    X <- X + FFN(LN(X)),  FFN = Linear(C, C/2), LeakyReLU, Linear(C/2, C)

Tokens are all H*W pixels (``window=None``, faithful) or the pixels of non-overlapping
``window`` x ``window`` blocks aligned to the tensor origin (fast); in the windowed form n is the
window's token count and everything (both attentions, and the optional FMIM low-frequency
scaling of Y) stays inside the window. ``A_spa V`` is computed with
:func:`torch.nn.functional.scaled_dot_product_attention`. W_o and the FFN's last layer start at
zero, so the block starts as the identity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import LEAK, zero_


def _to_windows(t: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * H/w * W/w, w*w, C)."""
    b, h, w, c = t.shape
    t = t.reshape(b, h // window, window, w // window, window, c).transpose(2, 3)
    return t.reshape(-1, window * window, c)


def _from_windows(t: torch.Tensor, b: int, h: int, w: int, window: int) -> torch.Tensor:
    """Inverse of :func:`_to_windows`: -> (B, H, W, C)."""
    c = t.shape[-1]
    t = t.reshape(b, h // window, w // window, window, window, c).transpose(2, 3)
    return t.reshape(b, h, w, c)


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v by SDPA; on the CPU always in float32 (torch 2.13's CPU flash
    kernel is slower in bf16 than in fp32, about 5x in the backward pass, for these shapes;
    autocast is switched off around it, as it would cast back to bf16)."""
    if q.device.type == "cpu" and (q.dtype != torch.float32 or torch.is_autocast_enabled("cpu")):
        with torch.autocast("cpu", enabled=False):
            out = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
        return out.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v)


class APFM(nn.Module):
    """Alternating projection fusion (depth 1), global (``window=None``) or windowed."""

    def __init__(self, channels: int, head_dim: int = 16, window: int | None = None) -> None:
        super().__init__()
        if channels % head_dim:
            raise ValueError(f"channels ({channels}) must be a multiple of head_dim ({head_dim})")
        self.channels = channels
        self.head_dim = head_dim
        self.heads = channels // head_dim
        self.window = window
        self.norm = nn.LayerNorm(channels)  # shared by X and Y
        self.qk = nn.Linear(channels, 2 * channels, bias=False)  # W1 | W2 (on Y^)
        self.vu = nn.Linear(channels, 2 * channels, bias=False)  # W3 | W4 (on X^)
        self.proj = zero_(nn.Linear(channels, channels))  # W_o, b_o
        self.ffn_norm = nn.LayerNorm(channels)
        self.ffn_in = nn.Linear(channels, channels // 2)
        self.ffn_out = zero_(nn.Linear(channels // 2, channels))

    def _heads(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n_seq, n_tok, _ = t.shape
        t = t.reshape(n_seq, n_tok, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return t[0], t[1]  # each (N, heads, n, d)

    def forward(self, x: torch.Tensor, y: torch.Tensor, lowfreq_scale: float | None = None) -> torch.Tensor:
        """Update spectral features ``x`` (B, C, H, W) from spatial features ``y`` (same shape).

        ``lowfreq_scale`` (windowed form only) applies FMIM inside each window first:
        ``Y <- Y - (1 - s) * mean_window(Y)``.
        """
        b, c, h, w = x.shape
        xt = x.permute(0, 2, 3, 1)
        yt = y.permute(0, 2, 3, 1)
        if self.window is not None:
            xt = _to_windows(xt, self.window)
            yt = _to_windows(yt, self.window)
            if lowfreq_scale is not None and lowfreq_scale != 1.0:
                yt = yt - (1.0 - lowfreq_scale) * yt.mean(dim=1, keepdim=True)
        else:
            if lowfreq_scale is not None:
                raise ValueError("lowfreq_scale is for the windowed form; use fmim first")
            xt = xt.reshape(b, h * w, c)
            yt = yt.reshape(b, h * w, c)
        n_tok = xt.shape[1]
        q, k = self._heads(self.qk(self.norm(yt)))
        v, u = self._heads(self.vu(self.norm(xt)))
        spa = _sdpa(q, k, v)  # A_spa V
        logits = torch.matmul(v.transpose(-1, -2), u) * (math.sqrt(self.head_dim) / n_tok)
        spe = torch.matmul(q, torch.softmax(logits, dim=-1).to(q.dtype))  # Q A_spe
        fused = (spa * spe).transpose(1, 2).reshape(xt.shape[0], n_tok, c)
        xt = xt + self.proj(fused)
        xt = xt + self.ffn_out(F.leaky_relu(self.ffn_in(self.ffn_norm(xt)), LEAK))
        if self.window is not None:
            xt = _from_windows(xt, b, h, w, self.window)
        else:
            xt = xt.reshape(b, h, w, c)
        return xt.permute(0, 3, 1, 2)
