"""Grids of a scene: the raster :class:`Grid`, the :class:`SceneSpec` workers read from, the
opened :class:`Scene`, and the geometry relating the PAN and MS grids (the whole-number ratio, the
output grid over the footprints' intersection or union, the MS grid's offset from the coarse grid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from affine import Affine

from ssdiff_cli.errors import BadInputError, GridMismatchError
from ssdiff_cli.gdal_names import DatasetName

#: A stand-in CRS for pairs without georeferencing, so GDAL's warper can relate their grids.
LOCAL_CRS = "EPSG:3857"
#: Relative tolerance on the PAN/MS pixel-size ratio being a whole number.
RATIO_TOLERANCE = 0.01


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
    #: The registration correction applied to the MS grid (``(dy, dx)`` PAN px,
    #: :mod:`ssdiff_cli.coreg`'s convention), None when the grid is as the files give it.
    #: ``ms_grid`` is the corrected grid; the output grid was made from the uncorrected one.
    ms_shift: tuple[float, float] | None = None

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



def whole_ratio(rx: float, ry: float, ms_path: DatasetName) -> int:
    """The whole-number PAN/MS ratio from the pixel-size ratios along x and y (within
    :data:`RATIO_TOLERANCE`); a :class:`GridMismatchError` naming ``ms_path`` otherwise."""
    ratio = round(rx)
    if ratio < 1 or abs(rx - ratio) > RATIO_TOLERANCE * ratio or abs(ry - ratio) > RATIO_TOLERANCE * ratio:
        raise GridMismatchError(
            f"{ms_path}: MS/PAN pixel-size ratio is {rx:.3f} x {ry:.3f}, not a whole number; "
            "resample one of them first"
        )
    if ratio == 1:
        raise GridMismatchError(
            f"{ms_path}: MS pixels are the PAN's size (ratio 1): nothing to sharpen (is the PAN "
            "given as the MS?)")
    return ratio


def whole_pixel_offset(out: Grid, ratio: int, ms: Grid) -> tuple[int, int] | None:
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


def subpixel_offset(out: Grid, ratio: int, ms: Grid) -> tuple[int, int, float, float] | None:
    """``(row, col, phase_row, phase_col)`` of the coarse grid's origin in MS pixels, split into
    whole pixels and a fraction in [0, 1), when the pixel sizes agree; None otherwise."""
    coarse_t = out.transform @ Affine.scale(ratio)
    if abs(coarse_t.a - ms.transform.a) > 1e-6 * abs(ms.transform.a) or \
            abs(coarse_t.e - ms.transform.e) > 1e-6 * abs(ms.transform.e):
        return None
    col, row = ~ms.transform @ (coarse_t.c, coarse_t.f)
    r0, c0 = math.floor(row), math.floor(col)
    return r0, c0, min(row - r0, 1 - 1e-9), min(col - c0, 1 - 1e-9)


def output_grid(pan: Grid, ms: Grid, extent: str, ms_path: DatasetName, pan_path: DatasetName):
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

