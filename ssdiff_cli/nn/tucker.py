"""KSDiff's kernel space: Tucker-modulated convolutions and the generator that modulates them.

A modulated convolution has a learnt base kernel W0 (C_out, C_in, k, k) and runs with
``W1 = W0 * (1 + W)``, W a low-rank Tucker tensor ``G x1 U1 x2 U2 x3 U3 x4 U4`` made by
:class:`KernelGenerator` from the prior z (B, N, C_z):

* the core G (r1, r2, r3, r4) from z mean-pooled over its tokens, through an MLP whose last layer
  (one per modulated layer) starts at zero, so an untrained generator leaves every kernel at W0;
  its hidden features are layer-normalised and the factors' entries are of unit scale, so W is
  of the core's scale (a product of five small numbers would start every gradient near zero);
* each factor U_m (n_m, r_m) from the tokens of z through its own attention head: the queries are
  learnt embeddings of the mode's indices (output channel i, input channel j, kernel row, kernel
  column: the "structure-aware" part), the keys and values are the tokens after one shared
  token MLP (the generator's shared backbone).

``1 + W`` instead of §11's bare W: a zero core then means "no modulation", not "no kernel"
(W1 = W0), and ``1 + W`` is itself a Tucker tensor (ranks + 1). The generator depends on z
alone, never on a tile's pixels: the kernels are image-level, fixed once per scene.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import zero_


def tucker_product(core: torch.Tensor, factors: list[torch.Tensor]) -> torch.Tensor:
    """``G x1 U1 x2 U2 x3 U3 x4 U4`` per batch item: ``core`` (B, r1, r2, r3, r4), ``factors``
    four (B, n_m, r_m) -> (B, n1, n2, n3, n4)."""
    u1, u2, u3, u4 = factors
    return torch.einsum("zabcd,zia,zjb,zkc,zld->zijkl", core, u1, u2, u3, u4)


def modulated(weight: torch.Tensor, modulation: torch.Tensor | None) -> torch.Tensor:
    """``W1 = W0 * (1 + W)``: (B, C_out, C_in, k, k), or ``W0`` itself when ``modulation`` is
    None (the backbone alone)."""
    return weight if modulation is None else weight * (1.0 + modulation)


def conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int = 1
         ) -> torch.Tensor:
    """'Same'-padded convolution of ``x`` (B * m, C_in, H, W) with ``weight`` (C_out, C_in, k, k),
    or per image with (1 or B, C_out, C_in, k, k): each of the B images (m consecutive batch rows
    each, e.g. its bands) with its own kernel, as one grouped convolution."""
    pad = weight.shape[-1] // 2
    if weight.ndim == 4 or weight.shape[0] == 1:
        # in the input's memory format: oneDNN reorders a mismatched (or sliced) kernel at
        # every call, 3x the convolution itself on a 512 x 512 chunk
        weight = weight.reshape(weight.shape[-4:]).contiguous(memory_format=_format(x))
        return F.conv2d(x, weight, bias, stride, pad)
    b, co = weight.shape[:2]
    n, ci, h, w = x.shape
    if n % b:
        raise ValueError(f"{n} batch rows cannot share {b} per-image kernels")
    m = n // b
    groups = weight.repeat_interleave(m, 0).reshape(n * co, *weight.shape[2:])
    out = F.conv2d(x.reshape(1, n * ci, h, w), groups, None if bias is None else bias.repeat(n),
                   stride, pad, groups=n)
    return out.reshape(n, co, *out.shape[-2:])


def _format(x: torch.Tensor) -> torch.memory_format:
    return (torch.channels_last if x.is_contiguous(memory_format=torch.channels_last)
            and not x.is_contiguous() else torch.contiguous_format)


class ModulatedConv2d(nn.Module):
    """A k x k convolution whose kernel W0 the prior modulates (see the module docstring).

    ``forward(x, w1)`` runs with ``w1`` from :meth:`kernel` (computed once per scene), or with
    W0 when ``w1`` is None."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        ref = nn.Conv2d(c_in, c_out, kernel)  # PyTorch's default initialisation
        self.weight = nn.Parameter(ref.weight.detach().clone())
        self.bias = nn.Parameter(ref.bias.detach().clone())

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(self.weight.shape)

    def kernel(self, modulation: torch.Tensor | None) -> torch.Tensor:
        """W1 for a modulation W (B, C_out, C_in, k, k), or W0 for None."""
        return modulated(self.weight, modulation)

    def forward(self, x: torch.Tensor, w1: torch.Tensor | None = None) -> torch.Tensor:
        return conv(x, self.weight if w1 is None else w1, self.bias, self.stride)


class ModeHead(nn.Module):
    """One attention head per Tucker mode: factor U (B, n, r) from the generator's tokens
    (B, N, d); the queries are learnt embeddings of the mode's n indices."""

    def __init__(self, size: int, rank: int, dim: int) -> None:
        super().__init__()
        self.index = nn.Parameter(torch.randn(size, dim) * dim ** -0.5)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, rank, bias=False)
        nn.init.orthogonal_(self.out.weight)  # unit rows: factor entries of unit scale

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        attn = torch.softmax(torch.matmul(self.index, self.key(tokens).transpose(1, 2))
                             / math.sqrt(self.index.shape[1]), dim=-1)  # (B, n, N)
        return self.out(self.norm(self.index + torch.matmul(attn, self.value(tokens))))


class LayerGenerator(nn.Module):
    """The core projection and the four mode heads of one modulated layer."""

    def __init__(self, shape: tuple[int, int, int, int], core: tuple[int, ...], dim: int) -> None:
        super().__init__()
        self.ranks = tuple(min(r, n) for r, n in zip(core, shape))
        self.core = zero_(nn.Linear(dim, math.prod(self.ranks)))
        self.heads = nn.ModuleList(ModeHead(n, r, dim) for n, r in zip(shape, self.ranks))

    def forward(self, pooled: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The modulation W (B, C_out, C_in, k, k), of the core's scale: the factors' entries
        are of unit scale, so each W entry sums prod(ranks) terms of the core's size."""
        core = self.core(pooled).reshape(-1, *self.ranks) * math.prod(self.ranks) ** -0.5
        return tucker_product(core, [head(tokens) for head in self.heads])


class KernelGenerator(nn.Module):
    """z (B, N, C_z) -> the modulated kernels W1 of every layer in ``layers`` (name -> module).

    Shared by every layer: the token MLP (keys and values of the mode heads) and the core MLP's
    hidden layers over the mean-pooled z; per layer: the core's last projection and four mode
    heads (:class:`LayerGenerator`)."""

    def __init__(self, layers: dict[str, ModulatedConv2d], token_dim: int, dim: int,
                 core: tuple[int, ...]) -> None:
        super().__init__()
        self.names = list(layers)
        self.token_in = nn.Linear(token_dim, dim)
        self.token_mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(),
                                       nn.Linear(2 * dim, dim))
        self.core_mlp = nn.Sequential(nn.Linear(token_dim, dim), nn.GELU(), nn.Linear(dim, dim),
                                      nn.LayerNorm(dim))
        self.layers = nn.ModuleDict({name: LayerGenerator(layer.shape, core, dim)
                                     for name, layer in layers.items()})

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Modulations W (B, C_out, C_in, k, k) per layer name, for the prior ``z``."""
        if z.ndim != 3:
            raise ValueError(f"z must be (B, N, C_z), got {tuple(z.shape)}")
        tokens = self.token_in(z)
        tokens = tokens + self.token_mlp(tokens)
        pooled = self.core_mlp(z.mean(dim=1))
        return {name: self.layers[name](pooled, tokens) for name in self.names}
