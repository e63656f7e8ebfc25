"""``--coregister`` corrects the measured shift, not only reports it (issue 14, item 13), on
wv3_cristianics (about 1.4 PAN px of misregistration in y)."""

from __future__ import annotations

import json

import numpy as np
import rasterio
from typer.testing import CliRunner

from ssdiff_cli import coreg
from ssdiff_cli.cli import app
from ssdiff_cli.sensors import get_preset
from tests.conftest import requires_data, scene_paths

pytestmark = requires_data
runner = CliRunner()


def _upsampled_shift(pan_path, out_path) -> coreg.ShiftReport:
    """The shift between the PAN and an upsampled-MS output, measured from the files: both
    averaged over 4x4 PAN px blocks, the MS as the WorldView-3 pseudo-PAN."""
    with rasterio.open(out_path) as out, rasterio.open(pan_path) as pan:
        # the output grid is a window of the PAN grid
        col, row = ~pan.transform @ (out.transform.c, out.transform.f)
        window = rasterio.windows.Window(round(col), round(row), out.width, out.height)
        p = pan.read(1, window=window).astype(np.float64)
        m = out.read().astype(np.float64)
        valid = (out.read_masks(1) > 0) & (p != 0)
    h, w = (p.shape[0] // 4) * 4, (p.shape[1] // 4) * 4

    def block(a):
        return a[..., :h, :w].reshape(*a.shape[:-2], h // 4, 4, w // 4, 4).mean(axis=(-3, -1))

    intensity = np.tensordot(get_preset("wv3").weights(), block(m), axes=1)
    ok = block(valid.astype(float)) == 1
    return coreg.measure_shift(block(p), intensity, valid=ok, ratio=4)


def _sharpen(tmp_path, name, *extra):
    pan, ms = scene_paths("wv3_cristianics")
    out = tmp_path / name
    result = runner.invoke(app, ["sharpen", str(pan), str(ms), "-o", str(out), "-m", "upsample",
                                 "--json", *extra])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_coregister_moves_the_ms_onto_the_pan(tmp_path):
    pan, _ = scene_paths("wv3_cristianics")
    plain, plain_report = _sharpen(tmp_path, "plain.tif")
    fixed, fixed_report = _sharpen(tmp_path, "fixed.tif", "--coregister")
    assert plain_report["shift"]["magnitude"] > 1.0
    assert fixed_report["shift"]["magnitude"] < 0.35
    assert any(n.startswith("--coregister: measured") for n in fixed_report["notes"])
    # measured again, independently, on the written files
    before, after = _upsampled_shift(pan, plain), _upsampled_shift(pan, fixed)
    assert before.magnitude > 1.0
    assert after.magnitude < 0.35 and after.magnitude < before.magnitude / 3


def test_coregister_lets_a_refused_pair_through(tmp_path):
    """A shift above --refuse-px is refused (exit 4) unless it is corrected first."""
    pan, ms = scene_paths("wv3_cristianics")
    args = ["sharpen", str(pan), str(ms), "-m", "brovey", "--refuse-px", "1.0", "-q"]
    refused = runner.invoke(app, [*args, "-o", str(tmp_path / "a.tif")])
    assert refused.exit_code == 4
    fixed = runner.invoke(app, [*args, "-o", str(tmp_path / "b.tif"), "--coregister"])
    assert fixed.exit_code == 0, fixed.output
