"""Writing the fused scene: checks before work, tile writes, COG translation, atomic move.

Nothing appears at the output path until the COG is complete: tiles go to a hidden working
GeoTIFF beside the destination, which GDAL's COG driver translates (overviews, compression,
BigTIFF when needed; or a plain GeoTIFF with ``-of GTiff``) into a second hidden file that is
then renamed into place. ``-`` as the output streams a GeoTIFF that GDAL can read from a pipe
to stdout instead (:mod:`ssdiff_cli.gdal_formats`). Outputs without a nodata value carry an
internal mask; the preset's RGB bands are marked red, green and blue.

No path the tool writes ever resolves to an input (:func:`check_destination`); a FIFO or a
character device is written into, never replaced. Work files are named after the run
(``.NAME.HOST-PID-TOKEN.*``) so that a later run removes those a killed one left behind, and an
output that is all nodata, NaN or constant where the MS is not is refused, not published.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import socket
import stat
import struct
import sys
import tempfile
import uuid
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.enums import ColorInterp

from ssdiff_cli.errors import BadInputError, DegenerateOutputError, OutputError, UsageError
from ssdiff_cli.files import umask_mode
from ssdiff_cli.gdal_formats import resolve_format, translate_options


def _is_virtual(path: str) -> bool:
    return path == "-" or path.startswith("/vsi") or "://" in path


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` name one file: the same path after ``..`` and symlinks are
    resolved, or the same inode (a hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def is_stream(path: str | os.PathLike) -> bool:
    """True for a character device or a FIFO (``/dev/null``, a named pipe): written into
    directly, never replaced."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def check_destination(path: str | os.PathLike, *, overwrite: bool, inputs: Iterable = (),
                      others: Iterable[tuple[str, str]] = (), role: str = "output") -> None:
    """Refuse, before any work, a path the tool would write (output, quicklook, model...).

    * it resolves (``..``, symlinks, hard links) to an input file: :class:`BadInputError`
      (exit 3), with or without ``--overwrite``;
    * it resolves to another path written by the same run (``others``: ``(label, path)``):
      :class:`UsageError`;
    * it is a folder, a block device or a socket, or it exists without ``overwrite``, or its
      folder is missing or not writable: :class:`OutputError` (exit 5).

    A symlink is followed: its target is what is checked and, later, replaced (the link stays).
    A character device or FIFO (``/dev/null``) is written into as a stream and needs no
    ``--overwrite``, since nothing is replaced.
    """
    text = os.fspath(path)
    for inp in inputs:
        inp = os.fspath(inp)
        if not _is_virtual(inp) and same_file(text, inp):
            raise BadInputError(
                f"{text}: the {role} would replace the input {inp}; choose another {role} path")
    for label, other in others:
        if other is not None and not _is_virtual(os.fspath(other)) and same_file(text, other):
            raise UsageError(f"{text}: the {role} is also the {label}; give them different paths")
    real = Path(os.path.realpath(text))
    if real.is_dir():
        raise OutputError(f"{text}: is a folder; give a file name for the {role}")
    if real.exists():
        mode = real.stat().st_mode
        if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
            return
        if not stat.S_ISREG(mode):
            raise OutputError(f"{text}: is not a regular file (a device or socket); not replaced")
        if not overwrite:
            raise OutputError(f"{text}: already exists; pass --overwrite to replace it")
    folder = real.parent
    if not folder.is_dir():
        raise OutputError(f"{text}: folder {folder} does not exist")
    try:  # try for real: access() says yes to root even on read-only mounts
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".ssdiff-probe-"):
            pass
    except OSError:
        raise OutputError(f"{text}: folder {folder} is not writable") from None


def publish_file(tmp: str | os.PathLike, dest: str | os.PathLike, overwrite: bool) -> None:
    """Move a finished temporary file to ``dest`` (renamed onto a symlink's target, streamed into
    a device or FIFO); refuses if ``dest`` appeared meanwhile without ``overwrite``."""
    if is_stream(dest):
        with open(tmp, "rb") as src, open(dest, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.unlink(tmp)
        return
    real = os.path.realpath(dest)
    if os.path.exists(real) and not overwrite:
        raise OutputError(f"{dest}: appeared while working; not replaced")
    os.replace(tmp, real)


def disk_error(path: str | os.PathLike, exc: BaseException,
               folder: str | os.PathLike | None = None, needed: int = 2**20) -> OutputError | None:
    """A one-line :class:`OutputError` for a write that failed for lack of space, or None.

    GDAL's own message ("Write failed") hides the cause: it is looked for along the exception's
    chain, and failing that in the free space left in ``folder`` (less than ``needed`` bytes:
    GDAL removes a file it failed to finish, so the space may be free again)."""
    full = False
    seen = exc
    while seen is not None and not full:
        text = str(seen)
        full = (isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT)) \
            or "No space left" in text or "Disk quota" in text
        seen = seen.__cause__ or seen.__context__
    if not full and folder is not None:
        with contextlib.suppress(OSError):
            vfs = os.statvfs(folder)
            full = vfs.f_bavail * vfs.f_frsize < needed
    if full:
        return OutputError(f"{path}: no space left on the device while writing it; nothing was "
                           "written (free some space or choose another folder)")
    return None


def check_free_space(path: str | os.PathLike, folder: Path, needed: int) -> None:
    """Refuse before any work when ``folder`` has less room than the uncompressed work file."""
    try:
        vfs = os.statvfs(folder)
    except OSError:
        return
    free = vfs.f_bavail * vfs.f_frsize
    if free < needed:
        raise OutputError(f"{path}: no space left on the device for it: the work file needs "
                          f"{needed / 2**20:.0f} MB, {free / 2**20:.0f} MB are free in {folder}")


@contextlib.contextmanager
def c_stderr_held():
    """Hold what C libraries print on file descriptor 2 while GDAL writes (libtiff prints its
    own "No space left" lines there); the error raised says it in one line."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


# Hidden work files are named ``.{stem}.{host}-{pid}-{token}.{kind}`` beside the output, so a
# later run for the same output can tell those of dead processes on this machine and remove them.
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_MAX_STEM_BYTES = 96


def work_stem(name: str) -> str:
    """The output's name as used in work-file names, shortened (with a hash) when a long name
    would push the hidden names past the file system's 255-byte limit."""
    raw = name.encode()
    if len(raw) <= _MAX_STEM_BYTES:
        return name
    short = raw[:_MAX_STEM_BYTES - 9].decode(errors="ignore")
    return f"{short}~{hashlib.sha1(raw).hexdigest()[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_work_files(folder: Path, stem: str) -> list[Path]:
    """Remove the work files of dead runs (this machine) for the output ``stem``; returns them."""
    pattern = re.compile(rf"^\.{re.escape(stem)}\.{_HOST}-(\d+)-[0-9a-f]{{8}}\.")
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


@dataclass(frozen=True)
class OutputTarget:
    """Where the result goes: a path, or stdout when ``path`` is ``-``. ``inputs`` are the files
    the run reads (an output resolving to one is refused)."""

    path: str
    overwrite: bool = False
    #: ``-of``: COG or GTiff (None: COG for a file, the streamable GeoTIFF for ``-``, a FIFO
    #: or a character device).
    format: str | None = None
    inputs: tuple = ()

    @property
    def to_stdout(self) -> bool:
        """True for ``-o -``."""
        return self.path == "-"

    @property
    def streamed(self) -> bool:
        """True when the COG is streamed out (stdout, a character device, a FIFO)."""
        return self.to_stdout or is_stream(self.path)

    def check(self) -> None:
        """Refuse before any work: a name the format cannot have, an input as output, existing
        output without overwrite, unwritable folder (see :func:`check_destination`)."""
        self.resolved_format()
        if self.to_stdout:
            if sys.stdout.isatty():
                raise OutputError("-: refusing to write a GeoTIFF to a terminal; redirect stdout")
            return
        check_destination(self.path, overwrite=self.overwrite, inputs=self.inputs)

    def resolved_format(self) -> str:
        """The output format (:func:`~ssdiff_cli.gdal_formats.resolve_format`): a FIFO or a
        character device is written as a stream, like ``-o -`` (any name, streamable GeoTIFF
        unless ``-of`` says otherwise)."""
        if not self.to_stdout and is_stream(self.path):
            return resolve_format("-", self.format)
        return resolve_format(self.path, self.format)

    def work_dir(self) -> Path:
        """Folder for the hidden working files (beside the output, so the move is a rename)."""
        if self.streamed:
            return Path(tempfile.gettempdir())
        return Path(os.path.realpath(self.path)).parent


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
        if flat:
            raise DegenerateOutputError(
                f"{where}: band(s) {', '.join(map(str, flat))} of the result are constant "
                f"({self._lo[flat[0] - 1]:g}) where the MS varies (zero weights, a broken model?); "
                "not written")

    def _write_error(self, exc: BaseException) -> OutputError | None:
        return disk_error(self.target.path, exc, self.folder)

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
            with c_stderr_held(), rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
                if driver == "stream":
                    write_streamable(self.work_path, self.cog_path, options)
                else:
                    rasterio.shutil.copy(self.work_path, self.cog_path, driver=driver, **options)
        except Exception as exc:  # GDAL's CPLE_* errors are not RasterioError subclasses
            # The COG (with overviews) is at most about 4/3 of the uncompressed work file.
            needed = self.work_path.stat().st_size * 4 // 3 if self.work_path.exists() else 2**20
            full = disk_error(self.target.path, exc, self.folder, needed)
            if full is not None:
                raise full from None
            if self.creation_options and isinstance(exc, rasterio.errors.RasterioIOError):
                raise UsageError(f"{self.target.path}: GDAL's {driver} driver failed with --co "
                                 f"{self.creation_options} ({exc})") from None
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
