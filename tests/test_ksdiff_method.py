"""``--method ksdiff`` (``ssdiff_cli.methods.ksdiff``) on real shared scenes: an untrained model
returns the generalist's base, tiles of any size give the same image bit for bit, the prior is
computed once per scene, a seed reproduces a run, a KSDiff card round-trips through ``models
show`` and a hostile one is refused before anything is built; ``auto`` never picks KSDiff;
``--adapt`` optimises the prior z alone, lowering the full-resolution objective, undone when the
reduced-resolution check gets worse, once per scene before the tiles (seeds and tiles exact)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import rasterio
import torch
from conftest import requires_data, scene_paths, use_generalist_base
from typer.testing import CliRunner

from ssdiff_cli import zoo
from ssdiff_cli.cli import app
from ssdiff_cli.errors import EXIT_MODEL
from ssdiff_cli.methods.ksdiff import KSDiffFusion
from ssdiff_cli.nn.ksdiff import KSDiffNetwork
from ssdiff_cli.nn.ksdiff_config import KSDiffConfig
from ssdiff_cli.pipeline import SharpenOptions, sharpen

runner = CliRunner()


#: The machine is shared: PyTorch on one thread (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


def _card(net, name: str) -> zoo.ModelCard:
    family = net.config.family
    return zoo.ModelCard(name=name, sensor="any", band_names=[], bands=0, ratio=0,
                         normalisation={"kind": "band-standardised"}, model=net.config.to_dict(),
                         sampling={"steps": 3, "t_start": 999},
                         training={"terms": ["test weights"], "family": family})


def _save(net, folder, name: str = "test-ksdiff"):
    return zoo.save_checkpoint(net, _card(net, name), folder / name)


def _zero_ksdiff() -> KSDiffNetwork:
    torch.manual_seed(0)
    return KSDiffNetwork(KSDiffConfig())


def _random_ksdiff(seed: int = 0) -> KSDiffNetwork:
    """As a trained network might be: the layers that start at zero (the last layer, the kernel
    generator's cores) made random, so that the prior changes the result."""
    torch.manual_seed(seed)
    net = KSDiffNetwork(KSDiffConfig())
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.copy_(torch.randn_like(p) * 0.1)
    return net


def _fuse(scene: str, out, method: str, **kw):
    pan, ms = scene_paths(scene)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sharpen(pan, ms, str(out), SharpenOptions(method=method, overwrite=True, **kw))


def _read(path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read().astype(np.float64)


@requires_data
@pytest.mark.parametrize("scene", ["wv3_cristianics", "landsat_istanbul"])
def test_an_untrained_model_returns_the_generalists_base(tmp_path, scene, monkeypatch):
    """8 bands at ratio 4 and 3 at ratio 2: a zero last layer gives exactly the base a zero
    generalist gives (the same MTF-GLP-FS fit on cubic upsampling), here run as a method."""
    ks = _save(_zero_ksdiff(), tmp_path)
    report = _fuse(scene, tmp_path / "ks.tif", "ksdiff", method_options={"model": str(ks)})
    use_generalist_base(monkeypatch)
    _fuse(scene, tmp_path / "base.tif", "mtf-glp-fs")
    a, b = _read(tmp_path / "ks.tif"), _read(tmp_path / "base.tif")
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(b).max())
    assert report.method["name"] == "ksdiff" and report.method["precision"] == "fp32"
    assert report.method["calibration"]["gains"] == [1.0] * a.shape[0]  # nothing to scale


@requires_data
def test_tiles_of_any_size_give_the_same_image_and_the_prior_is_computed_once(tmp_path):
    """A random model, not calibrated (calibration would scale its junk correction to 0)."""
    model = _save(_random_ksdiff(), tmp_path)
    before = KSDiffFusion.prior_calls
    small = _fuse("wv3_cristianics", tmp_path / "a.tif", "ksdiff", tile_size=192,
                  method_options={"model": str(model), "calibrate": False})
    assert KSDiffFusion.prior_calls == before + 1 and small.tiles >= 9
    large = _fuse("wv3_cristianics", tmp_path / "b.tif", "ksdiff", tile_size=448,
                  method_options={"model": str(model), "calibrate": False})
    assert large.tiles < small.tiles
    a, b = _read(tmp_path / "a.tif"), _read(tmp_path / "b.tif")
    assert np.array_equal(a, b)
    # the network does change the base: the test above could fail
    _fuse("wv3_cristianics", tmp_path / "z.tif", "ksdiff",
          method_options={"model": str(_save(_zero_ksdiff(), tmp_path, "zero")),
                          "calibrate": False})
    assert np.abs(a - _read(tmp_path / "z.tif")).mean() > 1.0


@requires_data
def test_a_seed_reproduces_the_run_and_another_seed_changes_the_prior(tmp_path):
    model = str(_save(_random_ksdiff(), tmp_path))
    runs = [_fuse("landsat_istanbul", tmp_path / f"{i}.tif", "ksdiff",
                  method_options={"model": model, "seed": seed, "calibrate": False})
            for i, seed in enumerate((7, 7, 8))]
    a, b, c = (_read(tmp_path / f"{i}.tif") for i in range(3))
    assert np.array_equal(a, b)
    assert runs[0].method["prior"] == runs[1].method["prior"] != runs[2].method["prior"]
    assert not np.array_equal(a, c)


def test_a_ksdiff_card_round_trips_through_models_show_and_list(tmp_path, monkeypatch):
    net = _random_ksdiff()
    _save(net, tmp_path)
    shown = runner.invoke(app, ["models", "show", str(tmp_path / "test-ksdiff")])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["model"] == net.config.to_dict() and data["model"]["family"] == "ksdiff"
    assert data["parameters"] == sum(p.numel() for p in net.parameters())
    loaded, card = zoo.load_checkpoint(tmp_path / "test-ksdiff")
    assert isinstance(loaded, KSDiffNetwork)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in loaded.state_dict().items())
    monkeypatch.setenv("SSDIFF_MODELS", str(tmp_path))
    listed = runner.invoke(app, ["models", "list", "--json"])
    row = next(r for r in json.loads(listed.stdout)["models"] if r["name"] == "test-ksdiff")
    assert (row["bands"], row["ratio"], row["family"], row["method"]) == ("1-16", "2-8",
                                                                          "ksdiff", "ksdiff")
    # auto and --method ssdiff never pick a KSDiff model (what auto picks is unchanged)
    assert zoo.find_model_for(8, 4, "wv3").name == zoo.DEFAULT_GENERALIST
    assert zoo.find_model_for(8, 4, "wv3", method="ksdiff").name == "test-ksdiff"


@requires_data
@pytest.mark.parametrize("change,words", [
    ({"widths": [4096, 32, 64]}, "widths"),
    ({"core": [64, 64, 9, 9]}, "core"),
    ({"core": [4, 4, 2]}, "core"),
    ({"tokens": 256, "token_dim": 256}, "tokens x token_dim"),
    ({"depths": [1, 1, True]}, "depths"),
])
def test_a_hostile_ksdiff_card_is_refused_before_anything_is_built(tmp_path, monkeypatch, change,
                                                                  words):
    _save(_zero_ksdiff(), tmp_path)
    card_path = tmp_path / "test-ksdiff.json"
    data = json.loads(card_path.read_text())
    data["model"].update(change)
    card_path.write_text(json.dumps(data))
    built = []
    monkeypatch.setattr(KSDiffNetwork, "__init__", lambda *a, **k: built.append(1))
    pan, ms = scene_paths("wv3_cristianics")
    out = tmp_path / "out.tif"
    result = runner.invoke(app, ["sharpen", str(pan), str(ms), "-o", str(out), "-m", "ksdiff",
                                 "--model", str(tmp_path / "test-ksdiff")])
    assert result.exit_code == EXIT_MODEL, result.output
    message = [line for line in result.stderr.splitlines() if "warning" not in line]
    assert len(message) == 1 and words in message[0] and "Traceback" not in result.output
    assert not built and not out.exists()


@requires_data
def test_each_method_refuses_the_other_familys_model(tmp_path):
    model = _save(_zero_ksdiff(), tmp_path)
    pan, ms = scene_paths("landsat8_satellite")
    result = runner.invoke(app, ["sharpen", str(pan), str(ms), "-o", str(tmp_path / "o.tif"),
                                 "-m", "ssdiff", "--model", str(model)])
    assert result.exit_code == EXIT_MODEL and "--method ksdiff" in result.stderr
    result = runner.invoke(app, ["sharpen", str(pan), str(ms), "-o", str(tmp_path / "o.tif"),
                                 "-m", "ksdiff", "--model", "ssdiff-generalist"])
    assert result.exit_code == EXIT_MODEL and "--method ssdiff" in result.stderr
    result = runner.invoke(app, ["sharpen", str(pan), str(ms), "-o", str(tmp_path / "o.tif"),
                                 "-m", "ksdiff"])
    assert result.exit_code == EXIT_MODEL and "no shipped model" in result.stderr


def _prepared(model: str, scene: str = "landsat_istanbul"):
    """A KSDiff method prepared on a real scene (its prior computed), and the scene's fills."""
    from ssdiff_cli.methods import SceneContext, get_method
    from ssdiff_cli.scene import fill_values, prepare_scene

    pan, ms = scene_paths(scene)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared, det, sample = prepare_scene(pan, [ms])
    method = get_method("ksdiff", model=model)
    method.prepare(SceneContext(prepared, sample, det.preset))
    return method, prepared.spec, fill_values(sample)


@requires_data
def test_adapting_the_prior_lowers_the_full_resolution_objective_and_leaves_the_weights(tmp_path):
    from ssdiff_cli.training.scene_adapt import adapt_generalist, full_objective

    method, spec, fills = _prepared(str(_save(_random_ksdiff(), tmp_path)))
    fusion = method.generalist
    weights = {k: v.clone() for k, v in fusion.net.state_dict().items()}
    z = fusion.z.clone()
    before = full_objective(fusion, spec, fills)
    result = adapt_generalist(fusion, spec, fills, 30, "full")
    after = full_objective(fusion, spec, fills)
    assert result.adapted == "prior" and len(result.losses) == 30
    assert after < 0.9 * before, (before, after)  # 0.251 -> 0.200 when written
    assert result.kept and result.check_after < result.check_before
    # z alone moved, within the prior's range, and it sets the kernels every tile runs with
    assert not torch.equal(fusion.z, z) and fusion.z.abs().max() <= 1.0
    assert all(torch.equal(v, weights[k]) for k, v in fusion.net.state_dict().items())
    with torch.no_grad():
        kernels = fusion.net.kernels(fusion.z)
    assert all(torch.equal(kernels[k], v) for k, v in fusion.kernels.items())


@requires_data
def test_a_prior_adaptation_that_does_worse_on_the_reduced_check_is_undone(tmp_path, monkeypatch):
    from ssdiff_cli.training import scene_adapt

    method, spec, fills = _prepared(str(_save(_random_ksdiff(), tmp_path)))
    fusion = method.generalist
    z, kernels = fusion.z.clone(), {k: v.clone() for k, v in fusion.kernels.items()}
    # an objective that rewards a correction of +3 band standard deviations everywhere
    monkeypatch.setattr(scene_adapt, "_full_loss", lambda fused, b, data: (
        fused - torch.from_numpy(b["base"]) - 3.0).abs().mean())
    result = scene_adapt.adapt_generalist(fusion, spec, fills, 30, "full")
    assert result.losses[-1] < result.losses[0]  # it did learn towards the offset ...
    assert not result.kept and result.check_after > result.check_before  # ... which is worse
    assert torch.equal(fusion.z, z)
    assert all(torch.equal(v, kernels[k]) for k, v in fusion.kernels.items())


@requires_data
def test_sharpen_adapt_reports_the_prior_and_keeps_seeds_and_tiles_exact(tmp_path):
    """--adapt runs once per scene, before any tile: a seed reproduces the adapted run, and two
    tile sizes give the same image bit for bit."""
    model = str(_save(_random_ksdiff(), tmp_path))
    options = {"model": model, "seed": 3, "adapt": 12, "calibrate": False}
    before = KSDiffFusion.prior_calls
    runs = [_fuse("landsat_istanbul", tmp_path / f"{i}.tif", "ksdiff", tile_size=size,
                  method_options=options) for i, size in enumerate((128, 128, 320))]
    assert KSDiffFusion.prior_calls == before + 3 and runs[0].tiles > runs[2].tiles
    a, b, c = (_read(tmp_path / f"{i}.tif") for i in range(3))
    assert np.array_equal(a, b) and np.array_equal(a, c)
    report = runs[0].method["adaptation"]
    assert report["steps"] == 12 and report["adapted"] == "prior" and report["kept"]
    assert report["loss_last"] < report["loss_first"] and report["seconds"] > 0
    assert report["check"]["reduced_l1_after"] < report["check"]["reduced_l1_before"]
    plain = _fuse("landsat_istanbul", tmp_path / "plain.tif", "ksdiff",
                  method_options={**options, "adapt": 0})
    assert "adaptation" not in plain.method and not np.array_equal(a, _read(tmp_path / "plain.tif"))
