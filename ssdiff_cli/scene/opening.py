"""Opening a PAN + MS pair (:func:`open_pair`): validating the files (format, bands, data type,
CRS, georeferencing), stacking the MS bands in a VRT, and working out the output grid.
"""

from __future__ import annotations

import os
import warnings
from xml.sax.saxutils import escape

import rasterio
from affine import Affine
from rasterio.enums import ColorInterp
from rasterio.errors import RasterioIOError

from ssdiff_cli import filters
from ssdiff_cli.errors import BadInputError, GridMismatchError, NotGeoreferencedWarning
from ssdiff_cli.gdal_names import DatasetName, dataset_name
from ssdiff_cli.scene.grid import (
    Grid,
    Scene,
    SceneSpec,
    output_grid,
    subpixel_offset,
    whole_pixel_offset,
    whole_ratio,
)


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
        raise BadInputError(f"{path}: not a raster GDAL can read ({first_line(exc)})") from None
    complex_types = [t for t in ds.dtypes if "complex" in t]
    if complex_types:
        ds.close()
        raise BadInputError(f"{path}: {role} has complex values ({complex_types[0]}); "
                            "give real-valued imagery (e.g. its amplitude)")
    return ds


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (GDAL's can run on), for one-line errors."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _is_georeferenced(ds) -> bool:
    return ds.crs is not None or ds.transform != Affine.identity() or bool(ds.gcps[0])


def _why_no_crs(path: DatasetName) -> str:
    """What a file that counts as georeferenced but has no CRS holds instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(str(path)) as ds:
            if ds.gcps[0] and ds.transform == Affine.identity():
                return ("is georeferenced by ground control points only, with no geotransform; "
                        "warp it onto a grid first (gdalwarp)")
    return "has a geotransform but no CRS"


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
            raise GridMismatchError(f"{missing}: {_why_no_crs(missing)}")
        if not rasterio.crs.CRS.from_user_input(pan_crs) == rasterio.crs.CRS.from_user_input(ms_crs):
            raise GridMismatchError(
                f"{ms_list[0]}: CRS {ms_crs} differs from the PAN's {pan_crs}; "
                "reproject one of them first (gdalwarp -t_srs)"
            )
        if ms_transform.b or ms_transform.d:
            raise GridMismatchError(f"{ms_list[0]}: rotated geotransforms are not supported")
        rx = abs(ms_transform.a) / abs(pan_grid.transform.a)
        ry = abs(ms_transform.e) / abs(pan_grid.transform.e)
        ratio = whole_ratio(rx, ry, ms_list[0])
        pan_src = ms_src = None
    else:
        warnings.warn(
            f"{pan_path.name} and {ms_list[0].name} carry no georeferencing: ratio taken from the "
            "sizes, grids aligned at the upper-left corner",
            NotGeoreferencedWarning,
            stacklevel=2,
        )
        notes.append("not georeferenced: grids assumed aligned at the upper-left corner")
        ratio = whole_ratio(pan_grid.width / ms_w, pan_grid.height / ms_h, ms_list[0])
        pan_src = Affine.identity()
        ms_src = Affine.scale(ratio)
        pan_grid = Grid(pan_src, pan_grid.width, pan_grid.height, None)
        ms_transform = ms_src

    # The output grid comes from the footprints as the files give them, so that a registration
    # correction never changes it (it stays exactly on the PAN grid, same size and origin).
    out, offset = output_grid(pan_grid, Grid(ms_transform, ms_w, ms_h, ms_crs), extent,
                              ms_list[0], pan_path)
    if ms_shift is not None:  # move the MS content by (-dy, -dx) PAN pixels
        dy, dx = ms_shift
        step = pan_grid.transform
        ms_transform = Affine.translation(-dx * step.a, -dy * step.e) * ms_transform
        if not ms_geo:
            ms_src = ms_transform
    ms_grid = Grid(ms_transform, ms_w, ms_h, ms_crs)
    vrt = _ms_vrt_xml(
        sources, ms_w, ms_h, ms_dtype, ms_nodata,
        ms_transform if ms_geo else None, ms_crs,
    )
    whole = whole_pixel_offset(out, ratio, ms_grid)
    spec = SceneSpec(
        ms_offset=whole,
        ms_subpixel=None if whole is not None else subpixel_offset(out, ratio, ms_grid),
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
        ms_shift=None if ms_shift is None else (float(ms_shift[0]), float(ms_shift[1])),
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

