"""The toolbox's filters (``ssdiff_cli.toolbox_filters``): genMTF's FIR, the nearest
decimation and interp23tap, as formulas and on real imagery; the ``interp23tap`` upsampling
kernel of ``filters.upsample`` against the toolbox's interpolator."""

from __future__ import annotations

import numpy as np
import pytest

from ssdiff_cli import filters, toolbox_filters
from ssdiff_cli.sensors import get_preset
from tests.conftest import requires_data, scene_paths


def _read(path):
    import rasterio

    with rasterio.open(path) as ds:
        return ds.read().astype(np.float64)


@pytest.mark.parametrize("ratio", [2, 4])
def test_toolbox_fir_has_the_designed_gain_just_below_nyquist(ratio):
    """genMTF's FIR has the preset's gain where its design puts it, the (N-1)/(2r)-th DFT
    sample (5/41 cycles per pixel at ratio 4), a little less at the low-res Nyquist 1/(2r), and
    a DC gain just under one (the Kaiser window is not renormalised)."""
    for key in ("WV3", "WV2", "QB", "IKONOS", "GeoEye1"):
        preset = get_preset(key)
        for g in (*preset.ms_gnyq, preset.pan_gnyq):
            k = toolbox_filters.toolbox_mtf_kernel(g, ratio)
            assert k.shape == (41, 41)
            design = toolbox_filters.response_at(k, (40 / (2 * ratio)) / 41)
            assert design == pytest.approx(g, rel=3e-3)
            assert g * 0.85 < toolbox_filters.response_at(k, 1 / (2 * ratio)) < g
            assert 0.997 < k.sum() < 1.0
            np.testing.assert_allclose(k, k.T, atol=1e-15)  # circularly symmetric window


@requires_data
def test_toolbox_fir_filters_a_real_band_as_imfilter_replicate_does():
    """The FFT filter equals a direct correlation with edges replicated (MATLAB's
    ``imfilter(.., 'replicate')``, scipy's ``mode='nearest'``) on a real PAN, and its gain at the
    design frequency shows in the real spectrum: a constant-row image made of a real PAN row is
    filtered along the row by exactly the kernel's response."""
    from scipy import ndimage

    pan = _read(scene_paths("ge1_grip")[0])[0, :200, :260]
    k = toolbox_filters.toolbox_mtf_kernel(0.16, 4)
    ours = toolbox_filters.fir_filter(pan, k)
    np.testing.assert_allclose(ours, ndimage.correlate(pan, k, mode="nearest"), rtol=0, atol=1e-9)
    # the response along rows: one real row, periodic, filtered as rows of a constant-column image
    row = pan[100] - pan[100].mean()
    n = len(row)
    f = np.fft.rfftfreq(n)
    profile = k.sum(axis=0)  # a column-constant image sees the kernel summed over its rows
    taps = np.zeros(n)
    for j, v in enumerate(profile):
        taps[(j - 20) % n] += v
    filtered = np.fft.irfft(np.fft.rfft(row) * np.conj(np.fft.rfft(taps)), n)
    gain = np.abs(np.fft.rfft(filtered)) / np.maximum(np.abs(np.fft.rfft(row)), 1e-9)
    at = np.argmin(np.abs(f - 1 / 8))
    assert gain[at] == pytest.approx(toolbox_filters.response_at(k, f[at]), rel=1e-6)
    assert 0.13 < gain[at] < 0.16  # the PAN's 0.16 at 5/41, a little less at 1/8


@requires_data
@pytest.mark.parametrize("ratio", [2, 4])
def test_nearest_decimation_keeps_samples_half_a_pixel_past_the_block_centre(ratio):
    ms = _read(scene_paths("ge1_grip")[1])[:, :64, :64]
    lr = toolbox_filters.decimate_nearest(ms, ratio)
    assert lr.shape == (4, 64 // ratio, 64 // ratio)
    for k in (0, 1, 5):
        np.testing.assert_array_equal(lr[:, k, k], ms[:, ratio * k + ratio // 2, ratio * k + ratio // 2])
    with pytest.raises(ValueError, match="multiple"):
        toolbox_filters.decimate_nearest(ms[:, :63], ratio)


@pytest.mark.parametrize("ratio", [2, 4, 8])
def test_interp23tap_puts_lr_sample_k_on_hr_index_ratio_k_plus_half_ratio(ratio):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 9, 11))
    y = toolbox_filters.interp23tap(x, ratio)
    assert y.shape == (2, 9 * ratio, 11 * ratio)
    s = ratio // 2
    np.testing.assert_allclose(y[:, s::ratio, s::ratio], x, atol=1e-12)  # interpolating
    impulse = np.zeros((1, 24, 24))
    impulse[0, 7, 9] = 1.0
    peak = np.unravel_index(np.argmax(toolbox_filters.interp23tap(impulse, ratio)[0]), (24 * ratio,) * 2)
    assert peak == (ratio * 7 + s, ratio * 9 + s)
    assert toolbox_filters.interp23tap(np.ones((1, 30, 30)), ratio) == pytest.approx(1.0)
    for bad in (3, 6, 1):
        with pytest.raises(ValueError, match="power-of-two"):
            toolbox_filters.interp23tap(x, bad)


@requires_data
@pytest.mark.parametrize("ratio", [2, 4])
def test_interp23tap_kernel_with_a_phase_is_the_toolbox_interpolator_on_a_real_band(ratio):
    """``-r interp23tap`` is the toolbox's interpolator: with the phase that puts sample k on
    ``ratio k + ratio/2`` it gives interp23tap's pixels (up to float32, away from the borders,
    where the toolbox wraps around and ssdiff reflects), and its zero phase is the same kernel
    read on block-centred grids."""
    ms = _read(scene_paths("wv2_grip")[1])[:3, :60, :60]
    tb = toolbox_filters.interp23tap(ms, ratio)
    ph = 1 - 0.5 / ratio
    padded = np.pad(ms, ((0, 0), (1, 0), (1, 0)), mode="edge").astype(np.float32)
    ours = filters.upsample(padded, ratio, phase=(ph, ph), kernel="interp23tap")
    ours = ours[:, : 60 * ratio, : 60 * ratio]
    inner = (slice(None), slice(12 * ratio, -12 * ratio), slice(12 * ratio, -12 * ratio))
    np.testing.assert_allclose(ours[inner], tb[inner], rtol=0, atol=2e-6 * np.abs(ms).max())
    assert filters.kernel_reach("interp23tap") == 8 and filters.kernel_reach("cubic") == 2


@requires_data
def test_interp23tap_upsampling_of_a_window_equals_the_cropped_whole():
    """Tiles read the coarse MS with the kernel's reach around them (``kernel_reach``): the
    window's upsampling is the whole image's, cropped, at any phase."""
    ms = _read(scene_paths("wv2_grip")[1])[:2, :80, :80].astype(np.float32)
    reach = filters.kernel_reach("interp23tap")
    for phase in ((0.0, 0.0), (0.3, 0.8)):
        whole = filters.upsample(ms, 4, kernel="interp23tap", phase=phase)
        m = reach + 1
        part = filters.upsample(ms[:, 20 - m : 60 + m, 24 - m : 64 + m], 4, kernel="interp23tap",
                                phase=phase, rows=(4 * m, 4 * m + 160), cols=(4 * m, 4 * m + 160))
        np.testing.assert_array_equal(part, whole[:, 80:240, 96:256])
