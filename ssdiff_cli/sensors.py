"""Sensor presets (band layout, MTF gains, pseudo-PAN weights) and sensor detection.

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

:func:`detect_sensor` tries, in order: an explicit override; GDAL's ``IMAGERY`` metadata domain
(which GDAL fills from DigitalGlobe ``.IMD``, Landsat ``_MTL.txt``, DIMAP ... files it finds next
to a raster); sidecar files the project parses itself (``.IMD``, ``*_MTL.txt``, ``DIM_*.XML``);
the dataset tag ``SENSOR``; the pixel size of a georeferenced pair in a metric CRS; and finally a
generic preset guessed from the band count and bit depth.
"""

from __future__ import annotations

import math
import re
import unicodedata
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

from .errors import BadInputError, SensorMismatchError
from .gdal_names import DatasetName, dataset_name

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

SOURCES = (
    "override",
    "imagery-metadata",
    "sidecar:IMD",
    "sidecar:MTL",
    "sidecar:DIMAP",
    "tag:SENSOR",
    "pixel-size",
    "band-count",
)


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


def _lookup(name: str) -> SensorPreset | None:
    return _BY_KEY.get(_norm(name))


def get_preset(name: str) -> SensorPreset:
    """The preset for a key, a name or an alias (case, spaces, dashes and underscores ignored).

    ``"generic"`` alone is refused: use :func:`generic_preset`, which needs the band count.
    """
    preset = _lookup(name)
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


@dataclass
class Detection:
    """The outcome of :func:`detect_sensor`."""

    preset: SensorPreset
    source: str
    reason: str
    bit_depth: int | None
    ms_bands: int = 0
    ratio: int = 0
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Facts about the files


@dataclass
class _FileInfo:
    path: DatasetName
    count: int
    dtype: str
    width: int
    height: int
    tags: dict[str, str]
    imagery: dict[str, str]
    files: list[str]
    res_m: float | None  # pixel size in metres when georeferenced in a metric CRS


def _open_info(path: str | Path) -> _FileInfo:
    p = dataset_name(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(str(p)) as ds:
                res_m = None
                crs = ds.crs
                if crs is not None and not ds.transform.is_identity:
                    try:
                        if crs.is_projected:
                            factor = crs.linear_units_factor[1]
                            res_m = float(math.sqrt(abs(ds.res[0] * ds.res[1]))) * factor
                    except Exception:  # CRS without usable linear units
                        res_m = None
                try:
                    imagery = dict(ds.tags(ns="IMAGERY"))
                except Exception:
                    imagery = {}
                return _FileInfo(
                    path=p,
                    count=ds.count,
                    dtype=ds.dtypes[0],
                    width=ds.width,
                    height=ds.height,
                    tags={k.upper(): v for k, v in ds.tags().items()},
                    imagery=imagery,
                    files=list(ds.files or []),
                    res_m=res_m,
                )
    except RasterioIOError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInputError(f"{p}: not a raster GDAL can read ({reason})") from None


def _ratio(pan: _FileInfo, ms: _FileInfo) -> int:
    if pan.res_m and ms.res_m:
        r = ms.res_m / pan.res_m
    else:
        r = 0.5 * (pan.width / ms.width + pan.height / ms.height)
    return max(1, int(round(r)))


# --------------------------------------------------------------------------------------------
# Sidecars

_IMD_SAT = re.compile(r'^\s*satId\s*=\s*"?([^";\s]+)"?\s*;', re.MULTILINE | re.IGNORECASE)
_MTL_SAT = re.compile(r'^\s*SPACECRAFT_ID\s*=\s*"?([^"\s]+)"?', re.MULTILINE)
_DIM_MISSION = re.compile(r"<MISSION>\s*([^<]+?)\s*</MISSION>", re.IGNORECASE)
_DIM_INDEX = re.compile(r"<MISSION_INDEX>\s*([^<]+?)\s*</MISSION_INDEX>", re.IGNORECASE)


def _read_text(path: Path, limit: int = 2_000_000) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(limit)
    except OSError:
        return ""


def _candidates(paths: Sequence[Path], kind: str) -> list[Path]:
    """Sidecar files of one kind beside the given rasters, nearest match first."""
    found: list[Path] = []
    for p in paths:
        folder = p.parent
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            continue
        for e in entries:
            name = e.name
            low = name.lower()
            if kind == "IMD":
                ok = low.endswith(".imd")
                if ok and e.stem.lower() == p.stem.lower():
                    found.insert(0, e)
                    continue
            elif kind == "MTL":
                ok = low.endswith("_mtl.txt")
            else:
                ok = low.startswith("dim_") and low.endswith(".xml")
            if ok and e not in found:
                found.append(e)
    return found


def _sidecar_ids(paths: Sequence[Path]) -> list[tuple[str, str, Path]]:
    """(source, satellite id, sidecar file) found beside the rasters."""
    out: list[tuple[str, str, Path]] = []
    for f in _candidates(paths, "IMD"):
        m = _IMD_SAT.search(_read_text(f))
        if m:
            out.append(("sidecar:IMD", m.group(1), f))
    for f in _candidates(paths, "MTL"):
        m = _MTL_SAT.search(_read_text(f))
        if m:
            out.append(("sidecar:MTL", m.group(1), f))
    for f in _candidates(paths, "DIMAP"):
        text = _read_text(f)
        m = _DIM_MISSION.search(text)
        if m:
            idx = _DIM_INDEX.search(text)
            sat = m.group(1) + (" " + idx.group(1) if idx else "")
            out.append(("sidecar:DIMAP", sat, f))
    return out


def _sidecar_source(files: Sequence[str]) -> tuple[str, str] | None:
    """Which sidecar, among the files GDAL opened with a dataset, filled its IMAGERY domain."""
    for f in files[1:]:
        low = Path(f).name.lower()
        if low.endswith(".imd"):
            return "sidecar:IMD", Path(f).name
        if low.endswith("_mtl.txt"):
            return "sidecar:MTL", Path(f).name
        if low.startswith("dim_") and low.endswith(".xml"):
            return "sidecar:DIMAP", Path(f).name
    return None


# --------------------------------------------------------------------------------------------
# Detection


def _bit_depth(infos: Sequence[_FileInfo], preset: SensorPreset) -> tuple[int | None, str]:
    for info in infos:
        for key in ("BIT_DEPTH", "NBITS"):
            v = info.tags.get(key)
            if v is not None:
                try:
                    return int(float(v)), f"{key} tag of {info.path.name}"
                except ValueError:
                    pass
        v = info.imagery.get("BITDEPTH") or info.imagery.get("BIT_DEPTH")
        if v is not None:
            try:
                return int(float(v)), f"IMAGERY metadata of {info.path.name}"
            except ValueError:
                pass
    ms = infos[-1]
    if np.issubdtype(np.dtype(ms.dtype), np.floating):
        return None, f"{ms.dtype} data (reflectance or other float product)"
    if preset.bit_depth is not None and not preset.generic:
        return preset.bit_depth, f"the {preset.name} preset"
    return np.dtype(ms.dtype).itemsize * 8, f"the {ms.dtype} data type"


def _pixel_size_match(
    ms_bands: int, ratio: int, pan_res: float
) -> tuple[SensorPreset, list[SensorPreset]] | None:
    """Presets whose PAN pixel size lies within 30 % of ``pan_res``, closest first."""
    scored = []
    for p in _PRESETS:
        if p.pan_gsd_m is None or p.ratio != ratio or fit_band_count(p, ms_bands) is None:
            continue
        if p.key == "l9":  # indistinguishable from Landsat-8 by geometry; prefer the older
            continue
        err = abs(math.log(pan_res / p.pan_gsd_m))
        if err <= math.log(1.3):
            # exact band count beats a bundle subset at equal distance
            scored.append((err + (0 if p.n_bands == ms_bands else 0.05), p))
    if not scored:
        return None
    scored.sort(key=lambda t: t[0])
    return scored[0][1], [p for _, p in scored[1:]]


def detect_sensor(
    pan_path: str | Path,
    ms_paths: str | Path | Sequence[str | Path],
    override: str | None = None,
) -> Detection:
    """Work out which sensor took a PAN/MS pair; see the module docstring for the order tried.

    ``ms_paths`` is one multi-band file or several single-band files. Raises
    :class:`SensorMismatchError` when ``override`` names a sensor whose band count contradicts the
    MS, and :class:`BadInputError` when ``override`` is unknown or a file cannot be opened.
    """
    if isinstance(ms_paths, (str, Path)):
        ms_paths = [ms_paths]
    if not ms_paths:
        raise BadInputError("no multispectral file given")
    pan = _open_info(pan_path)
    ms_infos = [_open_info(p) for p in ms_paths]
    ms_bands = sum(i.count for i in ms_infos)
    ms = ms_infos[0]
    ratio = _ratio(pan, ms)
    ms_desc = (
        ms.path.name if len(ms_infos) == 1 else f"{len(ms_infos)} MS files ({ms.path.name}, ...)"
    )
    notes: list[str] = []

    def done(preset: SensorPreset, source: str, reason: str) -> Detection:
        bd, bd_from = _bit_depth([pan, *ms_infos], preset)
        if preset.ratio != ratio and not preset.generic:
            notes.append(
                f"the pixel grids give a PAN/MS ratio of {ratio}, the {preset.name} preset "
                f"says {preset.ratio}"
            )
        return Detection(
            preset=preset,
            source=source,
            reason=reason,
            bit_depth=bd,
            ms_bands=ms_bands,
            ratio=ratio,
            notes=[
                *notes,
                f"bit depth {bd if bd is not None else 'n/a (float data)'} from {bd_from}",
            ],
        )

    def fitted(preset: SensorPreset, where: str) -> SensorPreset | None:
        p = fit_band_count(preset, ms_bands)
        if p is None:
            notes.append(
                f"{where} names {preset.name} ({preset.n_bands} bands) but {ms_desc} has "
                f"{ms_bands} band(s); ignored"
            )
        return p

    # 1. override
    if override is not None:
        preset = get_preset(override)
        p = fit_band_count(preset, ms_bands)
        if p is None:
            raise SensorMismatchError(
                f"sensor {preset.name} has {preset.n_bands} MS bands but {ms_desc} has "
                f"{ms_bands} band(s)"
            )
        return done(p, "override", f"sensor {p.name} given explicitly (override {override!r})")

    # 2. GDAL's IMAGERY metadata domain
    for info in (pan, *ms_infos):
        sat = info.imagery.get("SATELLITEID")
        if not sat:
            continue
        preset = _lookup(sat)
        side = _sidecar_source(info.files)
        source, origin = (side[0], side[1]) if side else ("imagery-metadata", info.path.name)
        where = f"SATELLITEID={sat!r} in the IMAGERY metadata GDAL read from {origin}"
        if preset is None:
            notes.append(f"{where} is not a known sensor")
            continue
        p = fitted(preset, where)
        if p is not None:
            return done(p, source, f"{where} -> {p.name}")

    # 3. sidecars parsed here
    for source, sat, f in _sidecar_ids([pan.path, *(i.path for i in ms_infos)]):
        preset = _lookup(sat)
        kind = source.split(":")[1]
        field_name = {"IMD": "satId", "MTL": "SPACECRAFT_ID", "DIMAP": "MISSION"}[kind]
        where = f"{field_name}={sat!r} in the {kind} file {f.name}"
        if preset is None:
            notes.append(f"{where} is not a known sensor")
            continue
        p = fitted(preset, where)
        if p is not None:
            return done(p, source, f"{where} -> {p.name}")

    # 4. the SENSOR tag
    for info in (pan, *ms_infos):
        sat = info.tags.get("SENSOR")
        if not sat:
            continue
        where = f"tag SENSOR={sat!r} in {info.path.name}"
        preset = _lookup(sat)
        if preset is None:
            notes.append(f"{where} is not a known sensor")
            continue
        p = fitted(preset, where)
        if p is not None:
            return done(p, "tag:SENSOR", f"{where} -> {p.name}")

    # 5. pixel size
    if pan.res_m:
        match = _pixel_size_match(ms_bands, ratio, pan.res_m)
        if match is not None:
            best, others = match
            p = fit_band_count(best, ms_bands)
            assert p is not None
            reason = (
                f"no sensor metadata; {ms_bands} MS bands, ratio {ratio} and a "
                f"{pan.res_m:.2f} m PAN pixel in {pan.path.name} match {p.name} "
                f"(nominal {best.pan_gsd_m} m)"
            )
            if others:
                reason += "; also consistent with " + ", ".join(o.name for o in others)
            return done(p, "pixel-size", reason)
        notes.append(
            f"no preset has {ms_bands} bands, ratio {ratio} and a PAN pixel near {pan.res_m:.2f} m"
        )

    # 6. band count: a guess
    bd, _ = _bit_depth([pan, *ms_infos], generic_preset(ms_bands, ratio))
    preset = generic_preset(ms_bands, ratio, bd)
    reason = (
        f"no sensor metadata, sidecar, SENSOR tag or usable georeferencing found; guessed a "
        f"generic sensor from {ms_bands} MS band(s) and ratio {ratio} (MTF gains 0.3 / PAN 0.15, "
        f"equal pseudo-PAN weights); pass the sensor explicitly for better results"
    )
    return done(preset, "band-count", reason)


def describe(detection: Detection) -> str:
    """A few human-readable lines for ``ssdiff info``."""
    p = detection.preset
    bd = f"{detection.bit_depth}-bit" if detection.bit_depth is not None else "float data"
    rgb = ",".join(str(i + 1) for i in p.rgb)
    lines = [
        f"sensor:     {p.name} [{p.key}] (from {detection.source})",
        f"because:    {detection.reason}",
        f"bands:      {p.n_bands} ({', '.join(p.band_names)}); RGB = {rgb}; {bd}",
        f"ratio:      {p.ratio}"
        + (
            f" (grids: {detection.ratio})" if detection.ratio and detection.ratio != p.ratio else ""
        ),
        "MTF GNyq:   MS " + ", ".join(f"{g:g}" for g in p.ms_gnyq) + f"; PAN {p.pan_gnyq:g}",
    ]
    for note in detection.notes:
        lines.append(f"note:       {note}")
    return "\n".join(lines)
