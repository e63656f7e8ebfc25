"""Sensor presets: band layout, MTF gains, pseudo-PAN weights, and their lookup by name.

A :class:`SensorPreset` holds what the fusion methods and the quality indices need to know about a
sensor: its bands, the ratio between its PAN and MS pixel sizes, the MTF gain at Nyquist of every
band (ssdiff-reference.md section 3: the standard toolbox's values; 0.3 for MS bands and 0.15 for
the PAN of sensors the toolbox does not list), the weights that make a pseudo-PAN out of the MS
bands, and the nominal PAN pixel size used to recognise a sensor from georeferencing alone.

Pseudo-PAN weights are rough spectral overlaps of each MS band with the PAN band, normalised to sum
to one; a band outside the PAN's range gets (nearly) zero weight. For instance the WorldView-2/3
PAN covers about 450-800 nm, so the coastal (400-450 nm) and NIR2 (860-1040 nm) bands get almost
nothing; the Landsat-8/9 OLI PAN (B8) covers only about 500-680 nm, so blue gets a little and NIR
(B5, 850-880 nm) gets zero.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ssdiff_cli.errors import BadInputError

#: PAN MTF gain at Nyquist for sensors the toolbox does not list.
DEFAULT_PAN_GNYQ = 0.15
#: MS MTF gain at Nyquist for sensors the toolbox does not list.
DEFAULT_MS_GNYQ = 0.3

#: The published MTF gains at Nyquist: the pansharpening toolbox's ``MTF.m`` / ``MTF_PAN.m``
#: (Vivone et al., "A Critical Comparison Among Pansharpening Algorithms", IEEE TGRS 53(5), 2015;
#: and "A New Benchmark Based on Recent Advances in Multispectral Pansharpening", IEEE GRSM 9(1),
#: 2021, whose toolbox gives WorldView-4 GeoEye-1's values).
MTF_TOOLBOX_SOURCE = "pansharpening toolbox MTF.m (Vivone et al., IEEE TGRS 2015; IEEE GRSM 2021)"
#: Sensors whose gains are not published there get the toolbox's generic values.
MTF_DEFAULT_SOURCE = (f"no published gains: generic {DEFAULT_MS_GNYQ} (MS) / {DEFAULT_PAN_GNYQ} "
                      "(PAN)")



@dataclass(frozen=True)
class SensorPreset:
    """What the library knows about one sensor. ``rgb`` holds 0-based band indices."""

    name: str
    key: str
    aliases: tuple[str, ...]
    band_names: tuple[str, ...]
    bit_depth: int | None
    ratio: int
    ms_gnyq: tuple[float, ...]
    pan_gnyq: float
    pan_weights: tuple[float, ...]
    rgb: tuple[int, int, int]
    pan_gsd_m: float | None = None
    generic: bool = False
    #: Where the MTF gains come from (``ssdiff info --sensors`` prints it).
    mtf_source: str = ""

    def __post_init__(self) -> None:
        if not self.mtf_source:
            object.__setattr__(self, "mtf_source", MTF_DEFAULT_SOURCE)
        self._check()

    def _check(self) -> None:
        n = len(self.band_names)
        if len(self.ms_gnyq) != n or len(self.pan_weights) != n:
            raise ValueError(f"preset {self.key}: ms_gnyq/pan_weights must have {n} entries")
        if any(not 0 <= i < n for i in self.rgb):
            raise ValueError(f"preset {self.key}: rgb indices out of range")

    @property
    def n_bands(self) -> int:
        return len(self.band_names)

    def weights(self) -> np.ndarray:
        """Pseudo-PAN weights as a float64 array summing to one."""
        w = np.asarray(self.pan_weights, dtype=np.float64)
        s = w.sum()
        return w / s if s > 0 else np.full(len(w), 1.0 / len(w))

    def subset(self, indices: Sequence[int], suffix: str) -> SensorPreset:
        """The preset restricted to some bands (e.g. the 4-band bundle of an 8-band sensor)."""
        idx = list(indices)
        names = tuple(self.band_names[i] for i in idx)
        rgb = tuple(idx.index(i) for i in self.rgb)
        return replace(
            self,
            name=f"{self.name} ({suffix})",
            key=f"{self.key}-{len(idx)}band",
            aliases=(),
            band_names=names,
            ms_gnyq=tuple(self.ms_gnyq[i] for i in idx),
            pan_weights=tuple(self.pan_weights[i] for i in idx),
            rgb=rgb,  # type: ignore[arg-type]
        )


def _norm(name: str) -> str:
    """Lower-case ASCII alphanumerics only: "WorldView-2", "WORLDVIEW 2", "worldview_2" all match,
    and so do "Pléiades" and "Pleiades"."""
    ascii_name = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode()
    return re.sub(r"[^0-9a-z]", "", ascii_name.lower())


_BGRN = ("blue", "green", "red", "nir")
_WV8 = ("coastal", "blue", "green", "yellow", "red", "red edge", "nir1", "nir2")
# Relative spectral overlap of the WorldView-2/3 MS bands with the 450-800 nm PAN (after the
# weights published for WorldView-2 by Padwick et al., 2010).
_WV8_WEIGHTS = (0.005, 0.142, 0.209, 0.144, 0.234, 0.117, 0.157, 0.004)

_PRESETS: tuple[SensorPreset, ...] = (
    SensorPreset(
        name="WorldView-2",
        key="wv2",
        aliases=("WV02", "WV2", "WV-2", "WORLDVIEW-2", "WorldView2", "WORLDVIEW02"),
        band_names=_WV8,
        bit_depth=11,
        ratio=4,
        ms_gnyq=(0.35,) * 7 + (0.27,),
        pan_gnyq=0.11,
        pan_weights=_WV8_WEIGHTS,
        rgb=(4, 2, 1),
        pan_gsd_m=0.46,
        mtf_source=MTF_TOOLBOX_SOURCE,
    ),
    SensorPreset(
        name="WorldView-3",
        key="wv3",
        aliases=("WV03", "WV3", "WV-3", "WORLDVIEW-3", "WorldView3", "WORLDVIEW03"),
        band_names=_WV8,
        bit_depth=11,
        ratio=4,
        ms_gnyq=(0.325, 0.355, 0.360, 0.350, 0.365, 0.360, 0.335, 0.315),
        pan_gnyq=0.14,
        pan_weights=_WV8_WEIGHTS,
        rgb=(4, 2, 1),
        pan_gsd_m=0.31,
        mtf_source=MTF_TOOLBOX_SOURCE,
    ),
    SensorPreset(
        name="QuickBird",
        key="qb",
        aliases=("QB02", "QB2", "QB", "QUICKBIRD", "QuickBird-2", "QUICKBIRD2"),
        band_names=_BGRN,
        bit_depth=11,
        ratio=4,
        ms_gnyq=(0.34, 0.32, 0.30, 0.22),
        pan_gnyq=0.15,
        # PAN 450-900 nm covers all four bands; its response is lower in the blue.
        pan_weights=(0.15, 0.28, 0.27, 0.30),
        rgb=(2, 1, 0),
        pan_gsd_m=0.61,
        mtf_source=MTF_TOOLBOX_SOURCE,
    ),
    SensorPreset(
        name="GeoEye-1",
        key="ge1",
        aliases=("GE01", "GE1", "GEOEYE1", "GeoEye-1", "GEOEYE"),
        band_names=_BGRN,
        bit_depth=11,
        ratio=4,
        ms_gnyq=(0.23, 0.23, 0.23, 0.23),
        pan_gnyq=0.16,
        # PAN 450-800 nm: NIR (780-920 nm) overlaps only at its short end.
        pan_weights=(0.30, 0.35, 0.27, 0.08),
        rgb=(2, 1, 0),
        pan_gsd_m=0.41,
        mtf_source=MTF_TOOLBOX_SOURCE,
    ),
    SensorPreset(
        name="IKONOS",
        key="ikonos",
        aliases=("IK01", "IK2", "IKONOS-2", "IKONOS2"),
        band_names=_BGRN,
        bit_depth=11,
        ratio=4,
        ms_gnyq=(0.26, 0.28, 0.29, 0.28),
        pan_gnyq=0.17,
        # PAN 526-929 nm: blue (445-516 nm) barely overlaps.
        pan_weights=(0.05, 0.30, 0.30, 0.35),
        rgb=(2, 1, 0),
        pan_gsd_m=0.82,
        mtf_source=MTF_TOOLBOX_SOURCE,
    ),
    SensorPreset(
        name="GaoFen-2",
        key="gf2",
        aliases=("GF2", "GF-2", "GAOFEN2", "GAOFEN-2"),
        band_names=_BGRN,
        bit_depth=10,
        ratio=4,
        ms_gnyq=(DEFAULT_MS_GNYQ,) * 4,
        pan_gnyq=DEFAULT_PAN_GNYQ,
        pan_weights=(0.25, 0.25, 0.25, 0.25),  # PAN 450-900 nm
        rgb=(2, 1, 0),
        pan_gsd_m=0.81,
    ),
    SensorPreset(
        name="Pleiades",
        key="phr",
        aliases=(
            "PHR",
            "PHR1A",
            "PHR 1A",
            "PHR1B",
            "PHR 1B",
            "PLEIADES-1A",
            "PLEIADES-1B",
            "PLEIADES1A",
            "PLEIADES1B",
            "Pleiades-HR",
        ),
        band_names=_BGRN,
        bit_depth=12,
        ratio=4,
        ms_gnyq=(DEFAULT_MS_GNYQ,) * 4,
        pan_gnyq=DEFAULT_PAN_GNYQ,
        pan_weights=(0.22, 0.30, 0.30, 0.18),  # PAN 480-830 nm
        rgb=(2, 1, 0),
        pan_gsd_m=0.5,
    ),
    SensorPreset(
        name="SPOT-6/7",
        key="spot67",
        aliases=("SPOT6", "SPOT 6", "SPOT-6", "SPOT7", "SPOT 7", "SPOT-7", "SPOT6/7"),
        band_names=_BGRN,
        bit_depth=12,
        ratio=4,
        ms_gnyq=(DEFAULT_MS_GNYQ,) * 4,
        pan_gnyq=DEFAULT_PAN_GNYQ,
        pan_weights=(0.30, 0.35, 0.33, 0.02),  # PAN 450-745 nm: NIR outside
        rgb=(2, 1, 0),
        pan_gsd_m=1.5,
    ),
    # Landsat-8/9 OLI: the 4 bands B2, B3, B4, B5 (the 30 m VNIR) with the 15 m B8 PAN. B8 covers
    # only about 500-680 nm: B2 (452-512 nm) overlaps a little, B5 (851-879 nm) not at all.
    # Level-1 products are delivered as 16-bit integers.
    SensorPreset(
        name="Landsat-8",
        key="l8",
        aliases=("LANDSAT_8", "LANDSAT8", "LANDSAT-8", "Landsat-8 OLI", "LC08", "L8", "OLI"),
        band_names=("B2 blue", "B3 green", "B4 red", "B5 nir"),
        bit_depth=16,
        ratio=2,
        ms_gnyq=(DEFAULT_MS_GNYQ,) * 4,
        pan_gnyq=DEFAULT_PAN_GNYQ,
        pan_weights=(0.08, 0.50, 0.42, 0.0),
        rgb=(2, 1, 0),
        pan_gsd_m=15.0,
    ),
    SensorPreset(
        name="Landsat-9",
        key="l9",
        aliases=(
            "LANDSAT_9",
            "LANDSAT9",
            "LANDSAT-9",
            "Landsat-9 OLI-2",
            "Landsat-9 OLI",
            "LC09",
            "L9",
            "OLI2",
        ),
        band_names=("B2 blue", "B3 green", "B4 red", "B5 nir"),
        bit_depth=16,
        ratio=2,
        ms_gnyq=(DEFAULT_MS_GNYQ,) * 4,
        pan_gnyq=DEFAULT_PAN_GNYQ,
        pan_weights=(0.08, 0.50, 0.42, 0.0),
        rgb=(2, 1, 0),
        pan_gsd_m=15.0,
    ),
    SensorPreset(
        name="WorldView-4",
        key="wv4",
        aliases=("WV04", "WV4", "WV-4", "WORLDVIEW-4", "WorldView4", "WORLDVIEW04"),
        band_names=_BGRN,
        bit_depth=11,
        ratio=4,
        ms_gnyq=(0.23, 0.23, 0.23, 0.23),
        pan_gnyq=0.16,
        pan_weights=(0.30, 0.35, 0.27, 0.08),  # PAN 450-800 nm, as GeoEye-1
        rgb=(2, 1, 0),
        # No pan_gsd_m: at 0.31 m it is indistinguishable from a WorldView-3 bundle by geometry.
        mtf_source=MTF_TOOLBOX_SOURCE + ", as GeoEye-1",
    ),
    SensorPreset(
        name="Pleiades Neo",
        key="pneo",
        aliases=("PNEO", "PNEO3", "PNEO4", "PLEIADES NEO", "PLEIADES-NEO", "Pleiades Neo 3",
                 "Pleiades Neo 4"),
        band_names=("deep blue", "blue", "green", "red", "red edge", "nir"),
        bit_depth=12,
        ratio=4,
        ms_gnyq=(DEFAULT_MS_GNYQ,) * 6,
        pan_gnyq=DEFAULT_PAN_GNYQ,
        pan_weights=(0.02, 0.25, 0.27, 0.26, 0.12, 0.08),  # PAN 450-800 nm
        rgb=(3, 2, 1),
        pan_gsd_m=0.3,
    ),
    SensorPreset(
        name="SuperView-1",
        key="sv1",
        aliases=("SV1", "SV-1", "SUPERVIEW1", "SuperView", "GJ1", "GAOJING-1"),
        band_names=_BGRN,
        bit_depth=11,
        ratio=4,
        ms_gnyq=(DEFAULT_MS_GNYQ,) * 4,
        pan_gnyq=DEFAULT_PAN_GNYQ,
        pan_weights=(0.25, 0.27, 0.27, 0.21),  # PAN 450-890 nm
        rgb=(2, 1, 0),
        # No pan_gsd_m: at 0.5 m it is indistinguishable from Pleiades by geometry.
    ),
    # Landsat-7 ETM+: the 30 m bands 1-5 and 7 with the 15 m band 8 PAN (520-900 nm: green, red
    # and NIR; blue barely, SWIR not at all). Level-1 products are 8-bit.
    SensorPreset(
        name="Landsat-7",
        key="l7",
        aliases=("Landsat-7 ETM+", "LANDSAT_7", "LANDSAT7", "LANDSAT-7", "LE07", "L7", "ETM+",
                 "ETM"),
        band_names=("B1 blue", "B2 green", "B3 red", "B4 nir", "B5 swir1", "B7 swir2"),
        bit_depth=8,
        ratio=2,
        ms_gnyq=(DEFAULT_MS_GNYQ,) * 6,
        pan_gnyq=DEFAULT_PAN_GNYQ,
        pan_weights=(0.02, 0.30, 0.30, 0.38, 0.0, 0.0),
        rgb=(2, 1, 0),
        pan_gsd_m=15.0,
    ),
)

_BY_KEY: dict[str, SensorPreset] = {}
for _p in _PRESETS:
    for _a in (_p.key, _p.name, *_p.aliases):
        _BY_KEY.setdefault(_norm(_a), _p)


def list_presets() -> list[SensorPreset]:
    """All built-in presets, in a stable order."""
    return list(_PRESETS)


def find_preset(name: str) -> SensorPreset | None:
    """The preset for a key, a name or an alias (as :func:`get_preset`), or None when none has it."""
    return _BY_KEY.get(_norm(name))


def get_preset(name: str) -> SensorPreset:
    """The preset for a key, a name or an alias (case, spaces, dashes and underscores ignored).

    ``"generic"`` alone is refused: use :func:`generic_preset`, which needs the band count.
    """
    preset = find_preset(name)
    if preset is None:
        valid = ", ".join(f"{p.key} ({p.name})" for p in _PRESETS)
        raise BadInputError(f"unknown sensor {name!r}; valid sensors: {valid}")
    return preset


def generic_preset(bands: int, ratio: int, bit_depth: int | None = None) -> SensorPreset:
    """A preset for an unknown sensor: GNyq 0.3 on every band, PAN 0.15, equal weights.

    The true-colour composite uses bands 3, 2, 1 (1-based) when there are at least 3 bands, the
    usual blue-green-red(-nir) order.
    """
    if bands < 1:
        raise BadInputError(f"a multispectral image needs at least one band, got {bands}")
    if ratio < 1:
        raise BadInputError(f"the PAN/MS ratio must be a positive integer, got {ratio}")
    rgb = (2, 1, 0) if bands >= 3 else (0, 0, 0)
    return SensorPreset(
        name=f"generic ({bands} bands, ratio {ratio})",
        key="generic",
        aliases=(),
        band_names=tuple(f"band {i + 1}" for i in range(bands)),
        bit_depth=bit_depth,
        ratio=ratio,
        ms_gnyq=(DEFAULT_MS_GNYQ,) * bands,
        pan_gnyq=DEFAULT_PAN_GNYQ,
        pan_weights=(1.0 / bands,) * bands,
        rgb=rgb,
        pan_gsd_m=None,
        generic=True,
    )


def fit_band_count(preset: SensorPreset, bands: int) -> SensorPreset | None:
    """``preset`` adapted to ``bands`` MS bands, or None when it cannot be.

    The 4-band bundle (blue, green, red, nir1) of the 8-band WorldView sensors is recognised.
    """
    if preset.n_bands == bands:
        return preset
    if preset.band_names == _WV8 and bands == 4:
        return preset.subset((1, 2, 4, 6), "4-band bundle")
    if preset.key == "l7" and bands == 4:
        return preset.subset((0, 1, 2, 3), "VNIR bands 1-4")
    return None


def select_preset_bands(preset: SensorPreset, indices: Sequence[int], total: int, ratio: int,
                        bit_depth: int | None) -> SensorPreset:
    """The preset for a selection of 0-based ``indices`` out of ``total`` MS bands: ``preset``
    restricted to them when it describes all ``total`` bands, else a generic one. The RGB
    composite keeps the preset's bands when all three are selected, else the first three."""
    idx = list(indices)
    if preset.generic or preset.n_bands != total:
        return generic_preset(len(idx), ratio, bit_depth)
    if all(i in idx for i in preset.rgb):
        rgb = tuple(idx.index(i) for i in preset.rgb)
    else:
        rgb = (0, 1, 2) if len(idx) >= 3 else (0, 0, 0)
    numbers = ",".join(str(i + 1) for i in idx)
    return replace(
        preset,
        name=f"{preset.name} (bands {numbers})",
        key=f"{preset.key}-bands{numbers.replace(',', '-')}",
        aliases=(),
        band_names=tuple(preset.band_names[i] for i in idx),
        ms_gnyq=tuple(preset.ms_gnyq[i] for i in idx),
        pan_weights=tuple(preset.pan_weights[i] for i in idx),
        rgb=rgb,  # type: ignore[arg-type]
    )

