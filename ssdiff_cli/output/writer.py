"""Writing the fused scene: tile writes into a hidden working GeoTIFF, the checks before
publishing, COG translation and the atomic move.

Nothing appears at the output path until the COG is complete: tiles go to a hidden working
GeoTIFF beside the destination, which GDAL's COG driver translates (overviews, compression,
BigTIFF when needed; or a plain GeoTIFF with ``-of GTiff``) into a second hidden file that is
then renamed into place. ``-`` as the output streams a GeoTIFF that GDAL can read from a pipe
to stdout instead (:mod:`ssdiff_cli.output.stream`). Outputs without a nodata value carry an
internal mask; the preset's RGB bands are marked red, green and blue. An output that is all
nodata, NaN or constant where the MS is not is refused, not published.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import uuid
import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio._err import CPLE_BaseError
from rasterio.enums import ColorInterp

from ssdiff_cli.errors import DegenerateOutputError, OutputError, UsageError
from ssdiff_cli.files import umask_mode
from ssdiff_cli.gdal_formats import translate_options
from ssdiff_cli.output.destination import OutputTarget, publish_file
from ssdiff_cli.output.spec import OutputSpec, to_output_dtype
from ssdiff_cli.output.stream import stream_to_stdout, write_streamable
from ssdiff_cli.output.translate import translate
from ssdiff_cli.output.workfiles import (
    _HOST,
    c_stderr_held,
    check_free_space,
    disk_error,
    remove_stale_work_files,
    work_stem,
)


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
        name = "stdout" if target.streamed else Path(os.path.realpath(target.path)).name
        self.stem = work_stem(name)
        self.tag = f"{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.folder = target.work_dir()
        self.work_path = self.folder / f".{self.stem}.{self.tag}.work.tif"
        self.cog_path = self.folder / f".{self.stem}.{self.tag}.cog.tif"
        self._ds = None
        #: Per band, over valid pixels: count, non-finite count, min and max of what was written.
        self._count = 0
        self._nonfinite = np.zeros(spec.bands, np.int64)
        self._lo = np.full(spec.bands, np.inf)
        self._hi = np.full(spec.bands, -np.inf)
        #: ... and the range of the results before the output type's range clipped them.
        self._raw_lo = np.full(spec.bands, np.inf)
        self._raw_hi = np.full(spec.bands, -np.inf)

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
        if not self.target.streamed:
            remove_stale_work_files(self.folder, self.stem)
        check_free_space(self.target.path, self.folder,
                         s.width * s.height * s.bands * np.dtype(s.dtype).itemsize)
        try:
            self._create(profile)
        except BaseException:
            # A signal (or error) between creating the file and entering the block: __exit__
            # would not run, so clean up here.
            self.__exit__(*sys.exc_info())
            raise
        return self

    def _create(self, profile: dict) -> None:
        """Create the working GeoTIFF with its band names, colour interpretation and tags."""
        s = self.spec
        try:
            with warnings.catch_warnings(), rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                self._ds = rasterio.open(self.work_path, "w", **profile)
        except rasterio.errors.RasterioIOError as exc:
            raise self._write_error(exc) or OutputError(
                f"{self.target.path}: cannot create the output in {self.folder} "
                f"({str(exc).strip().splitlines()[0] if str(exc).strip() else exc})") from None
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

    def write(self, row: int, col: int, data: np.ndarray, valid: np.ndarray) -> None:
        """Write a region: clip to the value range, round integers, nodata (or the mask, when
        the output has no nodata value) where invalid."""
        out = to_output_dtype(data, valid, self.spec)
        self._track(data, out, valid)
        window = rasterio.windows.Window(col, row, out.shape[2], out.shape[1])
        try:
            # Not on a terminal: the progress bar also writes to fd 2 there.
            with c_stderr_held() if not sys.stderr.isatty() else contextlib.nullcontext():
                self._ds.write(out, window=window)
                if self.spec.nodata is None:
                    self._ds.write_mask(np.where(valid, 255, 0).astype(np.uint8), window=window)
        except (rasterio.errors.RasterioError, OSError) as exc:
            raise self._write_error(exc) or exc from None

    def _track(self, data: np.ndarray, out: np.ndarray, valid: np.ndarray) -> None:
        """Keep what :meth:`check_result` needs: per band, non-finite results and the range of
        the written values over valid pixels."""
        if valid.all():
            d, w = data.reshape(data.shape[0], -1), out.reshape(out.shape[0], -1)
        else:
            d, w = data[:, valid], out[:, valid]
        if not d.shape[1]:
            return
        self._count += d.shape[1]
        self._nonfinite += d.shape[1] - np.count_nonzero(np.isfinite(d), axis=1)
        # fmin/fmax skip NaN (a float output's NaN results are counted above).
        self._lo = np.fmin(self._lo, np.fmin.reduce(w, axis=1).astype(np.float64))
        self._hi = np.fmax(self._hi, np.fmax.reduce(w, axis=1).astype(np.float64))
        if w.dtype.kind in "iu":  # only integer types clip
            self._raw_lo = np.fmin(self._raw_lo, np.fmin.reduce(d, axis=1).astype(np.float64))
            self._raw_hi = np.fmax(self._raw_hi, np.fmax.reduce(d, axis=1).astype(np.float64))

    def check_result(self, input_varies: np.ndarray | None = None) -> None:
        """Refuse to publish an output that is all nodata, has a band that is all NaN, or a band
        that is constant where the input band (``input_varies``, per band) is not."""
        where = self.target.path
        if self._count == 0:
            raise DegenerateOutputError(f"{where}: the result is all nodata; not written")
        for b in range(self.spec.bands):
            if self._nonfinite[b] == self._count:
                raise DegenerateOutputError(
                    f"{where}: band {b + 1} of the result is all NaN (a model or weights "
                    "producing no number?); not written")
        varies = np.ones(self.spec.bands, bool) if input_varies is None else np.asarray(input_varies)
        flat = [b + 1 for b in range(self.spec.bands) if varies[b] and self._lo[b] >= self._hi[b]]
        clipped = [b for b in flat if self._raw_lo[b - 1] < self._raw_hi[b - 1]]
        if clipped:  # the results varied; the output type's range made them constant
            raise DegenerateOutputError(
                f"{where}: band(s) {', '.join(map(str, clipped))} of the result are constant "
                f"({self._lo[clipped[0] - 1]:g}): every value lies outside the range of the output "
                f"type {self.spec.dtype} and was clipped to it (pass --scale, or a wider "
                "--dtype); not written")
        if flat:
            raise DegenerateOutputError(
                f"{where}: band(s) {', '.join(map(str, flat))} of the result are constant "
                f"({self._lo[flat[0] - 1]:g}) where the MS varies (zero weights, a broken model?); "
                "not written")

    def _write_error(self, exc: BaseException) -> OutputError | None:
        """A full disk, recognised by the error or by less room left than the rest of the work
        file needs (a block write that failed leaves the last few MB free)."""
        try:
            done = os.stat(self.work_path).st_blocks * 512
        except OSError:
            done = 0
        full = self.spec.width * self.spec.height * self.spec.bands * np.dtype(self.spec.dtype).itemsize
        return disk_error(self.target.path, exc, self.folder, max(2**20, full - done))

    def _gdal_message(self, exc: BaseException) -> str:
        """GDAL's message, first line, with this run's hidden file names taken out."""
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        hidden = re.escape(str(self.folder / f".{self.stem}.{self.tag}.")) + r"[\w.]*:?\s*"
        return re.sub(hidden, "", text)

    def publish(self) -> None:
        """Translate the working file to a COG and move it into place (or stream it)."""
        try:
            with c_stderr_held():
                self._ds.close()
        except (rasterio.errors.RasterioError, OSError) as exc:
            raise self._write_error(exc) or exc from None
        finally:
            self._ds = None
        fmt = self.target.resolved_format()
        driver, options = translate_options(fmt, self.compress, self.spec.dtype,
                                            self.creation_options)
        try:
            with c_stderr_held():
                if driver == "stream":
                    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
                        write_streamable(self.work_path, self.cog_path, options)
                else:  # stoppable by a signal: a large scene's translation takes minutes
                    translate(self.work_path, self.cog_path, driver, options,
                              config={"GDAL_TIFF_INTERNAL_MASK": True})
        except Exception as exc:  # GDAL's CPLE_* errors are not RasterioError subclasses
            # The COG (with overviews) is at most about 4/3 of the uncompressed work file.
            needed = self.work_path.stat().st_size * 4 // 3 if self.work_path.exists() else 2**20
            full = disk_error(self.target.path, exc, self.folder, needed)
            if full is not None:
                raise full from None
            if self.creation_options and isinstance(exc, (rasterio.errors.RasterioError,
                                                          CPLE_BaseError)):
                given = " ".join(f"--co {k}={v}" for k, v in self.creation_options.items())
                raise UsageError(f"{self.target.path}: GDAL's {driver} driver refused {given} "
                                 f"({self._gdal_message(exc)})") from None
            raise
        self.work_path.unlink()
        if self.target.to_stdout:
            self.reader_closed_early = not stream_to_stdout(self.cog_path)
            self.cog_path.unlink()
        else:
            umask_mode(self.cog_path)
            try:
                publish_file(self.cog_path, self.target.path, self.target.overwrite)
            except OSError as exc:
                raise self._write_error(exc) or exc from None

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._ds is not None:
            try:
                with c_stderr_held():
                    self._ds.close()
            except Exception:
                if exc is None:
                    raise
            finally:
                self._ds = None
        # Everything of this run: work and COG files and GDAL's side files (.aux.xml, .ovr.tmp).
        prefix = f".{self.stem}.{self.tag}."
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.folder):
                if entry.name.startswith(prefix):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)

