"""Inputs of the full-resolution indices: shape checks, and rows of whole arrays as views."""

from __future__ import annotations

import numpy as np
import pytest

from ssdiff_cli.quality.full_inputs import ArrayInputs, FullResInputs, FullResRows, check_full_shapes


def _arrays(c=3, h=16, w=24, r=4):
    rng = np.random.default_rng(0)
    return (rng.normal(size=(c, h, w)), rng.normal(size=(h, w)), rng.normal(size=(c, h, w)),
            rng.normal(size=(c, h // r, w // r)))


def test_shapes_must_share_the_pan_grid_and_the_ratio():
    F, pan, lms, ms = _arrays()
    check_full_shapes(F, pan, lms, ms, 4)
    with pytest.raises(ValueError, match="must share the PAN grid"):
        check_full_shapes(F, pan[:-1], lms, ms, 4)
    with pytest.raises(ValueError, match="must share the PAN grid"):
        check_full_shapes(F, pan, lms[:2], ms, 4)
    with pytest.raises(ValueError, match="divisible by the ratio"):
        check_full_shapes(F, pan, lms, ms, 3)
    with pytest.raises(ValueError, match="crop_pair"):
        check_full_shapes(F, pan, lms, ms[:, :-1], 4)


def test_array_inputs_hand_out_views_of_the_rows():
    F, pan, lms, ms = _arrays()
    mask = np.ones(pan.shape, bool)
    mask[9, 3] = False
    inputs = ArrayInputs(F, pan, lms, ms, 4, mask)
    typed: FullResInputs = inputs  # what full_resolution_from reads
    assert typed.shape == F.shape
    rows = typed.rows(8, 16)
    assert isinstance(rows, FullResRows)
    assert rows.F.shape == (3, 8, 24) and rows.pan.shape == (8, 24) and rows.ms.shape == (3, 2, 6)
    assert np.shares_memory(rows.F, F) and np.shares_memory(rows.ms, ms)
    assert rows.ms.tolist() == ms[:, 2:4].tolist()
    assert not rows.valid[1, 3] and rows.valid.sum() == 8 * 24 - 1
    assert ArrayInputs(F, pan, lms, ms, 4).rows(0, 4).valid is None
    with pytest.raises(ValueError, match="mask shape"):
        ArrayInputs(F, pan, lms, ms, 4, mask[:-1])
