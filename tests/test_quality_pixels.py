"""Pixel kernels: spectral angles (exact zero, right angles, zero-norm pixels) and a strip's
SAM / ERGAS / PSNR sums over its valid pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ssdiff_cli.quality.pixels import pixel_sums, spectral_angles


def test_spectral_angles():
    f = np.array([[1.0, 1.0, 0.0, 3.0, 0.0], [2.0, 0.0, 1.0, 4.0, 0.0]])
    r = np.array([[1.0, 0.0, 1.0, 6.0, 1.0], [2.0, 1.0, 1.0, 8.0, 1.0]])
    ang, ok = spectral_angles(f, r)
    assert ok.tolist() == [True, True, True, True, False]  # last pixel: zero norm
    assert ang[0] == 0.0 and ang[3] == 0.0  # same vector, same direction: exactly 0
    assert ang[1] == pytest.approx(math.pi / 2)
    assert ang[2] == pytest.approx(math.pi / 4)
    rng = np.random.default_rng(0)
    a, b = rng.uniform(1, 2, (8, 100)), rng.uniform(1, 2, (8, 100))
    cos = (a * b).sum(0) / np.linalg.norm(a, axis=0) / np.linalg.norm(b, axis=0)
    assert spectral_angles(a, b)[0] == pytest.approx(np.arccos(cos), rel=1e-9)


def test_pixel_sums_use_the_valid_pixels_only():
    rng = np.random.default_rng(1)
    r = rng.uniform(10, 20, (4, 8, 30))
    f = r + rng.normal(0, 1, r.shape)
    valid = rng.uniform(size=(8, 30)) > 0.3
    f_bad = f.copy()
    f_bad[:, ~valid] = np.nan
    n, sam_sum, sam_n, sse, sum_r, rmax = pixel_sums(f_bad, r, valid)
    fv, rv = f[:, valid], r[:, valid]
    assert n == sam_n == int(valid.sum())
    assert sam_sum == pytest.approx(spectral_angles(fv, rv)[0].sum(), rel=1e-12)
    assert sse == pytest.approx(((fv - rv) ** 2).sum(axis=1), rel=1e-12)
    assert sum_r == pytest.approx(rv.sum(axis=1), rel=1e-12)
    assert rmax == rv.max()
    assert pixel_sums(f, r, np.zeros((8, 30), bool))[0] == 0
