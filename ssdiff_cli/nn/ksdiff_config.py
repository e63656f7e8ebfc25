"""Configuration of the KSDiff network: a frozen dataclass, saved as JSON in a model card.

A card is untrusted input, so every field is checked here, before anything is allocated: each
size is an integer (never a bool, a float or a string) inside a stated range, each tuple has its
stated length, and the products that set memory (latent numbers, Tucker cores) are bounded too.
A refusal is a ``ValueError`` whose message starts with the field's name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

#: Bands and ratios the family serves (the generalist's range).
MAX_BANDS = 16
MIN_RATIO, MAX_RATIO = 2, 8
#: The backbone's modulated convolutions are 3 x 3: the spatial Tucker ranks are at most 3.
KERNEL = 3
#: Bounds on the integer fields: (low, high), inclusive.
_INT_LIMITS = {
    "max_bands": (1, MAX_BANDS),
    "min_ratio": (MIN_RATIO, MAX_RATIO),
    "max_ratio": (MIN_RATIO, MAX_RATIO),
    "band_width": (1, 64),
    "block_kernel": (3, 11),
    "expansion": (1, 8),
    "tokens": (1, 256),
    "token_dim": (1, 256),
    "generator_dim": (4, 256),
    "encoder_width": (4, 256),
    "encoder_levels": (1, 5),
    "denoiser_dim": (8, 512),
    "denoiser_depth": (1, 8),
    "denoiser_heads": (1, 16),
    "time_dim": (2, 1024),
}
#: Bounds on each entry of the tuple fields, and the tuples' lengths.
_TUPLE_LIMITS = {"widths": (3, (4, 256)), "depths": (3, (0, 8)), "core": (4, (1, 64))}
#: At most this many latent numbers (N x C_z): the prior is meant to be a few hundred.
MAX_LATENT = 4096


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class KSDiffConfig:
    """Hyper-parameters of :class:`~ssdiff_cli.nn.ksdiff.KSDiffNetwork` (the card's ``model``).

    ``widths``: backbone channels at full, 1/2 and 1/4 resolution. ``depths``: ConvNeXt blocks
    of the encoder at each scale (the decoder has one per scale). ``band_width``: channels of
    the per-band layers (the stem and the head, run once per band). ``block_kernel`` /
    ``expansion``: the blocks' depthwise kernel and pointwise expansion. ``core``: the Tucker
    ranks (C_out, C_in, k, k) of every modulated kernel (clipped to a layer's mode sizes; the
    spatial ranks are at most 3). ``tokens`` N and ``token_dim`` C_z: the prior z (N x C_z).
    ``generator_dim``: the kernel generator's feature size. ``encoder_width`` /
    ``encoder_levels``: PLFE1's channels at full resolution and its pyramid levels (PLFE2 has
    half the channels). ``denoiser_*``: the latent denoiser's width, blocks and heads.
    ``time_dim``: its sinusoidal timestep features. ``max_bands`` / ``min_ratio`` /
    ``max_ratio``: what a forward pass accepts.
    """

    family: str = "ksdiff"
    max_bands: int = MAX_BANDS
    min_ratio: int = MIN_RATIO
    max_ratio: int = MAX_RATIO
    widths: tuple[int, ...] = field(default=(16, 32, 64))
    depths: tuple[int, ...] = field(default=(1, 1, 2))
    band_width: int = 8
    block_kernel: int = 7
    expansion: int = 2
    core: tuple[int, ...] = field(default=(4, 4, 2, 2))
    tokens: int = 16
    token_dim: int = 16
    generator_dim: int = 32
    encoder_width: int = 32
    encoder_levels: int = 3
    denoiser_dim: int = 64
    denoiser_depth: int = 2
    denoiser_heads: int = 4
    time_dim: int = 64

    def __post_init__(self) -> None:
        if self.family != "ksdiff":
            raise ValueError(f"family must be 'ksdiff', got {self.family!r}")
        for name, (low, high) in _INT_LIMITS.items():
            value = getattr(self, name)
            if not _is_int(value) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
        for name, (length, (low, high)) in _TUPLE_LIMITS.items():
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or len(value) != length:
                raise ValueError(f"{name} must be {length} integers, got {value!r}")
            if not all(_is_int(v) and low <= v <= high for v in value):
                raise ValueError(f"{name} entries must be integers in [{low}, {high}], got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if self.min_ratio > self.max_ratio:
            raise ValueError(f"min_ratio ({self.min_ratio}) must not exceed max_ratio "
                             f"({self.max_ratio})")
        if self.block_kernel % 2 == 0:
            raise ValueError(f"block_kernel must be odd, got {self.block_kernel}")
        if self.tokens * self.token_dim > MAX_LATENT:
            raise ValueError(f"tokens x token_dim must be at most {MAX_LATENT} numbers, got "
                             f"{self.tokens} x {self.token_dim}")
        if max(self.core[2:]) > KERNEL:
            raise ValueError(f"core spatial ranks must be at most {KERNEL} (3 x 3 kernels), "
                             f"got {self.core}")
        if max(self.core[:2]) > min(self.widths):
            raise ValueError(f"core channel ranks must be at most the smallest width "
                             f"({min(self.widths)}), got {self.core}")
        if self.encoder_width % 2:
            raise ValueError(f"encoder_width must be even (PLFE2 has half), got "
                             f"{self.encoder_width}")
        if self.denoiser_dim % self.denoiser_heads:
            raise ValueError(f"denoiser_dim ({self.denoiser_dim}) must be a multiple of "
                             f"denoiser_heads ({self.denoiser_heads})")
        if self.time_dim % 2:
            raise ValueError(f"time_dim must be even, got {self.time_dim}")

    @property
    def latent_shape(self) -> tuple[int, int]:
        """(N, C_z): the prior's shape for one image."""
        return (self.tokens, self.token_dim)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KSDiffConfig:
        """Rebuild from :meth:`to_dict`; unknown keys (or a non-dict) are an error."""
        if not isinstance(data, dict):
            raise ValueError(f"a KSDiff model config must be a mapping, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in set(data) - names)
        if unknown:
            raise ValueError(f"unknown KSDiffConfig keys: {', '.join(unknown)}")
        return cls(**data)
