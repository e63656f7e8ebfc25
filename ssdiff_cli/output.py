"""Writing the fused scene: checks before work, tile writes, COG translation, atomic move.

Nothing appears at the output path until the COG is complete: tiles go to a hidden working
GeoTIFF beside the destination, which GDAL's COG driver translates (overviews, compression,
BigTIFF when needed; or a plain GeoTIFF with ``-of GTiff``) into a second hidden file that is
then renamed into place. ``-`` as the output streams a GeoTIFF that GDAL can read from a pipe
to stdout instead (:mod:`ssdiff_cli.gdal_formats`). Outputs without a nodata value carry an
internal mask; the preset's RGB bands are marked red, green and blue.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import sys
import tempfile
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.enums import ColorInterp

from ssdiff_cli.errors import OutputError, UsageError
from ssdiff_cli.gdal_formats import resolve_format, translate_options


@dataclass(frozen=True)
class OutputTarget:
    """Where the result goes: a path, or stdout when ``path`` is ``-``."""

    path: str
    overwrite: bool = False
    #: ``-of``: COG or GTiff (None: COG for a file, the streamable GeoTIFF for ``-``).
    format: str | None = None

    @property
    def to_stdout(self) -> bool:
        """True for ``-o -``."""
        return self.path == "-"

    def check(self) -> None:
        """Refuse before any work: a name the format cannot have, existing output without
        overwrite, unwritable folder."""
        resolve_format(self.path, self.format)
        if self.to_stdout:
            if sys.stdout.isatty():
                raise OutputError("-: refusing to write a GeoTIFF to a terminal; redirect stdout")
            return
        path = Path(self.path)
        if path.is_dir():
            raise OutputError(f"{path}: is a folder; give a file name for the output")
        if path.exists() and not self.overwrite:
            raise OutputError(f"{path}: already exists; pass --overwrite to replace it")
        folder = path.resolve().parent
        if not folder.is_dir():
            raise OutputError(f"{path}: folder {folder} does not exist")
        try:  # try for real: access() says yes to root even on read-only mounts
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".ssdiff-probe-"):
                pass
        except OSError:
            raise OutputError(f"{path}: folder {folder} is not writable") from None

    def work_dir(self) -> Path:
        """Folder for the hidden working files (beside the output, so the move is a rename)."""
        if self.to_stdout:
            return Path(tempfile.gettempdir())
        return Path(self.path).resolve().parent


def value_range(dtype: str, bit_depth: int | None = None) -> tuple[float, float]:
    """Valid value range of an output type (integers limited to ``bit_depth`` bits if given)."""
    dt = np.dtype(dtype)
    if dt.kind in "ui":
        info = np.iinfo(dt)
        hi = float(info.max)
        if bit_depth and dt.kind == "u" and bit_depth < dt.itemsize * 8:
            hi = float(2**bit_depth - 1)
        return float(info.min), hi
    return float(np.finfo(dt).min), float(np.finfo(dt).max)


@dataclass
class OutputSpec:
    """Grid and radiometry of the output file."""

    transform: Affine | None  # None: not georeferenced
    width: int
    height: int
    crs: str | None
    dtype: str
    bands: int
    nodata: float | None
    band_names: list[str]
    value_min: float
    value_max: float
    tags: dict = field(default_factory=dict)
    #: 0-based bands shown as red, green, blue (colour interpretation); None: none set.
    rgb: tuple[int, int, int] | None = None
    #: ``(gain, offset)`` applied before clipping (``--scale``); None: values kept.
    scale: tuple[float, float] | None = None


class TileWriter:
    """Writes blended regions into a hidden working GeoTIFF, then publishes a COG.

    Use as a context manager; on an exception every working file is removed and nothing is
    published.
    """

    def __init__(self, target: OutputTarget, spec: OutputSpec, compress: str = "deflate",
                 creation_options: dict | None = None):
        self.target = target
        self.spec = spec
        self.compress = compress
        self.creation_options = creation_options or {}
        #: ``-o -`` only: the reader closed the pipe before the end (not an error).
        self.reader_closed_early = False
        token = uuid.uuid4().hex[:8]
        name = "stdout" if target.to_stdout else Path(target.path).name
        folder = target.work_dir()
        self.work_path = folder / f".{name}.{token}.work.tif"
        self.cog_path = folder / f".{name}.{token}.cog.tif"
        self._ds = None

    def __enter__(self) -> TileWriter:
        s = self.spec
        profile = {
            "driver": "GTiff",
            "width": s.width,
            "height": s.height,
            "count": s.bands,
            "dtype": s.dtype,
            "nodata": s.nodata,
            "tiled": True,
            "blockxsize": 512,
            "blockysize": 512,
            "BIGTIFF": "IF_SAFER",
            "interleave": "pixel" if s.bands <= 4 else "band",
            # Spectral bands, not RGB(A): keep GDAL from calling a 4th band "alpha".
            "photometric": "MINISBLACK",
        }
        if s.transform is not None:  # a non-georeferenced output stays so
            profile["transform"] = s.transform
        if s.crs:
            profile["crs"] = s.crs
        try:
            with warnings.catch_warnings(), rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                self._ds = rasterio.open(self.work_path, "w", **profile)
        except rasterio.errors.RasterioIOError as exc:
            raise OutputError(f"{self.work_path.parent}: cannot create the output ({exc})") from None
        for i, name in enumerate(s.band_names, start=1):
            self._ds.set_band_description(i, name)
        if s.rgb is not None and s.bands >= 3 and len(set(s.rgb)) == 3:
            interp = [ColorInterp.undefined] * s.bands
            for i, colour in zip(s.rgb, (ColorInterp.red, ColorInterp.green, ColorInterp.blue)):
                interp[i] = colour
            if interp[0] == ColorInterp.undefined:  # band 1 stays grey, as MINISBLACK has it
                interp[0] = ColorInterp.gray
            self._ds.colorinterp = interp
        if s.tags:
            self._ds.update_tags(**{k: str(v) for k, v in s.tags.items()})
        return self

    def write(self, row: int, col: int, data: np.ndarray, valid: np.ndarray) -> None:
        """Write a region: clip to the value range, round integers, nodata (or the mask, when
        the output has no nodata value) where invalid."""
        out = to_output_dtype(data, valid, self.spec)
        window = rasterio.windows.Window(col, row, out.shape[2], out.shape[1])
        self._ds.write(out, window=window)
        if self.spec.nodata is None:
            self._ds.write_mask(np.where(valid, 255, 0).astype(np.uint8), window=window)

    def publish(self) -> None:
        """Translate the working file to a COG and move it into place (or stream it)."""
        self._ds.close()
        self._ds = None
        fmt = resolve_format(self.target.path, self.target.format)
        driver, options = translate_options(fmt, self.compress, self.spec.dtype,
                                            self.creation_options)
        try:
            with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
                if driver == "stream":
                    write_streamable(self.work_path, self.cog_path, options)
                else:
                    rasterio.shutil.copy(self.work_path, self.cog_path, driver=driver, **options)
        except rasterio.errors.RasterioIOError as exc:
            if not self.creation_options:
                raise
            raise UsageError(f"{self.target.path}: GDAL's {driver} driver failed with --co "
                             f"{self.creation_options} ({exc})") from None
        self.work_path.unlink()
        if self.target.to_stdout:
            self.reader_closed_early = not stream_to_stdout(self.cog_path)
            self.cog_path.unlink()
        else:
            if Path(self.target.path).exists() and not self.target.overwrite:
                raise OutputError(f"{self.target.path}: appeared while working; not replaced")
            os.replace(self.cog_path, self.target.path)

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._ds is not None:
            self._ds.close()
            self._ds = None
        for p in (self.work_path, self.cog_path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
            with contextlib.suppress(FileNotFoundError):
                Path(str(p) + ".aux.xml").unlink()


def to_output_dtype(data: np.ndarray, valid: np.ndarray, spec: OutputSpec) -> np.ndarray:
    """Clip, round and cast ``data`` (C, h, w); invalid pixels become nodata, and valid pixels
    that would equal the nodata value are nudged one step inside the range."""
    dt = np.dtype(spec.dtype)
    # In place and in float32: np.clip with Python-float bounds would promote to float64.
    out = np.array(data, dtype=np.float32, copy=True)
    if spec.scale is not None:
        gain, offset = spec.scale
        out *= np.float32(gain)
        out += np.float32(offset)
    np.maximum(out, np.float32(max(spec.value_min, np.finfo(np.float32).min)), out=out)
    np.minimum(out, np.float32(min(spec.value_max, np.finfo(np.float32).max)), out=out)
    if dt.kind in "ui":
        np.rint(out, out=out)
    out = out.astype(dt)
    if spec.nodata is not None:
        nd = dt.type(spec.nodata)
        if np.isnan(spec.nodata):
            out[:, ~valid] = np.nan
        else:
            step = 1 if dt.kind in "ui" else np.finfo(dt).eps * max(abs(float(nd)), 1.0)
            nudge = nd + step if nd < spec.value_max else nd - step
            collide = (out == nd) & valid[None]
            out[collide] = dt.type(nudge)
            out[:, ~valid] = nd
    return out


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
