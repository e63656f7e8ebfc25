"""The generalist model: any band count and ratio, a correction of MTF-GLP-FS, the guard, the
scene adaptation and the training state (real scenes; synthetic data for formula checks)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import rasterio
import torch
from conftest import DATA, requires_data, scene_paths, use_generalist_base

from ssdiff_cli import filters, zoo
from ssdiff_cli.errors import DegenerateOutputError
from ssdiff_cli.nn.apfm import APFM
from ssdiff_cli.nn.generalist import BandAPFM, GeneralistConfig, GeneralistDenoiser
from ssdiff_cli.pipeline import SharpenOptions, sharpen

SMALL = GeneralistConfig(base_channels=8, head_dim=8, time_dim=16, embed_dim=32)


def _save(net: GeneralistDenoiser, path, name: str = "test-generalist"):
    """A checkpoint of ``net`` with a minimal generalist card."""
    card = zoo.ModelCard(name=name, sensor="any", band_names=[], bands=0, ratio=0,
                         normalisation={"kind": "band-standardised"}, model=net.config.to_dict(),
                         sampling={"steps": 1, "t_start": 999},
                         training={"terms": ["test weights"]})
    return zoo.save_checkpoint(net, card, path)


def _zero_net() -> GeneralistDenoiser:
    torch.manual_seed(0)
    return GeneralistDenoiser(SMALL)


def _spoilt_net(offset: float = 2.0) -> GeneralistDenoiser:
    """A network that adds ``offset`` band standard deviations everywhere: made worse on purpose."""
    net = _zero_net()
    with torch.no_grad():
        net.head[-1].bias.fill_(offset)
    return net


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read().astype(np.float64)


def _fuse(pan, ms, out, method, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sharpen(pan, ms, str(out), SharpenOptions(method=method, overwrite=True, **kw))


# ------------------------------------------------------------------ network (formula checks)
def test_band_apfm_equals_apfm_applied_to_each_band():
    torch.manual_seed(1)
    shared = BandAPFM(16, 8, 4)
    for p in shared.parameters():
        torch.nn.init.normal_(p, std=0.3)
    plain = APFM(16, 8, 4)
    plain.load_state_dict(shared.state_dict())
    y, x = torch.randn(2, 16, 8, 8), torch.randn(6, 16, 8, 8)
    expected = plain(x, y.repeat_interleave(3, dim=0), lowfreq_scale=0.6)
    assert torch.allclose(shared(x, y, lowfreq_scale=0.6, bands=3), expected, atol=1e-5)


def test_network_takes_any_band_count_and_ratio_and_is_band_permutation_equivariant():
    torch.manual_seed(2)
    net = GeneralistDenoiser(SMALL)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    for bands, ratio in ((1, 2), (3, 3), (8, 4), (11, 8)):
        x = torch.randn(1, bands, 40, 40)
        pan = torch.randn(1, 1, 40, 40)
        out = net(x, 999.0, x, x, pan, x, ratio)
        assert out.shape == (1, bands, 40, 40) and torch.isfinite(out).all()
    x = torch.randn(1, 5, 32, 32)
    perm = torch.tensor([3, 0, 4, 1, 2])
    a = net(x, 500.0, x, x, pan[..., :32, :32], x, 4)
    b = net(x[:, perm], 500.0, x[:, perm], x[:, perm], pan[..., :32, :32], x[:, perm], 4)
    assert torch.allclose(a[:, perm], b, atol=1e-5)


def _randomized(config: GeneralistConfig, seed: int = 0) -> GeneralistDenoiser:
    """A network with every weight random (the zero-initialised layers too), in eval mode."""
    torch.manual_seed(seed)
    net = GeneralistDenoiser(config).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return net


def _inputs(b: int, c: int, size: int, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, n, size, size, generator=g) for n in (c, c, c, 1, c)]


def test_aligned_receptive_field_is_the_gradient_support_of_an_aligned_block():
    """The walk over the layers (what sets the network halo) equals the measured reach of one
    granularity period of output rows and columns, for two window sizes."""
    for window in (8, 4):
        net = _randomized(GeneralistConfig(base_channels=8, window=window, time_dim=16,
                                           embed_dim=32))
        g, rf = net.granularity, net.receptive_field
        size = 2 * (rf // g + 2) * g + g
        x_t, base, lms, pan, pan_lp = _inputs(1, 2, size)
        inputs = [x_t, base, lms, pan, pan_lp]
        for a in inputs:
            a.requires_grad_(True)
        p0 = (size // 2) // g * g  # an aligned block of one period
        net(x_t, 999.0, base, lms, pan, pan_lp, 4)[:, :, p0:p0 + g, p0:p0 + g].abs().sum().backward()
        support = sum(a.grad.abs().sum(dim=(0, 1)) for a in inputs) > 0
        rows, cols = torch.nonzero(support, as_tuple=True)
        reach = max(p0 - rows.min(), rows.max() - (p0 + g - 1),
                    p0 - cols.min(), cols.max() - (p0 + g - 1)).item()
        assert reach == rf, (window, reach, rf)


def test_inference_by_band_groups_equals_the_whole_batch():
    """Without gradients the per-band layers run a few bands at a time: the same values as the
    training path, which runs every band at once (and several images)."""
    net = _randomized(SMALL)
    x_t, base, lms, pan, pan_lp = _inputs(2, 5, 64)
    with torch.no_grad():
        grouped = net(x_t, 999.0, base, lms, pan, pan_lp, 4)
    whole = net(x_t, 999.0, base, lms, pan, pan_lp, 4).detach()
    torch.testing.assert_close(grouped, whole, atol=1e-5, rtol=1e-5)
    assert grouped.abs().mean() > 0.1


def test_chunks_aligned_to_the_granularity_reproduce_the_whole_window():
    """Two chunks, each with the network halo around its core, give exactly the whole window's
    output on their cores: the halo comes from the aligned receptive field."""
    net = _randomized(SMALL)
    g = net.granularity
    halo = -(-net.receptive_field // g) * g
    size = 2 * halo + 4 * g
    x_t, base, lms, pan, pan_lp = _inputs(1, 3, size)
    args = (x_t, base, lms, pan, pan_lp)
    with torch.no_grad():
        whole = net(args[0], 999.0, *args[1:], 2)
        for c0 in (halo, halo + 2 * g):  # two cores of 2g columns
            cut = [a[..., c0 - halo:c0 + 2 * g + halo] for a in args]
            part = net(cut[0], 999.0, *cut[1:], 2)
            torch.testing.assert_close(part[..., halo:halo + 2 * g],
                                       whole[..., c0:c0 + 2 * g], atol=1e-5, rtol=1e-5)
    assert part.abs().mean() > 0.1


def test_card_size_fields_are_bounded_before_anything_is_built():
    with pytest.raises(ValueError, match="base_channels"):
        GeneralistConfig.from_dict({**SMALL.to_dict(), "base_channels": 65536})


def test_generalist_cards_pass_the_zoo_checks_that_refuse_bad_ones(tmp_path):
    """A generalist card (bands and ratio 0: any; band-standardised normalisation) is valid, its
    shape-only network is built on the meta device, and its checkpoint goes through the same
    shape and NaN checks as any other."""
    weights = _save(_zero_net(), tmp_path / "g")
    card = zoo.read_card(weights)
    zoo.validate_card(card)
    meta_net = zoo.build_model(card, device="meta")
    assert all(p.device.type == "meta" for p in meta_net.parameters())
    net, _ = zoo.load_checkpoint(weights)
    assert isinstance(net, GeneralistDenoiser)
    # only a generalist may be band-standardised
    plain = zoo.ModelCard(**{**card.to_dict(), "bands": 4, "ratio": 4, "model": {"base_channels": 8}})
    with pytest.raises(zoo.ModelError, match="band-standardised"):
        zoo.validate_card(plain)
    # size fields of a generalist's architecture are bounded too
    huge = zoo.ModelCard(**{**card.to_dict(), "model": {**card.model, "base_channels": 65536}})
    with pytest.raises(zoo.ModelError, match="base_channels"):
        zoo.validate_card(huge)
    # weights that do not fit the card, and NaN weights, are refused on load
    data = json.loads(weights.with_suffix(".json").read_text())
    data["model"]["base_channels"] = 16
    weights.with_suffix(".json").write_text(json.dumps(data))
    with pytest.raises(zoo.ModelError, match="do not fit"):
        zoo.load_checkpoint(weights)
    data["model"]["base_channels"] = SMALL.base_channels
    weights.with_suffix(".json").write_text(json.dumps(data))
    net = _zero_net()
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))
    with pytest.raises(DegenerateOutputError, match="NaN"):  # never saved by ssdiff...
        _save(net, tmp_path / "g")
    from safetensors.torch import save_file

    save_file(net.state_dict(), str(weights))  # ...but a file from elsewhere may hold them
    with pytest.raises(zoo.ModelError, match="NaN"):
        zoo.load_checkpoint(weights)


def test_strided_degradation_equals_the_wald_filter():
    from ssdiff_cli.training.scene_adapt import degrade_at, degrade_kernels

    rng = np.random.default_rng(0)
    for r in (2, 3, 4):
        x = rng.normal(size=(3, 24 * r, 24 * r)).astype(np.float32)
        gains = [0.3, 0.25, 0.35]
        ref = filters.degrade(x, gains, r)
        k, start = degrade_kernels(gains, r)
        y, k0 = degrade_at(torch.from_numpy(x)[None], k, r, start)
        y = y[0].numpy()
        n = y.shape[-1]
        assert n > 0
        np.testing.assert_allclose(y, ref[:, k0:k0 + n, k0:k0 + n], atol=1e-5)


# ------------------------------------------------------------------ real scenes
@requires_data
@pytest.mark.parametrize("scene", ["landsat8_satellite", "wv3_cristianics"])
def test_zero_initialised_model_reproduces_the_classical_base(tmp_path, scene, monkeypatch):
    """The generalist's base is the MTF-GLP-FS it was trained on (cubic lms, the project's own
    low-pass), not the toolbox-matched `--method mtf-glp-fs`: run that base as a method."""
    model = _save(_zero_net(), tmp_path / "zero")
    pan, ms = scene_paths(scene)
    _fuse(pan, ms, tmp_path / "model.tif", "ssdiff", method_options={"model": str(model)})
    use_generalist_base(monkeypatch)
    _fuse(pan, ms, tmp_path / "base.tif", "mtf-glp-fs")
    # equal up to float32 rounding: the two methods cut the scene into different tiles
    model, base = _read(tmp_path / "model.tif"), _read(tmp_path / "base.tif")
    np.testing.assert_allclose(model, base, rtol=1e-6, atol=1e-6 * np.abs(base).max())


@requires_data
@pytest.mark.parametrize("scene", ["landsat_istanbul"])
def test_bands_and_ratios_the_per_sensor_models_cannot_take_run_end_to_end(tmp_path, scene):
    """3 bands (Landsat-8/9 visible) at ratio 2, with the default method: no per-sensor model
    takes them, the shipped generalist does."""
    if zoo.find_model_for(3, 2) is None or zoo.family(zoo.find_model_for(3, 2)).name != "generalist":
        pytest.skip("no generalist model shipped")
    pan, ms = DATA / scene / "pan.tif", DATA / scene / "ms.tif"
    out = tmp_path / "out.tif"
    report = _fuse(pan, ms, out, "auto")
    assert report.method.get("model") == zoo.DEFAULT_GENERALIST or \
        report.method.get("fallback_from", {}).get("model") == zoo.DEFAULT_GENERALIST
    assert "guard" in report.method
    fused = _read(out)
    with rasterio.open(ms) as ds:
        assert fused.shape[0] == ds.count
    assert np.isfinite(fused).all() and fused.std() > 0


@requires_data
def test_guard_falls_back_when_the_model_is_worse_on_purpose(tmp_path, monkeypatch):
    folder = tmp_path / "zoo"
    _save(_spoilt_net(), folder / zoo.DEFAULT_GENERALIST, zoo.DEFAULT_GENERALIST)
    monkeypatch.setenv("SSDIFF_MODELS", str(folder))
    pan, ms = scene_paths("landsat8_satellite")
    # calibration off: it would scale this model back to its base (tested below)
    with pytest.warns(UserWarning, match="below its classical base"):
        report = sharpen(pan, ms, str(tmp_path / "auto.tif"),
                         SharpenOptions(method="auto", overwrite=True,
                                        method_options={"calibrate": False}))
    guard = report.method["guard"]
    assert guard["fallback"] is True and guard["model"]["HQNR"] < guard["base"]["HQNR"]
    assert report.method["name"] == "mtf-glp-fs"
    assert json.dumps(report.to_dict())  # --json can carry it
    use_generalist_base(monkeypatch)  # the guard falls back to the model's own base
    _fuse(pan, ms, tmp_path / "base.tif", "mtf-glp-fs")
    np.testing.assert_array_equal(_read(tmp_path / "auto.tif"), _read(tmp_path / "base.tif"))


@requires_data
def test_guard_keeps_the_model_where_it_cannot_score_the_scene(tmp_path):
    """The reduced-resolution pair of a 600 px WorldView-2 tile (150 PAN px, 37 MS px, as
    ``evaluate --reduced`` fuses it) leaves nothing to score HQNR on: no evidence of a loss, so
    no fallback (it used to fall back on the NaN), said in a warning and in the report."""
    from affine import Affine

    from ssdiff_cli.evaluate import _write
    from ssdiff_cli.quality import wald
    from ssdiff_cli.scene import prepare_scene, read_arrays

    pan, ms = scene_paths("wv2_solaris_2")
    scene, detection, _ = prepare_scene(pan, ms, None)
    pan_a, pan_valid, ms_a, ms_valid = read_arrays(scene.spec)
    preset = detection.preset
    pair = wald.degrade_pair(pan_a, ms_a, 4, preset.ms_gnyq, preset.pan_gnyq,
                             pan_valid=pan_valid, ms_valid=ms_valid)
    tags, nodata = {"SENSOR": preset.name}, -1e30  # as evaluate --reduced writes the pair
    _write(tmp_path / "pan.tif", np.where(pair.pan_valid, pair.pan, nodata), Affine.identity(),
           None, nodata, tags=tags)
    _write(tmp_path / "ms.tif", np.where(pair.ms_valid, pair.ms, nodata), Affine.identity(),
           None, nodata, tags=tags)
    with pytest.warns(UserWarning, match="could not be checked"):
        report = sharpen(tmp_path / "pan.tif", tmp_path / "ms.tif", str(tmp_path / "out.tif"),
                         SharpenOptions(method="auto", force=True))
    assert report.method["name"] == "ssdiff" and "fallback_from" not in report.method
    guard = report.method["guard"]
    assert guard["fallback"] is False and guard["unmeasured"]
    assert guard["model"]["HQNR"] is None and json.dumps(report.to_dict())


@requires_data
def test_guard_keeps_a_model_that_is_not_worse(tmp_path, monkeypatch):
    folder = tmp_path / "zoo"
    _save(_zero_net(), folder / zoo.DEFAULT_GENERALIST, zoo.DEFAULT_GENERALIST)
    monkeypatch.setenv("SSDIFF_MODELS", str(folder))
    pan, ms = scene_paths("landsat8_satellite")
    report = _fuse(pan, ms, tmp_path / "auto.tif", "auto")
    assert report.method["guard"]["fallback"] is False
    assert report.method["name"] == "ssdiff"


def _amplified_shipped_model(path, factor: float):
    """The shipped generalist with its correction multiplied by ``factor``: it over-corrects
    every scene, made worse on purpose."""
    net, card = zoo.load_checkpoint(zoo.DEFAULT_GENERALIST)
    with torch.no_grad():
        net.head[-1].weight.mul_(factor)
        net.head[-1].bias.mul_(factor)
    card.name = "amplified"
    return zoo.save_checkpoint(net, card, path)


@requires_data
def test_calibration_scales_back_a_model_that_over_corrects_the_scene(tmp_path):
    """A model whose correction is five times too large gets gains well below one, and its
    reduced-resolution error comes down (Landsat-8 Istanbul: ERGAS 2.32 -> 1.37, gains
    0.28-0.35); the gains are in [0, 1] and reported."""
    from ssdiff_cli.evaluate import evaluate_reduced

    model = str(_amplified_shipped_model(tmp_path / "amplified", 5.0))
    pan, ms = scene_paths("landsat_istanbul")
    scores, gains = {}, None
    for calibrate in (False, True):
        opts = SharpenOptions(method_options={"model": model, "calibrate": calibrate})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ev = evaluate_reduced(pan, ms, ["ssdiff"], options=opts)
        scores[calibrate] = ev.rows["ssdiff"]["ERGAS"]
        ran = ev.details["ran"]["ssdiff"]
        if calibrate:
            gains = ran["calibration"]["gains"]
        else:
            assert "calibration" not in ran
    assert gains is not None and all(0.0 <= g <= 0.45 for g in gains), gains
    assert scores[True] < 0.7 * scores[False], scores


@requires_data
def test_calibration_is_reported_and_leaves_a_zero_model_on_its_base(tmp_path, monkeypatch):
    model = _save(_zero_net(), tmp_path / "zero")
    pan, ms = scene_paths("landsat8_satellite")
    report = _fuse(pan, ms, tmp_path / "model.tif", "ssdiff", method_options={"model": str(model)})
    calibration = report.method["calibration"]
    with rasterio.open(ms) as ds:
        assert calibration["gains"] == [1.0] * ds.count  # nothing to scale: no correction
    assert len(calibration["window"]) == 4 and json.dumps(report.to_dict())
    use_generalist_base(monkeypatch)
    _fuse(pan, ms, tmp_path / "base.tif", "mtf-glp-fs")
    base = _read(tmp_path / "base.tif")
    np.testing.assert_allclose(_read(tmp_path / "model.tif"), base, rtol=1e-6,
                               atol=1e-6 * np.abs(base).max())


@requires_data
def test_tiles_of_any_size_give_the_same_image(tmp_path):
    torch.manual_seed(3)
    net = GeneralistDenoiser(SMALL)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    model = _save(net, tmp_path / "random")
    pan, ms = scene_paths("wv2_solaris_2")  # 4 bands at ratio 4: 3 x 3 tiles of 256
    opts = {"method_options": {"model": str(model)}}
    _fuse(pan, ms, tmp_path / "small.tif", "ssdiff", tile_size=256, **opts)
    _fuse(pan, ms, tmp_path / "big.tif", "ssdiff", tile_size=1024, **opts)
    a, b = _read(tmp_path / "small.tif"), _read(tmp_path / "big.tif")
    # the network is local and aligned to its window grid, and tiles meet in hard seams: the
    # same pixels whatever the tiling
    assert np.array_equal(a, b)


@requires_data
def test_each_tile_runs_the_network_once_with_default_options(tmp_path, monkeypatch):
    # The default tile is sized so that its blend extent plus the network halo is one chunk:
    # no pixel is computed twice (8 bands: chunk 512, tile 384, 4 x 4 tiles on this scene, the
    # inner ones with neighbours on both sides).
    import ssdiff_cli.methods.generalist as fusion

    calls = []

    def counted(*args, **kwargs):
        # What is tested is the plan of chunks, not the network: a zero-initialised model's
        # correction is exactly zero (test above), returned here without running it.
        noise = args[3]  # (1, C, h, w)
        calls.append(noise.shape)
        return np.zeros(noise.shape, np.float32)

    monkeypatch.setattr(fusion, "sample_correction", counted)
    model = _save(_zero_net(), tmp_path / "zero")
    pan, ms = scene_paths("wv2_grip")
    report = _fuse(pan, ms, tmp_path / "out.tif", "ssdiff",
                   method_options={"model": str(model), "calibrate": False})
    assert report.tiles == len(calls) == 16
    assert report.overlap == 0  # an exactly local correction needs no blending
    assert max(max(shape[-2:]) for shape in calls) <= report.method["chunk"]


@requires_data
def test_full_resolution_adaptation_improves_its_objective_on_a_real_scene():
    from ssdiff_cli.methods import SceneContext, get_method
    from ssdiff_cli.scene import fill_values, prepare_scene
    from ssdiff_cli.training.scene_adapt import adapt_generalist, full_objective

    pan, ms = scene_paths("landsat8_satellite")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scene, det, sample = prepare_scene(pan, [ms])
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        model = _save(_spoilt_net(0.5), Path(tmp) / "spoilt")
        method = get_method("ssdiff", model=str(model))
        method.prepare(SceneContext(scene, sample, det.preset))
    fusion, fills = method.generalist, fill_values(sample)
    before = full_objective(fusion, scene.spec, fills, crop=64)
    result = adapt_generalist(fusion, scene.spec, fills, 40, "full", crop=64, lr=1e-3)
    after = full_objective(fusion, scene.spec, fills, crop=64)
    assert len(result.losses) == 40
    assert after < 0.8 * before, (before, after)
    # the spoilt offset is wrong at every scale: the reduced-resolution check agrees
    assert result.kept and result.check_after < result.check_before


@requires_data
def test_an_adaptation_that_does_worse_on_the_reduced_check_is_undone(monkeypatch):
    from ssdiff_cli.methods import SceneContext, get_method
    from ssdiff_cli.scene import fill_values, prepare_scene
    from ssdiff_cli.training import scene_adapt

    pan, ms = scene_paths("landsat8_satellite")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scene, det, sample = prepare_scene(pan, [ms])
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        model = _save(_zero_net(), Path(tmp) / "zero")
        method = get_method("ssdiff", model=str(model))
        method.prepare(SceneContext(scene, sample, det.preset))
    fusion, fills = method.generalist, fill_values(sample)
    shipped = {k: v.clone() for k, v in fusion.net.state_dict().items()}
    # an objective that rewards a correction of +3 band standard deviations everywhere
    monkeypatch.setattr(scene_adapt, "_full_loss", lambda fused, b, data: (
        fused - torch.from_numpy(b["base"]) - 3.0).abs().mean())
    result = scene_adapt.adapt_generalist(fusion, scene.spec, fills, 30, "full", crop=64, lr=1e-2)
    assert result.losses[-1] < result.losses[0]  # it did learn the offset ...
    assert not result.kept and result.check_after > result.check_before  # ... which is worse
    for k, v in fusion.net.state_dict().items():
        assert torch.equal(v, shipped[k]), k


def test_training_state_round_trips_without_pickle(tmp_path):
    from ssdiff_cli.training.generalist import (
        GeneralistTrainConfig,
        GeneralistTrainer,
    )
    from ssdiff_cli.training.loop import load_state_file, state_path

    rng = np.random.default_rng(0)

    class Sampler:
        def __init__(self):
            self.rng = np.random.default_rng(5)

        def sample(self, batch):
            c = {k: rng.normal(size=(batch, 3 if k != "pan" else 1, 32, 32)).astype(np.float32)
                 for k in ("base", "lms", "pan", "pan_lp")}
            return c, rng.normal(size=(batch, 3, 32, 32)).astype(np.float32) * 0.1, 4

    cfg = GeneralistTrainConfig(output=str(tmp_path / "g"), max_steps=2, batch=2, groups=1,
                                model=SMALL.to_dict(), save_every=1000)
    trainer = GeneralistTrainer(Sampler(), cfg, {})
    trainer.run(log=lambda m: None)
    tensors, meta = load_state_file(state_path(tmp_path / "g"))
    assert meta["step"] == 2 and state_path(tmp_path / "g").suffix == ".safetensors"
    resumed = GeneralistTrainer(Sampler(), GeneralistTrainConfig(**{**cfg.__dict__, "max_steps": 3}),
                                {}, resume=True)
    assert resumed.step == 2
    for a, b in zip(resumed.net.parameters(), trainer.net.parameters()):
        assert torch.equal(a, b)
    net, card = zoo.load_checkpoint(tmp_path / "g")
    assert zoo.family(card).name == "generalist" and isinstance(net, GeneralistDenoiser)


@requires_data
def test_train_generalist_cli_fine_tunes_the_shipped_model_and_obeys_overwrite(tmp_path):
    from typer.testing import CliRunner

    from ssdiff_cli.cli import app

    if zoo.find_model_for(4, 2) is None or zoo.family(zoo.find_model_for(4, 2)).name != "generalist":
        pytest.skip("no generalist model shipped")
    pan, ms = scene_paths("landsat8_satellite")
    out = tmp_path / "mine"
    args = ["train", f"{pan},{ms}", "--generalist", "--init", zoo.DEFAULT_GENERALIST, "-o", str(out),
            "--max-steps", "2", "-q"]
    assert CliRunner().invoke(app, args).exit_code == 0
    net, card = zoo.load_checkpoint(out)
    assert zoo.family(card).name == "generalist" and card.training["steps"] == 2
    assert card.training["initialised_from"] == zoo.DEFAULT_GENERALIST
    assert card.training["scenes"][0]["name"] == "landsat8_satellite"
    assert CliRunner().invoke(app, args).exit_code == 5  # exists: --overwrite or --resume


def test_decimation_phase_draws_follow_their_recipe():
    from ssdiff_cli.errors import BadInputError
    from ssdiff_cli.training.generalist import draw_phase, toolbox_phase

    assert (toolbox_phase(2), toolbox_phase(3), toolbox_phase(4)) == (0.5, 0.0, 0.5)
    rng = np.random.default_rng(0)
    assert draw_phase(rng, 4, "block", misregistration=0.0) == {
        "kind": "block", "pan": (0.0, 0.0), "ms": (0.0, 0.0), "misregistration": (0.0, 0.0)}
    assert draw_phase(rng, 4, "toolbox", misregistration=0.0)["ms"] == (0.5, 0.5)
    draws = [draw_phase(rng, 2, "jitter", 0.5, 0.3, 0.5) for _ in range(400)]
    pan = np.array([d["pan"] for d in draws])
    mis = np.array([d["misregistration"] for d in draws])
    assert np.abs(pan).max() <= 0.5 and pan.std() > 0.2 and abs(np.corrcoef(pan.T)[0, 1]) < 0.2
    moved = np.abs(mis).max(1) > 0
    assert 0.4 < moved.mean() < 0.6 and np.abs(mis).max() <= 0.3
    np.testing.assert_allclose([d["ms"] for d in draws], pan + mis)
    again = np.random.default_rng(0)
    [draw_phase(again, 4, k, misregistration=0.0) for k in ("block", "toolbox")]
    assert [draw_phase(again, 2, "jitter", 0.5, 0.3, 0.5) for _ in range(400)] == draws
    with pytest.raises(BadInputError, match="phase"):
        draw_phase(rng, 4, "centre")


@requires_data
def test_a_training_pair_at_the_toolbox_phase_is_the_toolbox_degradation():
    """On a real scene: the MTF low-pass then the samples ratio // 2 + ratio * k of the PAN and
    of the MS (§9's imresize 'nearest'), against the pair training builds at that phase."""
    from ssdiff_cli.training.crops import read_scene_arrays, scene_from_arrays
    from ssdiff_cli.training.generalist import draw_phase

    _, det, pan, pv, ms, mv = read_scene_arrays(*scene_paths("wv3_cristianics"))
    r, p = 4, det.preset
    pan, ms = pan[: 128 * r, : 128 * r], ms[:, :128, :128]
    ph = draw_phase(np.random.default_rng(0), r, "toolbox", misregistration=0.0)
    ts = scene_from_arrays(pan, ms, r, p.ms_gnyq, p.pan_gnyq, scale=1.0, holdout=0.0,
                           pan_phase=ph["pan"], ms_phase=ph["ms"])
    toolbox_pan = filters.lowpass(pan, p.pan_gnyq, r)[r // 2::r, r // 2::r]
    toolbox_ms = filters.lowpass(ms, p.ms_gnyq, r)[:, r // 2::r, r // 2::r]
    np.testing.assert_allclose(ts.pan[0], toolbox_pan, rtol=1e-5, atol=1e-3 * toolbox_pan.std())
    np.testing.assert_allclose(ts.ms, toolbox_ms, rtol=1e-5, atol=1e-3 * toolbox_ms.std())
    np.testing.assert_array_equal(ts.gt, ms)  # the target is the original MS, as before
    block = scene_from_arrays(pan, ms, r, p.ms_gnyq, p.pan_gnyq, scale=1.0, holdout=0.0)
    assert np.abs(block.ms - ts.ms).mean() > 0.05 * toolbox_ms.std()  # another pair indeed


@requires_data
def test_versions_take_every_phase_kind_at_each_ratio_reproducibly():
    from ssdiff_cli.training.generalist import PHASE_KINDS, build_versions

    pan, ms = scene_paths("landsat_istanbul")
    kw = dict(ratios=(2, 4), jitters=3, phases=PHASE_KINDS, misregistration=0.3, seed=5)
    versions = build_versions(pan, ms, "istanbul", **kw)
    assert len(versions) == 6
    for r in (2, 4):
        assert sorted(v.phase["kind"] for v in versions if v.ratio == r) == sorted(PHASE_KINDS)
    again = build_versions(pan, ms, "istanbul", **kw)
    assert [v.phase for v in again] == [v.phase for v in versions]
    assert all(np.array_equal(a.target, b.target) for a, b in zip(again, versions))
    plain = build_versions(pan, ms, "istanbul", ratios=(2, 4), jitters=3, seed=5)
    assert {v.phase["kind"] for v in plain} == {"block"}
    assert all(v.phase["misregistration"] == [0.0, 0.0] for v in plain)


@requires_data
def test_train_generalist_script_fine_tunes_with_random_phases_and_resumes(tmp_path):
    """scripts/train_generalist.py --init (a checkpoint path relative to the caller) on a data
    folder holding one shared scene; the card records the start and the phase recipe, and a
    resumed run keeps both."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    shipped = repo / "ssdiff_cli" / "models" / "ssdiff-generalist.json"
    if not shipped.exists():
        pytest.skip("no generalist model shipped")
    data = tmp_path / "data" / "landsat8_satellite"
    data.mkdir(parents=True)
    for name in ("pan.tif", "ms.tif"):
        (data / name).symlink_to(DATA / "landsat8_satellite" / name)
    out = tmp_path / "run"
    base = [sys.executable, str(repo / "scripts" / "train_generalist.py"), "-o", str(out),
            "--init", "ssdiff_cli/models/ssdiff-generalist", "--threads", "1"]
    env = {**os.environ, "SSDIFF_TEST_DATA": str(tmp_path / "data")}
    for extra, steps in ((["--steps", "2"], 2), (["--steps", "3", "--resume"], 3)):
        done = subprocess.run(base + extra, cwd=repo, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        card = json.loads(out.with_suffix(".json").read_text())["training"]
        assert card["steps"] == steps and card["initialised_from"] == "ssdiff-generalist"
        assert card["families"] == ["landsat8_satellite"]
        assert card["decimation_phases"]["kinds"] == ["block", "toolbox", "jitter"]
        assert {p["kind"] for p in card["scenes"][0]["phases"]} == {"block", "toolbox", "jitter"}
    # the model fine-tuned is an input: --overwrite does not let the run replace it
    import shutil

    for suffix in (".json", ".safetensors"):
        shutil.copy(shipped.with_suffix(suffix), (tmp_path / "mine").with_suffix(suffix))
    before = (tmp_path / "mine.safetensors").read_bytes()
    mine = str(tmp_path / "mine")
    done = subprocess.run(base[:2] + ["-o", mine, "--init", mine, "--overwrite", "--steps", "1"],
                          cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 3 and "train_generalist:" in done.stderr
    assert (tmp_path / "mine.safetensors").read_bytes() == before
