"""``ssdiff train --family`` (``ssdiff_cli.cli.train``) on a real shared scene: a few KSDiff steps
give a card that ``models show`` reads as a KSDiff model and that ``sharpen --method ksdiff``
runs; the run's files are replaced only with ``--overwrite``, and ``--resume`` continues the
run; contradicting family options are usage errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from conftest import requires_data, scene_paths
from typer.testing import CliRunner

from ssdiff_cli.cli import app
from ssdiff_cli.errors import EXIT_OUTPUT, EXIT_USAGE
from ssdiff_cli.training.crops import scene_terms

runner = CliRunner()
#: A small scene (558 x 375 PAN px, 3 bands, ratio 2) and tiny runs: the test stays short.
SCENE = "landsat_istanbul"
TINY = ["--crop", "32", "--batch-size", "2", "--threads", "1", "-q"]


#: The machine is shared: PyTorch on one thread (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


def _show(model) -> dict:
    shown = runner.invoke(app, ["models", "show", str(model)])
    assert shown.exit_code == 0, shown.output
    return json.loads(shown.stdout)


@requires_data
def test_train_family_ksdiff_makes_a_model_sharpen_runs_obeys_overwrite_and_resumes(tmp_path):
    pan, ms = scene_paths(SCENE)
    out = tmp_path / "models" / "mine"
    args = ["train", f"{pan},{ms}", "--family", "ksdiff", "-o", str(out), "--max-steps", "2", *TINY]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    card = _show(out)
    assert card["model"]["family"] == "ksdiff" and card["training"]["steps"] == 2
    assert card["training"]["crop"] == 32 and card["training"]["batch"] == "2 x 2 crops"
    scene = card["training"]["scenes"][0]
    assert (scene["name"], scene["terms"]) == (SCENE, scene_terms(pan))
    assert card["training"]["terms"] == [scene_terms(pan)]
    first = (out.with_suffix(".safetensors")).read_bytes()

    fused = tmp_path / "fused.tif"
    result = runner.invoke(app, ["sharpen", str(pan), str(ms), "-o", str(fused), "--method",
                                 "ksdiff", "--model", str(out), "-q"])
    assert result.exit_code == 0, result.output
    with rasterio.open(fused) as ds, rasterio.open(ms) as src:
        assert ds.count == src.count and np.isfinite(ds.read().astype(float)).all()

    again = runner.invoke(app, args)  # the run's files exist: --overwrite or --resume
    assert again.exit_code == EXIT_OUTPUT and "--overwrite" in again.output
    assert out.with_suffix(".safetensors").read_bytes() == first

    resumed = runner.invoke(app, [*args[:-len(TINY) - 2], "--max-steps", "4", "--resume", *TINY])
    assert resumed.exit_code == 0, resumed.output
    card = _show(out)
    # the run went on from step 2 in the stage it had reached (stage 2 from step 1 of 2)
    assert card["training"]["steps"] == 4 and card["training"]["stage2_from_step"] == 1
    assert out.with_suffix(".safetensors").read_bytes() != first


def test_family_options_that_contradict_are_usage_errors(tmp_path):
    pan, ms = scene_paths(SCENE)
    base = ["train", f"{pan},{ms}", "-o", str(tmp_path / "m"), "--max-steps", "1", "-q"]
    for extra, words in ((["--generalist", "--family", "ksdiff"], "contradict"),
                         (["--family", "ksdiff", "--init", "ssdiff-generalist"], "--init"),
                         (["--family", "ssdiff", "--init", "ssdiff-generalist"], "--init")):
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == EXIT_USAGE and words in result.output, result.output
    assert not (tmp_path / "m.json").exists()
