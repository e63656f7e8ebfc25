"""Configuration of the SSDiff denoiser: a frozen dataclass, saved as JSON with checkpoints."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

Variant = Literal["faithful", "fast"]
VARIANTS: tuple[str, ...] = ("faithful", "fast")


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of :class:`~ssdiff_cli.nn.SSDiffDenoiser`.

    Parameters
    ----------
    bands : int
        Number of multispectral bands C (any positive number).
    ratio : int
        PAN/MS resolution ratio r (the low-resolution skip is a conv followed by
        ``PixelShuffle(r)``).
    base_channels : int
        Feature channels at full resolution; the three scales use 1x, 2x and 4x this.
    variant : {"fast", "faithful"}
        ``"faithful"`` follows the released SSDiff (global APFM attention, GroupNorm, BatchNorm,
        FFT-based FMIM). ``"fast"`` keeps the same blocks but makes every operation local and
        aligned to the tile origin (windowed APFM, per-pixel LayerNorm, windowed-mean FMIM), so
        that tiled inference is exact away from tile edges.
    window : int
        APFM attention window in feature pixels at every scale (``fast`` only).
    head_dim : int
        Size d of an APFM head; heads = channels / d.
    time_dim : int
        Size of the sinusoidal timestep features (128).
    embed_dim : int
        Size of the timestep embedding after the MLP (512).
    dropout : float
        Dropout probability in the two input blocks.
    spectral_gain : tuple of 5 floats
        FMIM gain b_k applied to the first half of the spectral channels before stage k.
    lowfreq_scale : tuple of 5 floats
        FMIM factor s_k applied to the low frequencies of the spatial features given to APFM k.
    """

    bands: int = 8
    ratio: int = 4
    base_channels: int = 32
    variant: Variant = "fast"
    window: int = 8
    head_dim: int = 16
    time_dim: int = 128
    embed_dim: int = 512
    dropout: float = 0.0
    spectral_gain: tuple[float, ...] = field(default=(1.2, 1.4, 1.6, 1.4, 1.2))
    lowfreq_scale: tuple[float, ...] = field(default=(0.9, 0.6, 0.3, 0.6, 0.9))

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        for name in (
            "bands",
            "ratio",
            "base_channels",
            "window",
            "head_dim",
            "time_dim",
            "embed_dim",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.base_channels % self.head_dim:
            raise ValueError(
                f"base_channels ({self.base_channels}) must be a multiple of head_dim ({self.head_dim})"
            )
        if self.variant == "faithful" and self.base_channels % 32:
            raise ValueError(
                f"the faithful variant uses GroupNorm(32): base_channels ({self.base_channels}) "
                "must be a multiple of 32"
            )
        if self.time_dim % 2:
            raise ValueError(f"time_dim must be even, got {self.time_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("spectral_gain", "lowfreq_scale"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 5:
                raise ValueError(f"{name} needs 5 values (one per stage), got {len(value)}")
            object.__setattr__(self, name, value)

    @property
    def channels(self) -> tuple[int, int, int]:
        """Feature channels at the three scales (full, 1/2, 1/4 resolution)."""
        c = self.base_channels
        return (c, 2 * c, 4 * c)

    @property
    def size_multiple(self) -> int:
        """Input height and width are padded internally to a multiple of this (PAN px)."""
        if self.variant == "fast":
            return math.lcm(self.ratio, 4 * self.window)
        return math.lcm(self.ratio, 4)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys are an error (naming them)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown ModelConfig keys: {', '.join(unknown)}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)
