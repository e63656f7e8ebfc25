"""Writing the fused scene: checks before work, tile writes, COG translation, atomic move.

Nothing appears at the output path until the COG is complete: tiles go to a hidden working
GeoTIFF beside the destination, which GDAL's COG driver translates (overviews, compression,
BigTIFF when needed) into a second hidden file that is then renamed into place. ``-`` as the
output streams the finished COG to stdout instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine

from ssdiff_cli.errors import BadInputError, OutputError

#: COG creation options; one registry entry per profile, returned as copies.
COG_PROFILES = {
    # Level 1: on imagery with a predictor it compresses as well as 6 at two thirds of the time.
    "deflate": {"COMPRESS": "DEFLATE", "PREDICTOR": "YES", "LEVEL": "1"},
    "lzw": {"COMPRESS": "LZW", "PREDICTOR": "YES"},
    "zstd": {"COMPRESS": "ZSTD", "PREDICTOR": "YES"},
    "none": {"COMPRESS": "NONE"},
}


def cog_profile(name: str) -> dict:
    """A copy of the named COG creation options (``deflate`` default)."""
    try:
        return dict(COG_PROFILES[name.lower()])
    except KeyError:
        raise BadInputError(
            f"unknown compression {name!r}; choose one of {', '.join(COG_PROFILES)}"
        ) from None


@dataclass(frozen=True)
class OutputTarget:
    """Where the result goes: a path, or stdout when ``path`` is ``-``."""

    path: str
    overwrite: bool = False

    @property
    def to_stdout(self) -> bool:
        """True for ``-o -``."""
        return self.path == "-"

    def check(self) -> None:
        """Refuse before any work: existing output without overwrite, unwritable folder."""
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

    transform: Affine
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


class TileWriter:
    """Writes blended regions into a hidden working GeoTIFF, then publishes a COG.

    Use as a context manager; on an exception every working file is removed and nothing is
    published.
    """

    def __init__(self, target: OutputTarget, spec: OutputSpec, compress: str = "deflate"):
        self.target = target
        self.spec = spec
        self.compress = compress
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
            "transform": s.transform,
            "nodata": s.nodata,
            "tiled": True,
            "blockxsize": 512,
            "blockysize": 512,
            "BIGTIFF": "IF_SAFER",
            "interleave": "pixel" if s.bands <= 4 else "band",
            # Spectral bands, not RGB(A): keep GDAL from calling a 4th band "alpha".
            "photometric": "MINISBLACK",
        }
        if s.crs:
            profile["crs"] = s.crs
        try:
            self._ds = rasterio.open(self.work_path, "w", **profile)
        except rasterio.errors.RasterioIOError as exc:
            raise OutputError(f"{self.work_path.parent}: cannot create the output ({exc})") from None
        for i, name in enumerate(s.band_names, start=1):
            self._ds.set_band_description(i, name)
        if s.tags:
            self._ds.update_tags(**{k: str(v) for k, v in s.tags.items()})
        return self

    def write(self, row: int, col: int, data: np.ndarray, valid: np.ndarray) -> None:
        """Write a region: clip to the value range, round integers, nodata where invalid."""
        out = to_output_dtype(data, valid, self.spec)
        window = rasterio.windows.Window(col, row, out.shape[2], out.shape[1])
        self._ds.write(out, window=window)

    def publish(self) -> None:
        """Translate the working file to a COG and move it into place (or stream it)."""
        self._ds.close()
        self._ds = None
        options = cog_profile(self.compress)
        options.update({"BIGTIFF": "IF_SAFER", "OVERVIEWS": "AUTO", "BLOCKSIZE": "512",
                        "NUM_THREADS": "ALL_CPUS", "OVERVIEW_RESAMPLING": "AVERAGE"})
        if np.dtype(self.spec.dtype).kind == "f":
            options["PREDICTOR"] = "FLOATING_POINT" if options.get("PREDICTOR") else None
        options = {k: v for k, v in options.items() if v is not None}
        rasterio.shutil.copy(self.work_path, self.cog_path, driver="COG", **options)
        self.work_path.unlink()
        if self.target.to_stdout:
            with open(self.cog_path, "rb") as fh:
                shutil.copyfileobj(fh, sys.stdout.buffer)
            sys.stdout.buffer.flush()
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
