"""The KSDiff network: a one-pass regression U-Net whose kernels a latent prior z modulates.

From "Fast Kernel-Space Diffusion for Remote Sensing Pansharpening" (Jin et al., CVPR 2026;
facts in ``ssdiff-reference.md`` §11). Parts, and where they live:

* :class:`KernelUNet` (here): the regression backbone, a U-Net of ConvNeXt-style blocks that
  predicts a correction of the classical base; its six 3 x 3 dense convolutions are
  Tucker-modulated (:mod:`.tucker`);
* :class:`~.tucker.KernelGenerator`: z -> the modulated kernels W1 = W0 * (1 + W);
* :class:`~.plfe.PyramidEncoder`: PLFE1 (with the reference; training only) -> the target prior
  z0, PLFE2 (halved, PAN + MS) -> the denoiser's condition;
* :class:`~.latent.LatentDenoiser`: z0-predictor over z (N x C_z), sampled with the project's
  DDIM sampler (:func:`ssdiff_cli.diffusion.sample`) through ``denoise(z_t, t, cond)``.

Use: once per scene, ``cond = net.condition(pan, lms, ratio)`` on a scene sample, z from DDIM
over ``net.denoise``, ``kernels = net.kernels(z)``; then per tile ``net(base, lms, pan, pan_lp,
ratio, kernels)``, one plain CNN pass. Given the kernels, an output pixel depends only on the
input pixels within :attr:`KSDiffNetwork.receptive_field` (every layer is local: convolutions,
per-pixel LayerNorm, per-pixel band pooling), so tiles meet exactly.

Design decisions where §11 is silent (and why)
-----------------------------------------------
* **Inputs and output as the SSDiff generalist's** (the caller's ``standardise``): base, lms,
  pan_lp (C, H, W) in band standard deviations, pan (1, H, W); output the correction in band
  standard deviations, last convolution zero-initialised, so an untrained network returns the
  base exactly. Everything is on the PAN grid; the ratio is a conditioning scalar (log2 r, 1/r).
* **Band-agnostic by band pooling, not per-band U-Nets.** Every band goes through one shared
  3 x 3 convolution to ``band_width`` = 8 channels (its base, lms, PAN low-pass and PAN detail,
  plus the PAN); the U-Net runs **once per image** on the mean and max over bands of those
  features; a shared per-band head (modulated 3 x 3 over the band's features and the decoded
  image features, LeakyReLU, then the zero-initialised 1 x 1) gives each band its correction.
  Per-band work is two thin 3 x 3 convolutions and a 1 x 1 at full resolution, so cost grows
  slowly with the band count: that is the speed case against the generalist, whose spectral
  branch runs its whole U-Net once per band. The head's convolution over concat(band, image)
  is split by linearity so the image half runs once, not once per band. Mean and max pooling
  make the network invariant to band order and count (1..16). Measured at 512^2, 8 bands, one
  thread: per-band width 16 with a 3 x 3 last layer cost 0.62 s of the pass in those layers,
  width 8 with a 1 x 1 0.17 s (oneDNN is slow on convolutions to one channel: a 3 x 3 16 -> 1
  took as long as a 16 -> 16); without gradients the per-band tensors, the largest of a pass,
  are updated in place (a fresh 134 MB tensor per operation cost 3-4x the operation).
* **Which layers are modulated: the six dense 3 x 3 convolutions** (the two stride-2 downs, the
  bottleneck's, the two after each upsampling and the per-band head's). Their kernels have all
  four Tucker modes (C_out, C_in, 3, 3); ConvNeXt's depthwise kernels have C_in = 1 and its
  pointwise ones k = 1, so a 4-mode Tucker would degenerate there (§11: spatial ranks 1 lose the
  4-D structure). The six sit at every scale and on both sides of the U-Net. At inference
  W1 is formed once per scene, so modulation costs nothing per pixel.
* **Factors from z's tokens, not from the tile's features.** §11 has the factors "from local
  features"; here the local features are z's N tokens (PLFE's attention pooling of local
  pyramid features): factors from a tile's own activations would make the kernels change from
  tile to tile and break the image-level prior. ``W1 = W0 * (1 + W)`` (zero core: W1 = W0).
* **U-Net shape:** three scales (widths 16/32/64), ConvNeXt blocks (depthwise 7 x 7, per-pixel
  LayerNorm, pointwise expansion 2, GELU; no layer scale: the zero last layer already makes the
  untrained network an identity on the base), (1, 1, 2) encoder blocks and one decoder block per
  scale, stride-2 3 x 3 downs, nearest upsampling then 3 x 3, additive skips. Chosen for CPU
  throughput at 8 bands (``benchmarks/bench_ksdiff_network.py``).
* **Prior size N = 16 tokens of C_z = 16** (256 numbers): "a few hundred"; a handle small
  enough for per-scene adaptation. z0 is bounded by tanh to (-1, 1), the sampler's clip range.
* **Granularity 4** (two stride-2 levels): inputs are padded (replicate) to a multiple of 4 and
  chunks must start on multiples of 4 from the window's origin; the halo is the receptive field
  rounded up to 4 (57 -> 60 PAN px with the defaults).
* **Precision is the caller's.** Measured on this 2-core CPU (AVX-512 BF16, no AMX): under bf16
  autocast the pass is slower than in fp32 (1.66 s against 1.08 s at 512^2, 8 bands, one
  thread: oneDNN's bf16 kernels for 4-16 channel convolutions are slower), so the family's
  policy should run it in fp32 on such CPUs; the network runs in whatever autocast it is given.
* **The latent noise is the caller's too** (``nn`` knows no schedules): seeded, e.g.
  ``diffusion.position_noise(seed, 1, 0, 0, N, C_z)[0]`` keyed by the seed alone, since z is
  one per scene.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import LEAK, zero_
from .ksdiff_config import KSDiffConfig
from .latent import LatentDenoiser
from .plfe import BandStem, PyramidEncoder, add_per_image, ratio_features
from .tucker import KernelGenerator, ModulatedConv2d, conv

#: Per-band inputs: base, lms, PAN low-pass, PAN detail (PAN - PAN low-pass); the PAN itself is
#: the one image-level input.
BAND_INPUTS = 4
#: Two stride-2 levels.
GRANULARITY = 4
#: The modulated layers, in order.
MODULATED = ("down1", "down2", "mid", "up1", "up0", "head")


class ConvNeXtBlock(nn.Module):
    """x + pw2(GELU(pw1(LN(dw(x))))): depthwise k x k, per-pixel LayerNorm, pointwise MLP."""

    def __init__(self, ch: int, kernel: int, expansion: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(ch, ch, kernel, padding=kernel // 2, groups=ch)
        self.norm = nn.LayerNorm(ch)
        self.pw1 = nn.Linear(ch, expansion * ch)
        self.pw2 = nn.Linear(expansion * ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dw(x).permute(0, 2, 3, 1)
        h = self.pw2(F.gelu(self.pw1(self.norm(h))))
        return x + h.permute(0, 3, 1, 2)


def _stage(ch: int, depth: int, cfg: KSDiffConfig) -> nn.Sequential:
    return nn.Sequential(*(ConvNeXtBlock(ch, cfg.block_kernel, cfg.expansion) for _ in range(depth)))


def receptive_field(config: KSDiffConfig) -> int:
    """How far (PAN px) outside an aligned block of output pixels the backbone reads its input.

    Walks the layers backwards from one granularity period of output rows (indices at each
    scale) and returns the largest reach beyond it; the same in every direction and at every
    position aligned on :data:`GRANULARITY` (stride-2 layers make the reach depend on the
    alignment, hence the aligned block).
    """
    start = 64 * GRANULARITY
    out = (start, start + GRANULARITY - 1)
    kb = config.block_kernel // 2
    d0, d1, d2 = config.depths

    def grow(iv, r):
        return iv[0] - r, iv[1] + r

    def union(a, b):
        return min(a[0], b[0]), max(a[1], b[1])

    def coarse(iv):  # nearest x2 upsampling: fine index j reads coarse j // 2
        return iv[0] // 2, iv[1] // 2

    def fine(iv):  # 3 x 3 stride-2 convolution: coarse i reads fine 2i - 1 .. 2i + 1
        return 2 * iv[0] - 1, 2 * iv[1] + 1

    head = grow(out, 1)  # zero 1 x 1, modulated head 3 x 3: reads band and image features
    u0 = grow(head, kb)  # decoder block at full resolution
    u1 = grow(coarse(grow(u0, 1)), kb)  # up0 (conv after upsampling), decoder block at 1/2
    mid = grow(grow(coarse(grow(u1, 1)), 1), kb * d2)  # up1, bottleneck conv, blocks at 1/4
    e1 = grow(union(u1, fine(mid)), kb * d1)  # skip at 1/2 and down2, then encoder blocks
    e0 = grow(union(u0, fine(e1)), kb * d0)  # skip at full resolution and down1, then blocks
    inputs = grow(union(e0, head), 1)  # the stem's 3 x 3 over the inputs
    return max(start - inputs[0], inputs[1] - out[1])


class KernelUNet(nn.Module):
    """The band-agnostic regression backbone (see the module docstring): correction (B, C, H, W)
    from standardised base, lms, pan_lp (B, C, H, W) and pan (B, 1, H, W)."""

    def __init__(self, cfg: KSDiffConfig) -> None:
        super().__init__()
        c0, c1, c2 = cfg.widths
        cb = cfg.band_width
        self.stem = BandStem(BAND_INPUTS, 1, cb, pooled=c0)
        self.ratio = nn.Linear(2, c0)
        self.enc0, self.enc1, self.enc2 = (_stage(c, d, cfg) for c, d in zip(cfg.widths, cfg.depths))
        self.down1 = ModulatedConv2d(c0, c1, stride=2)
        self.down2 = ModulatedConv2d(c1, c2, stride=2)
        self.mid = ModulatedConv2d(c2, c2)
        self.up1 = ModulatedConv2d(c2, c1)
        self.dec1 = _stage(c1, 1, cfg)
        self.up0 = ModulatedConv2d(c1, c0)
        self.dec0 = _stage(c0, 1, cfg)
        self.head = ModulatedConv2d(cb + c0, cb)
        self.out = zero_(nn.Conv2d(cb, 1, 1))

    def modulated_layers(self) -> dict[str, ModulatedConv2d]:
        """The Tucker-modulated convolutions by name (:data:`MODULATED`)."""
        return {name: getattr(self, name) for name in MODULATED}

    def forward(self, base: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor,
                pan_lp: torch.Tensor, ratio: float, kernels: dict[str, torch.Tensor] | None = None
                ) -> torch.Tensor:
        """The correction; ``kernels`` W1 by layer name (absent: the base kernels W0)."""
        k = kernels or {}
        b, c, h, w = base.shape
        bands = torch.stack([base, lms, pan_lp, pan - pan_lp], 2)
        f = self.stem.features(bands, pan)  # (B * C, band_width, H, W)
        del bands
        x = self.stem.pooled(f, b) + self.ratio(ratio_features(ratio, base.device))[..., None, None]
        e0 = self.enc0(x)
        e1 = self.enc1(F.gelu(self.down1(e0, k.get("down1"))))
        m = self.enc2(F.gelu(self.down2(e1, k.get("down2"))))
        m = m + F.gelu(self.mid(m, k.get("mid")))
        up = F.interpolate(m, scale_factor=2.0, mode="nearest")
        d1 = self.dec1(F.gelu(self.up1(up, k.get("up1"))) + e1)
        up = F.interpolate(d1, scale_factor=2.0, mode="nearest")
        d0 = self.dec0(F.gelu(self.up0(up, k.get("up0"))) + e0)
        del up, m, d1, e1, e0
        # The head's conv over concat(band, image) features, split by linearity: the image half
        # runs once per image, the band half once per band.
        w1 = k.get("head", self.head.weight)
        cb = f.shape[1]
        image = conv(d0, w1[..., cb:, :, :], self.head.bias)
        hb = add_per_image(conv(f, w1[..., :cb, :, :], None), image)
        del f, image
        hb = F.leaky_relu(hb, LEAK, inplace=not torch.is_grad_enabled())
        return self.out(hb).reshape(b, c, h, w)


class KSDiffNetwork(nn.Module):
    """The whole KSDiff network (see the module docstring).

    Attributes
    ----------
    granularity : int
        PAN px; inputs are padded (replicate) to a multiple of it, and windows whose origins
        differ by a multiple of it agree on their common interior.
    receptive_field : int
        PAN px an output pixel sees in each direction, for aligned windows
        (:func:`receptive_field`); :attr:`halo` is it rounded up to the granularity.
    """

    def __init__(self, config: KSDiffConfig) -> None:
        super().__init__()
        self.config = cfg = config
        self.backbone = KernelUNet(cfg)
        self.generator = KernelGenerator(self.backbone.modulated_layers(), cfg.token_dim,
                                         cfg.generator_dim, cfg.core)
        self.plfe1 = PyramidEncoder(cfg.encoder_width, cfg.encoder_levels, cfg.tokens,
                                    cfg.token_dim, reference=True, bounded=True)
        self.plfe2 = PyramidEncoder(cfg.encoder_width // 2, cfg.encoder_levels, cfg.tokens,
                                    cfg.denoiser_dim, reference=False, bounded=False)
        self.denoiser = LatentDenoiser(cfg.tokens, cfg.token_dim, cfg.denoiser_dim,
                                       cfg.denoiser_depth, cfg.denoiser_heads, cfg.time_dim)

    @property
    def granularity(self) -> int:
        return GRANULARITY

    @property
    def receptive_field(self) -> int:
        return receptive_field(self.config)

    @property
    def halo(self) -> int:
        g = GRANULARITY
        return -(-self.receptive_field // g) * g

    def _check(self, ratio: float, **arrays: torch.Tensor) -> tuple[int, int, int, int]:
        """(B, C, H, W) of the band arrays, after checking every shape, the band count and the
        ratio against the config (a ValueError naming the argument)."""
        cfg = self.config
        ref = next(a for name, a in arrays.items() if name != "pan")
        if ref.ndim != 4:
            raise ValueError(f"inputs must be (B, C, H, W), got {tuple(ref.shape)}")
        b, c, h, w = ref.shape
        for name, a in arrays.items():
            want = (b, 1 if name == "pan" else c, h, w)
            if tuple(a.shape) != want:
                raise ValueError(f"{name} must be {want}, got {tuple(a.shape)}")
        if not 1 <= c <= cfg.max_bands:
            raise ValueError(f"bands must be in [1, {cfg.max_bands}], got {c}")
        if not cfg.min_ratio <= float(ratio) <= cfg.max_ratio:
            raise ValueError(f"ratio must be in [{cfg.min_ratio}, {cfg.max_ratio}], got {ratio}")
        return b, c, h, w

    def prior_target(self, pan: torch.Tensor, lms: torch.Tensor, ref: torch.Tensor,
                     ratio: float) -> torch.Tensor:
        """PLFE1 (training only): the target prior z0 (B, N, C_z) in (-1, 1), from the PAN,
        the upsampled MS and the reference, standardised as the backbone's inputs."""
        self._check(ratio, lms=lms, ref=ref, pan=pan)
        return self.plfe1(pan, lms, ratio, ref)

    def condition(self, pan: torch.Tensor, lms: torch.Tensor, ratio: float) -> torch.Tensor:
        """PLFE2: the denoiser's condition tokens (B, N, denoiser_dim) from PAN + upsampled MS."""
        self._check(ratio, lms=lms, pan=pan)
        return self.plfe2(pan, lms, ratio)

    def denoise(self, z_t: torch.Tensor, t: torch.Tensor | float, cond: torch.Tensor
                ) -> torch.Tensor:
        """The z0 estimate from ``z_t`` (B, N, C_z) at timestep ``t``: for
        ``diffusion.sample(lambda z, t: net.denoise(z, t, cond), noise, ...)``."""
        return self.denoiser(z_t, t, cond)

    def kernels(self, z: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The modulated kernels W1 (B, C_out, C_in, 3, 3) of every modulated layer for the
        prior ``z`` (B, N, C_z); None: no prior, the base kernels (the backbone alone)."""
        if z is None:
            return {}
        if tuple(z.shape[1:]) != self.config.latent_shape or z.ndim != 3:
            raise ValueError(f"z must be (B, {self.config.tokens}, {self.config.token_dim}), "
                             f"got {tuple(z.shape)}")
        layers = self.backbone.modulated_layers()
        return {name: layers[name].kernel(w) for name, w in self.generator(z).items()}

    def forward(self, base: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor,
                pan_lp: torch.Tensor, ratio: float,
                kernels: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The correction (B, C, H, W) in band standard deviations (image = base + std x it).

        ``base``, ``lms``, ``pan_lp`` (B, C, H, W) and ``pan`` (B, 1, H, W), standardised;
        ``kernels`` from :meth:`kernels` (one image's, shared by every tile and batch row, or
        one per batch row); None: the backbone alone. Any C in [1, max_bands], any H, W.
        """
        b, c, h, w = self._check(ratio, base=base, lms=lms, pan_lp=pan_lp, pan=pan)
        if kernels:
            n = next(iter(kernels.values())).shape[0]
            if n not in (1, b):
                raise ValueError(f"kernels for {n} images cannot serve a batch of {b}")
        g = GRANULARITY
        ph, pw = (-h) % g, (-w) % g
        if ph or pw:
            base, lms, pan, pan_lp = (F.pad(a, (0, pw, 0, ph), mode="replicate")
                                      for a in (base, lms, pan, pan_lp))
        out = self.backbone(base, lms, pan, pan_lp, ratio, kernels)
        return out[:, :, :h, :w] if (ph or pw) else out
