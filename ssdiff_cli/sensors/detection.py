"""Sensor detection: which sensor took a PAN/MS pair, and why (:func:`detect_sensor`).

:func:`detect_sensor` tries, in order: an explicit override; GDAL's ``IMAGERY`` metadata domain
(which GDAL fills from DigitalGlobe ``.IMD``, Landsat ``_MTL.txt``, DIMAP ... files it finds next
to a raster); sidecar files the project parses itself (``.IMD``, ``*_MTL.txt``, ``DIM_*.XML``);
the dataset tag ``SENSOR``; the pixel size of a georeferenced pair in a metric CRS; and finally a
generic preset guessed from the band count and bit depth.

A band GDAL marks as alpha in a one-file MS is a validity mask, not a spectral band, unless the
sensor found needs it as a band (some tools write an RGB+NIR file as RGBA): every sensor preset is
fitted to the MS's spectral band count first, and where none is named, a band marked alpha whose
values look like a mask (two values, one of them 0) is taken as one (:attr:`Detection.alpha`).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

from ssdiff_cli.errors import BadInputError, SensorMismatchError
from ssdiff_cli.gdal_names import DatasetName, dataset_name
from ssdiff_cli.sensors.presets import (
    SensorPreset,
    find_preset,
    fit_band_count,
    generic_preset,
    get_preset,
    list_presets,
)

#: Where a detection can come from, in the order tried.
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
    #: The 1-based band of the (one-file) MS that is an alpha band used as the validity mask, not
    #: a spectral band (so not counted in ``ms_bands``); None when there is none.
    alpha: int | None = None


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
    alpha: int | None = None  # the band GDAL marks as alpha (1-based), if any
    alpha_is_mask: bool = False  # whether its values look like a mask


#: The alpha band is sampled in this many windows a side, each this many pixels a side.
_ALPHA_WINDOWS, _ALPHA_WINDOW = 4, 64


def _looks_like_mask(ds, band: int) -> bool:
    """Whether ``band`` holds a mask rather than imagery: in a few windows spread over the file,
    two values (one of them 0) make up at least 99 % of the pixels."""
    from rasterio.windows import Window

    size = min(_ALPHA_WINDOW, ds.width), min(_ALPHA_WINDOW, ds.height)
    values = []
    for i in range(_ALPHA_WINDOWS):
        for j in range(_ALPHA_WINDOWS):
            col = (ds.width - size[0]) * j // max(1, _ALPHA_WINDOWS - 1)
            row = (ds.height - size[1]) * i // max(1, _ALPHA_WINDOWS - 1)
            values.append(ds.read(band, window=Window(col, row, *size)).ravel())
    found, counts = np.unique(np.concatenate(values), return_counts=True)
    top = np.argsort(counts)[-2:]
    return bool(counts[top].sum() >= 0.99 * counts.sum() and (len(found) == 1 or 0 in found[top]))


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
                alphas = [b for b, c in enumerate(ds.colorinterp, start=1) if c == ColorInterp.alpha]
                alpha = alphas[-1] if alphas and ds.count > 1 else None
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
                    alpha=alpha,
                    alpha_is_mask=alpha is not None and _looks_like_mask(ds, alpha),
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
    for p in list_presets():
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
    total = sum(i.count for i in ms_infos)
    ms = ms_infos[0]
    alpha = ms.alpha if len(ms_infos) == 1 else None
    # Spectral band counts to fit a preset to, the likelier first: without the alpha band when it
    # looks like a mask, else with it.
    counts = [total] if alpha is None else [total - 1, total] if ms.alpha_is_mask else [total, total - 1]
    ms_bands = counts[0]
    ratio = _ratio(pan, ms)
    ms_desc = (
        ms.path.name if len(ms_infos) == 1 else f"{len(ms_infos)} MS files ({ms.path.name}, ...)"
    )
    notes: list[str] = []

    def fit(preset: SensorPreset) -> SensorPreset | None:
        """``preset`` fitted to the MS's spectral bands (with or without a band marked alpha,
        the likelier count first); sets ``ms_bands`` to the count it fits."""
        nonlocal ms_bands
        for n in counts:
            p = fit_band_count(preset, n)
            if p is not None:
                ms_bands = n
                return p
        return None

    def done(preset: SensorPreset, source: str, reason: str) -> Detection:
        bd, bd_from = _bit_depth([pan, *ms_infos], preset)
        mask = alpha if alpha is not None and ms_bands < total else None
        if mask is not None:
            notes.append(f"band {mask} of {ms.path.name} is an alpha band: the MS validity mask, "
                         "not a spectral band")
        elif alpha is not None:
            why = ("its values are not a mask's" if not ms.alpha_is_mask
                   else f"{preset.name} has {total} bands")
            notes.append(f"band {alpha} of {ms.path.name} is marked alpha but read as a spectral "
                         f"band ({why})")
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
            alpha=mask,
        )

    def named(sat: str, where: str) -> SensorPreset | None:
        """The preset the sensor name ``sat`` (found at ``where``) gives, fitted to the MS band
        count; None, with a note saying why, where it gives none."""
        preset = find_preset(sat)
        if preset is None:
            notes.append(f"{where} is not a known sensor")
            return None
        p = fit(preset)
        if p is None:
            notes.append(
                f"{where} names {preset.name} ({preset.n_bands} bands) but {ms_desc} has "
                f"{ms_bands} band(s); ignored"
            )
        return p

    # 1. override
    if override is not None:
        preset = get_preset(override)
        p = fit(preset)
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
        side = _sidecar_source(info.files)
        source, origin = (side[0], side[1]) if side else ("imagery-metadata", info.path.name)
        where = f"SATELLITEID={sat!r} in the IMAGERY metadata GDAL read from {origin}"
        p = named(sat, where)
        if p is not None:
            return done(p, source, f"{where} -> {p.name}")

    # 3. sidecars parsed here
    for source, sat, f in _sidecar_ids([pan.path, *(i.path for i in ms_infos)]):
        kind = source.split(":")[1]
        field_name = {"IMD": "satId", "MTL": "SPACECRAFT_ID", "DIMAP": "MISSION"}[kind]
        where = f"{field_name}={sat!r} in the {kind} file {f.name}"
        p = named(sat, where)
        if p is not None:
            return done(p, source, f"{where} -> {p.name}")

    # 4. the SENSOR tag
    for info in (pan, *ms_infos):
        sat = info.tags.get("SENSOR")
        if not sat:
            continue
        where = f"tag SENSOR={sat!r} in {info.path.name}"
        p = named(sat, where)
        if p is not None:
            return done(p, "tag:SENSOR", f"{where} -> {p.name}")

    # 5. pixel size
    if pan.res_m:
        match = _pixel_size_match(ms_bands, ratio, pan.res_m)
        if match is not None:
            best, others = match
            p = fit(best)
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
