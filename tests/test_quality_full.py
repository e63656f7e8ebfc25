"""The full-resolution scorer on synthetic images: strips against the whole-array definitions,
thread count, masked values, strip geometry and progress."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ssdiff_cli.quality import reference as ref
from ssdiff_cli.quality.full import full_res_halo, full_resolution, full_resolution_from, full_strip_rows
from ssdiff_cli.quality.full_inputs import ArrayInputs
from ssdiff_cli.quality.masks import full_res_erosion
from tests.conftest import detail_injected_scene

GAINS = [0.3, 0.3, 0.28, 0.25]
PAN_GAIN = 0.15


@pytest.fixture(scope="module")
def scene():
    """conftest's detail-injected synthetic scene (320 x 256 PAN px, 4 bands, ratio 4)."""
    return detail_injected_scene(GAINS)


def test_strips_agree_with_the_whole_array_definitions(scene):
    F, pan, lms, ms = scene
    got = full_resolution(F, pan, lms, ms, 4, GAINS, PAN_GAIN, strip_rows=64)
    whole = full_resolution(F, pan, lms, ms, 4, GAINS, PAN_GAIN, strip_rows=4096)
    # float32 filters cut at other rows round differently (1 ulp): agreement to a few 1e-9
    assert got == pytest.approx(whole, rel=1e-8, abs=1e-8)
    assert got["D_lambda"] == pytest.approx(ref.d_lambda_khan(F, lms, 4, GAINS), rel=1e-6)
    assert got["D_s"] == pytest.approx(ref.d_s(F, pan, lms, 4, PAN_GAIN), rel=1e-6)
    assert got["HQNR"] == pytest.approx(ref.hqnr(F, pan, lms, 4, GAINS, PAN_GAIN), rel=1e-6)
    assert got["QNR_D_lambda"] == pytest.approx(ref.d_lambda_qnr(F, ms, 4), rel=1e-6)
    assert got["QNR_D_s"] == pytest.approx(ref.d_s_qnr(F, pan, ms, 4, PAN_GAIN), rel=1e-6)
    assert got["QNR"] == pytest.approx(ref.qnr(F, pan, ms, 4, PAN_GAIN), rel=1e-6)
    assert all(0.0 < got[k] < 1.0 for k in ("D_lambda", "D_s", "QNR_D_lambda", "QNR_D_s"))


def test_threads_do_not_change_the_result(scene):
    one = full_resolution(*scene, 4, GAINS, PAN_GAIN, strip_rows=64, workers=1)
    assert full_resolution(*scene, 4, GAINS, PAN_GAIN, strip_rows=64, workers=3) == one


def test_values_under_the_mask_do_not_matter(scene):
    F, pan, lms, ms = scene
    m = np.ones(pan.shape, bool)
    m[100:150, 30:90] = False
    a = full_resolution(F, pan, lms, ms, 4, GAINS, PAN_GAIN, mask=m, strip_rows=64)
    F2, pan2, lms2 = F.copy(), pan.copy(), lms.copy()
    F2[:, ~m], pan2[~m], lms2[:, ~m] = 1e6, -5e4, np.nan
    assert full_resolution(F2, pan2, lms2, ms, 4, GAINS, PAN_GAIN, mask=m, strip_rows=64) == a
    assert a != full_resolution(F, pan, lms, ms, 4, GAINS, PAN_GAIN, strip_rows=64)
    none = np.zeros(pan.shape, bool)
    assert all(math.isnan(v) for v in full_resolution(*scene, 4, GAINS, PAN_GAIN, mask=none).values())


def test_strip_geometry():
    assert full_res_halo(4) == 36 and full_res_halo(3) % 3 == 0 and full_res_halo(3) >= full_res_erosion(3)
    assert full_strip_rows(4, 4096, 8) == 512
    assert full_strip_rows(3, 100, 4, requested=100) == 480  # one unit: lcm(32, 3, (32 // 3) * 3)
    assert full_strip_rows(4, 100, 4, requested=100) == 96


def test_progress_reports_every_strip(scene):
    F, pan, lms, ms = scene
    calls = []
    full_resolution_from(ArrayInputs(F, pan, lms, ms, 4), 4, GAINS, PAN_GAIN, strip_rows=128,
                         progress=lambda *a: calls.append(a))
    assert calls == [(1, 3, 128 * 256), (2, 3, 256 * 256), (3, 3, 320 * 256)]
