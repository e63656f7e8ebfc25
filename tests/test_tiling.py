"""Tile plans and the blender: cutting a scene into tiles and putting identity tiles back gives
the scene again, for several grid sizes, tile sizes, overlaps, halos and alignments.

Exactness: a pixel covered by one tile is copied, so it comes back bit for bit (everywhere when
the overlap is 0). In a seam the raised-cosine weights of the tiles meeting there are float32
numbers whose sum is 1 to within 2**-23 (they are rounded from float64), so an identity tile
blended with its neighbours gives the input back to within 2 float32 ulps there; the test
states that bound and checks that it is the only difference.
"""

from __future__ import annotations

import numpy as np
import pytest

from ssdiff_cli.tiling import Blender, plan_tiles

# (height, width, tile_size, overlap, halo, align)
LAYOUTS = [
    (64, 64, 64, 0, 0, 1),  # one tile
    (100, 130, 32, 0, 5, 1),  # hard seams
    (100, 130, 32, 8, 0, 1),
    (257, 190, 64, 16, 6, 4),  # remainders, halo and alignment
    (50, 70, 16, 6, 3, 2),
    (33, 200, 48, 12, 12, 8),  # one row of tiles
    (301, 300, 128, 32, 8, 4),  # a short last core merged into the one before
    (7, 9, 4, 3, 1, 1),  # odd overlap rounded up
]


def _round_trip(x: np.ndarray, valid: np.ndarray, layout, order=None):
    """Cut ``x`` into the plan's read windows (NaN outside the grid), hand each tile's blend
    extent back unchanged, and collect what the blender writes. Returns (out, out_valid,
    written-count per pixel, plan)."""
    height, width, tile_size, overlap, halo, align = layout
    bands = x.shape[0]
    plan = plan_tiles(height, width, tile_size=tile_size, overlap=overlap, halo=halo, align=align)
    pad = plan.halo + plan.align
    padded = np.full((bands, height + 2 * pad, width + 2 * pad + plan.align), np.nan, np.float32)
    padded[:, pad:pad + height, pad:pad + width] = x
    vpadded = np.zeros(padded.shape[1:], bool)
    vpadded[pad:pad + height, pad:pad + width] = valid
    out = np.full_like(x, np.nan)
    out_valid = np.zeros(valid.shape, bool)
    count = np.zeros(valid.shape, np.int64)

    def write(row, col, data, ok):
        h, w = data.shape[1:]
        out[:, row:row + h, col:col + w] = data
        out_valid[row:row + h, col:col + w] = ok
        count[row:row + h, col:col + w] += 1

    blender = Blender(plan, bands, write)
    tiles = list(plan) if order is None else [plan.tiles[i] for i in order]
    for tile in tiles:
        assert tile.read_row % plan.align == 0 and tile.read_col % plan.align == 0
        assert tile.read_height % plan.align == 0 and tile.read_width % plan.align == 0
        rows = slice(tile.read_row + pad, tile.read_row + pad + tile.read_height)
        cols = slice(tile.read_col + pad, tile.read_col + pad + tile.read_width)
        window, ok = padded[:, rows, cols], vpadded[rows, cols]
        inner = tile.inner
        blender.add(tile, window[:, inner[0], inner[1]].copy(), ok[inner].copy())
    assert blender.finished()
    return out, out_valid, count, plan


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda v: "x".join(map(str, v)))
def test_identity_tiles_blend_back_to_the_input(layout):
    height, width = layout[:2]
    rng = np.random.default_rng(sum(layout))
    x = (rng.random((3, height, width), dtype=np.float32) * 4000).astype(np.float32)
    valid = rng.random((height, width)) > 0.1
    out, out_valid, count, plan = _round_trip(x, valid, layout)

    assert (count == 1).all()  # every pixel written exactly once
    np.testing.assert_array_equal(out_valid, valid)
    single = np.zeros((height, width), bool)  # pixels that only one tile covers
    for a, b, rtiles in plan.rows.cells():
        for c, d, ctiles in plan.cols.cells():
            single[a:b, c:d] = len(rtiles) * len(ctiles) == 1
    np.testing.assert_array_equal(out[:, single], x[:, single])
    if plan.overlap == 0:
        assert single.all()
    else:
        assert not single.all()
        seams = ~single
        ulps = np.abs(out[:, seams] - x[:, seams]) / np.spacing(x[:, seams])
        assert ulps.max() <= 2


@pytest.mark.parametrize("layout", LAYOUTS[2:5], ids=lambda v: "x".join(map(str, v)))
def test_blend_weights_are_a_partition_of_unity(layout):
    height, width = layout[:2]
    plan = plan_tiles(height, width, *layout[2:])
    total = np.zeros((height, width), np.float64)
    for tile in plan:
        total[tile.row:tile.row + tile.height, tile.col:tile.col + tile.width] += plan.weights(tile)
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=2.0**-22)


def test_tile_arrival_order_does_not_change_a_bit():
    layout = (257, 190, 64, 16, 6, 4)
    rng = np.random.default_rng(1)
    x = rng.random((2, 257, 190), dtype=np.float32)
    valid = np.ones((257, 190), bool)
    ordered, *_ = _round_trip(x, valid, layout)
    n = len(plan_tiles(257, 190, *layout[2:]))
    shuffled, *_ = _round_trip(x, valid, layout, order=rng.permutation(n))
    assert ordered.tobytes() == shuffled.tobytes()


def test_plan_sizes_are_rounded_to_the_alignment_and_bad_sizes_refused():
    plan = plan_tiles(100, 100, tile_size=30, overlap=5, halo=3, align=4)
    assert (plan.tile_size, plan.overlap, plan.halo) == (32, 8, 4)
    with pytest.raises(ValueError):
        plan_tiles(0, 10)
    with pytest.raises(ValueError):
        plan_tiles(10, 10, overlap=-1)


def test_blend_margin_is_the_reach_plan_tiles_gives_a_blend_extent():
    from ssdiff_cli.tiling import blend_margin

    for overlap, align in ((0, 1), (32, 32), (33, 4), (8, 1), (64, 32)):
        plan = plan_tiles(1000, 1000, tile_size=256, overlap=overlap, align=align)
        assert plan.rows.extent(1)[0] == plan.rows.edges[1] - blend_margin(overlap, align)
