"""Streams: GDAL's streamable GeoTIFF layout (readable from a pipe) and copying a finished file
to stdout (``-o -``; :mod:`ssdiff_cli.gdal_formats` chooses the options)."""

from __future__ import annotations

import os
import shutil
import struct
import sys
import warnings
from pathlib import Path

import rasterio

from ssdiff_cli.errors import OutputError


def write_streamable(src_path: Path, dst_path: Path, options: dict,
                     rows_per_write: int = 256) -> None:
    """Copy a GeoTIFF into GDAL's streamable layout (IFD at offset 8, uncompressed strips in
    order), which GDAL reads from a pipe (``/vsistdin/``).

    GDAL moves the IFD to the end of the file when the metadata it holds outgrow the room left
    for them, and when a mask or a colour interpretation is set (both are written after the
    data), so a stream has neither, and keeps band descriptions and tags only when they fit:
    the file is checked and written again with less until it streams."""
    for keep in (("descriptions", "tags"), ("tags",), ()):
        _write_in_order(src_path, dst_path, options, rows_per_write, keep)
        if ifd_follows_header(dst_path):
            return
    raise OutputError(f"{dst_path}: GDAL did not write a streamable GeoTIFF")


def ifd_follows_header(path: Path) -> bool:
    """Whether a TIFF's first IFD directly follows its header (offset 8, or 16 for a BigTIFF):
    the layout GDAL's streaming reader requires."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None or len(head) < 16:
        return False
    magic = struct.unpack(order + "H", head[2:4])[0]
    if magic == 42:
        return struct.unpack(order + "I", head[4:8])[0] == 8
    return magic == 43 and struct.unpack(order + "Q", head[8:16])[0] == 16


def _write_in_order(src_path: Path, dst_path: Path, options: dict, rows_per_write: int,
                    keep: tuple[str, ...]) -> None:
    with rasterio.open(src_path) as src:
        profile = {"driver": "GTiff", "width": src.width, "height": src.height,
                   "count": src.count, "dtype": src.dtypes[0], "nodata": src.nodata,
                   "interleave": "pixel", "photometric": "MINISBLACK", **options}
        if src.crs is not None or not src.transform.is_identity:
            profile.update(crs=src.crs, transform=src.transform)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            dst = rasterio.open(dst_path, "w", **profile)
        with dst:
            if "descriptions" in keep:
                for i, name in enumerate(src.descriptions, start=1):
                    if name:
                        dst.set_band_description(i, name)
            if "tags" in keep:
                # AREA_OR_POINT (Area, the default) would rewrite the GeoTIFF keys after the data.
                dst.update_tags(**{k: v for k, v in src.tags().items() if k != "AREA_OR_POINT"})
            strip = dst.block_shapes[0][0]  # whole strips, in order, or the layout breaks
            step = max(1, rows_per_write // strip) * strip
            for r0 in range(0, src.height, step):
                window = rasterio.windows.Window(0, r0, src.width, min(step, src.height - r0))
                dst.write(src.read(window=window), window=window)


def stream_to_stdout(path: Path) -> bool:
    """Copy a finished file to stdout. A reader that closes the pipe early (``gdalinfo`` reads
    only the header) is not an error: the rest is dropped quietly, and stdout is pointed at
    ``/dev/null`` so that Python's own flush at exit does not complain either. Returns False
    when the reader closed early."""
    try:
        with open(path, "rb") as fh:
            shutil.copyfileobj(fh, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return False
    return True
