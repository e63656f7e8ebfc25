"""Sensor detection (``ssdiff_cli.sensors.detection``), on the shared real scenes and on sidecars
written beside copies. The presets themselves: test_sensor_presets.py."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio

from ssdiff_cli.errors import BadInputError, SensorMismatchError
from ssdiff_cli.sensors import (
    SOURCES,
    Detection,
    describe,
    detect_sensor,
)
from tests.conftest import DATA
from tests.conftest import requires_data as needs_data


def scene(name: str) -> tuple[Path, list[Path]]:
    return DATA / name / "pan.tif", [DATA / name / "ms.tif"]


def copy_scene(name: str, dest: Path) -> tuple[Path, list[Path]]:
    dest.mkdir(parents=True, exist_ok=True)
    for f in ("pan.tif", "ms.tif"):
        shutil.copyfile(DATA / name / f, dest / f)
    return dest / "pan.tif", [dest / "ms.tif"]


def write_tif(path: Path, arr: np.ndarray, tags=None, imagery=None) -> Path:
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=arr.shape[2],
            height=arr.shape[1],
            count=arr.shape[0],
            dtype=arr.dtype,
        ) as ds:
            ds.write(arr)
            if tags:
                ds.update_tags(**tags)
            if imagery:
                ds.update_tags(ns="IMAGERY", **imagery)
    return path


# ------------------------------------------------------------------------------------------
# Detection on the shared scenes


@needs_data
@pytest.mark.parametrize(
    "name, key, source, bit_depth",
    [
        ("wv2_grip", "wv2", "tag:SENSOR", 11),
        ("ge1_grip", "ge1", "tag:SENSOR", 8),
        ("wv3_cristianics", "wv3", "pixel-size", None),
        ("landsat8_satellite", "l8", "tag:SENSOR", 16),
    ],
)
def test_shared_scenes_detected(name, key, source, bit_depth):
    pan, ms = scene(name)
    det = detect_sensor(pan, ms)
    assert isinstance(det, Detection)
    assert det.preset.key == key
    assert det.source == source and det.source in SOURCES
    assert det.bit_depth == bit_depth
    assert det.reason
    text = describe(det)
    assert det.preset.name in text and source in text


@needs_data
def test_override_and_contradiction():
    pan, ms = scene("wv2_grip")
    det = detect_sensor(pan, ms, override="worldview-3")
    assert det.preset.key == "wv3" and det.source == "override"
    with pytest.raises(SensorMismatchError) as err:
        detect_sensor(pan, ms, override="GeoEye-1")
    msg = str(err.value)
    assert "ms.tif" in msg and "8" in msg and "GeoEye-1" in msg
    with pytest.raises(BadInputError):
        detect_sensor(pan, ms, override="nope")


@needs_data
def test_override_4band_bundle_of_8band_sensor():
    pan, ms = scene("ge1_grip")
    det = detect_sensor(pan, ms, override="WV2")
    assert det.source == "override"
    assert det.preset.n_bands == 4
    assert det.preset.band_names == ("blue", "green", "red", "nir1")


@needs_data
def test_imd_sidecar_same_stem(tmp_path):
    # GDAL itself reads pan.IMD into the IMAGERY domain; the source names the sidecar.
    pan, ms = copy_scene("ge1_grip", tmp_path)
    (tmp_path / "pan.IMD").write_text('version = "28.4";\nsatId = "QB02";\nEND;\n')
    det = detect_sensor(pan, ms)
    assert det.preset.key == "qb"
    assert det.source == "sidecar:IMD"
    assert "QB02" in det.reason and "pan.IMD" in det.reason


@needs_data
def test_imd_sidecar_other_name(tmp_path):
    pan, ms = copy_scene("wv2_grip", tmp_path)
    (tmp_path / "19JUN01-M2AS-058.IMD").write_text(
        'BEGIN_GROUP = IMAGE_1\n\tsatId = "WV03";\n\tcatId = "104001";\nEND_GROUP = IMAGE_1\n'
    )
    det = detect_sensor(pan, ms)
    assert det.preset.key == "wv3"
    assert det.source == "sidecar:IMD"
    assert "19JUN01-M2AS-058.IMD" in det.reason


@needs_data
def test_mtl_sidecar(tmp_path):
    pan, ms = copy_scene("landsat8_satellite", tmp_path)
    (tmp_path / "LC09_L1TP_195025_20220601_20220601_02_T1_MTL.txt").write_text(
        "GROUP = LANDSAT_METADATA_FILE\n  GROUP = IMAGE_ATTRIBUTES\n"
        '    SPACECRAFT_ID = "LANDSAT_9"\n    SENSOR_ID = "OLI_TIRS"\n'
        "  END_GROUP = IMAGE_ATTRIBUTES\nEND_GROUP = LANDSAT_METADATA_FILE\nEND\n"
    )
    det = detect_sensor(pan, ms)
    assert det.preset.key == "l9"
    assert det.source == "sidecar:MTL"
    assert "LANDSAT_9" in det.reason


@needs_data
@pytest.mark.parametrize("mission, index, key", [("PHR", "1A", "phr"), ("SPOT", "6", "spot67")])
def test_dimap_sidecar(tmp_path, mission, index, key):
    pan, ms = copy_scene("ge1_grip", tmp_path)
    (tmp_path / f"DIM_{mission}{index}_MS_001.XML").write_text(
        "<?xml version='1.0'?><Dimap_Document><Dataset_Sources><Source_Identification>"
        f"<Strip_Source><MISSION>{mission}</MISSION><MISSION_INDEX>{index}</MISSION_INDEX>"
        "</Strip_Source></Source_Identification></Dataset_Sources></Dimap_Document>"
    )
    det = detect_sensor(pan, ms)
    assert det.preset.key == key
    assert det.source == "sidecar:DIMAP"


def test_imagery_domain_and_band_count_fallback(tmp_path):
    rng = np.random.default_rng(1)
    pan = write_tif(
        tmp_path / "p.tif",
        rng.integers(0, 2047, (64, 64), dtype=np.uint16),
        imagery={"SATELLITEID": "QB02"},
    )
    ms = write_tif(tmp_path / "m.tif", rng.integers(0, 2047, (4, 16, 16), dtype=np.uint16))
    det = detect_sensor(pan, [ms])
    assert det.preset.key == "qb" and det.source == "imagery-metadata"
    assert det.bit_depth == 11  # from the preset

    pan2 = write_tif(tmp_path / "p2.tif", rng.integers(0, 255, (48, 48), dtype=np.uint16))
    bands = [
        write_tif(
            tmp_path / f"b{i}.tif",
            rng.integers(0, 255, (16, 16), dtype=np.uint16),
            tags={"BIT_DEPTH": "12"} if i == 0 else None,
        )
        for i in range(5)
    ]
    det = detect_sensor(pan2, bands)
    assert det.source == "band-count" and det.preset.generic
    assert det.preset.n_bands == 5 and det.preset.ratio == 3
    assert det.bit_depth == 12
    assert "guess" in det.reason


def test_unknown_sensor_tag_falls_through(tmp_path):
    rng = np.random.default_rng(2)
    pan = write_tif(
        tmp_path / "p.tif",
        rng.integers(0, 255, (32, 32), dtype=np.uint8),
        tags={"SENSOR": "MysterySat"},
    )
    ms = write_tif(tmp_path / "m.tif", rng.integers(0, 255, (3, 8, 8), dtype=np.uint8))
    det = detect_sensor(pan, ms)
    assert det.source == "band-count" and det.bit_depth == 8
    assert any("MysterySat" in n for n in det.notes)
    with pytest.raises(BadInputError):
        detect_sensor(tmp_path / "missing.tif", ms)


@needs_data
def test_landsat7_etm_tag_is_recognised():
    """l7_fusebox carries SENSOR=Landsat-7 ETM+ (it fell to "generic" before)."""
    folder = DATA / "l7_fusebox" / "07"
    det = detect_sensor(folder / "pan.tif", folder / "ms.tif")
    assert det.preset.key == "l7" and det.source == "tag:SENSOR"
    assert det.preset.n_bands == 6 and det.preset.ratio == 2 and det.bit_depth == 8
    assert [det.preset.band_names[i] for i in det.preset.rgb] == ["B3 red", "B2 green", "B1 blue"]
