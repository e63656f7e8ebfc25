"""Preparing a scene for any command: check the files, detect the sensor (restricted to a band
selection), open the pair and read the scene sample (:func:`prepare_scene`).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from ssdiff_cli.errors import BadInputError, BitDepthWarning, SensorMismatchError
from ssdiff_cli.gdal_names import dataset_name, ms_band_selection
from ssdiff_cli.scene.grid import Scene
from ssdiff_cli.scene.opening import open_pair
from ssdiff_cli.scene.sampling import SceneSample, ms_maximum, scene_sample
from ssdiff_cli.sensors import (
    Detection,
    detect_sensor,
    fit_band_count,
    get_preset,
    select_preset_bands,
)


def prepare_scene(pan: str | Path, ms: list, sensor: str | None = None,
                  extent: str = "intersection", with_sample: bool = True,
                  bands: list[int] | None = None, nodata: float | str | None = None,
                  resampling: str = "cubic", bit_depth: int | None = None,
                  ms_shift: tuple[float, float] | None = None,
                  ) -> tuple[Scene, Detection, SceneSample | None]:
    """Detect the sensor, open the pair and read the decimated scene sample (unless
    ``with_sample`` is false: the sample is then ``None``, and reading it, a pass over the whole
    PAN, is saved). ``bands``, ``nodata`` and ``resampling`` are :func:`scene.open_pair`'s;
    ``bit_depth`` overrides the detected one (otherwise values above the preset's bit depth
    raise it, with a warning: see :func:`check_bit_depth`); ``ms_shift`` moves the MS grid to
    correct a measured shift (``--coregister``)."""
    ms = [ms] if isinstance(ms, (str, Path)) else list(ms)
    pan = dataset_name(pan)
    ms, selection = ms_band_selection(ms, bands)
    for path in [pan, *ms]:
        if not path.exists():
            raise BadInputError(f"{path}: file does not exist")
    detection = detect_sensor(pan, ms, override=sensor if not selection else None)
    if selection:
        detection = _select_bands(detection, selection, sensor, pan, ms)
    scene = open_pair(pan, ms, extent=extent, expected_bands=detection.preset.n_bands,
                      bands=selection, nodata=nodata, resampling=resampling, ms_shift=ms_shift)
    if scene.bands != detection.preset.n_bands:
        raise BadInputError(
            f"{ms[0]}: {scene.bands} MS bands, but sensor {detection.preset.name} has "
            f"{detection.preset.n_bands}"
        )
    if bit_depth is not None:
        detection.bit_depth = bit_depth
        detection.notes.append(f"bit depth {bit_depth} from --bit-depth")
    if not with_sample:
        return scene, detection, None
    sample = scene_sample(scene.spec)
    if not sample.valid.any():
        raise BadInputError(_no_valid_pixel(pan, ms, scene, sample))
    if bit_depth is None:
        check_bit_depth(scene, detection, sample)
    return scene, detection, sample


def _no_valid_pixel(pan, ms: list, scene: Scene, sample: SceneSample) -> str:
    """Why no pixel is valid: an MS band that is nodata (or NaN) everywhere, named with its
    file, else the PAN and the MS that never overlap validly."""
    nodata = scene.spec.ms_nodata
    for b, band in enumerate(sample.ms, start=1):
        ok = np.isfinite(band)
        if nodata is not None and not np.isnan(nodata):
            ok &= band != nodata
        if not ok.any():
            where = ms[b - 1] if len(ms) == len(sample.ms) > 1 else ms[0]
            return f"{where}: MS band {b} is nodata everywhere; no pixel is valid in every band"
    return f"{pan}, {ms[0]}: no pixel is valid in both the PAN and the MS"


def _select_bands(detection: Detection, selection: list[int], sensor: str | None, pan, ms
                  ) -> Detection:
    """The detection for a band selection: the sensor's preset restricted to those bands when it
    describes the whole file, else (or with ``--sensor``, which then names the selection's
    layout) the preset detected for the selected bands themselves."""
    if max(selection) > detection.ms_bands:
        raise BadInputError(f"{ms[0]}: band selection {selection} outside 1..{detection.ms_bands}")
    if sensor is not None:
        preset = fit_band_count(get_preset(sensor), len(selection))
        if preset is None:
            raise SensorMismatchError(f"sensor {sensor} does not have {len(selection)} bands")
        detection.preset = preset
        detection.source, detection.reason = "override", f"sensor {preset.name} given explicitly"
        return detection
    detection.preset = select_preset_bands(detection.preset, [b - 1 for b in selection],
                                           detection.ms_bands, detection.ratio, detection.bit_depth)
    detection.reason += f"; bands {','.join(map(str, selection))} selected"
    return detection


def check_bit_depth(scene: Scene, detection: Detection, sample: SceneSample) -> None:
    """Raise ``detection.bit_depth`` to what the MS data needs when its values exceed the
    preset's range (a warning says so), rather than clipping them later."""
    bits = detection.bit_depth
    dtype = np.dtype(scene.spec.ms_dtype)
    if not bits or dtype.kind not in "ui" or bits >= dtype.itemsize * 8:
        return
    if not sample.valid.any() or float(np.nanmax(sample.ms[:, sample.valid])) <= 2**bits - 1:
        return
    top = ms_maximum(scene.spec)
    if top <= 2**bits - 1:  # only the resampled sample overshot (cubic ringing), not the data
        return
    needed = min(max(bits, math.ceil(math.log2(top + 1))), dtype.itemsize * 8)
    message = (f"{scene.ms_paths[0]}: values reach {top:g}, above the {bits}-bit range of the "
               f"{detection.preset.name} preset; using {needed} bits from the data "
               "(--bit-depth sets it)")
    detection.bit_depth = needed
    detection.notes.append(message)
    warnings.warn(message, BitDepthWarning, stacklevel=3)

