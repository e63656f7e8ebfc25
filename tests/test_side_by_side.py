"""The demo's panel (issue 14, item 15; issue 22, item 7): PAN, upsampled MS and the result side
by side where they differ, on the demo's scene (the WorldView-2 Rotterdam tile 3, as
``examples/demo.sh`` writes it; the shared copy is the same file) sharpened with the default
method, which keeps the model there. The demo script itself: tests/test_demo.py."""

from __future__ import annotations

import json

import numpy as np
import rasterio
from PIL import Image
from typer.testing import CliRunner

from ssdiff_cli.cli import app
from ssdiff_cli.quality.side_by_side import busiest_crop, side_by_side
from tests.conftest import requires_data, scene_paths

runner = CliRunner()


@requires_data
def test_side_by_side_on_the_demo_scene(tmp_path):
    """The demo's steps on its scene: default method (the model, kept by its guard), upsampled
    MS, panel."""
    pan, ms = scene_paths("wv2_solaris_3")
    fused, up, png = tmp_path / "fused.tif", tmp_path / "up.tif", tmp_path / "panel.png"
    result = runner.invoke(app, ["sharpen", str(pan), str(ms), "-o", str(fused), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["sensor"]["name"] == "WorldView-2 (4-band bundle)"
    assert report["method"]["name"] == "ssdiff", report["method"]
    assert report["method"]["guard"]["fallback"] is False
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
        level = np.abs(b).mean()  # a corner all nodata (0 in both) departs nowhere
        return np.abs(a - b).mean() / level if level else -np.inf

    with rasterio.open(fused) as f:
        h, w = f.height, f.width
    assert busiest_crop(fused, up, 256) == (row, col)
    best = score(row, col)
    for r, c in ((0, 0), (0, w - 256), (h - 256, 0), (h - 256, w - 256)):
        assert best >= score(r // 128 * 128, c // 128 * 128) - 1e-12
