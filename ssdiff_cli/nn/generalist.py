"""The generalist SSDiff denoiser: one network for any band count and any PAN/MS ratio.

SSDiff's dual branches, made band- and ratio-agnostic:

* the **spatial branch** runs once per image on band-independent inputs (the standardised PAN,
  and the band means of the noisy correction and of the upsampled MS);
* the **spectral branch** runs once per band with shared weights (bands are folded into the
  batch), on that band's noisy correction, its classical fusion, its upsampled MS and the PAN
  low-passed with that band's MTF; after every stage a pooled spectral context (the mean over
  bands, through a zero-initialised 1x1 conv) is added back to every band, so bands see each
  other whatever their number or order;
* APFM and FMIM join the branches at each of the five stages exactly as in the fast SSDiff
  variant (windowed attention and low-frequency scaling aligned to the tensor origin);
* everything lives on the PAN grid, so the ratio enters only as a conditioning scalar added to
  the timestep embedding (log2 of the ratio), and any integer ratio runs.

The network predicts x0 = a **correction** on top of the classical fusion, in units of each
band's standard deviation; its last convolution starts at zero, so an untrained (or unsure)
network returns the classical result exactly. Inputs are standardised by the caller
(:mod:`ssdiff_cli.methods.generalist`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import fmim
from .apfm import APFM, _from_windows, _to_windows
from .blocks import LEAK, Down, InputBlock, ResBlock, TimeEmbedding, Up, zero_

#: Channels of the spatial branch's input: PAN, band mean of x_t, band mean of lms.
SPATIAL_INPUTS = 3
#: Channels of each band's spectral input: x_t, base, lms, PAN low-pass, PAN, PAN detail.
SPECTRAL_INPUTS = 6
#: Bands the per-band layers process at a time when no gradient is needed (inference).
INFERENCE_BAND_GROUP = 2
#: Windows the image side of APFM processes at a time in inference.
IMAGE_SIDE_WINDOWS = 1024
#: Upper bounds on size fields read from a card (a card is untrusted input).
_LIMITS = {"base_channels": 256, "window": 64, "head_dim": 256, "time_dim": 1024, "embed_dim": 2048}


@dataclass(frozen=True)
class GeneralistConfig:
    """Hyper-parameters of :class:`GeneralistDenoiser` (saved in the model card's ``model``).

    ``base_channels`` C: features at full resolution (2C, 4C at 1/2, 1/4). ``window``: APFM
    window in feature px at every scale. ``head_dim``: APFM head size. ``time_dim`` /
    ``embed_dim``: timestep features and embedding. ``spectral_gain`` / ``lowfreq_scale``: the
    five FMIM stage constants of SSDiff.
    """

    family: str = "generalist"
    base_channels: int = 16
    window: int = 8
    head_dim: int = 8
    time_dim: int = 64
    embed_dim: int = 128
    spectral_gain: tuple[float, ...] = field(default=(1.2, 1.4, 1.6, 1.4, 1.2))
    lowfreq_scale: tuple[float, ...] = field(default=(0.9, 0.6, 0.3, 0.6, 0.9))

    def __post_init__(self) -> None:
        if self.family != "generalist":
            raise ValueError(f"family must be 'generalist', got {self.family!r}")
        for name, limit in _LIMITS.items():
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= limit:
                raise ValueError(f"{name} must be an integer in [1, {limit}], got {value!r}")
        if self.base_channels % self.head_dim:
            raise ValueError(f"base_channels ({self.base_channels}) must be a multiple of "
                             f"head_dim ({self.head_dim})")
        if self.time_dim % 2:
            raise ValueError(f"time_dim must be even, got {self.time_dim}")
        for name in ("spectral_gain", "lowfreq_scale"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 5 or not all(math.isfinite(v) for v in value):
                raise ValueError(f"{name} needs 5 finite values (one per stage)")
            object.__setattr__(self, name, value)

    @property
    def channels(self) -> tuple[int, int, int]:
        c = self.base_channels
        return (c, 2 * c, 4 * c)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneralistConfig:
        """Rebuild from :meth:`to_dict`; unknown keys are an error (naming them)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown GeneralistConfig keys: {', '.join(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def aligned_receptive_field(window: int) -> int:
    """How far (PAN px) outside an aligned block of output pixels the network reads its input.

    The network's windowed operations work on blocks aligned to the input's origin; when that
    origin lies on the granularity grid (4 x ``window``, as every chunk's does), an output pixel
    depends on whole blocks, not on a window's worth of pixels in every direction. Walks the
    layers backwards from one granularity period of output rows, in feature indices at each
    scale, and returns the largest reach beyond it (the same in every direction and at every
    aligned position, by the network's symmetry and periodicity).
    """
    period = 4 * window
    start = 64 * period  # far from the origin, so nothing is clipped

    def conv(iv, k):  # k x k conv, 'same' padding
        return iv[0] - k // 2, iv[1] + k // 2

    def windowed(iv):
        return iv[0] // window * window, iv[1] // window * window + window - 1

    def union(a, b):
        return (min(a[0], b[0]), max(a[1], b[1])) if b else a

    spe = conv((start, start + period - 1), 3)  # the head's two 3x3 convs
    spe = conv(spe, 3)
    spa = None
    skips: dict[int, tuple] = {}
    for k in (4, 3, 2, 1, 0):
        if k < 2:  # stage k's outputs are also stage 4 - k's skips
            spe, spa = union(spe, skips[k][1]), union(spa, skips[k][0])
        spe_in = windowed(spe)  # APFM and FMIM: the stage's window grid on both branches
        spa_k = union(spe_in, spa)  # spa after stage k also feeds stage k + 1
        spa_pre = conv(conv(conv(spa_k, 3), 3), 3)  # ResBlock: three 3x3 convs
        if k in (3, 4):  # Up: convT 2x2 s2, + skip, conv 3x3
            spa_up, spe_up = conv(spa_pre, 3), conv(spe_in, 3)
            skips[4 - k] = (spa_up, spe_up)
            spa, spe = (spa_up[0] // 2, spa_up[1] // 2), (spe_up[0] // 2, spe_up[1] // 2)
        elif k in (1, 2):  # Down: conv 2x2 s2, conv 1x1, depthwise 3x3 (at the coarse scale)
            spa_d, spe_d = conv(spa_pre, 3), conv(spe_in, 3)
            spa, spe = (2 * spa_d[0], 2 * spa_d[1] + 1), (2 * spe_d[0], 2 * spe_d[1] + 1)
        else:  # the input blocks: two 3x3 convs each
            spa, spe = conv(conv(spa_pre, 3), 3), conv(conv(spe_in, 3), 3)
    lo, hi = min(spa[0], spe[0]), max(spa[1], spe[1])
    return max(start - lo, hi - (start + period - 1))


class BandAPFM(APFM):
    """Windowed APFM with one spatial input per image shared by its ``c`` bands.

    Exactly :class:`APFM` applied to every band with the image's spatial features, but the
    spatial side (FMIM, LayerNorm, Q, K and the token attention softmax(Q K^T)) is computed once
    per image instead of once per band. Attention is written out (64-token windows, tiny heads:
    faster than SDPA on the CPU).
    """

    def forward(self, x: torch.Tensor, y: torch.Tensor, lowfreq_scale: float | None = None,
                bands: int = 1) -> torch.Tensor:
        """``x`` (B * bands, C, H, W) band features, ``y`` (B, C, H, W) image features."""
        return self.band_side(x, self.image_side(y, lowfreq_scale), bands)

    def image_side(self, y: torch.Tensor, lowfreq_scale: float | None = None,
                   windows: int | None = IMAGE_SIDE_WINDOWS
                   ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int, int]]:
        """The image's queries and token attention softmax(Q K^T), computed once for all its
        bands: ``(q, attn, shape of y)``; attention is kept in the queries' dtype. Without
        gradients the windows go ``windows`` at a time (None: all at once)."""
        win = self.window
        yt = _to_windows(y.permute(0, 2, 3, 1), win)
        if lowfreq_scale is not None and lowfreq_scale != 1.0:
            yt = yt - (1.0 - lowfreq_scale) * yt.mean(dim=1, keepdim=True)
        if torch.is_grad_enabled() or windows is None or windows >= yt.shape[0]:
            q, attn = self._attention(yt)
            return q, attn, tuple(y.shape)
        # Inference: a few thousand windows at a time, so the float32 logits and softmax of the
        # whole image never exist at once (softmax is per window row: the same values).
        q = attn = None
        for w0 in range(0, yt.shape[0], windows):
            qc, ac = self._attention(yt[w0:w0 + windows])
            if q is None:
                q = qc.new_empty((yt.shape[0], *qc.shape[1:]))
                attn = ac.new_empty((yt.shape[0], *ac.shape[1:]))
            q[w0:w0 + len(qc)], attn[w0:w0 + len(qc)] = qc, ac
        return q, attn, tuple(y.shape)

    def _attention(self, yt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries and token attention of windows ``yt`` (N, n, C), attention in the queries'
        dtype."""
        q, k = self._heads(self.qk(self.norm(yt)))  # (N, heads, n, d)
        attn = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.head_dim ** -0.5, -1)
        return q, attn.to(q.dtype)

    def band_side(self, x: torch.Tensor, image: tuple, bands: int) -> torch.Tensor:
        """Update ``bands`` bands' features ``x`` (B * bands, C, H, W) of the images whose
        :meth:`image_side` is ``image``."""
        q, attn, (n_img, ch, h, w) = image
        win = self.window
        xt = _to_windows(x.permute(0, 2, 3, 1), win)
        n_tok, d = xt.shape[1], self.head_dim
        v, u = self._heads(self.vu(self.norm(xt)))  # (B * bands * nw, heads, n, d)
        nw, heads = q.shape[0] // n_img, self.heads
        logits = torch.matmul(v.transpose(-1, -2), u) * (math.sqrt(d) / n_tok)
        a_spe = torch.softmax(logits, dim=-1).to(q.dtype)
        # Bands go side by side in the last axis, so the image's attention and queries multiply
        # every band in one product (no copy of them per band): A [v_1 | v_2 ...] and
        # Q [A_spe,1 | A_spe,2 ...].
        v_side = v.reshape(n_img, bands, nw, heads, n_tok, d).permute(0, 2, 3, 4, 1, 5)
        v_side = v_side.reshape(n_img, nw, heads, n_tok, bands * d)
        a_side = a_spe.reshape(n_img, bands, nw, heads, d, d).permute(0, 2, 3, 4, 1, 5)
        a_side = a_side.reshape(n_img, nw, heads, d, bands * d)
        q_img = q.reshape(n_img, nw, heads, n_tok, d)
        spa = torch.matmul(attn.reshape(n_img, nw, heads, n_tok, n_tok), v_side)
        spe = torch.matmul(q_img, a_side)
        fused = (spa * spe).reshape(n_img, nw, heads, n_tok, bands, d).permute(0, 4, 1, 3, 2, 5)
        fused = fused.reshape(n_img * bands * nw, n_tok, ch)
        xt = xt + self.proj(fused)
        xt = xt + self.ffn_out(F.leaky_relu(self.ffn_in(self.ffn_norm(xt)), LEAK))
        return _from_windows(xt, n_img * bands, h, w, win).permute(0, 3, 1, 2)


class GeneralistDenoiser(nn.Module):
    """Band- and ratio-agnostic SSDiff x0-predictor of a correction (see the module docstring).

    Attributes
    ----------
    granularity : int
        PAN px; inputs are padded (replicate) to a multiple of it, and tiles whose origins differ
        by a multiple of it agree on their common interior.
    receptive_field : int
        PAN px an output pixel can see in each direction when the input's origin lies on the
        granularity grid (:func:`aligned_receptive_field`); the network halo is this rounded
        up to the granularity.
    band_group, image_windows : int or None
        Inference working-set bounds (no gradient): bands per pass of the per-band layers and
        windows per pass of APFM's image side; None runs everything at once (what a compiled
        network does, whose fused kernels do not hold the intermediates). The values are the
        same either way.
    """

    def __init__(self, config: GeneralistConfig) -> None:
        super().__init__()
        self.config = cfg = config
        self.band_group: int | None = INFERENCE_BAND_GROUP
        self.image_windows: int | None = IMAGE_SIDE_WINDOWS
        c0, c1, c2 = cfg.channels
        stage_ch = (c0, c1, c2, c1, c0)
        self.time_embed = TimeEmbedding(cfg.time_dim, cfg.embed_dim)
        self.ratio_embed = nn.Linear(2, cfg.embed_dim)
        self.spatial_in = InputBlock(SPATIAL_INPUTS, c0, cfg.embed_dim, 0.0, False)
        self.spectral_in = InputBlock(SPECTRAL_INPUTS, c0, cfg.embed_dim, 0.0, False)
        self.spatial_blocks = nn.ModuleList(ResBlock(ch, cfg.embed_dim, group_norm=False)
                                            for ch in stage_ch)
        self.spectral_blocks = nn.ModuleList(BandAPFM(ch, cfg.head_dim, cfg.window) for ch in stage_ch)
        self.context = nn.ModuleList(zero_(nn.Conv2d(ch, ch, 1)) for ch in stage_ch)
        self.downs = nn.ModuleList([Down(c0), Down(c1)])
        self.ups = nn.ModuleList([Up(c1), Up(c0)])
        self.head = nn.Sequential(nn.Conv2d(c0, c0, 3, padding=1), nn.LeakyReLU(LEAK),
                                  zero_(nn.Conv2d(c0, 1, 3, padding=1)))

    @property
    def granularity(self) -> int:
        return 4 * self.config.window

    @property
    def receptive_field(self) -> int:
        return aligned_receptive_field(self.config.window)

    def branch_modules(self, branch: str) -> list[nn.Module]:
        """Modules of one branch only (``"spatial"`` or ``"spectral"``), for adapters."""
        if branch == "spatial":
            return [self.spatial_in, self.spatial_blocks]
        if branch == "spectral":
            return [self.spectral_in, self.spectral_blocks, self.context]
        raise ValueError(f"branch must be 'spatial' or 'spectral', got {branch!r}")

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | float, base: torch.Tensor,
                lms: torch.Tensor, pan: torch.Tensor, pan_lp: torch.Tensor,
                ratio: float) -> torch.Tensor:
        """Predict the correction x0 (B, C, H, W), standardised per band.

        ``x_t``, ``base``, ``lms``, ``pan_lp`` are (B, C, H, W), ``pan`` (B, 1, H, W), all
        standardised (see :func:`ssdiff_cli.methods.generalist.standardise`); ``t`` real
        timesteps (B,) or a scalar; ``ratio`` the PAN/MS ratio. Any C >= 1, any H, W.
        """
        if x_t.ndim != 4:
            raise ValueError(f"x_t must be (B, C, H, W), got {tuple(x_t.shape)}")
        b, c, h, w = x_t.shape
        for name, a, ch in (("base", base, c), ("lms", lms, c), ("pan_lp", pan_lp, c), ("pan", pan, 1)):
            if tuple(a.shape) != (b, ch, h, w):
                raise ValueError(f"{name} must be {(b, ch, h, w)}, got {tuple(a.shape)}")
        g = self.granularity
        ph, pw = (-h) % g, (-w) % g
        if ph or pw:
            x_t, base, lms, pan, pan_lp = (F.pad(a, (0, pw, 0, ph), mode="replicate")
                                           for a in (x_t, base, lms, pan, pan_lp))
        hp, wp = h + ph, w + pw
        t = torch.as_tensor(t, device=x_t.device).float().reshape(-1).expand(b)
        r = torch.tensor([[math.log2(float(ratio)), 1.0 / float(ratio)]], device=x_t.device)
        emb = F.silu(self.time_embed(t) + self.ratio_embed(r))
        emb_bands = emb.repeat_interleave(c, dim=0)

        spa_in = torch.cat([pan, x_t.mean(1, keepdim=True), lms.mean(1, keepdim=True)], 1)
        spa = self.spatial_in(spa_in, emb)
        # Without gradients the per-band work runs a few bands of one image at a time (the same
        # values: every per-band layer sees one band at a time), so its working memory is bounded
        # by ``band_group`` bands, not by the band count; training runs the whole batch.
        if torch.is_grad_enabled() or (self.band_group is None and b == 1):
            groups = [(0, b * c, slice(0, b))]
        else:
            g = min(c, self.band_group or c)
            groups = [(i * c + j, i * c + min(j + g, c), slice(i, i + 1))
                      for i in range(b) for j in range(0, c, g)]

        def spectral_input(lo: int, hi: int, img: slice) -> torch.Tensor:
            n = img.stop - img.start
            k = (hi - lo) // n
            j0 = lo - img.start * c
            bands = [a[img, j0:j0 + k] for a in (x_t, base, lms, pan_lp)]
            pan_g = pan[img].expand(n, k, hp, wp)
            stack = torch.stack([*bands, pan_g, pan_g - bands[3]], 2)
            return self.spectral_in(stack.reshape(n * k, SPECTRAL_INPUTS, hp, wp), emb_bands[lo:hi])

        spe = self._per_band(groups, spectral_input)
        cfg = self.config
        skips = []
        for k in range(5):
            if k in (1, 2):
                down = self.downs[k - 1]
                spa = down(spa)
                spe = self._per_band(groups, lambda lo, hi, img, m=down, x=spe: m(x[lo:hi]))
            elif k in (3, 4):
                up = self.ups[k - 3]
                skip_spa, skip_spe = skips.pop()
                spa = up(spa, skip_spa)
                spe = self._per_band(groups, lambda lo, hi, img, m=up, x=spe, s=skip_spe:
                                     m(x[lo:hi], s[lo:hi]))
            spa = self.spatial_blocks[k](spa, emb)
            apfm = self.spectral_blocks[k]
            images = {(img.start, img.stop): apfm.image_side(spa[img], cfg.lowfreq_scale[k],
                                                             self.image_windows)
                      for _, _, img in groups}
            spe = self._per_band(groups, lambda lo, hi, img, m=apfm, x=spe, k=k, im=images: m.band_side(
                fmim.spectral_gain(x[lo:hi], cfg.spectral_gain[k]), im[img.start, img.stop],
                bands=(hi - lo) // (img.stop - img.start)))
            del images
            spe = self._add_context(self.context[k], spe, b, c)
            if k < 2:
                skips.append((spa, spe))
        del skips
        out = self._per_band(groups, lambda lo, hi, img, x=spe: self.head(x[lo:hi]))
        out = out.reshape(b, c, hp, wp)
        return out[:, :, :h, :w] if (ph or pw) else out

    @staticmethod
    def _per_band(groups, fn) -> torch.Tensor:
        """``fn(lo, hi, images)`` over band groups (rows lo:hi of the band batch, bands of the
        images ``images``, a slice), stacked along the batch; one group is returned as it is."""
        if len(groups) == 1:
            return fn(*groups[0])
        first = fn(*groups[0])
        out = first.new_empty((groups[-1][1], *first.shape[1:]))
        out[: groups[0][1]] = first
        del first
        for lo, hi, img in groups[1:]:
            out[lo:hi] = fn(lo, hi, img)
        return out

    @staticmethod
    def _add_context(conv: nn.Module, spe: torch.Tensor, b: int, c: int) -> torch.Tensor:
        """``spe`` plus the pooled spectral context: conv(mean over bands), added to every band
        (in place when no gradient is needed, except under a tracer: the TorchScript ONNX
        exporter turns the in-place add on a view into a wrong graph, 1.85 band standard
        deviations off in ONNX Runtime; out of place it matches torch to 3e-6)."""
        n, ch, h, w = spe.shape
        context = conv(spe.reshape(b, c, ch, h, w).mean(1))[:, None].to(spe.dtype)
        if torch.is_grad_enabled() or torch.jit.is_tracing():
            return spe + context.expand(b, c, ch, h, w).reshape(n, ch, h, w)
        spe.view(b, c, ch, h, w).add_(context)
        return spe
