"""Tiny generated PAN/MS pairs for the logic tests that need no real scene.

Each pair is a georeferenced PAN GeoTIFF and its MS, a few kB each, written from a fixed seed:
smooth fields with some texture (so every fusion method has something to do), a PAN that is
the band mean plus detail, a nodata value with a nodata corner in both files, and a CRS.

- ``ms4_r4``: 4-band uint16 MS (12-bit values, a BIT_DEPTH tag) at ratio 4, nodata 0, UTM 33N;
- ``ms3_r2``: 3-band float32 MS (reflectances) at ratio 2, nodata -9999, Web Mercator.

The test session writes them into a pytest temporary folder (``fixture_pairs`` in
``conftest.py``); run ``python tests/make_fixtures.py FOLDER`` to look at them.
Real-imagery tests use the shared scenes, never these.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine


@dataclass(frozen=True)
class PairRecipe:
    """How one generated pair is made."""

    bands: int
    ratio: int
    dtype: str
    nodata: float
    crs: str
    pan_size: int = 64
    pan_pixel: float = 0.5  # metres (or map units) per PAN pixel
    seed: int = 0
    bit_depth: int | None = None  # written as a BIT_DEPTH tag, as some providers do


RECIPES: dict[str, PairRecipe] = {
    "ms4_r4": PairRecipe(bands=4, ratio=4, dtype="uint16", nodata=0, crs="EPSG:32633", seed=4,
                         bit_depth=12),
    "ms3_r2": PairRecipe(bands=3, ratio=2, dtype="float32", nodata=-9999.0, crs="EPSG:3857",
                         seed=3),
}


def _smooth_field(rng: np.random.Generator, size: int, blobs: int = 6) -> np.ndarray:
    """A smooth field in 0..1 on a ``size`` x ``size`` grid: a gradient plus Gaussian blobs."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    field = 0.3 * xx + 0.2 * yy
    for _ in range(blobs):
        cy, cx = rng.uniform(0, 1, 2)
        width = rng.uniform(0.08, 0.25)
        field += rng.uniform(-0.5, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2))
    field -= field.min()
    return field / max(field.max(), 1e-12)


def _block_mean(image: np.ndarray, ratio: int) -> np.ndarray:
    """Average ``ratio`` x ``ratio`` blocks (an MS pixel seen from its PAN pixels)."""
    h, w = image.shape[-2] // ratio, image.shape[-1] // ratio
    return image[..., : h * ratio, : w * ratio].reshape(*image.shape[:-2], h, ratio, w, ratio).mean(
        axis=(-3, -1))


def pair_arrays(recipe: PairRecipe) -> tuple[np.ndarray, np.ndarray]:
    """The PAN (1, H, W) and MS (bands, H / ratio, W / ratio) arrays of a recipe, in its dtype,
    nodata already set in the top-left corner (two MS pixels a side, and the PAN under them)."""
    rng = np.random.default_rng(recipe.seed)
    size, r = recipe.pan_size, recipe.ratio
    base = _smooth_field(rng, size)
    texture = rng.normal(0, 0.03, (size, size))
    fine = np.stack([np.clip(0.15 + 0.7 * (0.6 * base + 0.4 * _smooth_field(rng, size)) + texture,
                             0.01, 1.0) for _ in range(recipe.bands)])
    pan = np.clip(fine.mean(axis=0) + rng.normal(0, 0.01, (size, size)), 0.01, 1.0)[None]
    ms = _block_mean(fine, r)
    if recipe.dtype == "uint16":
        scale = 4095.0  # 12-bit data
        pan, ms = np.rint(pan * scale), np.rint(ms * scale)
    pan, ms = pan.astype(recipe.dtype), ms.astype(recipe.dtype)
    ms[:, :2, :2] = recipe.nodata
    pan[:, : 2 * r, : 2 * r] = recipe.nodata
    return pan, ms


def write_pair(folder: str | Path, name: str, recipe: PairRecipe) -> tuple[Path, Path]:
    """Write ``NAME_pan.tif`` and ``NAME_ms.tif`` into ``folder``; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pan, ms = pair_arrays(recipe)
    x0, y0 = 500_000.0, 5_000_000.0
    paths = []
    for role, data, pixel in (("pan", pan, recipe.pan_pixel),
                              ("ms", ms, recipe.pan_pixel * recipe.ratio)):
        path = folder / f"{name}_{role}.tif"
        profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1],
                   "count": data.shape[0], "dtype": recipe.dtype, "nodata": recipe.nodata,
                   "crs": recipe.crs, "transform": Affine(pixel, 0.0, x0, 0.0, -pixel, y0),
                   "compress": "deflate", "predictor": 3 if recipe.dtype == "float32" else 2}
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
            if recipe.bit_depth:
                dst.update_tags(BIT_DEPTH=str(recipe.bit_depth))
        paths.append(path)
    return paths[0], paths[1]


def make_fixtures(folder: str | Path) -> dict[str, tuple[Path, Path]]:
    """Write every pair of :data:`RECIPES` into ``folder``: ``{name: (pan, ms)}``."""
    return {name: write_pair(folder, name, recipe) for name, recipe in RECIPES.items()}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/make_fixtures.py FOLDER")
    for name, (pan, ms) in make_fixtures(sys.argv[1]).items():
        print(f"{name}: {pan} ({pan.stat().st_size} B), {ms} ({ms.stat().st_size} B)")
