"""Tile plans over the output grid, blend windows, and the blender that stitches tiles.

Geometry (all in output-grid pixels, along each axis independently):

- *cores* partition the grid at multiples of ``tile_size``; a short remainder is merged into the
  last core so no core is narrower than the overlap;
- each tile's *blend extent* is its core widened by ``overlap / 2`` on every side that has a
  neighbour; across each core boundary the two tiles' weights ramp with a raised cosine that sums
  to one, so the blend is a partition of unity (4 tiles meet at corners, weights multiply);
- each tile's *read window* is the blend extent widened by ``halo`` on every side (reaching
  outside the grid at the scene edges), with its origin a multiple of ``align`` so methods that
  work on a coarse grid or on aligned windows see the same lattice in every tile.

The :class:`Blender` keeps only the seams that still wait for a neighbour: memory is bounded by
the overlap width times the grid width plus the tiles in flight, never by the scene area.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    """One tile: its blend extent (``row``, ``col``, ``height``, ``width``) inside the grid and
    its read window (``read_row`` .. ``read_height``, may reach outside the grid)."""

    index: int
    row: int
    col: int
    height: int
    width: int
    read_row: int
    read_col: int
    read_height: int
    read_width: int
    iy: int
    ix: int

    @property
    def inner(self) -> tuple[slice, slice]:
        """Slices of the read window that hold the blend extent."""
        r0, c0 = self.row - self.read_row, self.col - self.read_col
        return slice(r0, r0 + self.height), slice(c0, c0 + self.width)


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def _axis_cores(size: int, tile: int, overlap: int) -> list[int]:
    """Core boundaries 0 = b0 < b1 < ... < bn = size along one axis."""
    edges = list(range(0, size, tile)) + [size]
    if len(edges) > 2 and edges[-1] - edges[-2] < max(overlap, 1):
        del edges[-2]
    return edges


@dataclass(frozen=True)
class AxisPlan:
    """Tiles along one axis: core boundaries, blend extents and the seam cells between them."""

    edges: tuple[int, ...]
    half: int  # overlap / 2

    @property
    def count(self) -> int:
        """Number of tiles along the axis."""
        return len(self.edges) - 1

    def extent(self, k: int) -> tuple[int, int]:
        """Blend extent [start, stop) of tile ``k``."""
        start = self.edges[k] - (self.half if k > 0 else 0)
        stop = self.edges[k + 1] + (self.half if k < self.count - 1 else 0)
        return start, stop

    def weights(self, k: int) -> np.ndarray:
        """Blend weight of tile ``k`` over its extent: 1 inside, raised-cosine ramps in seams."""
        start, stop = self.extent(k)
        w = np.ones(stop - start, dtype=np.float32)
        if self.half:
            t = (np.arange(2 * self.half, dtype=np.float64) + 0.5) / (2 * self.half)
            rise = (0.5 - 0.5 * np.cos(np.pi * t)).astype(np.float32)
            if k > 0:
                w[: 2 * self.half] = rise
            if k < self.count - 1:
                w[-2 * self.half :] = rise[::-1]
        return w

    def cells(self) -> list[tuple[int, int, tuple[int, ...]]]:
        """Segments ``(start, stop, tiles)`` of the axis and the tiles that cover each."""
        points = {self.edges[0], self.edges[-1]}
        for b in self.edges[1:-1]:
            points.update((b - self.half, b + self.half))
        points = sorted(points)
        out = []
        for a, b in zip(points[:-1], points[1:]):
            if b <= a:
                continue
            covering = tuple(
                k for k in range(self.count)
                if self.extent(k)[0] <= a and b <= self.extent(k)[1]
            )
            out.append((a, b, covering))
        return out


@dataclass(frozen=True)
class TilePlan:
    """Tiles covering a ``height`` x ``width`` grid; iterate it, or ``len()`` it."""

    height: int
    width: int
    tile_size: int
    overlap: int
    halo: int
    align: int
    rows: AxisPlan
    cols: AxisPlan
    tiles: tuple[Tile, ...]

    def __len__(self) -> int:
        return len(self.tiles)

    def __iter__(self) -> Iterator[Tile]:
        return iter(self.tiles)

    def weights(self, tile: Tile) -> np.ndarray:
        """2-D blend weights over the tile's blend extent (separable product)."""
        return np.outer(self.rows.weights(tile.iy), self.cols.weights(tile.ix))


def blend_margin(overlap: int, align: int = 1) -> int:
    """How far (grid px) a blend extent reaches past its core on each side that has a
    neighbour: half the overlap, rounded up to ``align`` (what :func:`plan_tiles` uses, before
    it caps it at half the tile)."""
    return _round_up(overlap // 2 + overlap % 2, align) if overlap else 0


def plan_tiles(height: int, width: int, tile_size: int = 1024, overlap: int = 32, halo: int = 0,
               align: int = 1) -> TilePlan:
    """Plan tiles over a grid.

    Parameters
    ----------
    height, width : int
        Grid size (output-grid pixels).
    tile_size : int
        Core size; rounded up to a multiple of ``align``.
    overlap : int
        Width of the blend band across each core boundary; rounded up to an even multiple of
        ``align`` and capped at the tile size. 0 gives hard seams (for exactly local methods).
    halo : int
        Context read around each blend extent and discarded after fusion; rounded up to a
        multiple of ``align``.
    align : int
        Read windows start at multiples of this (the coarse-grid ratio, or a network's window).
    """
    if height < 1 or width < 1:
        raise ValueError(f"grid must be at least 1x1, got {height}x{width}")
    if tile_size < 1 or overlap < 0 or halo < 0 or align < 1:
        raise ValueError("tile_size and align must be positive, overlap and halo non-negative")
    tile_size = _round_up(tile_size, align)
    half = min(blend_margin(overlap, align), (tile_size // 2) // align * align)
    halo = _round_up(halo, align)
    rows = AxisPlan(tuple(_axis_cores(height, tile_size, 2 * half)), half)
    cols = AxisPlan(tuple(_axis_cores(width, tile_size, 2 * half)), half)
    tiles = []
    for iy in range(rows.count):
        r0, r1 = rows.extent(iy)
        for ix in range(cols.count):
            c0, c1 = cols.extent(ix)
            rr, cc = r0 - halo, c0 - halo
            tiles.append(Tile(
                index=len(tiles), row=r0, col=c0, height=r1 - r0, width=c1 - c0,
                read_row=rr, read_col=cc,
                read_height=_round_up(r1 + halo - rr, align),
                read_width=_round_up(c1 + halo - cc, align),
                iy=iy, ix=ix,
            ))
    return TilePlan(height, width, tile_size, 2 * half, halo, align, rows, cols, tuple(tiles))


WriteFn = Callable[[int, int, np.ndarray, np.ndarray], None]


class Blender:
    """Accumulates weighted tile results and hands each finished region to ``write``.

    ``write(row, col, data, valid)`` receives float32 ``data`` (C, h, w) and a boolean ``valid``
    (h, w) for a rectangle of the grid, exactly once per pixel. Regions covered by one tile are
    written as soon as that tile arrives; seams wait for all their tiles (2, or 4 at corners) and
    are summed in tile order, so the output does not depend on the order tiles complete in.
    """

    def __init__(self, plan: TilePlan, bands: int, write: WriteFn):
        self.plan = plan
        self.bands = bands
        self.write = write
        self._row_cells = plan.rows.cells()
        self._col_cells = plan.cols.cells()
        self._pending: dict[tuple[int, int], list] = {}

    def add(self, tile: Tile, data: np.ndarray, valid: np.ndarray) -> None:
        """Add a tile's result over its blend extent (``data`` (C, h, w), ``valid`` (h, w))."""
        weights = self.plan.weights(tile)
        for ci, (a, b, rtiles) in enumerate(self._row_cells):
            if tile.iy not in rtiles:
                continue
            for cj, (c, d, ctiles) in enumerate(self._col_cells):
                if tile.ix not in ctiles:
                    continue
                sl = (slice(a - tile.row, b - tile.row), slice(c - tile.col, d - tile.col))
                contributors = len(rtiles) * len(ctiles)
                if contributors == 1:
                    self.write(a, c, data[:, sl[0], sl[1]], valid[sl])
                    continue
                parts, seam_valid = self._pending.setdefault((ci, cj), ({}, valid[sl].copy()))
                parts[tile.index] = data[:, sl[0], sl[1]] * weights[sl]
                if len(parts) == contributors:
                    del self._pending[(ci, cj)]
                    # Sum in tile order, not arrival order: float addition is not associative,
                    # and the result must not depend on which worker finished first.
                    order = sorted(parts)
                    total = parts[order[0]]
                    for k in order[1:]:
                        total += parts[k]
                    self.write(a, c, total, seam_valid)

    def finished(self) -> bool:
        """True when no seam is waiting."""
        return not self._pending


def chunk_spans(start: int, stop: int, most: int, granularity: int) -> list[tuple[int, int]]:
    """Split [start, stop) into near-equal spans of at most ``most`` px whose inner boundaries
    lie on multiples of ``granularity`` from ``start`` (so every chunk the network sees starts on
    its window grid)."""
    most = max(granularity, most // granularity * granularity)
    n = math.ceil((stop - start) / most)
    units = math.ceil((stop - start) / granularity)
    cuts = [start + round(k * units / n) * granularity for k in range(n)] + [stop]
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
