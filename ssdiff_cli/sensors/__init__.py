"""What the library knows about satellite sensors, and how it recognises them.

- :mod:`.presets`: :class:`SensorPreset` (bands, bit depth, ratio, MTF gains at Nyquist,
  pseudo-PAN weights) for the built-in sensors, looked up by name or alias, and the presets
  derived from them (a band subset, a generic sensor);
- :mod:`.detection`: :func:`detect_sensor`, which works out the sensor of a PAN/MS pair from
  metadata, sidecar files, tags, pixel size or band count, and says why (:class:`Detection`).
"""

from ssdiff_cli.sensors.detection import SOURCES, Detection, describe, detect_sensor
from ssdiff_cli.sensors.presets import (
    DEFAULT_MS_GNYQ,
    DEFAULT_PAN_GNYQ,
    MTF_DEFAULT_SOURCE,
    MTF_TOOLBOX_SOURCE,
    SensorPreset,
    find_preset,
    fit_band_count,
    generic_preset,
    get_preset,
    list_presets,
    select_preset_bands,
)

__all__ = [
    "DEFAULT_MS_GNYQ",
    "DEFAULT_PAN_GNYQ",
    "MTF_DEFAULT_SOURCE",
    "MTF_TOOLBOX_SOURCE",
    "SOURCES",
    "Detection",
    "SensorPreset",
    "describe",
    "detect_sensor",
    "find_preset",
    "fit_band_count",
    "generic_preset",
    "get_preset",
    "list_presets",
    "select_preset_bands",
]
