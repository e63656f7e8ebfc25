"""``--coregister auto|on|off``: the MS displacement is measured on every pair and corrected by
default, the output staying exactly on the PAN grid (issue 22), on wv3_cristianics (about 1.5 PAN
px of misregistration in y) and wv2_grip (no georeferencing)."""

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


def test_registration_moves_the_ms_onto_the_pan_by_default(tmp_path):
    pan, _ = scene_paths("wv3_cristianics")
    plain, plain_report = _sharpen(tmp_path, "plain.tif", "--coregister", "off")
    fixed, fixed_report = _sharpen(tmp_path, "fixed.tif")
    forced, forced_report = _sharpen(tmp_path, "forced.tif", "--coregister", "on")
    shift = fixed_report["shift"]
    assert shift["coregister"] == "auto" and shift["applied"] and shift["confident"]
    assert abs(shift["dy"] + 1.47) < 0.05 and abs(shift["dx"]) < 0.15 and shift["stderr"] < 0.05
    assert shift["residual"]["magnitude"] < 0.02 and shift["verdict"] == "ok"
    assert plain_report["shift"]["applied"] is False
    assert plain_report["shift"]["reason"] == "--coregister off"
    assert plain_report["shift"]["magnitude"] > 1.0 and plain_report["shift"]["verdict"] == "warn"
    assert forced_report["shift"]["applied"] and forced_report["shift"]["reason"] == "--coregister on"
    assert any(n.startswith("registration: measured") for n in fixed_report["notes"])
    # measured again, independently, on the written files
    before, after = _upsampled_shift(pan, plain), _upsampled_shift(pan, fixed)
    assert before.magnitude > 1.0
    assert after.magnitude < 0.2 and after.magnitude < before.magnitude / 5
    # every setting writes exactly the same grid: the PAN grid over the footprints' intersection
    grids = set()
    for path in (plain, fixed, forced):
        with rasterio.open(path) as ds:
            grids.add((ds.width, ds.height, tuple(ds.transform), ds.crs.to_string()))
            assert ds.read_masks(1).all()  # nothing the correction uncovered is dropped
    assert len(grids) == 1


def test_registration_keeps_a_non_georeferenced_pair_on_the_pan_grid(tmp_path):
    """wv2_grip (no georeferencing): corrected by about 0.2 PAN px, the output keeps the PAN's
    exact size and every pixel."""
    pan, ms = scene_paths("wv2_grip")
    out = tmp_path / "o.tif"
    result = runner.invoke(app, ["sharpen", str(pan), str(ms), "-o", str(out), "-m", "mtf-glp-fs",
                                 "--json", "-q", "--coregister", "on"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["shift"]["applied"]
    with rasterio.open(out) as ds, rasterio.open(pan) as p:
        assert (ds.width, ds.height) == (p.width, p.height)
        assert ds.read_masks(1).all()


def test_registration_lets_a_refused_pair_through(tmp_path):
    """A shift above --refuse-px is refused (exit 4) when it is not corrected."""
    pan, ms = scene_paths("wv3_cristianics")
    args = ["sharpen", str(pan), str(ms), "-m", "brovey", "--refuse-px", "1.0", "-q"]
    refused = runner.invoke(app, [*args, "-o", str(tmp_path / "a.tif"), "--coregister", "off"])
    assert refused.exit_code == 4
    fixed = runner.invoke(app, [*args, "-o", str(tmp_path / "b.tif")])
    assert fixed.exit_code == 0, fixed.output


def test_coregister_bad_value_is_a_usage_error(tmp_path):
    pan, ms = scene_paths("landsat8_satellite")
    result = runner.invoke(app, ["sharpen", str(pan), str(ms), "-o", str(tmp_path / "o.tif"),
                                 "--coregister", "maybe"])
    assert result.exit_code == 2
