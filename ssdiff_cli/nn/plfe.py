"""KSDiff's pyramid encoders (PLFE): a scene sample -> a few tokens, at a cost linear in H x W.

Two branches, PAN and MS, each a pyramid of stride-2 convolutions; at every level each branch is
refined by the other through :class:`GatedFusion`: a linear-cost cross-attention O (queries from
the branch, keys and values from the other one) and a per-channel gate g from both branches'
means, ``F = g * X + (1 - g) * Proj(Y) + O`` (§11's formula; O is read as the attention's
output). The levels' merged features are pooled into N tokens by N learnt queries (one
attention pooling over every level's positions: linear in H x W, and the tokens do not depend on
where things lie in the sample, only on what is there).

Band-agnostic as the backbone: the MS branch starts with one convolution shared by every band
(:class:`BandStem`), pooled over bands (mean and max), so any band count and order gives the same
kind of features. The ratio enters as a bias on the tokens.

PLFE1 (``reference=True``: each band also sees its reference and the reference's departure from
the upsampled MS) gives the target prior z0, bounded to (-1, 1) by tanh (the DDIM sampler's
default clip range); it is used in training only. PLFE2 (half the channels, no reference) gives
the denoiser's condition tokens.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import LEAK, PixelLayerNorm


def ratio_features(ratio: float, device=None) -> torch.Tensor:
    """(1, 2) features of a PAN/MS ratio: log2 r and 1 / r (as the generalist's)."""
    r = float(ratio)
    return torch.tensor([[math.log2(r), 1.0 / r]], device=device)


class BandStem(nn.Module):
    """Per-band features from one convolution shared by every band (over the band's own inputs)
    plus one over the image's band-independent inputs, then LeakyReLU; and their band pooling
    (mean and max over bands, through a 1 x 1 convolution to ``pooled`` channels, default
    ``out``).

    Per-band tensors keep the bands folded into the batch, (B * C, out, H, W), image by image;
    without gradients the image term and the activation are applied in place (these are the
    largest tensors of a pass: a fresh one per operation cost 3 to 4 times the operation)."""

    def __init__(self, band_inputs: int, image_inputs: int, out: int, kernel: int = 3,
                 pooled: int | None = None) -> None:
        super().__init__()
        self.band = nn.Conv2d(band_inputs, out, kernel, padding=kernel // 2)
        self.image = (nn.Conv2d(image_inputs, out, kernel, padding=kernel // 2, bias=False)
                      if image_inputs else None)
        self.pool = nn.Conv2d(2 * out, pooled or out, 1)

    def features(self, bands: torch.Tensor, image: torch.Tensor | None) -> torch.Tensor:
        """``bands`` (B, C, k, H, W), ``image`` (B, j, H, W) -> per-band (B * C, out, H, W)."""
        b, c, k, h, w = bands.shape
        f = self.band(bands.reshape(b * c, k, h, w).contiguous(memory_format=torch.channels_last))
        if self.image is not None:
            f = add_per_image(f, self.image(image))
        return F.leaky_relu(f, LEAK, inplace=not torch.is_grad_enabled())

    def pooled(self, f: torch.Tensor, images: int) -> torch.Tensor:
        """Per-band features (B * C, out, H, W) of ``images`` = B images -> (B, out, H, W):
        the same for any band count and order."""
        n, ch, h, w = f.shape
        bands = f.reshape(images, n // images, ch, h, w).unbind(1)
        # A running sum and maximum over the bands: a reduction over the band axis of the
        # (channels-last) 5-D view runs 8x slower.
        mean = functools.reduce(torch.add, bands) / len(bands)
        top = functools.reduce(torch.maximum, bands)
        return self.pool(torch.cat([mean, top], 1))


def add_per_image(f: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """``f`` (B * C, ch, H, W) plus ``image`` (B, ch, H, W) on each of its image's C rows; in
    place without gradients."""
    b = image.shape[0]
    view = f.reshape(b, f.shape[0] // b, *f.shape[1:])
    if torch.is_grad_enabled():
        return (view + image[:, None]).reshape(f.shape)
    view.add_(image[:, None])
    return f


class LinearCrossAttention(nn.Module):
    """Efficient attention (Shen et al. 2021) of X's positions over Y's: queries softmaxed over
    each head's channels, keys over positions, so the cost is linear in H x W (a d x d context
    per head instead of an (H W) x (H W) map)."""

    def __init__(self, ch: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Conv2d(ch, ch, 1, bias=False)
        self.kv = nn.Conv2d(ch, 2 * ch, 1, bias=False)
        self.out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        b, ch, h, w = x.shape
        d = ch // self.heads
        q = self.q(x).reshape(b, self.heads, d, h * w).softmax(dim=2)
        k, v = self.kv(y).reshape(b, 2, self.heads, d, -1).unbind(1)
        context = torch.matmul(k.softmax(dim=-1), v.transpose(-1, -2))  # (b, heads, d, d)
        out = torch.matmul(context.transpose(-1, -2), q).reshape(b, ch, h, w)
        return self.out(out)


class GatedFusion(nn.Module):
    """``F = g * X + (1 - g) * Proj(Y) + O``: X refined by the other branch Y (same shape)."""

    def __init__(self, ch: int, heads: int) -> None:
        super().__init__()
        self.norm_x, self.norm_y = PixelLayerNorm(ch), PixelLayerNorm(ch)
        self.attn = LinearCrossAttention(ch, heads)
        self.proj = nn.Conv2d(ch, ch, 1)
        self.gate = nn.Sequential(nn.Linear(2 * ch, ch), nn.GELU(), nn.Linear(ch, ch))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.gate(torch.cat([x.mean((2, 3)), y.mean((2, 3))], 1)))[..., None, None]
        return g * x + (1.0 - g) * self.proj(y) + self.attn(self.norm_x(x), self.norm_y(y))


class PyramidEncoder(nn.Module):
    """PAN + upsampled MS (+ reference) -> tokens (B, N, out_dim); see the module docstring.

    ``width`` channels at every level; ``levels`` stride-2 levels; ``tokens`` N; ``bounded``:
    tanh on the output (the prior z0)."""

    def __init__(self, width: int, levels: int, tokens: int, out_dim: int, reference: bool,
                 bounded: bool) -> None:
        super().__init__()
        heads = max(1, width // 8)
        self.reference, self.bounded = reference, bounded
        self.pan_in = nn.Conv2d(1, width, 3, padding=1)
        self.ms_in = BandStem(3 if reference else 1, 0, width)
        self.down_pan = nn.ModuleList(nn.Conv2d(width, width, 3, stride=2, padding=1)
                                      for _ in range(levels))
        self.down_ms = nn.ModuleList(nn.Conv2d(width, width, 3, stride=2, padding=1)
                                     for _ in range(levels))
        self.fuse_pan = nn.ModuleList(GatedFusion(width, heads) for _ in range(levels))
        self.fuse_ms = nn.ModuleList(GatedFusion(width, heads) for _ in range(levels))
        self.merge = nn.ModuleList(nn.Conv2d(2 * width, width, 1) for _ in range(levels))
        self.level = nn.Parameter(torch.zeros(levels, width))
        self.queries = nn.Parameter(torch.randn(tokens, width) * width ** -0.5)
        self.key = nn.Linear(width, width, bias=False)
        self.ratio = nn.Linear(2, width)
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.GELU(),
                                 nn.Linear(2 * width, out_dim))

    def forward(self, pan: torch.Tensor, lms: torch.Tensor, ratio: float,
                ref: torch.Tensor | None = None) -> torch.Tensor:
        """``pan`` (B, 1, H, W), ``lms`` and ``ref`` (B, C, H, W), standardised as the
        backbone's inputs; ``ref`` only (and always) for the reference encoder."""
        if (ref is not None) != self.reference:
            raise ValueError("the reference encoder needs ref; the other takes none")
        bands = lms[:, :, None] if ref is None else torch.stack([lms, ref, ref - lms], 2)
        xp = F.gelu(self.pan_in(pan))
        xm = self.ms_in.pooled(self.ms_in.features(bands, None), pan.shape[0])
        keys = []
        for lvl in range(len(self.merge)):
            xp = F.gelu(self.down_pan[lvl](xp))
            xm = F.gelu(self.down_ms[lvl](xm))
            xp, xm = self.fuse_pan[lvl](xp, xm), self.fuse_ms[lvl](xm, xp)
            merged = self.merge[lvl](torch.cat([xp, xm], 1)).flatten(2).transpose(1, 2)
            keys.append(merged + self.level[lvl])
        feats = torch.cat(keys, 1)  # (B, positions of every level, width)
        attn = torch.softmax(torch.matmul(self.queries, self.key(feats).transpose(1, 2))
                             / math.sqrt(feats.shape[-1]), dim=-1)  # (B, N, positions)
        tokens = torch.matmul(attn, feats) + self.ratio(ratio_features(ratio, pan.device))[:, None]
        out = self.out(tokens)
        return torch.tanh(out) if self.bounded else out
