"""Sensor presets GDAL users meet (issue 14, item 12): Landsat-7 ETM+ recognised from its tag,
the other very-high-resolution sensors, and ``ssdiff info --sensors`` with gains and sources."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ssdiff_cli.cli import app
from ssdiff_cli.sensors import MTF_TOOLBOX_SOURCE, detect_sensor, get_preset, list_presets
from tests.conftest import DATA, requires_data

runner = CliRunner()


@requires_data
def test_landsat7_etm_tag_is_recognised():
    """l7_fusebox carries SENSOR=Landsat-7 ETM+ (it fell to "generic" before)."""
    folder = DATA / "l7_fusebox" / "07"
    det = detect_sensor(folder / "pan.tif", folder / "ms.tif")
    assert det.preset.key == "l7" and det.source == "tag:SENSOR"
    assert det.preset.n_bands == 6 and det.preset.ratio == 2 and det.bit_depth == 8
    assert [det.preset.band_names[i] for i in det.preset.rgb] == ["B3 red", "B2 green", "B1 blue"]


def test_presets_asked_for_exist():
    for name, key in (("Landsat-7 ETM+", "l7"), ("LANDSAT_9", "l9"), ("QuickBird", "qb"),
                      ("IKONOS", "ikonos"), ("Pléiades", "phr"), ("PHR1A", "phr"),
                      ("Pléiades Neo", "pneo"), ("SPOT 7", "spot67"), ("WorldView-4", "wv4"),
                      ("SuperView-1", "sv1"), ("GF-2", "gf2")):
        assert get_preset(name).key == key, name


def test_published_gains_and_their_source():
    """The toolbox's gains where it publishes them; the others say they are generic."""
    qb, wv4, ge1 = get_preset("qb"), get_preset("wv4"), get_preset("ge1")
    assert qb.ms_gnyq == (0.34, 0.32, 0.30, 0.22) and qb.pan_gnyq == 0.15
    assert wv4.ms_gnyq == ge1.ms_gnyq and wv4.pan_gnyq == ge1.pan_gnyq == 0.16
    for p in list_presets():
        assert p.mtf_source
        published = p.key in ("qb", "ikonos", "ge1", "wv2", "wv3", "wv4")
        assert (MTF_TOOLBOX_SOURCE in p.mtf_source) == published, p.key


def test_info_sensors_lists_gains_and_sources():
    result = runner.invoke(app, ["info", "--sensors", "--json"])
    assert result.exit_code == 0, result.output
    listed = {s["key"]: s for s in json.loads(result.stdout)["sensors"]}
    assert set(listed) == {p.key for p in list_presets()}
    assert listed["ikonos"]["ms_gnyq"] == [0.26, 0.28, 0.29, 0.28]
    assert "toolbox" in listed["ikonos"]["mtf_source"]
    text = runner.invoke(app, ["info", "--sensors"]).stdout
    assert "Landsat-7" in text and "GNyq MS 0.26, 0.28, 0.29, 0.28; PAN 0.17" in text
