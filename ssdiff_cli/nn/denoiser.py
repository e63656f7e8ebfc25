"""The SSDiff denoiser: a dual-branch (spatial / spectral) U-Net predicting the residual x0.

Layout (C = ``base_channels``; stages 0..4 at full, 1/2, 1/4, 1/2, full resolution)::

    emb  = SiLU(MLP(sinusoid(t)))                         128 -> 512 -> 512
    spa  = InputBlock(conv3x3([pan, x_t]))                spatial branch, C ch
    spe  = InputBlock(conv3x3([lms, x_t]))                spectral branch, C ch
    for k in 0..4:
        (Down before stages 1, 2; Up + the branch's own additive skip before 3, 4; Down and Up
         modules are shared by both branches)
        spa = ResBlock_k(spa, emb)
        spe = APFM_k(gain(spe, b_k), FMIM(spa, s_k))
    out  = conv3x3(LReLU(conv3x3(spe))) + PixelShuffle_r(conv3x3(ms))

The network knows no noise schedule: it gets x_t, real timesteps t in [0, T) and the conditions,
and returns its estimate of x0 = gt - lms (all values normalised by the caller).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import fmim
from .apfm import APFM
from .blocks import LEAK, Down, InputBlock, ResBlock, TimeEmbedding, Up
from .config import ModelConfig

#: Branch names understood by :meth:`SSDiffDenoiser.branch_modules` and :mod:`.lora`.
BRANCHES = ("spatial", "spectral")


class SSDiffDenoiser(nn.Module):
    """SSDiff x0-predictor for any band count and PAN/MS ratio.

    Parameters
    ----------
    config : ModelConfig
        Architecture; ``config.variant`` selects ``"fast"`` (local, tile-exact) or
        ``"faithful"`` (as released).

    Attributes
    ----------
    granularity : int
        PAN px. Inputs are padded (replicate, bottom/right) to a multiple of it; in the fast
        variant, tiles whose origins differ by a multiple of it give identical outputs on their
        common interior.
    receptive_field : int or None
        PAN px. Fast variant: a conservative bound r such that the output at a pixel depends only
        on inputs within r px of it in each direction (use it as the tile halo). None for the
        faithful variant, whose attention and FFT span the whole input.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        cfg = config
        fast = cfg.variant == "fast"
        c0, c1, c2 = cfg.channels
        stage_ch = (c0, c1, c2, c1, c0)
        window = cfg.window if fast else None

        self.time_embed = TimeEmbedding(cfg.time_dim, cfg.embed_dim)
        self.spatial_in = InputBlock(1 + cfg.bands, c0, cfg.embed_dim, cfg.dropout, not fast)
        self.spectral_in = InputBlock(2 * cfg.bands, c0, cfg.embed_dim, cfg.dropout, not fast)
        self.spatial_blocks = nn.ModuleList(
            ResBlock(ch, cfg.embed_dim, group_norm=not fast) for ch in stage_ch
        )
        self.spectral_blocks = nn.ModuleList(APFM(ch, cfg.head_dim, window) for ch in stage_ch)
        self.downs = nn.ModuleList([Down(c0), Down(c1)])
        self.ups = nn.ModuleList([Up(c1), Up(c0)])  # 4C->2C before stage 3, 2C->C before 4
        self.head = nn.Sequential(
            nn.Conv2d(c0, c0, 3, padding=1),
            nn.LeakyReLU(LEAK),
            nn.Conv2d(c0, cfg.bands, 3, padding=1),
        )
        self.ms_skip = nn.Sequential(
            nn.Conv2d(cfg.bands, cfg.bands * cfg.ratio**2, 3, padding=1, bias=False),
            nn.PixelShuffle(cfg.ratio),
        )

    # ------------------------------------------------------------------ geometry
    @property
    def granularity(self) -> int:
        return self.config.size_multiple

    @property
    def receptive_field(self) -> int | None:
        if self.config.variant != "fast":
            return None
        return fast_receptive_field(self.config.ratio, self.config.window)

    def branch_modules(self, branch: str) -> list[nn.Module]:
        """Modules that belong to one branch (``"spatial"`` or ``"spectral"``) only.

        The time embedding, the shared Down/Up, the output head and the MS skip belong to
        neither.
        """
        if branch == "spatial":
            return [self.spatial_in, self.spatial_blocks]
        if branch == "spectral":
            return [self.spectral_in, self.spectral_blocks]
        raise ValueError(f"branch must be one of {BRANCHES}, got {branch!r}")

    # ------------------------------------------------------------------ forward
    def _check(self, x_t, t, lms, pan, ms) -> tuple[int, int, int]:
        cfg = self.config
        if x_t.ndim != 4 or x_t.shape[1] != cfg.bands:
            raise ValueError(f"x_t must be (B, {cfg.bands}, H, W), got {tuple(x_t.shape)}")
        b, _, h, w = x_t.shape
        if lms.shape != x_t.shape:
            raise ValueError(f"lms shape {tuple(lms.shape)} != x_t shape {tuple(x_t.shape)}")
        if tuple(pan.shape) != (b, 1, h, w):
            raise ValueError(f"pan must be {(b, 1, h, w)}, got {tuple(pan.shape)}")
        r = cfg.ratio
        if h % r or w % r:
            raise ValueError(f"H, W ({h}, {w}) must be multiples of the ratio {r}")
        if tuple(ms.shape) != (b, cfg.bands, h // r, w // r):
            raise ValueError(
                f"ms must be {(b, cfg.bands, h // r, w // r)} (PAN size / ratio {r}), got {tuple(ms.shape)}"
            )
        if t.ndim > 1 or (t.ndim == 1 and t.shape[0] not in (1, b)):
            raise ValueError(f"t must be a scalar or (B,) = ({b},), got {tuple(t.shape)}")
        return b, h, w

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor | float,
        lms: torch.Tensor,
        pan: torch.Tensor,
        ms: torch.Tensor,
    ) -> torch.Tensor:
        """Predict x0 (the residual gt - lms).

        Parameters
        ----------
        x_t, lms : (B, C, H, W)
            Noisy residual and MS upsampled to the PAN grid (PAN px).
        t : (B,) or scalar
            Real timesteps in [0, T).
        pan : (B, 1, H, W)
        ms : (B, C, H / ratio, W / ratio)

        Returns
        -------
        (B, C, H, W) tensor: the predicted residual x0.

        Raises
        ------
        ValueError
            If shapes disagree with each other or with the config.
        """
        t = torch.as_tensor(t, device=x_t.device)
        b, h, w = self._check(x_t, t, lms, pan, ms)
        cfg = self.config
        g = self.granularity
        ph, pw = (-h) % g, (-w) % g
        if ph or pw:
            x_t, lms, pan = (F.pad(a, (0, pw, 0, ph), mode="replicate") for a in (x_t, lms, pan))
            ms = F.pad(ms, (0, pw // cfg.ratio, 0, ph // cfg.ratio), mode="replicate")
        t = t.float().reshape(-1).expand(b)
        emb = F.silu(self.time_embed(t))

        spa = self.spatial_in(torch.cat([pan, x_t], dim=1), emb)
        spe = self.spectral_in(torch.cat([lms, x_t], dim=1), emb)
        skips = []
        fast = cfg.variant == "fast"
        for k in range(5):
            if k in (1, 2):
                spa, spe = self._shared(self.downs[k - 1], spa, spe)
            elif k in (3, 4):
                skip_spa, skip_spe = skips.pop()
                up = self.ups[k - 3]
                spa, spe = up(torch.cat([spa, spe]), torch.cat([skip_spa, skip_spe])).chunk(2)
            spa = self.spatial_blocks[k](spa, emb)
            spe = fmim.spectral_gain(spe, cfg.spectral_gain[k])
            s = cfg.lowfreq_scale[k]
            if fast:
                spe = self.spectral_blocks[k](spe, spa, lowfreq_scale=s)
            else:
                spe = self.spectral_blocks[k](spe, fmim.fft_lowfreq_scale(spa, s))
            if k < 2:
                skips.append((spa, spe))
        out = self.head(spe) + self.ms_skip(ms)
        if ph or pw:
            out = out[:, :, :h, :w]
        return out

    @staticmethod
    def _shared(module: nn.Module, a: torch.Tensor, b: torch.Tensor):
        """Run one shared module on both branches as one batch."""
        return module(torch.cat([a, b])).chunk(2)


def fast_receptive_field(ratio: int, window: int) -> int:
    """Conservative receptive-field radius (PAN px) of the fast variant, walked layer by layer.

    Each feature pixel at scale s (1, 2, 4) covers s x s PAN px (its footprint); ``R`` is how far
    beyond its footprint a feature may depend on the input. A 3x3 conv at scale s adds s, a
    window op adds (window - 1) * s, a stride-2 conv adds nothing (the footprints tile the coarse
    one), a stride-2 transposed conv adds s (the coarse footprint overhangs the fine one by s).
    Both branches are tracked; APFM's output depends on both of its inputs.
    """
    spa = spe = 2  # conv_in 3x3 + zero conv 3x3 at scale 1 (both input blocks)
    skips = []
    scale = 1
    for k in range(5):
        if k in (1, 2):  # Down: conv2x2 s2, conv1x1, depthwise 3x3 at the new scale
            scale *= 2
            spa, spe = spa + scale, spe + scale
        elif k in (3, 4):  # Up: convT 2x2 s2, + skip, conv3x3
            scale //= 2
            skip_spa, skip_spe = skips.pop()
            spa = max(spa + scale, skip_spa) + scale
            spe = max(spe + scale, skip_spe) + scale
        spa = spa + 3 * scale  # ResBlock: three 3x3 convs
        spe = max(spe, spa) + (window - 1) * scale  # FMIM + APFM share one window grid
        if k < 2:
            skips.append((spa, spe))
    head = spe + 2  # two 3x3 convs
    ms_skip = 2 * ratio - 1  # 3x3 conv on the MS grid, then PixelShuffle
    return max(head, ms_skip)
