"""The scene sample: a decimated view of the whole scene (:func:`scene_sample`, bounded memory)
for statistics computed once per scene, such as the values that fill holes far from any data
(:func:`fill_values`), and the largest MS value (:func:`ms_maximum`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.windows import Window

from ssdiff_cli.errors import BadInputError
from ssdiff_cli.scene.grid import SceneSpec
from ssdiff_cli.scene.reading import ms_files, read_mask_window, read_window, reader_for

#: Most full-resolution pixels the scene sample may decimate from one raster without overviews
#: (about 65536 x 65536); beyond it the raster needs overviews (``gdaladdo``).
SAMPLE_SOURCE_MAX_PIXELS = 2**32


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
    # the averaging read above knows the nodata value, not the MS's alpha band or mask
    masked = reader.ms_mask_on(coarse.transform @ Affine.scale(extra), 0, 0, h, w, decimated=True)
    if masked is not None:
        valid &= masked
    return SceneSample(pan=pan, ms=ms, valid=valid, factor=factor)


def ms_maximum(spec: SceneSpec, rows_per_read: int = 256) -> float:
    """The largest valid MS value (nodata, alpha band and masks honoured) over the whole MS
    file(s), read in strips (bounded memory)."""
    best = -math.inf
    what = ", ".join(ms_files(spec))
    reader = reader_for(spec)
    with rasterio.open(spec.ms_vrt) as ds:
        for r0 in range(0, ds.height, rows_per_read):
            win = Window(0, r0, ds.width, min(rows_per_read, ds.height - r0))
            data = read_window(ds, what, win, masked=True)
            masked = reader.ms_mask(r0, 0, int(win.height), ds.width)
            if masked is not None:
                data = np.ma.masked_array(data, np.ma.getmaskarray(data) | ~masked)
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



def fill_values(sample: SceneSample) -> tuple[np.ndarray, float]:
    """Per-band MS means and the PAN mean over valid sample pixels (far-from-data fill)."""
    ms_means = sample.ms[:, sample.valid].mean(axis=1).astype(np.float32)
    return ms_means, float(sample.pan[sample.valid].mean())

