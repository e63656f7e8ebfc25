"""Reading a scene: per-thread open handles (:class:`SceneReader`), windows of the PAN and of the
MS on the coarse grid, and tile reads ready for fusion (:func:`read_tile`: holes filled, MS brought
onto the PAN grid).
"""

from __future__ import annotations

import math
import threading
import warnings
from dataclasses import dataclass

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from ssdiff_cli import filters
from ssdiff_cli.errors import BadInputError
from ssdiff_cli.filters import FILL_ITERATIONS, fill_invalid
from ssdiff_cli.scene.grid import LOCAL_CRS, SceneSpec
from ssdiff_cli.scene.opening import first_line


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


def _read_or_fail(read, what: str, window: Window, **kwargs) -> np.ndarray:
    """``read(window=window, **kwargs)``, a failure becoming a :class:`BadInputError` that names
    the file (``what``) and the window."""
    try:
        return read(window=window, **kwargs)
    except RasterioIOError as exc:
        raise BadInputError(
            f"{what}: read failed at window col {int(window.col_off)}, row {int(window.row_off)}, "
            f"{int(window.width)}x{int(window.height)} px: the file is damaged or truncated "
            f"({first_line(exc)})") from None


def read_window(ds, what: str, window: Window, **kwargs) -> np.ndarray:
    """``ds.read(window=window, **kwargs)``, a failure becoming a :class:`BadInputError` that names
    the file (``what``) and the window."""
    return _read_or_fail(ds.read, what, window, **kwargs)


def read_mask_window(ds, what: str, window: Window, **kwargs) -> np.ndarray:
    """``ds.read_masks`` with the same error translation as :func:`read_window`."""
    return _read_or_fail(ds.read_masks, what, window, **kwargs)


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
            src_kwargs = {"src_crs": LOCAL_CRS, "src_transform": spec.ms_transform_src}
        coarse = spec.coarse
        # Only used when the MS grid is not a whole-pixel shift of the coarse grid (Landsat's
        # half-PAN-pixel offset): GDAL's warper resamples it by the sub-pixel amount.
        self.coarse_vrt = WarpedVRT(
            self.ms, transform=coarse.transform, width=coarse.width, height=coarse.height,
            crs=spec.out.crs or LOCAL_CRS, resampling=Resampling.cubic, dtype="float32",
            nodata=np.nan, src_nodata=spec.ms_nodata, **src_kwargs,
        )
        self.masks = _mask_sources(spec)

    def close(self) -> None:
        """Close every handle."""
        for ds in (self.coarse_vrt, self.ms, self.pan, *(ds for ds, _ in self.masks)):
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
            data = self._padded(self.coarse_vrt, row, col, height, width)
            if self.masks:  # the warper is told the nodata value, not the masks
                data[:, ~self.ms_mask_on(spec.coarse.transform, row, col, height, width)] = np.nan
            return data
        return self.read_ms(row + spec.ms_offset[0], col + spec.ms_offset[1], height, width)

    def read_ms(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        """A window of the MS on its own grid (may reach outside), float32, NaN wherever the MS
        is invalid (nodata, NaN, alpha 0, masked) or absent."""
        spec = self.spec
        data = self._padded(self.ms, row, col, height, width)
        invalid = np.zeros(data.shape[1:], dtype=bool)
        if spec.ms_nodata is not None and not np.isnan(spec.ms_nodata):
            invalid |= np.any(data == np.float32(spec.ms_nodata), axis=0)
        masked = self.ms_mask(row, col, height, width)
        if masked is not None:
            invalid |= ~masked
        data[:, invalid] = np.nan
        return data

    def ms_mask(self, row: int, col: int, height: int, width: int) -> np.ndarray | None:
        """Where the MS's own masks (an alpha band used as the mask, a file's internal or
        ``.msk`` mask) call a window of the MS grid valid, True outside the MS (absence is judged
        from the values); None when the MS has no such mask."""
        if not self.masks:
            return None
        valid = np.ones((height, width), dtype=bool)
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + height, self.ms.height), min(col + width, self.ms.width)
        if r1 > r0 and c1 > c0:
            win = Window(c0, r0, c1 - c0, r1 - r0)
            sl = (slice(r0 - row, r1 - row), slice(c0 - col, c1 - col))
            for ds, band in self.masks:
                if band is None:
                    valid[sl] &= read_mask_window(ds, ds.name, win, indexes=1) > 0
                else:
                    valid[sl] &= read_window(ds, ds.name, win, indexes=band) > 0
        return valid

    def ms_mask_on(self, transform: Affine, row: int, col: int, height: int, width: int,
                   decimated: bool = False) -> np.ndarray | None:
        """:meth:`ms_mask` on a window of another grid (``transform``: the coarse grid, a scene
        sample's): each pixel takes the mask of the MS pixel holding its centre. ``decimated``
        reads the masks of the whole MS decimated to about twice the window's size (the scene
        sample: memory bounded by the sample, not the scene)."""
        if not self.masks:
            return None
        m, grid = self.spec.ms_grid.transform, self.spec.ms_grid
        cols = np.floor((transform.c + transform.a * (np.arange(col, col + width) + 0.5) - m.c)
                        / m.a).astype(int)
        rows = np.floor((transform.f + transform.e * (np.arange(row, row + height) + 0.5) - m.f)
                        / m.e).astype(int)
        if not decimated:
            r0, c0 = rows.min(), cols.min()
            valid = self.ms_mask(r0, c0, rows.max() - r0 + 1, cols.max() - c0 + 1)
            return valid[np.ix_(rows - r0, cols - c0)]
        shape = min(grid.height, 2 * height), min(grid.width, 2 * width)
        small = np.ones(shape, dtype=bool)
        window = Window(0, 0, grid.width, grid.height)
        for ds, band in self.masks:
            if band is None:
                small &= read_mask_window(ds, ds.name, window, indexes=1, out_shape=shape,
                                          resampling=Resampling.nearest) > 0
            else:
                small &= read_window(ds, ds.name, window, indexes=band, out_shape=shape,
                                     resampling=Resampling.nearest) > 0
        valid = small[np.ix_(np.clip(rows * shape[0] // grid.height, 0, shape[0] - 1),
                             np.clip(cols * shape[1] // grid.width, 0, shape[1] - 1))]
        valid[(rows < 0) | (rows >= grid.height), :] = True
        valid[:, (cols < 0) | (cols >= grid.width)] = True
        return valid

    def read_ms_valid(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        """MS validity on an output-grid window, from the MS's own grid: a PAN pixel is valid when
        the MS pixel containing its centre exists and is valid. (Needed where the MS grid is not
        a whole-pixel shift of the coarse grid; elsewhere coarse validity says the same.)"""
        o, m = self.spec.out.transform, self.spec.ms_grid.transform
        cols = np.floor((o.c + o.a * (np.arange(col, col + width) + 0.5) - m.c) / m.a).astype(int)
        rows = np.floor((o.f + o.e * (np.arange(row, row + height) + 0.5) - m.f) / m.e).astype(int)
        if self.spec.ms_shift is not None:
            rows, cols = self._edge_clamped(rows, cols, row, col, height, width)
        r0, c0 = rows.min(), cols.min()
        data = self._padded(self.ms, r0, c0, rows.max() - r0 + 1, cols.max() - c0 + 1)
        valid = np.all(np.isfinite(data), axis=0)
        nodata = self.spec.ms_nodata
        if nodata is not None and not np.isnan(nodata):
            valid &= np.all(data != np.float32(nodata), axis=0)
        masked = self.ms_mask(r0, c0, *valid.shape)
        if masked is not None:
            valid &= masked
        return valid[np.ix_(rows - r0, cols - c0)]

    def _edge_clamped(self, rows, cols, row, col, height, width):
        """MS indices of a registration-corrected grid with the strip that the correction
        uncovered at the MS's edges mapped onto the edge pixel: PAN pixels inside the MS footprint
        as the files give it stay valid (filled as the scene's edge is), never cropped."""
        spec, o = self.spec, self.spec.out.transform
        dy, dx = spec.ms_shift
        m = Affine.translation(dx * o.a, dy * o.e) * spec.ms_grid.transform  # the files' grid
        c_orig = np.floor((o.c + o.a * (np.arange(col, col + width) + 0.5) - m.c) / m.a)
        r_orig = np.floor((o.f + o.e * (np.arange(row, row + height) + 0.5) - m.f) / m.e)
        h, w = spec.ms_grid.height, spec.ms_grid.width
        rows = np.where((r_orig >= 0) & (r_orig < h), np.clip(rows, 0, h - 1), rows)
        cols = np.where((c_orig >= 0) & (c_orig < w), np.clip(cols, 0, w - 1), cols)
        return rows, cols

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


def _mask_sources(spec: SceneSpec) -> list[tuple]:
    """Open handles on the MS's own masks: ``(dataset, band)`` for an alpha band used as the
    mask (valid where above 0), ``(dataset, None)`` for a file's internal or ``.msk`` mask
    (valid where not 0). A nodata value is compared directly, not read as a mask; a band marked
    alpha that is read as a spectral band (the scene's detection decided) is no mask either."""
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        if spec.ms_alpha is not None:
            found.append((rasterio.open(spec.ms_alpha[0]), spec.ms_alpha[1]))
        for path in ms_files(spec):
            ds = rasterio.open(path)
            flags = ds.mask_flag_enums[0]
            if MaskFlags.per_dataset in flags and MaskFlags.alpha not in flags:
                found.append((ds, None))
            else:
                ds.close()
    return found


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
    m, extra = filters.kernel_reach(spec.resampling), FILL_ITERATIONS  # the kernel's support
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

