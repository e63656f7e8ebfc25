"""A side-by-side quicklook: PAN, upsampled MS and fused result over the crop where they differ.

A whole-scene quicklook shrinks a pansharpened scene until the gain in detail is invisible. This
panel instead shows a full-resolution crop (enlarged) of the PAN, the MS brought onto the PAN grid
(``sharpen -m upsample``) and the fused result, all three composites with one stretch, choosing
the crop where the result departs most from the upsampled MS: where pansharpening added most.

Both rasters are read in strips of ``crop`` rows, so memory is bounded by the crop, not the
scene.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.windows import Window

from ssdiff_cli.quality.quicklook import stretch_limits, to_uint8, write_panel


def busiest_crop(fused: str | Path, upsampled: str | Path, crop: int) -> tuple[int, int]:
    """``(row, col)`` of the ``crop`` x ``crop`` window, on a grid of half-crop steps, where the
    mean absolute difference between ``fused`` and ``upsampled`` (relative to the upsampled
    level) is highest among windows that hold only valid pixels."""
    step = max(1, crop // 2)
    with rasterio.open(fused) as f, rasterio.open(upsampled) as u:
        if (f.width, f.height) != (u.width, u.height):
            raise ValueError(f"{fused} and {upsampled} are not on the same grid")
        rows, cols = max(1, f.height // step), max(1, f.width // step)
        diff = np.zeros((rows, cols))
        level = np.zeros((rows, cols))
        full = np.zeros((rows, cols), bool)
        for i in range(rows):
            win = Window(0, i * step, f.width, min(step, f.height - i * step))
            a = f.read(window=win).astype(np.float64)
            b = u.read(window=win).astype(np.float64)
            ok = (f.read_masks(1, window=win) > 0) & (u.read_masks(1, window=win) > 0)
            d = np.abs(a - b).mean(axis=0)
            for j in range(cols):
                sl = (slice(None), slice(j * step, (j + 1) * step))
                cell_ok = ok[sl]
                full[i, j] = cell_ok.size > 0 and cell_ok.all()
                diff[i, j] = d[sl].mean() if cell_ok.size else 0.0
                level[i, j] = np.abs(b[(slice(None), *sl)]).mean() if cell_ok.size else 0.0
    span = max(1, crop // step)
    best, where = -1.0, (0, 0)
    for i in range(max(1, rows - span + 1)):
        for j in range(max(1, cols - span + 1)):
            if not full[i:i + span, j:j + span].all():
                continue
            score = diff[i:i + span, j:j + span].sum() / max(level[i:i + span, j:j + span].sum(),
                                                             1e-9)
            if score > best:
                best, where = score, (i * step, j * step)
    return where


def side_by_side(pan: str | Path, upsampled: str | Path, fused: str | Path, png: str | Path,
                 rgb: tuple[int, int, int], crop: int = 256, zoom: int = 2,
                 titles: tuple[str, str, str] = ("PAN", "MS upsampled (cubic)", "result"),
                 ) -> tuple[Path, tuple[int, int]]:
    """Write the PNG panel; returns its path and the crop's ``(row, col)`` on the output grid.

    ``rgb`` holds 0-based band indices; ``pan`` is the PAN file, of which the output grid is a
    window (as ``sharpen`` makes it)."""
    with rasterio.open(fused) as f:
        crop = min(crop, f.width, f.height)
    row, col = busiest_crop(fused, upsampled, crop)
    win = Window(col, row, crop, crop)
    indexes = [i + 1 for i in rgb]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(upsampled) as u, rasterio.open(fused) as f, rasterio.open(pan) as p:
            up = u.read(indexes, window=win).astype(np.float32)
            fu = f.read(indexes, window=win).astype(np.float32)
            valid = f.read_masks(1, window=win) > 0
            pc, pr = ~p.transform @ (f.transform.c + f.transform.a * col,
                                     f.transform.f + f.transform.e * row)
            pan_win = Window(round(pc), round(pr), crop, crop)
            pa = p.read(1, window=pan_win, boundless=True, fill_value=0).astype(np.float32)
    limits = stretch_limits(up, valid)  # one stretch for both colour panels
    pan_limits = stretch_limits(np.stack([pa] * 3), valid)
    tiles = [(titles[0], to_uint8(np.stack([pa] * 3), pan_limits, valid)),
             (titles[1], to_uint8(up, limits, valid)),
             (titles[2], to_uint8(fu, limits, valid))]
    tiles = [(t, np.asarray(Image.fromarray(img).resize((crop * zoom, crop * zoom),
                                                        Image.NEAREST))) for t, img in tiles]
    return write_panel(tiles, png, columns=3), (row, col)
