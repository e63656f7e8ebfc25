"""Filters (``ssdiff_cli.filters``): unit tests of the formulas on synthetic arrays."""

from __future__ import annotations

import numpy as np

from ssdiff_cli import filters


def test_phase_zero_is_the_plain_upsampling_and_phase_shifts_it():
    """A linear ramp resampled with a phase is the ramp sampled ``phase`` pixels further (how an
    MS grid offset by a fraction of a pixel is brought onto the PAN grid in one pass)."""
    x = np.tile(np.arange(40, dtype=np.float32), (3, 1))
    plain = filters.upsample(x[None], 4)[0]
    np.testing.assert_array_equal(filters.upsample(x[None], 4, phase=(0.0, 0.0))[0], plain)
    shifted = filters.upsample(x[None], 4, phase=(0.0, 0.25))[0]
    inner = slice(8, -16)
    np.testing.assert_allclose(shifted[:, inner], plain[:, inner] + 0.25, atol=1e-4)


def test_fill_invalid_spreads_valid_values_and_falls_back_far_from_them():
    img = np.full((1, 40, 40), 7.0, np.float32)
    valid = np.ones((40, 40), bool)
    valid[:, 20:] = False  # a hole wider than the fill's reach
    img[:, ~valid] = np.nan
    filled = filters.fill_invalid(img, valid, fallback=np.array([-1.0], np.float32))
    near, far = 20 + filters.FILL_ITERATIONS - 1, 20 + filters.FILL_ITERATIONS
    assert (filled[0, :, :near + 1] == 7.0).all()  # reached: the local mean of valid pixels
    assert (filled[0, :, far:] == -1.0).all()  # beyond the reach: the fallback
    whole = img[0]
    assert filters.fill_invalid(whole, np.ones((40, 40), bool), 0.0) is whole  # nothing to fill
