"""Registration measured at PAN resolution (:mod:`ssdiff_cli.scene.registration`): precision on
real scenes displaced by known sub-pixel amounts and on pairs degraded with the toolbox's
decimation phase (issue 22: at most 0.05 PAN px RMS), on pairs written without georeferencing."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import rasterio
from scipy import ndimage

from ssdiff_cli import coreg
from ssdiff_cli.quality.wald import degrade_phased
from ssdiff_cli.scene.registration import measure_pair
from tests.conftest import requires_data, scene_paths

pytestmark = requires_data


def _write(path, arr) -> str:
    arr = np.asarray(arr, np.float32)
    arr = arr[None] if arr.ndim == 2 else arr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1],
                           count=arr.shape[0], dtype="float32") as ds:
            ds.write(arr)
    return str(path)


def _measure(pan, ms, sensor) -> coreg.Registration:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return measure_pair(pan, [ms], sensor)


def _arrays(name):
    pan_path, ms_path = scene_paths(name)
    with rasterio.open(pan_path) as p, rasterio.open(ms_path) as m:
        pan, ms = p.read(1).astype(np.float64), m.read().astype(np.float64)
    # both cut, corners aligned, to sizes that degrade by the ratio once more
    r = round(pan.shape[1] / ms.shape[2])
    h, w = ms.shape[1] - ms.shape[1] % r, ms.shape[2] - ms.shape[2] % r
    return pan[: r * h, : r * w], ms[:, :h, :w]


# (scene, sensor, ratio): a ratio-2 and a ratio-4 scene whose misregistration is uniform
SCENES = [("l7_fusebox/07", "landsat7", 2), ("ge1_grip", "ge1", 4)]


@pytest.mark.parametrize("name,sensor,ratio", SCENES)
def test_known_displacements_are_measured_to_a_few_hundredths(tmp_path, name, sensor, ratio):
    """The PAN moved by known amounts (0.1 to 1.5 PAN px, both signs; a cubic spline, exact for
    the smooth content the MS is compared with) moves the measured displacement by as much."""
    pan, ms = _arrays(name)
    ms_path = _write(tmp_path / "ms.tif", ms)
    base = _measure(_write(tmp_path / "pan.tif", pan), ms_path, sensor)
    assert base.confident
    errors = []
    for i, (ty, tx) in enumerate([(0.1, -0.05), (-0.3, 0.15), (0.5, -0.25), (-0.75, 0.4),
                                  (1.0, -0.5), (-1.5, 0.75)]):
        moved = ndimage.shift(pan, (ty, tx), order=3, mode="reflect")
        reg = _measure(_write(tmp_path / f"pan{i}.tif", moved), ms_path, sensor)
        # the PAN content moved by +t, so the MS content now lies -t further from it
        errors += [reg.dy - (base.dy - ty), reg.dx - (base.dx - tx)]
    assert math.sqrt(np.mean(np.square(errors))) <= 0.05


@pytest.mark.parametrize("name,sensor,ratio", [("l7_fusebox/07", "landsat7", 2),
                                               ("wv3_cristianics", "wv3", 4)])
def test_degraded_pairs_phase_is_measured(tmp_path, name, sensor, ratio):
    """Wald-degraded pairs written without georeferencing, the samples taken at the toolbox's
    phase (0-based index ratio/2 of each block: half a pixel past the centre) and at other
    sub-pixel phases: the measured displacement is what the phases and the original pair's own
    misregistration predict. (Scenes whose misregistration is uniform: on ge1_grip, whose bands
    are displaced unequally, the reduced pair's own offset differs by 0.1 reduced px while every
    phase is still measured to 0.01: see benchmarks/bench_registration.py.)"""
    pan, ms = _arrays(name)
    r = ratio
    base = _measure(_write(tmp_path / "pan.tif", pan), _write(tmp_path / "ms.tif", ms), sensor)
    errors = []
    toolbox = (r // 2 - (r - 1) / 2,) * 2
    for i, (p_pan, p_ms) in enumerate([(toolbox, toolbox), ((0.0, 0.0), (0.3, -0.4)),
                                       ((-0.25, 0.5), (0.5, 0.1))]):
        pan_r = degrade_phased(pan, 0.15, r, p_pan)
        ms_r = degrade_phased(ms, 0.3, r, p_ms)
        reg = _measure(_write(tmp_path / f"p{i}.tif", pan_r), _write(tmp_path / f"m{i}.tif", ms_r),
                       sensor)
        # PAN' pixel j lies at original MS index j + p_pan / r; MS' pixel k holds original MS
        # index r k + (r - 1) / 2 + p_ms, where the grids put it at r k + (r - 1) / 2
        for axis, got in ((0, reg.dy), (1, reg.dx)):
            expected = [base.dy, base.dx][axis] / r + p_pan[axis] / r - p_ms[axis]
            errors.append(got - expected)
    assert math.sqrt(np.mean(np.square(errors))) <= 0.05


def test_a_geotransform_is_refined_not_assumed():
    """landsat_istanbul: the geotransforms put the MS half a PAN pixel off the PAN lattice
    (Landsat's grid), and the refinement measures what is left after them (near zero), where the
    same pixels without georeferencing measure the half pixel itself."""
    pan, ms = scene_paths("landsat_istanbul")
    geo = _measure(pan, ms, None)
    assert geo.confident and geo.magnitude < 0.05


def test_unrelated_images_are_not_confident(tmp_path):
    """A PAN paired with another scene's MS gives no confident measurement."""
    pan, _ = _arrays("l7_fusebox/07")
    _, ms = _arrays("l7_fusebox/39")
    reg = _measure(_write(tmp_path / "p.tif", pan), _write(tmp_path / "m.tif", ms), "landsat7")
    assert not reg.confident
