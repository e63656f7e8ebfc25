"""README's first command (issue 22, item 7: "the first command shows the model"): the demo
fetches the WorldView-2 Rotterdam tiles of the PyPI wheel solaris 0.4.0, writes tile 3 as a PAN +
MS pair (``examples/solaris_tiles.py``), sharpens it with the default method and shows the result
beside the inputs, saying what ran and what the guard measured. Tile 1 is never used."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio

from tests.conftest import DATA, scene_paths

ROOT = Path(__file__).resolve().parents[1]
WHEEL = ROOT / "examples" / "data" / "solaris-0.4.0-py3-none-any.whl"

requires_wheel = pytest.mark.skipif(
    not WHEEL.exists() or not (DATA / "wv2_solaris_2" / "ms.tif").exists(),
    reason=f"needs the solaris 0.4.0 wheel at {WHEEL} (`bash examples/demo.sh` fetches it) and "
           f"the shared wv2_solaris tiles at {DATA}")


def _example(name: str):
    spec = importlib.util.spec_from_file_location(f"demo_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_first_commands_are_the_demo_and_the_tests_and_the_demo_uses_the_defaults():
    readme = (ROOT / "README.md").read_text()
    first, second = re.search(r"```bash\n(.*?)\n(.*?)\n", readme).groups()
    assert first.startswith("bash examples/demo.sh ")
    assert second.startswith("bash scripts/setup.sh && .venv/bin/python -m pytest -q ")
    assert "CC-BY-SA 4.0" in readme[:readme.index("## Install")]
    demo = (ROOT / "examples" / "demo.sh").read_text()
    tiles = _example("solaris_tiles")
    assert f"solaris==0.4.0 --hash=sha256:{tiles.WHEEL_SHA256}" in demo
    assert "bash scripts/setup.sh" in demo and "side_by_side.py" in demo
    sharpen = [line for line in demo.split("\n.venv/bin/") if "_sharpened.tif" in line
               and line.startswith("ssdiff sharpen")]
    assert len(sharpen) == 1 and " -m " not in sharpen[0] and "--method" not in sharpen[0]
    assert "--json" in sharpen[0]
    # tile 1 is held out: the demo has no way to reach it
    assert tiles.TILES == (2, 3) and "SSDIFF_DEMO_TILE:-3" in demo and "2|3)" in demo


def test_the_conversion_refuses_tile_1_and_a_file_that_is_not_the_wheel(tmp_path):
    tiles = _example("solaris_tiles")
    with pytest.raises(ValueError, match="tile 1 is held out"):
        tiles.convert_tile(WHEEL, 1, tmp_path)
    with pytest.raises(ValueError, match="not that of PyPI's solaris-0.4.0"):
        tiles.convert_tile(ROOT / "README.md", 2, tmp_path)
    assert not list(tmp_path.iterdir())


@requires_wheel
@pytest.mark.parametrize("tile", [2, 3])
def test_the_conversion_gives_the_shared_tiles(tmp_path, tile):
    """The wheel's tile, converted as the demo does, is ../shared/data/wv2_solaris_N: the same
    values (every second pixel of the 2x nearest-neighbour MS), the same georeferencing (twice
    the tutorial's MS pixel, the same origin), nodata, tags and band names."""
    tiles = _example("solaris_tiles")
    pan, ms = tiles.convert_tile(WHEEL, tile, tmp_path / "scene")
    shared_pan, shared_ms = scene_paths(f"wv2_solaris_{tile}")
    for mine, theirs in ((pan, shared_pan), (ms, shared_ms)):
        with rasterio.open(mine) as a, rasterio.open(theirs) as b:
            assert a.dtypes == b.dtypes and a.shape == b.shape and a.count == b.count
            assert np.array_equal(a.read(), b.read())
            assert a.transform == b.transform and a.crs == b.crs and a.nodata == b.nodata == 0
            assert a.tags() == b.tags() and a.descriptions == b.descriptions
    import zipfile

    from rasterio.io import MemoryFile

    with zipfile.ZipFile(WHEEL) as zf:
        raw = zf.read(f"solaris/data/preproc_tutorial/ms{tile}.tif")
    with MemoryFile(raw) as mem, mem.open() as src, rasterio.open(ms) as out:
        assert (src.width, src.height) == (2 * out.width, 2 * out.height)
        assert out.transform.a == 2 * src.transform.a and out.transform.e == 2 * src.transform.e
        assert (out.transform.c, out.transform.f) == (src.transform.c, src.transform.f)
    assert sorted(p.name for p in (tmp_path / "scene").iterdir()) == ["ms.tif", "pan.tif"]


def _report(fallback: bool) -> dict:
    guard = {"window": [32, 32, 512, 512], "model": {"HQNR": 0.97719}, "base": {"HQNR": 0.8758},
             "fallback": fallback}
    model = {"name": "ssdiff", "model": "ssdiff-generalist", "guard": guard}
    method = ({"name": "mtf-glp-fs", "fallback_from": model, "guard": guard} if fallback
              else model)
    return {"method": method, "sensor": {"name": "WorldView-2 (4-band bundle)"}}


@pytest.mark.skipif(not (DATA / "wv2_solaris_3" / "ms.tif").exists(),
                    reason=f"needs the shared wv2_solaris_3 tile at {DATA}")
@pytest.mark.parametrize("fallback", [False, True])
def test_demo_says_what_ran_what_the_guard_measured_and_the_model_terms(tmp_path, capsys,
                                                                       monkeypatch, fallback):
    """The demo's report: the method, the guard's decision with both HQNR figures and, when the
    model ran, its training data's terms; the RGB of WorldView-2's 4-band bundle (bands 3, 2,
    1). The panel itself is tested in test_side_by_side; here it is replaced."""
    demo = _example("side_by_side")
    calls = {}

    def fake_panel(pan, up, fused, png, rgb, titles):
        calls.update(rgb=rgb, titles=titles)
        return Path(png), (0, 0)

    monkeypatch.setattr(demo, "side_by_side", fake_panel)
    report = tmp_path / "r.json"
    report.write_text(json.dumps(_report(fallback)))
    pan, ms = scene_paths("wv2_solaris_3")
    demo.main(str(pan), str(ms), str(ms), str(report), str(tmp_path / "q.png"))
    out = capsys.readouterr().out
    assert calls["rgb"] == (2, 1, 0)
    figures = "HQNR 0.977 for the model, 0.876 for MTF-GLP-FS, on the central 512 x 512 px window"
    if fallback:
        assert "method: mtf-glp-fs" in out and f"guard: fell back to MTF-GLP-FS ({figures})" in out
        assert "model's fallback" in calls["titles"][2] and "trained on" not in out
    else:
        assert "method: ssdiff" in out and f"guard: the model kept ({figures})" in out
        assert "model: ssdiff-generalist" in out and "CC-BY-SA-4.0" in out
        assert "ssdiff-generalist" in calls["titles"][2]
