"""Validity masks of the indices: shape checks, the MS-grid mask, the full-resolution erosion."""

from __future__ import annotations

import numpy as np
import pytest

from ssdiff_cli import filters
from ssdiff_cli.quality.masks import as_mask, block_all, full_res_erosion, full_res_masks


def test_as_mask():
    assert as_mask(None, (3, 4)) is None
    m = as_mask([[1, 0], [0, 2]], (2, 2))
    assert m.dtype == bool and m.tolist() == [[True, False], [False, True]]
    with pytest.raises(ValueError, match=r"mask shape \(2, 2\) does not match image shape \(2, 3\)"):
        as_mask(np.ones((2, 2)), (2, 3))


def test_block_all_needs_every_pan_pixel_of_a_low_res_pixel():
    m = np.ones((8, 12), bool)
    m[5, 2] = False
    got = block_all(m, 4)
    assert got.shape == (2, 3)
    assert got.tolist() == [[True, True, True], [False, True, True]]
    assert block_all(None, 4) is None


def test_full_res_erosion_covers_the_filters():
    assert full_res_erosion(4) == 36
    for ratio in (2, 3, 4, 6):
        assert full_res_erosion(ratio) >= filters.support(ratio) + 2 * ratio


def test_full_res_masks_erode_then_go_to_the_ms_grid():
    assert full_res_masks(None, 4) == (None, None)
    m = np.ones((160, 160), bool)
    m[80, 80] = False
    hr, lr = full_res_masks(m, 4)
    e = full_res_erosion(4)
    assert not hr[80 - e, 80].any() and hr[80 - e - 1, 80]
    assert hr.sum() == m.size - (2 * e + 1) ** 2  # a square of side 2e + 1 (Chebyshev erosion)
    assert lr.tolist() == block_all(hr, 4).tolist()
