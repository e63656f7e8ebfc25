"""Sensor presets (``ssdiff_cli.sensors.presets``): the published MTF gains, layouts, names and
aliases, generic presets, and ``ssdiff info --sensors`` with gains and sources."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ssdiff_cli.cli import app
from ssdiff_cli.errors import BadInputError
from ssdiff_cli.sensors import (
    DEFAULT_MS_GNYQ,
    DEFAULT_PAN_GNYQ,
    MTF_DEFAULT_SOURCE,
    MTF_TOOLBOX_SOURCE,
    generic_preset,
    get_preset,
    list_presets,
)

runner = CliRunner()


#: The project's reference (ssdiff-reference.md section 3) quotes the published toolbox gains; it
#: lives beside the project, with the shared scenes, not in it.
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "docs" / "ssdiff-reference.md"

needs_reference = pytest.mark.skipif(
    not REFERENCE.exists(), reason=f"the project reference {REFERENCE} is not beside the project")


def _published_gains() -> tuple[dict[str, list[float]], dict[str, float]]:
    """MS and PAN gains at Nyquist by sensor name, read from the reference's section 3 (its
    ``MS GNyq:`` and ``PAN GNyq:`` lists: ``QB [0.34, 0.32, ...]``, ``GeoEye-1 0.23 ×4``, ...)."""
    text = " ".join(REFERENCE.read_text(encoding="utf-8").split())
    ms_text = text.split("MS GNyq:")[1].split("PAN GNyq:")[0]
    pan_text = text.split("PAN GNyq:")[1].split("##")[0]
    number = r"\d+(?:\.\d+)?(?: ×\d+)?"
    entry = re.compile(rf"([A-Za-z][\w-]*) (\[[^\]]*\]|{number})")

    def values(item: str) -> list[float]:
        out = []
        for value, times in re.findall(r"(\d+(?:\.\d+)?)(?: ×(\d+))?", item):
            out += [float(value)] * int(times or 1)
        return out

    ms = {name: values(item) for name, item in entry.findall(ms_text)}
    pan = {name: values(item)[0] for name, item in entry.findall(pan_text)}
    return ms, pan


@needs_reference
def test_gnyq_values_are_the_published_ones():
    """Every preset whose gains claim the toolbox as source has the gains the reference quotes
    (looked up by the reference's own sensor names); every other preset has the toolbox's
    generic gain, or says which published sensor it borrows from."""
    ms, pan = _published_gains()
    assert {"QB", "IKONOS", "GeoEye-1", "WV2", "WV3", "others"} <= set(ms), ms
    assert set(pan) == set(ms) - {"others"}, pan
    published = {}
    for name, gains in ms.items():
        if name == "others":
            continue
        preset = get_preset(name)
        assert list(preset.ms_gnyq) == pytest.approx(gains), name
        assert preset.pan_gnyq == pytest.approx(pan[name]), name
        assert MTF_TOOLBOX_SOURCE in preset.mtf_source, name
        published[preset.key] = preset
    (generic,) = ms["others"]
    for preset in list_presets():
        if preset.key in published:
            continue
        if MTF_TOOLBOX_SOURCE in preset.mtf_source:  # borrowed: "..., as GeoEye-1"
            twin = get_preset(preset.mtf_source.rpartition(", as ")[2])
            assert twin.key in published, preset.key
            assert (preset.ms_gnyq, preset.pan_gnyq) == (twin.ms_gnyq, twin.pan_gnyq), preset.key
        else:
            assert set(preset.ms_gnyq) == {generic}, preset.key


def test_gnyq_values_are_plausible_and_say_where_they_come_from():
    for preset in [*list_presets(), generic_preset(5, 3)]:
        gains = (*preset.ms_gnyq, preset.pan_gnyq)
        assert all(0 < g < 1 for g in gains), preset.key
        # the PAN, sampled ratio times finer, keeps less contrast at its own Nyquist than the MS
        # bands at theirs: so in every published set (a swapped entry breaks it)
        assert preset.pan_gnyq < min(preset.ms_gnyq), preset.key
        if MTF_TOOLBOX_SOURCE not in preset.mtf_source:  # generic gains, and it says so
            assert preset.mtf_source == MTF_DEFAULT_SOURCE, preset.key
            assert set(preset.ms_gnyq) == {DEFAULT_MS_GNYQ}, preset.key
            assert preset.pan_gnyq == DEFAULT_PAN_GNYQ, preset.key


def test_preset_layouts():
    wv2 = get_preset("wv2")
    assert wv2.band_names[0] == "coastal" and wv2.band_names[-1] == "nir2"
    assert wv2.rgb == (4, 2, 1)
    w = wv2.weights()
    assert w.sum() == pytest.approx(1.0)
    assert w[0] < 0.02 and w[-1] < 0.02 and w[4] > 0.1
    for key in ("qb", "ge1", "ikonos", "gf2", "phr", "spot67", "l8", "l9"):
        p = get_preset(key)
        assert p.n_bands == 4 and p.rgb == (2, 1, 0), key
    assert get_preset("gf2").bit_depth == 10
    assert get_preset("phr").bit_depth == 12 and get_preset("spot67").bit_depth == 12
    l8 = get_preset("l8")
    assert l8.ratio == 2 and l8.weights()[3] == pytest.approx(0.0, abs=0.02)
    assert {p.key for p in list_presets()} >= {
        "wv2",
        "wv3",
        "qb",
        "ge1",
        "ikonos",
        "gf2",
        "phr",
        "spot67",
        "l8",
        "l9",
    }


@pytest.mark.parametrize(
    "alias, key",
    [
        ("WV02", "wv2"),
        ("WV2", "wv2"),
        ("WORLDVIEW-2", "wv2"),
        ("worldview 2", "wv2"),
        ("WorldView-3", "wv3"),
        ("WV03", "wv3"),
        ("GeoEye1", "ge1"),
        ("GE01", "ge1"),
        ("QB02", "qb"),
        ("QuickBird", "qb"),
        ("IKONOS", "ikonos"),
        ("GF2", "gf2"),
        ("Gaofen-2", "gf2"),
        ("PHR 1A", "phr"),
        ("PHR1B", "phr"),
        ("SPOT 6", "spot67"),
        ("SPOT-7", "spot67"),
        ("Landsat-8 OLI", "l8"),
        ("LANDSAT_8", "l8"),
        ("LANDSAT_9", "l9"),
    ],
)
def test_aliases_resolve(alias, key):
    assert get_preset(alias).key == key


def test_unknown_name_lists_choices():
    with pytest.raises(BadInputError) as err:
        get_preset("Sentinel-2")
    msg = str(err.value)
    assert "Sentinel-2" in msg
    for key in ("wv2", "wv3", "ge1", "qb", "l8"):
        assert key in msg


def test_generic_preset():
    p = generic_preset(5, 3, 12)
    assert p.generic and p.n_bands == 5 and p.ratio == 3 and p.bit_depth == 12
    assert set(p.ms_gnyq) == {0.3} and p.pan_gnyq == 0.15
    assert np.allclose(p.weights(), 0.2)
    with pytest.raises(BadInputError):
        generic_preset(0, 4)


def test_presets_asked_for_exist():
    for name, key in (("Landsat-7 ETM+", "l7"), ("LANDSAT_9", "l9"), ("QuickBird", "qb"),
                      ("IKONOS", "ikonos"), ("Pléiades", "phr"), ("PHR1A", "phr"),
                      ("Pléiades Neo", "pneo"), ("SPOT 7", "spot67"), ("WorldView-4", "wv4"),
                      ("SuperView-1", "sv1"), ("GF-2", "gf2")):
        assert get_preset(name).key == key, name


def test_published_gains_and_their_source():
    """The toolbox's gains where it publishes them (the values themselves are checked against the
    reference in test_sensors.py); WorldView-4 borrows GeoEye-1's; the others say they are generic."""
    wv4, ge1 = get_preset("wv4"), get_preset("ge1")
    assert wv4.ms_gnyq == ge1.ms_gnyq and wv4.pan_gnyq == ge1.pan_gnyq
    for p in list_presets():
        assert p.mtf_source
        published = p.key in ("qb", "ikonos", "ge1", "wv2", "wv3", "wv4")
        assert (MTF_TOOLBOX_SOURCE in p.mtf_source) == published, p.key


def test_info_sensors_lists_gains_and_sources():
    result = runner.invoke(app, ["info", "--sensors", "--json"])
    assert result.exit_code == 0, result.output
    listed = {s["key"]: s for s in json.loads(result.stdout)["sensors"]}
    assert set(listed) == {p.key for p in list_presets()}
    for preset in list_presets():
        assert listed[preset.key]["ms_gnyq"] == list(preset.ms_gnyq), preset.key
        assert listed[preset.key]["pan_gnyq"] == preset.pan_gnyq, preset.key
        assert listed[preset.key]["mtf_source"] == preset.mtf_source, preset.key
    assert "toolbox" in listed["ikonos"]["mtf_source"]
    text = runner.invoke(app, ["info", "--sensors"]).stdout
    ikonos = get_preset("ikonos")
    gains = ", ".join(f"{g:g}" for g in ikonos.ms_gnyq)
    assert "Landsat-7" in text and f"GNyq MS {gains}; PAN {ikonos.pan_gnyq:g}" in text
