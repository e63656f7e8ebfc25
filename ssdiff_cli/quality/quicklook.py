"""Quicklook PNGs: true-colour composites with a shared stretch, and panels of several images.

For people who would rather look than read. Stretches are percentiles of valid pixels; when
several images are compared they share the stretch of the first (the reference), so differences
in brightness are real, not artefacts of per-image stretching.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image, ImageDraw
from rasterio.enums import Resampling


def stretch_limits(
    rgb: np.ndarray, valid: np.ndarray | None = None, percentiles: tuple[float, float] = (2.0, 98.0)
) -> np.ndarray:
    """Per-band (low, high) display limits, shape (3, 2), from percentiles of valid pixels."""
    mask = np.ones(rgb.shape[1:], dtype=bool) if valid is None else valid
    limits = []
    for band in rgb:
        values = band[mask & np.isfinite(band)]
        if values.size == 0:
            limits.append((0.0, 1.0))
            continue
        lo, hi = np.percentile(values, percentiles)
        limits.append((float(lo), float(hi if hi > lo else lo + 1.0)))
    return np.asarray(limits)


def to_uint8(rgb: np.ndarray, limits: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Scale (3, H, W) values into an (H, W, 3) uint8 image; invalid pixels are black."""
    lo = limits[:, 0].reshape(3, 1, 1)
    hi = limits[:, 1].reshape(3, 1, 1)
    scaled = np.clip((rgb - lo) / (hi - lo), 0.0, 1.0)
    img = np.nan_to_num(scaled * 255.0).round().astype(np.uint8).transpose(1, 2, 0)
    if valid is not None:
        img[~valid] = 0
    return img


def read_decimated(path: str | Path, max_side: int, shape: tuple[int, int] | None = None,
                   indexes: list[int] | None = None):
    """Bands ``indexes`` (1-based; default all) of a raster averaged down to ``shape`` (default:
    at most ``max_side`` pixels a side; overviews are used when present), so memory stays small
    whatever the raster's size. Returns ``(data (C, h, w) float32, valid (h, w))``, valid from
    the first band's mask and finite in every band."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            indexes = indexes or list(ds.indexes)
            if shape is None:
                scale = max(1, math.ceil(max(ds.width, ds.height) / max_side))
                shape = (math.ceil(ds.height / scale), math.ceil(ds.width / scale))
            data = ds.read(indexes, out_shape=(len(indexes), *shape), resampling=Resampling.average,
                           out_dtype="float32")
            mask = ds.read_masks(indexes[0], out_shape=shape, resampling=Resampling.nearest) > 0
    return data, mask & np.all(np.isfinite(data), axis=0)


def read_rgb(path: str | Path, rgb: tuple[int, int, int], max_side: int = 1024):
    """Read three bands (0-based indices) of a raster decimated to at most ``max_side`` pixels a
    side (:func:`read_decimated`). Returns ``(rgb (3, h, w) float32, valid (h, w))``."""
    return read_decimated(path, max_side, indexes=[i + 1 for i in rgb])


def write_quicklook(
    raster: str | Path, png: str | Path, rgb: tuple[int, int, int], max_side: int = 1024,
    uncertainty: str | Path | None = None,
) -> Path:
    """Write a true-colour PNG of ``raster`` (bands ``rgb``, 0-based), 2-98 % stretch; with
    ``uncertainty`` (its expected-error image), that image's mean over the three bands beside
    it as a heat map (white: its 99th percentile or more)."""
    data, valid = read_rgb(raster, rgb, max_side)
    img = to_uint8(data, stretch_limits(data, valid), valid)
    png = Path(png)
    if uncertainty is None:
        Image.fromarray(img, mode="RGB").save(png)
        return png
    err, err_valid = read_decimated(uncertainty, max_side, shape=data.shape[1:],
                                    indexes=[i + 1 for i in rgb])
    mean, ok = err.mean(axis=0), valid & err_valid
    limit = float(np.percentile(mean[ok], 99)) if ok.any() else 1.0
    return write_panel([("result", img), ("expected |error|", heat_map(mean, ok, limit))], png,
                       columns=2)


def write_panel(tiles: list[tuple[str, np.ndarray]], png: str | Path, columns: int = 4) -> Path:
    """Lay out titled (H, W, 3) uint8 images in a grid and save it as a PNG."""
    if not tiles:
        raise ValueError("no image to lay out")
    h = max(t[1].shape[0] for t in tiles)
    w = max(t[1].shape[1] for t in tiles)
    columns = min(columns, len(tiles))
    rows = math.ceil(len(tiles) / columns)
    title_h = 18
    canvas = Image.new("RGB", (columns * (w + 4), rows * (h + title_h + 4)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for k, (title, img) in enumerate(tiles):
        r, c = divmod(k, columns)
        x, y = c * (w + 4), r * (h + title_h + 4)
        draw.text((x + 2, y + 2), title, fill=(0, 0, 0))
        canvas.paste(Image.fromarray(img, mode="RGB"), (x, y + title_h))
    png = Path(png)
    canvas.save(png)
    return png


def heat_map(values: np.ndarray, valid: np.ndarray, limit: float) -> np.ndarray:
    """(H, W) values as an (H, W, 3) uint8 heat map on a fixed ``limit`` (black: 0, white:
    ``limit`` or more), invalid pixels blue."""
    t = np.clip(np.nan_to_num(values / max(limit, 1e-12)), 0.0, 1.0)
    img = np.stack([np.clip(3 * t, 0, 1), np.clip(3 * t - 1, 0, 1), np.clip(3 * t - 2, 0, 1)], -1)
    img = (img * 255).round().astype(np.uint8)
    img[~valid] = (0, 0, 128)
    return img


def error_map(fused: np.ndarray, reference: np.ndarray, valid: np.ndarray, limit: float) -> np.ndarray:
    """Mean absolute error over bands as a :func:`heat_map` on a fixed ``limit``."""
    return heat_map(np.mean(np.abs(fused - reference), axis=0), valid, limit)


def comparison_panel(images: dict[str, np.ndarray], reference: np.ndarray, valid: np.ndarray,
                     rgb: tuple[int, int, int], png: str | Path, pan: np.ndarray | None = None,
                     with_errors: bool = True, max_side: int = 384) -> Path:
    """A panel of true-colour composites (PAN, the reference, each image) sharing the
    reference's stretch, then one error map per image on a shared scale."""
    step = max(1, math.ceil(max(reference.shape[1:]) / max_side))
    ref = reference[:, ::step, ::step]
    mask = valid[::step, ::step]
    limits = stretch_limits(ref[list(rgb)], mask)
    tiles = []
    if pan is not None:
        p = pan[::step, ::step][None].repeat(3, axis=0)
        tiles.append(("PAN", to_uint8(p, stretch_limits(p, None))))
    tiles.append(("reference" if with_errors else "upsampled MS", to_uint8(ref[list(rgb)], limits, mask)))
    small = {name: img[:, ::step, ::step] for name, img in images.items()}
    for name, img in small.items():
        tiles.append((name, to_uint8(img[list(rgb)], limits, mask)))
    if with_errors and small:
        errs = [np.mean(np.abs(img - ref), axis=0)[mask] for img in small.values()]
        limit = float(np.percentile(np.concatenate(errs), 99)) if errs[0].size else 1.0
        for name, img in small.items():
            tiles.append((f"|error| {name}", error_map(img, ref, mask, limit)))
    return write_panel(tiles, png, columns=max(2, len(small) + (2 if pan is not None else 1)))
