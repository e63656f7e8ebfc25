"""Co-registration measurement: synthetic shifts of real image crops, and the real pairs."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import rasterio
from scipy import ndimage

from ssdiff_cli import filters
from ssdiff_cli.coreg import ShiftReport, measure_shift, phase_correlation, verdict
from ssdiff_cli.sensors import get_preset
from tests.conftest import DATA
from tests.conftest import requires_data as needs_data


def read(name: str, which: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(DATA / name / f"{which}.tif") as ds:
            return ds.read().astype(np.float64)


def fourier_shift(img: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """``img`` with its content moved by ``shift`` (rows down, columns right), circularly."""
    return np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(img), shift)).real


@pytest.fixture(scope="module")
def wv2_pan() -> np.ndarray:
    return read("wv2_grip", "pan")[0]


@needs_data
@pytest.mark.parametrize("shift", [(0.3, -0.7), (-1.35, 0.45), (2.6, 1.15)])
def test_subpixel_shift_of_real_crop(wv2_pan, shift):
    big = wv2_pan[300:556, 400:656]
    moved = fourier_shift(big, shift)
    # cut the centre so that the circular wrap of the Fourier shift stays outside
    ref, mov = big[64:192, 64:192], moved[64:192, 64:192]
    dy, dx, peak = phase_correlation(ref, mov)
    assert dy == pytest.approx(shift[0], abs=0.1)
    assert dx == pytest.approx(shift[1], abs=0.1)
    assert peak > 0.5


@needs_data
def test_sign_convention(wv2_pan):
    ref = wv2_pan[500:628, 500:628]
    # mov's content sits 3 rows lower and 5 columns further left than ref's
    mov = wv2_pan[497:625, 505:633]
    assert np.array_equal(mov[3:, :-5], ref[:-3, 5:])
    dy, dx, _ = phase_correlation(ref, mov)
    assert (dy, dx) == pytest.approx((3.0, -5.0), abs=0.05)
    dy, dx, _ = phase_correlation(mov, ref)
    assert (dy, dx) == pytest.approx((-3.0, 5.0), abs=0.05)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        phase_correlation(np.zeros((8, 8)), np.zeros((8, 9)))
    with pytest.raises(TypeError):
        measure_shift(np.zeros((8, 8)), np.zeros((8, 8)))


@needs_data
def test_measure_shift_synthetic_in_pan_pixels(wv2_pan):
    low = filters.degrade(wv2_pan, 0.11, 4).astype(np.float64)  # 320 x 320
    moved = fourier_shift(low, (0.25, -0.4))  # in MS pixels
    valid = np.ones(low.shape, bool)
    valid[:110, :110] = False  # the top-left window is mostly invalid
    rep = measure_shift(low, moved, valid, ratio=4)
    assert rep.dy == pytest.approx(1.0, abs=0.12)
    assert rep.dx == pytest.approx(-1.6, abs=0.12)
    assert rep.magnitude == pytest.approx(math.hypot(1.0, 1.6), abs=0.15)
    assert rep.dy_ms == pytest.approx(0.25, abs=0.03)
    assert len(rep.windows) == 9
    assert rep.n_used == 8
    assert len(rep.rejected) == 1 and "invalid" in rep.rejected[0].reason
    assert verdict(rep) == "warn"


def test_flat_and_uncorrelated_windows_rejected():
    rng = np.random.default_rng(0)
    a = ndimage.gaussian_filter(rng.normal(size=(200, 200)), 2)
    b = np.roll(a, (1, 2), axis=(0, 1))
    # windows of 64 px start at rows/cols 0, 68 and 136
    a[:64, :64] = 0.0
    b[:64, :64] = 0.0  # flat in both
    b[136:, 136:] = ndimage.gaussian_filter(rng.normal(size=(64, 64)), 2)  # unrelated content
    rep = measure_shift(a, b, ratio=2, window_size=64)
    assert len(rep.windows) == 9 and rep.n_used == 7
    reasons = [w.reason for w in rep.rejected]
    assert any("flat" in r for r in reasons)
    assert any("low correlation" in r for r in reasons)
    assert rep.dy == pytest.approx(2.0, abs=0.15) and rep.dx == pytest.approx(4.0, abs=0.15)
    assert verdict(rep) == "refuse"


def test_small_scene_single_window_and_unmeasurable():
    rng = np.random.default_rng(3)
    a = ndimage.gaussian_filter(rng.normal(size=(41, 41)), 1.5)
    rep = measure_shift(a, np.roll(a, 1, axis=1), ratio=2)
    assert len(rep.windows) == 1 and rep.windows[0].height == 41
    assert rep.dx == pytest.approx(2.0, abs=0.2)
    rep = measure_shift(a, a, np.zeros(a.shape, bool), ratio=2)
    assert not rep.measured and math.isnan(rep.dy)
    assert verdict(rep) == "warn"


def test_verdict_thresholds():
    def rep(dy, dx):
        return ShiftReport(dy, dx, 4, 1)

    assert verdict(rep(0.3, 0.3)) == "ok"
    assert verdict(rep(0.0, 0.5)) == "warn"
    assert verdict(rep(1.2, -1.0)) == "warn"
    assert verdict(rep(-2.0, 0.0)) == "refuse"
    assert verdict(rep(0.3, 0.3), warn_px=0.4) == "warn"
    assert verdict(rep(1.5, 0.0), refuse_px=1.0) == "refuse"


# ------------------------------------------------------------------------------------------
# The real pairs


def intensity(ms: np.ndarray) -> np.ndarray:
    return ms.mean(axis=0)


@needs_data
def test_real_wv2_grip_small_shift(wv2_pan):
    ms = read("wv2_grip", "ms")
    low = filters.degrade(wv2_pan, get_preset("wv2").pan_gnyq, 4)
    rep = measure_shift(low, intensity(ms), ratio=4)
    assert rep.n_used >= 7
    assert rep.magnitude < 1.5, rep.summary()


@needs_data
def test_real_ge1_grip_small_shift():
    pan, ms = read("ge1_grip", "pan")[0], read("ge1_grip", "ms")
    low = filters.degrade(pan, get_preset("ge1").pan_gnyq, 4)
    rep = measure_shift(low, intensity(ms), ratio=4)
    assert rep.magnitude < 1.5, rep.summary()


@needs_data
def test_real_wv3_cristianics_y_misregistration():
    pan, ms = read("wv3_cristianics", "pan")[0], read("wv3_cristianics", "ms")
    # the MS corner falls on PAN pixel (row 1, col 2)
    cut = pan[1 : 1 + 4 * 143, 2 : 2 + 4 * 144]
    low = filters.degrade(cut, get_preset("wv3").pan_gnyq, 4)
    valid = (filters.decimate_mean((cut != 0).astype(np.float32), 4) > 0.999) & (ms != 0).all(0)
    rep = measure_shift(low, intensity(ms), valid, ratio=4)
    # README: about 1.2 PAN px of residual misregistration in y (measured: dy ~ -1.2, dx ~ +0.1)
    assert 0.6 <= abs(rep.dy) <= 2.0, rep.summary()
    assert abs(rep.dx) < 0.6, rep.summary()
    assert verdict(rep) == "warn"


@needs_data
def test_real_landsat_half_pixel_grid_offset():
    # The PAN grid's corner lies 7.5 m (half a PAN pixel) west and south of the MS grid's, so a
    # plain 2x2 degradation samples half a PAN pixel left of and below each MS pixel centre: the
    # MS content then appears at about (+0.5, -0.5) PAN px relative to the degraded PAN.
    pan, ms = read("landsat8_satellite", "pan")[0], read("landsat8_satellite", "ms")
    p = get_preset("l8")
    low = filters.degrade(pan, p.pan_gnyq, 2)
    inten = np.tensordot(p.weights(), ms, axes=1)
    rep = measure_shift(low, inten, ratio=2)
    assert len(rep.windows) == 1
    assert 0.1 < rep.dy < 0.9 and -0.9 < rep.dx < -0.1, rep.summary()
