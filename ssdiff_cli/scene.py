"""Opening a PAN + MS pair: validation, grids, the MS-to-PAN mapping, validity masks, tile reads.

A :class:`Scene` is what the pipeline works on. Its :class:`SceneSpec` is a small picklable value
from which any thread or worker process reopens the files and reads tile windows itself
(:func:`read_tile`), so only fused tiles travel between processes.

Geometry. The output grid is the PAN grid cut to the requested extent. The MS is brought onto it
by GDAL's warper with cubic resampling, which honours sub-pixel offsets between the grids
(Landsat's half-PAN-pixel offset, an MS corner inside a PAN pixel) from the geotransforms rather
than assuming aligned corners. Methods that want the low-resolution MS get it on the *coarse
grid*: the output grid with pixels ``ratio`` times larger, anchored at the output grid's corner,
so that tiles whose origins are multiples of the ratio see whole coarse pixels.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from ssdiff_cli import filters
from ssdiff_cli.errors import (
    BadInputError,
    BitDepthWarning,
    GridMismatchError,
    NotGeoreferencedWarning,
    SensorMismatchError,
)
from ssdiff_cli.gdal_names import DatasetName, dataset_name, ms_band_selection
from ssdiff_cli.sensors import (
    Detection,
    detect_sensor,
    fit_band_count,
    get_preset,
    select_preset_bands,
)

#: A stand-in CRS for pairs without georeferencing, so GDAL's warper can relate their grids.
_LOCAL_CRS = "EPSG:3857"
#: Relative tolerance on the PAN/MS pixel-size ratio being a whole number.
RATIO_TOLERANCE = 0.01
#: Iterations of the local fill that replaces invalid pixels before fusion (see fill_invalid).
FILL_ITERATIONS = 12
#: Most full-resolution pixels the scene sample may decimate from one raster without overviews
#: (about 65536 x 65536); beyond it the raster needs overviews (``gdaladdo``).
SAMPLE_SOURCE_MAX_PIXELS = 2**32


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid: affine ``transform``, size in pixels, ``crs`` (WKT/EPSG or None)."""

    transform: Affine
    width: int
    height: int
    crs: str | None

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y) in CRS units, both positive."""
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units."""
        left, top = self.transform.c, self.transform.f
        right = left + self.width * self.transform.a
        bottom = top + self.height * self.transform.e
        return left, min(bottom, top), right, max(bottom, top)

    def to_dict(self) -> dict:
        """JSON-friendly summary."""
        return {
            "crs": self.crs,
            "transform": list(self.transform)[:6],
            "width": self.width,
            "height": self.height,
        }


@dataclass(frozen=True)
class SceneSpec:
    """Everything a worker needs to reopen the pair and read tiles (picklable, no open handles).

    ``out`` is the output grid (a window of the PAN grid, possibly reaching outside the PAN
    dataset for ``--extent union``); ``pan_offset`` is the output grid's upper-left corner in PAN
    dataset pixels (row, col). ``ms_vrt`` is a VRT XML stacking the MS bands (one file or one per
    band) with neutral colour interpretation, so GDAL never mistakes a NIR band for alpha.
    """

    pan_path: str
    ms_vrt: str
    out: Grid
    pan_offset: tuple[int, int]
    ms_grid: Grid
    ratio: int
    bands: int
    pan_nodata: float | None
    ms_nodata: float | None
    ms_alpha: tuple[str, int] | None
    ms_dtype: str
    georeferenced: bool
    pan_transform_src: Affine | None = None  # stand-in transforms for non-georeferenced pairs
    ms_transform_src: Affine | None = None
    #: Coarse-grid origin in MS pixels (row, col) when the MS grid is a whole-pixel shift of the
    #: coarse grid (read directly); None when a sub-pixel resampling is needed.
    ms_offset: tuple[int, int] | None = None
    #: Kernel bringing the coarse MS onto the output grid (``-r``; filters.UPSAMPLING_KERNELS).
    resampling: str = "cubic"
    #: When the MS grid is the coarse grid shifted by a fraction of a pixel (Landsat's half PAN
    #: pixel, an MS corner inside a PAN pixel): ``(row, col, phase_row, phase_col)``, the MS pixel
    #: holding the coarse grid's origin and the fraction of a pixel beyond it. The MS is then
    #: upsampled from its own grid with that phase, in one resampling pass.
    ms_subpixel: tuple[int, int, float, float] | None = None

    @property
    def coarse(self) -> Grid:
        """The output grid coarsened by the ratio (where low-res MS tiles live)."""
        return Grid(
            self.out.transform @ Affine.scale(self.ratio),
            math.ceil(self.out.width / self.ratio),
            math.ceil(self.out.height / self.ratio),
            self.out.crs,
        )


@dataclass
class Scene:
    """An opened, validated pair: its spec plus what was learnt opening it (for reports)."""

    spec: SceneSpec
    pan_path: DatasetName
    ms_paths: list[DatasetName]
    pan_grid: Grid
    band_names: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> int:
        """PAN/MS resolution ratio (whole number)."""
        return self.spec.ratio

    @property
    def bands(self) -> int:
        """Number of MS bands."""
        return self.spec.bands


# --------------------------------------------------------------------------------------------
# Opening and validation


def _open_checked(path: DatasetName, role: str) -> rasterio.DatasetReader:
    if not path.exists():
        raise BadInputError(f"{path}: {role} file does not exist")
    if path.is_dir():
        raise BadInputError(f"{path}: {role} is a folder, not a raster file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            ds = rasterio.open(str(path))
    except RasterioIOError as exc:
        raise BadInputError(f"{path}: not a raster GDAL can read ({_first_line(exc)})") from None
    complex_types = [t for t in ds.dtypes if "complex" in t]
    if complex_types:
        ds.close()
        raise BadInputError(f"{path}: {role} has complex values ({complex_types[0]}); "
                            "give real-valued imagery (e.g. its amplitude)")
    return ds


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _is_georeferenced(ds) -> bool:
    return ds.crs is not None or ds.transform != Affine.identity() or bool(ds.gcps[0])


def _crs_string(ds) -> str | None:
    if ds.crs is None:
        return None
    epsg = ds.crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else ds.crs.to_wkt()


def _gdal_type(dtype: str) -> str:
    return {
        "uint8": "Byte",
        "int8": "Int8",
        "uint16": "UInt16",
        "int16": "Int16",
        "uint32": "UInt32",
        "int32": "Int32",
        "uint64": "UInt64",
        "int64": "Int64",
        "float32": "Float32",
        "float64": "Float64",
    }[dtype]


def _ms_vrt_xml(sources: list[tuple[str, int]], width: int, height: int, dtype: str,
                nodata: float | None, transform: Affine | None, crs: str | None) -> str:
    """A VRT stacking ``(path, band)`` sources; neutral colour interpretation on every band."""
    parts = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">']
    if crs:
        parts.append(f"<SRS>{escape(crs)}</SRS>")
    if transform is not None:
        gt = transform.to_gdal()
        parts.append("<GeoTransform>" + ", ".join(repr(float(v)) for v in gt) + "</GeoTransform>")
    for i, (path, band) in enumerate(sources, start=1):
        parts.append(f'<VRTRasterBand dataType="{_gdal_type(dtype)}" band="{i}">')
        parts.append("<ColorInterp>Gray</ColorInterp>" if i == 1 else "")
        if nodata is not None:
            parts.append(f"<NoDataValue>{nodata!r}</NoDataValue>")
        parts.append(
            f'<SimpleSource><SourceFilename relativeToVRT="0">{escape(path)}</SourceFilename>'
            f"<SourceBand>{band}</SourceBand></SimpleSource></VRTRasterBand>"
        )
    parts.append("</VRTDataset>")
    return "".join(parts)


def open_pair(
    pan_path: str | os.PathLike,
    ms_paths: str | os.PathLike | list,
    extent: str = "intersection",
    expected_bands: int | None = None,
    bands: list[int] | None = None,
    nodata: float | str | None = None,
    resampling: str = "cubic",
    ms_shift: tuple[float, float] | None = None,
) -> Scene:
    """Open and validate a PAN + MS pair and work out the output grid.

    Parameters
    ----------
    pan_path : path
        Single-band panchromatic raster (any GDAL format).
    ms_paths : path or list of paths
        One multi-band MS raster, or several single-band rasters (one per band, in band order).
    extent : {"intersection", "union"}
        Output over the intersection of the two footprints (default) or over their union, on the
        PAN grid. Pixels outside either input are nodata.
    expected_bands : int, optional
        Spectral band count of the sensor; an extra alpha band is recognised only when the MS
        has exactly one band more.
    bands : list of int, optional
        1-based MS bands to use, in this order (``gdal_pansharpen.py``'s ``,band=`` / ``-b``),
        numbered over the MS files stacked in the order given.
    nodata : float or "none", optional
        Overrides the nodata value of both inputs (``--nodata``); ``"none"`` ignores theirs.
    resampling : str
        Kernel bringing the coarse MS onto the PAN grid (:data:`filters.UPSAMPLING_KERNELS`).
    ms_shift : (dy, dx), optional
        A measured misregistration (PAN pixels, :mod:`ssdiff_cli.coreg`'s convention: where the
        MS content lies relative to the PAN) to correct: the MS grid is moved by ``(-dy, -dx)``.

    Raises
    ------
    BadInputError, GridMismatchError
        With a one-line message naming the file and the problem.
    """
    pan_path = dataset_name(pan_path)
    ms_list = [dataset_name(p)
               for p in (ms_paths if isinstance(ms_paths, list | tuple) else [ms_paths])]
    if not ms_list:
        raise BadInputError("no MS file given")
    notes: list[str] = []

    if resampling not in filters.UPSAMPLING_KERNELS:
        raise BadInputError(f"unknown resampling {resampling!r}; choose one of "
                            f"{', '.join(filters.UPSAMPLING_KERNELS)}")
    pan = _open_checked(pan_path, "PAN")
    with pan:
        if pan.count != 1:
            raise BadInputError(f"{pan_path}: PAN must have one band, it has {pan.count}")
        pan_geo = _is_georeferenced(pan)
        pan_crs = _crs_string(pan)
        pan_grid = Grid(pan.transform, pan.width, pan.height, pan_crs)
        pan_nodata = pan.nodata
        pan_dtype = pan.dtypes[0]
        if pan.transform.b or pan.transform.d:
            raise GridMismatchError(f"{pan_path}: rotated geotransforms are not supported")

    sources, ms_meta = _ms_sources(ms_list)
    ms_geo, ms_crs, ms_transform, ms_w, ms_h, ms_dtype, ms_nodata, descriptions, alpha = ms_meta
    if bands:
        if any(not 1 <= b <= len(sources) for b in bands):
            raise BadInputError(f"{ms_list[0]}: band selection {bands} outside 1..{len(sources)}")
        sources = [sources[b - 1] for b in bands]
        descriptions = [descriptions[b - 1] for b in bands]
        alpha = None
        notes.append(f"MS bands {', '.join(map(str, bands))} selected")
    pan_source = str(pan_path)
    if nodata is not None:
        pan_nodata = ms_nodata = None if nodata == "none" else float(nodata)
        pan_source = _ms_vrt_xml([(str(pan_path.resolve()), 1)], pan_grid.width, pan_grid.height,
                                 pan_dtype, pan_nodata, pan_grid.transform if pan_geo else None,
                                 pan_crs)
        notes.append(f"nodata of both inputs taken as {nodata} (--nodata)")
    bands = len(sources)
    alpha_source = None
    if alpha is not None and expected_bands is not None and bands == expected_bands + 1:
        alpha_source = sources[alpha - 1]
        sources = [s for i, s in enumerate(sources, start=1) if i != alpha]
        descriptions = [d for i, d in enumerate(descriptions, start=1) if i != alpha]
        bands -= 1
        notes.append(f"MS band {alpha} is an alpha band: used as the MS validity mask")

    if pan_geo != ms_geo:
        which, other = (ms_list[0], pan_path) if pan_geo else (pan_path, ms_list[0])
        raise GridMismatchError(
            f"{which}: has no georeferencing but {other.name} has; both or neither must"
        )
    if pan_geo:
        if ms_crs is None or pan_crs is None:
            missing = ms_list[0] if ms_crs is None else pan_path
            raise GridMismatchError(f"{missing}: has a geotransform but no CRS")
        if not rasterio.crs.CRS.from_user_input(pan_crs) == rasterio.crs.CRS.from_user_input(ms_crs):
            raise GridMismatchError(
                f"{ms_list[0]}: CRS {ms_crs} differs from the PAN's {pan_crs}; "
                "reproject one of them first (gdalwarp -t_srs)"
            )
        if ms_transform.b or ms_transform.d:
            raise GridMismatchError(f"{ms_list[0]}: rotated geotransforms are not supported")
        rx = abs(ms_transform.a) / abs(pan_grid.transform.a)
        ry = abs(ms_transform.e) / abs(pan_grid.transform.e)
        ratio = _whole_ratio(rx, ry, ms_list[0])
        pan_src = ms_src = None
    else:
        warnings.warn(
            f"{pan_path.name} and {ms_list[0].name} carry no georeferencing: ratio taken from the "
            "sizes, grids aligned at the upper-left corner",
            NotGeoreferencedWarning,
            stacklevel=2,
        )
        notes.append("not georeferenced: grids assumed aligned at the upper-left corner")
        ratio = _whole_ratio(pan_grid.width / ms_w, pan_grid.height / ms_h, ms_list[0])
        pan_src = Affine.identity()
        ms_src = Affine.scale(ratio)
        pan_grid = Grid(pan_src, pan_grid.width, pan_grid.height, None)
        ms_transform = ms_src

    if ms_shift is not None:  # move the MS content by (-dy, -dx) PAN pixels
        dy, dx = ms_shift
        step = pan_grid.transform
        ms_transform = Affine.translation(-dx * step.a, -dy * step.e) * ms_transform
        if not ms_geo:
            ms_src = ms_transform
    ms_grid = Grid(ms_transform, ms_w, ms_h, ms_crs)
    out, offset = _output_grid(pan_grid, ms_grid, extent, ms_list[0], pan_path)
    vrt = _ms_vrt_xml(
        sources, ms_w, ms_h, ms_dtype, ms_nodata,
        ms_transform if ms_geo else None, ms_crs,
    )
    whole = _whole_pixel_offset(out, ratio, ms_grid)
    spec = SceneSpec(
        ms_offset=whole,
        ms_subpixel=None if whole is not None else _subpixel_offset(out, ratio, ms_grid),
        pan_path=pan_source,
        ms_vrt=vrt,
        out=out,
        pan_offset=offset,
        ms_grid=ms_grid,
        ratio=ratio,
        bands=bands,
        pan_nodata=pan_nodata,
        ms_nodata=ms_nodata,
        ms_alpha=alpha_source,
        ms_dtype=ms_dtype,
        georeferenced=pan_geo,
        pan_transform_src=pan_src,
        ms_transform_src=ms_src,
        resampling=resampling,
    )
    band_names = [d or f"band {i}" for i, d in enumerate(descriptions, start=1)]
    return Scene(spec, pan_path, ms_list, pan_grid, band_names, notes)


def _ms_sources(ms_list: list[DatasetName]):
    """Open the MS file(s), check they agree, and list ``(path, band)`` sources."""
    sources: list[tuple[str, int]] = []
    first = None
    descriptions: list[str | None] = []
    alpha = None
    for path in ms_list:
        ds = _open_checked(path, "MS")
        with ds:
            meta = (_is_georeferenced(ds), _crs_string(ds), ds.transform, ds.width, ds.height,
                    ds.dtypes[0], ds.nodata)
            if first is None:
                first = meta
            elif len(ms_list) > 1:
                if ds.count != 1:
                    raise BadInputError(
                        f"{path}: MS given as one file per band, but this file has {ds.count} bands"
                    )
                if (meta[3], meta[4]) != (first[3], first[4]) or meta[2] != first[2]:
                    raise GridMismatchError(
                        f"{path}: size or geotransform differs from {ms_list[0].name}; "
                        "per-band MS files must share one grid"
                    )
                if meta[5] != first[5]:
                    raise BadInputError(f"{path}: data type {meta[5]} differs from {first[5]}")
                if meta[0] != first[0] or not _same_crs(meta[1], first[1]):
                    raise GridMismatchError(
                        f"{path}: CRS {meta[1] or 'none'} differs from {ms_list[0].name}'s "
                        f"{first[1] or 'none'}; per-band MS files must share one CRS")
            for b in range(1, ds.count + 1):
                sources.append((str(path.resolve()), b))
                descriptions.append(ds.descriptions[b - 1])
                if ds.colorinterp[b - 1] == ColorInterp.alpha and len(ms_list) == 1:
                    alpha = b
    geo, crs, transform, w, h, dtype, nodata = first
    return sources, (geo, crs, transform, w, h, dtype, nodata, descriptions, alpha)


def _same_crs(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return rasterio.crs.CRS.from_user_input(a) == rasterio.crs.CRS.from_user_input(b)


def _whole_ratio(rx: float, ry: float, ms_path: DatasetName) -> int:
    ratio = round(rx)
    if ratio < 1 or abs(rx - ratio) > RATIO_TOLERANCE * ratio or abs(ry - ratio) > RATIO_TOLERANCE * ratio:
        raise GridMismatchError(
            f"{ms_path}: MS/PAN pixel-size ratio is {rx:.3f} x {ry:.3f}, not a whole number; "
            "resample one of them first"
        )
    return ratio


def _whole_pixel_offset(out: Grid, ratio: int, ms: Grid) -> tuple[int, int] | None:
    """(row, col) of the coarse grid's origin in MS pixels if it falls on an MS pixel corner and
    the pixel sizes agree; None if the MS must be resampled by a sub-pixel amount."""
    coarse_t = out.transform @ Affine.scale(ratio)
    if abs(coarse_t.a - ms.transform.a) > 1e-6 * abs(ms.transform.a) or \
            abs(coarse_t.e - ms.transform.e) > 1e-6 * abs(ms.transform.e):
        return None
    col, row = ~ms.transform @ (coarse_t.c, coarse_t.f)
    if abs(col - round(col)) > 1e-3 or abs(row - round(row)) > 1e-3:
        return None
    return round(row), round(col)


def _subpixel_offset(out: Grid, ratio: int, ms: Grid) -> tuple[int, int, float, float] | None:
    """``(row, col, phase_row, phase_col)`` of the coarse grid's origin in MS pixels, split into
    whole pixels and a fraction in [0, 1), when the pixel sizes agree; None otherwise."""
    coarse_t = out.transform @ Affine.scale(ratio)
    if abs(coarse_t.a - ms.transform.a) > 1e-6 * abs(ms.transform.a) or \
            abs(coarse_t.e - ms.transform.e) > 1e-6 * abs(ms.transform.e):
        return None
    col, row = ~ms.transform @ (coarse_t.c, coarse_t.f)
    r0, c0 = math.floor(row), math.floor(col)
    return r0, c0, min(row - r0, 1 - 1e-9), min(col - c0, 1 - 1e-9)


def _output_grid(pan: Grid, ms: Grid, extent: str, ms_path: DatasetName, pan_path: DatasetName):
    """The output grid on the PAN lattice over the intersection or union of the footprints."""
    if extent not in ("intersection", "union"):
        raise BadInputError(f"extent must be 'intersection' or 'union', not {extent!r}")
    pl, pb, pr, pt = pan.bounds
    ml, mb, mr, mt = ms.bounds
    if extent == "intersection":
        left, bottom, right, top = max(pl, ml), max(pb, mb), min(pr, mr), min(pt, mt)
    else:
        left, bottom, right, top = min(pl, ml), min(pb, mb), max(pr, mr), max(pt, mt)
    if not (max(pl, ml) < min(pr, mr) and max(pb, mb) < min(pt, mt)):
        raise GridMismatchError(f"{ms_path}: its footprint does not overlap {pan_path.name}")
    inv = ~pan.transform
    # PAN pixel index range covering [left, right] x [bottom, top]; for the intersection keep
    # PAN pixels whose centre lies inside, for the union every PAN pixel touched.
    c0, r0 = inv @ (left, top)
    c1, r1 = inv @ (right, bottom)
    c0, c1 = sorted((c0, c1))
    r0, r1 = sorted((r0, r1))
    eps = 1e-6
    if extent == "intersection":
        col0, col1 = math.ceil(c0 - 0.5 - eps), math.floor(c1 - 0.5 + eps) + 1
        row0, row1 = math.ceil(r0 - 0.5 - eps), math.floor(r1 - 0.5 + eps) + 1
    else:
        col0, col1 = math.floor(c0 + eps), math.ceil(c1 - eps)
        row0, row1 = math.floor(r0 + eps), math.ceil(r1 - eps)
    if col1 <= col0 or row1 <= row0:
        raise GridMismatchError(f"{ms_path}: its footprint does not overlap {pan_path.name}")
    transform = pan.transform @ Affine.translation(col0, row0)
    return Grid(transform, col1 - col0, row1 - row0, pan.crs), (row0, col0)


# --------------------------------------------------------------------------------------------
# Reading tiles


@dataclass
class TileData:
    """Arrays a fusion method works on, over one read window of the output grid.

    ``pan`` (H, W) and ``lms`` (C, H, W) are float32 digital numbers with invalid pixels already
    replaced by a smooth local fill (so filters see no holes); ``valid`` (H, W) marks pixels where
    both inputs are valid; ``ms`` (C, H/r, W/r) is the MS on the coarse grid (only when asked).
    ``row``/``col`` give the window's upper-left corner in output-grid pixels.
    """

    pan: np.ndarray
    lms: np.ndarray
    valid: np.ndarray
    row: int
    col: int
    ms: np.ndarray | None = None


def ms_files(spec: SceneSpec) -> list[str]:
    """The MS file(s) behind the scene's MS VRT, in band order, each once."""
    import re
    from xml.sax.saxutils import unescape

    names = [unescape(m) for m in re.findall(r">([^<]*)</SourceFilename>", spec.ms_vrt)]
    return list(dict.fromkeys(names))


def read_window(ds, what: str, window: Window, **kwargs) -> np.ndarray:
    """``ds.read(window=window, **kwargs)``, a failure becoming a :class:`BadInputError` that names
    the file (``what``) and the window."""
    try:
        return ds.read(window=window, **kwargs)
    except RasterioIOError as exc:
        raise BadInputError(
            f"{what}: read failed at window col {int(window.col_off)}, row {int(window.row_off)}, "
            f"{int(window.width)}x{int(window.height)} px: the file is damaged or truncated "
            f"({_first_line(exc)})") from None


def read_mask_window(ds, what: str, window: Window, **kwargs) -> np.ndarray:
    """``ds.read_masks`` with the same error translation as :func:`read_window`."""
    try:
        return ds.read_masks(window=window, **kwargs)
    except RasterioIOError as exc:
        raise BadInputError(
            f"{what}: read failed at window col {int(window.col_off)}, row {int(window.row_off)}, "
            f"{int(window.width)}x{int(window.height)} px: the file is damaged or truncated "
            f"({_first_line(exc)})") from None


class SceneReader:
    """Open handles on one scene for one thread; reads windows of the output and coarse grids."""

    def __init__(self, spec: SceneSpec):
        self.spec = spec
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            self.pan = rasterio.open(spec.pan_path)
            self.ms = rasterio.open(spec.ms_vrt)
        src_kwargs = {}
        if not spec.georeferenced:
            src_kwargs = {"src_crs": _LOCAL_CRS, "src_transform": spec.ms_transform_src}
        coarse = spec.coarse
        # Only used when the MS grid is not a whole-pixel shift of the coarse grid (Landsat's
        # half-PAN-pixel offset): GDAL's warper resamples it by the sub-pixel amount.
        self.coarse_vrt = WarpedVRT(
            self.ms, transform=coarse.transform, width=coarse.width, height=coarse.height,
            crs=spec.out.crs or _LOCAL_CRS, resampling=Resampling.cubic, dtype="float32",
            nodata=np.nan, src_nodata=spec.ms_nodata, **src_kwargs,
        )

    def close(self) -> None:
        """Close every handle."""
        for ds in (self.coarse_vrt, self.ms, self.pan):
            ds.close()

    def read_pan(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """PAN values (float32, NaN outside the dataset) and validity over an output window."""
        r0, c0 = row + self.spec.pan_offset[0], col + self.spec.pan_offset[1]
        out = np.full((height, width), np.nan, dtype=np.float32)
        valid = np.zeros((height, width), dtype=bool)
        rr0, cc0 = max(r0, 0), max(c0, 0)
        rr1, cc1 = min(r0 + height, self.pan.height), min(c0 + width, self.pan.width)
        if rr1 > rr0 and cc1 > cc0:
            win = Window(cc0, rr0, cc1 - cc0, rr1 - rr0)
            data = read_window(self.pan, self.spec.pan_path, win, indexes=1).astype(np.float32)
            mask = read_mask_window(self.pan, self.spec.pan_path, win, indexes=1) > 0
            mask &= np.isfinite(data)
            sl = (slice(rr0 - r0, rr1 - r0), slice(cc0 - c0, cc1 - c0))
            out[sl] = data
            valid[sl] = mask
        return out, valid

    def read_coarse_ms(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        """MS on the coarse grid over a coarse-grid window (may reach outside), float32, NaN
        wherever the MS is invalid (nodata, NaN, alpha 0) or absent."""
        spec = self.spec
        if spec.ms_offset is None:
            return self._padded(self.coarse_vrt, row, col, height, width)
        return self.read_ms(row + spec.ms_offset[0], col + spec.ms_offset[1], height, width)

    def read_ms(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        """A window of the MS on its own grid (may reach outside), float32, NaN wherever the MS
        is invalid (nodata, NaN, alpha 0) or absent."""
        spec = self.spec
        data = self._padded(self.ms, row, col, height, width)
        invalid = np.zeros(data.shape[1:], dtype=bool)
        if spec.ms_nodata is not None and not np.isnan(spec.ms_nodata):
            invalid |= np.any(data == np.float32(spec.ms_nodata), axis=0)
        if spec.ms_alpha is not None:
            path, band = spec.ms_alpha
            with rasterio.open(path) as ds:
                alpha = self._padded(ds, row, col, height, width, indexes=[band])[0]
            invalid |= ~(alpha > 0)
        data[:, invalid] = np.nan
        return data

    def read_ms_valid(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        """MS validity on an output-grid window, from the MS's own grid: a PAN pixel is valid when
        the MS pixel containing its centre exists and is valid. (Needed where the MS grid is not
        a whole-pixel shift of the coarse grid; elsewhere coarse validity says the same.)"""
        o, m = self.spec.out.transform, self.spec.ms_grid.transform
        cols = np.floor((o.c + o.a * (np.arange(col, col + width) + 0.5) - m.c) / m.a).astype(int)
        rows = np.floor((o.f + o.e * (np.arange(row, row + height) + 0.5) - m.f) / m.e).astype(int)
        r0, c0 = rows.min(), cols.min()
        data = self._padded(self.ms, r0, c0, rows.max() - r0 + 1, cols.max() - c0 + 1)
        valid = np.all(np.isfinite(data), axis=0)
        nodata = self.spec.ms_nodata
        if nodata is not None and not np.isnan(nodata):
            valid &= np.all(data != np.float32(nodata), axis=0)
        return valid[np.ix_(rows - r0, cols - c0)]

    def _padded(self, ds, row, col, height, width, indexes=None) -> np.ndarray:
        """A window of ``ds`` as float32, NaN where it falls outside the dataset."""
        count = ds.count if indexes is None else len(indexes)
        out = np.full((count, height, width), np.nan, dtype=np.float32)
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + height, ds.height), min(col + width, ds.width)
        if r1 > r0 and c1 > c0:
            what = ds.name if ds is not self.ms and ds is not self.coarse_vrt else \
                ", ".join(ms_files(self.spec))
            out[:, r0 - row : r1 - row, c0 - col : c1 - col] = read_window(
                ds, what, Window(c0, r0, c1 - c0, r1 - r0), indexes=indexes, out_dtype="float32")
        return out


_local = threading.local()


def reader_for(spec: SceneSpec) -> SceneReader:
    """A cached :class:`SceneReader` for this thread (rasterio handles are not thread-safe)."""
    cache = getattr(_local, "readers", None)
    if cache is None:
        cache = _local.readers = {}
    key = spec.pan_path, spec.ms_vrt, spec.out
    reader = cache.get(key)
    if reader is None or reader.spec != spec:
        if len(cache) > 4:
            for old in cache.values():
                old.close()
            cache.clear()
        reader = cache[key] = SceneReader(spec)
    return reader


#: Side of the chunks :func:`fill_invalid` works in: only chunks holding an invalid pixel are
#: filled (each with a halo of the fill's reach), so a window whose only holes are thin margins
#: costs little.
_FILL_CHUNK = 64


def fill_invalid(img: np.ndarray, valid: np.ndarray, fallback: np.ndarray | float,
                 iterations: int = FILL_ITERATIONS) -> np.ndarray:
    """Replace invalid pixels of ``img`` ((H, W) or (C, H, W)) by a local average of valid ones.

    Each iteration spreads valid values one pixel further with a normalised 3x3 mean; pixels
    still unreached after ``iterations`` take ``fallback`` (one value or one per band). The value
    at a pixel depends only on pixels within ``iterations`` of it, and its arithmetic not on where
    the array starts, so tiles with a halo of at least that many pixels fill identically.
    """
    if valid.all():
        return img
    squeeze = img.ndim == 2
    arr = img[None] if squeeze else img
    out = np.array(arr, dtype=np.float32)
    h, w = valid.shape
    c, k = _FILL_CHUNK, iterations
    for y in range(0, h, c):
        for x in range(0, w, c):
            if valid[y : y + c, x : x + c].all():
                continue
            y0, y1, x0, x1 = max(0, y - k), min(h, y + c + k), max(0, x - k), min(w, x + c + k)
            filled = _fill_window(arr[:, y0:y1, x0:x1], valid[y0:y1, x0:x1], fallback, k)
            out[:, y : y + c, x : x + c] = filled[:, y - y0 : y - y0 + c, x - x0 : x - x0 + c]
    return out[0] if squeeze else out


def _box3_sum(a: np.ndarray) -> np.ndarray:
    """Sum over each pixel's 3x3 neighbourhood (zeros outside), added in the same order at every
    pixel so that the result does not depend on where the array was cut."""
    s = a.copy()
    s[..., 1:, :] += a[..., :-1, :]
    s[..., :-1, :] += a[..., 1:, :]
    t = s.copy()
    t[..., 1:] += s[..., :-1]
    t[..., :-1] += s[..., 1:]
    return t


def _fill_window(arr: np.ndarray, valid: np.ndarray, fallback, iterations: int) -> np.ndarray:
    """:func:`fill_invalid` on one ``(C, h, w)`` window, whole."""
    out = np.where(valid, arr, 0.0).astype(np.float32)
    weight = valid.astype(np.float32)
    known = valid.copy()
    for _ in range(iterations):
        if known.all():
            break
        s = _box3_sum(out * weight)
        wsum = _box3_sum(weight)
        grow = (~known) & (wsum > 0)
        out = np.where(grow, s / np.maximum(wsum, 1e-12), out)
        weight = np.where(grow, 1.0, weight).astype(np.float32)
        known |= grow
    fb = np.broadcast_to(np.asarray(fallback, dtype=np.float32).reshape(-1, 1, 1), out.shape)
    return np.where(known, out, fb)


def read_arrays(spec: SceneSpec, row: int = 0, col: int = 0, height: int | None = None,
                width: int | None = None):
    """PAN (H, W) and coarse-grid MS (C, H/r, W/r) over an output-grid window (default: the whole
    grid), float32 with NaN where absent, and their validity masks:
    ``(pan, pan_valid, ms, ms_valid)``. ``row`` and ``col`` must be multiples of the ratio."""
    r = spec.ratio
    height = spec.out.height - row if height is None else height
    width = spec.out.width - col if width is None else width
    reader = SceneReader(spec)
    try:
        pan, pan_valid = reader.read_pan(row, col, height, width)
        ms = reader.read_coarse_ms(row // r, col // r, math.ceil(height / r), math.ceil(width / r))
    finally:
        reader.close()
    ms_valid = np.all(np.isfinite(ms), axis=0)
    if spec.ms_nodata is not None:
        ms_valid &= np.all(ms != spec.ms_nodata, axis=0)
    return pan, pan_valid, ms, ms_valid


#: Coarse pixels read around a tile for the cubic interpolator's support (offsets -1..+2).
_CUBIC_MARGIN = 2


def read_tile(spec: SceneSpec, row: int, col: int, height: int, width: int,
              fill_values: tuple[np.ndarray, float], want_ms: bool = False,
              lms_out: np.ndarray | None = None) -> TileData:
    """Read one output-grid window (may reach outside the grid) ready for fusion.

    The window must be aligned to the coarse grid (``row``, ``col``, sizes multiples of the
    ratio). The MS is read on the coarse grid with a small margin, invalid pixels are filled
    locally, and it is brought onto the PAN grid by cubic convolution
    (:func:`ssdiff_cli.filters.upsample_cubic`); a PAN pixel is MS-valid when the coarse pixel
    it lies in is. ``fill_values`` is ``(ms_band_means, pan_mean)`` from the scene statistics:
    the value far from any valid pixel, so fills never depend on the tile. ``lms_out``
    (float32 ``(C, height, width)``), when given, receives the lms instead of a new array.
    """
    r = spec.ratio
    if row % r or col % r or height % r or width % r:
        raise ValueError(f"window {row},{col},{height}x{width} not aligned to the ratio {r}")
    reader = reader_for(spec)
    pan, pan_valid = reader.read_pan(row, col, height, width)
    # Read enough coarse margin that the hole fill near the window's edge sees what a larger
    # window would see (tile invariance), then keep only the interpolator's margin.
    m, extra = _CUBIC_MARGIN, FILL_ITERATIONS
    big = m + extra
    ms_means, pan_mean = fill_values
    inner = (slice(m, -m), slice(m, -m))
    sub = spec.ms_subpixel
    ms = ms_valid = None
    if sub is None or want_ms:
        ms, ms_valid = _filled(reader.read_coarse_ms(row // r - big, col // r - big,
                                                     height // r + 2 * big, width // r + 2 * big),
                               ms_means, extra)
    rows, cols = (m * r, m * r + height), (m * r, m * r + width)
    if sub is None:
        lms = filters.upsample(ms, r, rows=rows, cols=cols, out=lms_out, kernel=spec.resampling)
    else:  # the MS's own grid, upsampled with the sub-pixel phase: one resampling pass
        ms_ = m + 1  # the phase moves the kernel's support up to one coarse pixel further
        own, _ = _filled(reader.read_ms(sub[0] + row // r - ms_ - extra,
                                        sub[1] + col // r - ms_ - extra,
                                        height // r + 2 * (ms_ + extra),
                                        width // r + 2 * (ms_ + extra)), ms_means, extra)
        lms = filters.upsample(own, r, rows=(ms_ * r, ms_ * r + height),
                               cols=(ms_ * r, ms_ * r + width), out=lms_out,
                               kernel=spec.resampling, phase=(sub[2], sub[3]))
    if spec.ms_offset is not None:
        valid = pan_valid & np.repeat(np.repeat(ms_valid[inner], r, axis=0), r, axis=1)
    else:
        valid = pan_valid & reader.read_ms_valid(row, col, height, width)
    pan = fill_invalid(pan, pan_valid, pan_mean)
    return TileData(pan=pan, lms=lms, valid=valid, row=row, col=col,
                    ms=np.ascontiguousarray(ms[:, inner[0], inner[1]]) if want_ms else None)


def _filled(ms: np.ndarray, means: np.ndarray, extra: int) -> tuple[np.ndarray, np.ndarray]:
    """Invalid (NaN) pixels of ``ms`` filled locally, then ``extra`` pixels cropped off each
    side; with the validity of what is kept."""
    valid = np.all(np.isfinite(ms), axis=0)
    if not valid.all():
        ms = fill_invalid(ms, valid, means)
    return ms[:, extra:-extra, extra:-extra], valid[extra:-extra, extra:-extra]


# --------------------------------------------------------------------------------------------
# Scene-wide samples (for statistics computed once per scene)


@dataclass(frozen=True)
class SceneSample:
    """A decimated view of the whole scene on (a coarsening of) the coarse grid.

    ``pan`` is the PAN averaged onto the sample grid, ``ms`` the MS on it, ``valid`` where both
    are valid; ``factor`` is how many output-grid pixels one sample pixel spans.
    """

    pan: np.ndarray
    ms: np.ndarray
    valid: np.ndarray
    factor: int


def scene_sample(spec: SceneSpec, max_side: int = 1024) -> SceneSample:
    """Read the scene decimated to at most ``max_side`` pixels a side (memory stays bounded)."""
    coarse = spec.coarse
    extra = max(1, math.ceil(max(coarse.width, coarse.height) / max_side))
    h, w = math.ceil(coarse.height / extra), math.ceil(coarse.width / extra)
    factor = spec.ratio * extra
    reader = reader_for(spec)
    _check_sample_source(reader.pan, spec.pan_path, "PAN", max_side)
    for path in ms_files(spec):
        with rasterio.open(path) as ds:
            _check_sample_source(ds, path, "MS", max_side)
    ms_what = ", ".join(ms_files(spec))
    ms = read_window(reader.coarse_vrt, ms_what, Window(0, 0, coarse.width, coarse.height),
                     out_shape=(spec.bands, h, w), resampling=Resampling.average)
    # PAN averaged over each sample cell: read the overlapping dataset window decimated.
    r0, c0 = spec.pan_offset
    rows, cols = h * factor, w * factor
    pan = np.full((h, w), np.nan, dtype=np.float32)
    pan_valid = np.zeros((h, w), dtype=bool)
    rr0, cc0 = max(r0, 0), max(c0, 0)
    rr1, cc1 = min(r0 + rows, reader.pan.height), min(c0 + cols, reader.pan.width)
    # Only whole sample cells inside the dataset.
    cr0, cc0_ = math.ceil((rr0 - r0) / factor), math.ceil((cc0 - c0) / factor)
    cr1, cc1_ = (rr1 - r0) // factor, (cc1 - c0) // factor
    if cr1 > cr0 and cc1_ > cc0_:
        win = Window(c0 + cc0_ * factor, r0 + cr0 * factor, (cc1_ - cc0_) * factor,
                     (cr1 - cr0) * factor)
        shape = (cr1 - cr0, cc1_ - cc0_)
        data = read_window(reader.pan, spec.pan_path, win, indexes=1, out_shape=shape,
                           resampling=Resampling.average)
        mask = read_mask_window(reader.pan, spec.pan_path, win, indexes=1, out_shape=shape,
                                resampling=Resampling.nearest) > 0
        pan[cr0:cr1, cc0_:cc1_] = data
        pan_valid[cr0:cr1, cc0_:cc1_] = mask & np.isfinite(data)
    valid = pan_valid & np.all(np.isfinite(ms), axis=0)
    if spec.ms_nodata is not None:
        valid &= np.all(ms != spec.ms_nodata, axis=0)
    return SceneSample(pan=pan, ms=ms, valid=valid, factor=factor)


def ms_maximum(spec: SceneSpec, rows_per_read: int = 256) -> float:
    """The largest valid MS value over the whole MS file(s), read in strips (bounded memory)."""
    best = -math.inf
    what = ", ".join(ms_files(spec))
    with rasterio.open(spec.ms_vrt) as ds:
        for r0 in range(0, ds.height, rows_per_read):
            win = Window(0, r0, ds.width, min(rows_per_read, ds.height - r0))
            data = read_window(ds, what, win, masked=True)
            if data.count():
                best = max(best, float(data.max()))
    return best


def _check_sample_source(ds, path: str, role: str, max_side: int) -> None:
    """Refuse, naming the file, a raster too large to decimate for the scene sample without
    overviews (GDAL would read every full-resolution pixel: minutes, and memory, per gigapixel)."""
    pixels = ds.width * ds.height
    if pixels <= SAMPLE_SOURCE_MAX_PIXELS:
        return
    levels = ds.overviews(1)
    if levels and pixels / max(levels) ** 2 <= SAMPLE_SOURCE_MAX_PIXELS:
        return
    raise BadInputError(
        f"{path}: {role} is {ds.width}x{ds.height} px without overviews small enough to sample it "
        f"(limit {SAMPLE_SOURCE_MAX_PIXELS / 1e9:.1f} Gpx read at full resolution); add overviews "
        f"first (gdaladdo -r average {path})")


# --------------------------------------------------------------------------------------------
# Scene preparation (sensor detection, opening, the scene sample)


def prepare_scene(pan: str | Path, ms: list, sensor: str | None = None,
                  extent: str = "intersection", with_sample: bool = True,
                  bands: list[int] | None = None, nodata: float | str | None = None,
                  resampling: str = "cubic", bit_depth: int | None = None,
                  ms_shift: tuple[float, float] | None = None,
                  ) -> tuple[Scene, Detection, SceneSample | None]:
    """Detect the sensor, open the pair and read the decimated scene sample (unless
    ``with_sample`` is false: the sample is then ``None``, and reading it, a pass over the whole
    PAN, is saved). ``bands``, ``nodata`` and ``resampling`` are :func:`scene.open_pair`'s;
    ``bit_depth`` overrides the detected one (otherwise values above the preset's bit depth
    raise it, with a warning: see :func:`check_bit_depth`); ``ms_shift`` moves the MS grid to
    correct a measured shift (``--coregister``)."""
    ms = [ms] if isinstance(ms, (str, Path)) else list(ms)
    pan = dataset_name(pan)
    ms, selection = ms_band_selection(ms, bands)
    for path in [pan, *ms]:
        if not path.exists():
            raise BadInputError(f"{path}: file does not exist")
    detection = detect_sensor(pan, ms, override=sensor if not selection else None)
    if selection:
        detection = _select_bands(detection, selection, sensor, pan, ms)
    scene = open_pair(pan, ms, extent=extent, expected_bands=detection.preset.n_bands,
                      bands=selection, nodata=nodata, resampling=resampling, ms_shift=ms_shift)
    if scene.bands != detection.preset.n_bands:
        raise BadInputError(
            f"{ms[0]}: {scene.bands} MS bands, but sensor {detection.preset.name} has "
            f"{detection.preset.n_bands}"
        )
    if bit_depth is not None:
        detection.bit_depth = bit_depth
        detection.notes.append(f"bit depth {bit_depth} from --bit-depth")
    if not with_sample:
        return scene, detection, None
    sample = scene_sample(scene.spec)
    if not sample.valid.any():
        raise BadInputError(f"{pan}: no pixel is valid in both the PAN and the MS")
    if bit_depth is None:
        check_bit_depth(scene, detection, sample)
    return scene, detection, sample


def _select_bands(detection: Detection, selection: list[int], sensor: str | None, pan, ms
                  ) -> Detection:
    """The detection for a band selection: the sensor's preset restricted to those bands when it
    describes the whole file, else (or with ``--sensor``, which then names the selection's
    layout) the preset detected for the selected bands themselves."""
    if max(selection) > detection.ms_bands:
        raise BadInputError(f"{ms[0]}: band selection {selection} outside 1..{detection.ms_bands}")
    if sensor is not None:
        preset = fit_band_count(get_preset(sensor), len(selection))
        if preset is None:
            raise SensorMismatchError(f"sensor {sensor} does not have {len(selection)} bands")
        detection.preset = preset
        detection.source, detection.reason = "override", f"sensor {preset.name} given explicitly"
        return detection
    detection.preset = select_preset_bands(detection.preset, [b - 1 for b in selection],
                                           detection.ms_bands, detection.ratio, detection.bit_depth)
    detection.reason += f"; bands {','.join(map(str, selection))} selected"
    return detection


def check_bit_depth(scene: Scene, detection: Detection, sample: SceneSample) -> None:
    """Raise ``detection.bit_depth`` to what the MS data needs when its values exceed the
    preset's range (a warning says so), rather than clipping them later."""
    bits = detection.bit_depth
    dtype = np.dtype(scene.spec.ms_dtype)
    if not bits or dtype.kind not in "ui" or bits >= dtype.itemsize * 8:
        return
    if not sample.valid.any() or float(np.nanmax(sample.ms[:, sample.valid])) <= 2**bits - 1:
        return
    top = ms_maximum(scene.spec)
    needed = min(max(bits, math.ceil(math.log2(top + 1))), dtype.itemsize * 8)
    message = (f"{scene.ms_paths[0]}: values reach {top:g}, above the {bits}-bit range of the "
               f"{detection.preset.name} preset; using {needed} bits from the data "
               "(--bit-depth sets it)")
    detection.bit_depth = needed
    detection.notes.append(message)
    warnings.warn(message, BitDepthWarning, stacklevel=3)


def fill_values(sample: SceneSample) -> tuple[np.ndarray, float]:
    """Per-band MS means and the PAN mean over valid sample pixels (far-from-data fill)."""
    ms_means = sample.ms[:, sample.valid].mean(axis=1).astype(np.float32)
    return ms_means, float(sample.pan[sample.valid].mean())
