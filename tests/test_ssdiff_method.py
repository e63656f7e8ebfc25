"""``sharpen --method ssdiff`` through the scene pipeline on a real crop: determinism, tile
invariance without seams, checkpoint round trip and refusals."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from ssdiff_cli import zoo
from ssdiff_cli.diffusion import DiffusionConfig
from ssdiff_cli.errors import ModelError
from ssdiff_cli.nn import ModelConfig, SSDiffDenoiser
from ssdiff_cli.pipeline import SharpenOptions, sharpen
from tests.conftest import requires_data, scene_paths


def _crop_scene(tmp_path, name="ge1_grip", size=256):
    """A real size x size PAN crop and its MS (ratio 4) as GeoTIFFs with a UTM georeference."""
    pan_path, ms_path = scene_paths(name)
    with rasterio.open(pan_path) as ds:
        pan = ds.read(window=((300, 300 + size), (200, 200 + size)))
        tags = ds.tags()
    with rasterio.open(ms_path) as ds:
        ms = ds.read(window=((75, 75 + size // 4), (50, 50 + size // 4)))
        names = ds.descriptions
    common = dict(driver="GTiff", crs="EPSG:32633", dtype=pan.dtype.name)
    out_pan, out_ms = tmp_path / "pan.tif", tmp_path / "ms.tif"
    with rasterio.open(out_pan, "w", width=size, height=size, count=1,
                       transform=Affine(0.5, 0, 500000, 0, -0.5, 4000000), **common) as dst:
        dst.write(pan)
        dst.update_tags(**tags)
    with rasterio.open(out_ms, "w", width=size // 4, height=size // 4, count=ms.shape[0],
                       transform=Affine(2.0, 0, 500000, 0, -2.0, 4000000), photometric="MINISBLACK",
                       **common) as dst:
        dst.write(ms)
        dst.descriptions = names
    return out_pan, out_ms


def _checkpoint(path, bands=4, variant="fast", base=16):
    torch.manual_seed(0)
    config = ModelConfig(bands=bands, ratio=4, variant=variant, base_channels=base if
                         variant == "fast" else 32)
    net = SSDiffDenoiser(config)
    with torch.no_grad():  # untrained weights, but no block left at its zero initialisation
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    card = zoo.ModelCard(
        name=path.name, sensor="ge1", band_names=["blue", "green", "red", "nir"][:bands] or [],
        bands=bands, ratio=4, normalisation={"kind": "fixed", "scale": 255.0},
        model=config.to_dict(), diffusion=DiffusionConfig().to_dict(), sampling={"steps": 2},
    )
    zoo.save_checkpoint(net, card, path)
    return path


def _run(pan, ms, out, model, **opts):
    method_options = {"model": str(model), **opts.pop("method_options", {})}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sharpen(pan, ms, str(out), SharpenOptions(
            method="ssdiff", force=True, overwrite=True, method_options=method_options, **opts))


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scene")
    pan, ms = _crop_scene(tmp)
    model = _checkpoint(tmp / "tiny-fast")
    return pan, ms, model, tmp


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read().astype(np.int64)


@requires_data
def test_seed_reproduces_the_result_exactly(scene, tmp_path):
    pan, ms, model, _ = scene
    a = _run(pan, ms, tmp_path / "a.tif", model, method_options={"seed": 7})
    _run(pan, ms, tmp_path / "b.tif", model, method_options={"seed": 7})
    _run(pan, ms, tmp_path / "c.tif", model, method_options={"seed": 8})
    assert np.array_equal(_read(tmp_path / "a.tif"), _read(tmp_path / "b.tif"))
    assert not np.array_equal(_read(tmp_path / "a.tif"), _read(tmp_path / "c.tif"))
    assert a.method["model"] == "tiny-fast" and a.method["steps"] == 2


@requires_data
def test_tile_layouts_agree_and_show_no_seam(scene, tmp_path):
    pan, ms, model, _ = scene
    small = _run(pan, ms, tmp_path / "small.tif", model, tile_size=64)
    _run(pan, ms, tmp_path / "large.tif", model, tile_size=1024)
    assert small.tiles == 16
    diff = np.abs(_read(tmp_path / "small.tif") - _read(tmp_path / "large.tif"))
    # The fast network is local and its noise is keyed by global position: two tilings agree to
    # the rounding of the output type (one digital number).
    assert diff.max() <= 1
    # No seam: differences along tile borders are no more frequent than elsewhere.
    borders = np.zeros(diff.shape[1:], dtype=bool)
    for b in range(64, 256, 64):
        borders[b - 2 : b + 2, :] = borders[:, b - 2 : b + 2] = True
    assert diff[:, borders].mean() <= diff[:, ~borders].mean() + 0.01


@requires_data
def test_faithful_variant_blends_the_network_over_patches_as_released(scene, tmp_path):
    # An independent expectation of the faithful inference: the network run on each 64x64
    # patch at stride 32 of the global grid, one at a time, with position-keyed noise; one DDIM
    # step at t = 0 (a card without t_start, 1 step) returns the clamped x0; patches blended with
    # separable 0.05 + sin^2 weights; image = lms + scale * residual.
    from ssdiff_cli.diffusion import position_noise
    from ssdiff_cli.scene import fill_values, prepare_scene, read_tile

    pan, ms, _, tmp = scene
    model = _checkpoint(tmp / "tiny-faithful", variant="faithful")
    # the MS where the grids put it, as the expectation below reads it
    report = _run(pan, ms, tmp_path / "f.tif", model, coregister="off",
                  method_options={"steps": 1, "precision": "fp32", "seed": 3})
    assert report.method["variant"] == "faithful" and report.method["steps"] == 1
    got = _read(tmp_path / "f.tif")
    net, card = zoo.load_checkpoint(model)
    scale, p = card.normalisation["scale"], 64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc, _, sample = prepare_scene(pan, [ms])
    tile = read_tile(sc.spec, 0, 0, 256, 256, fill_values(sample), want_ms=True)
    t = np.linspace(0.5, p - 0.5, p) / p
    w1 = 0.05 + np.sin(np.pi * t) ** 2
    weight = np.outer(w1, w1)
    acc, wsum = np.zeros((4, 256, 256)), np.zeros((256, 256))
    for y in range(32, 192 - 32 + 1, 32):  # every patch that reaches rows/columns 64-191
        for x in range(32, 192 - 32 + 1, 32):
            inputs = [position_noise(3, 4, y, x, p, p), tile.lms[:, y:y + p, x:x + p] / scale,
                      tile.pan[None, y:y + p, x:x + p] / scale,
                      tile.ms[:, y // 4:(y + p) // 4, x // 4:(x + p) // 4] / scale]
            with torch.no_grad():
                x0 = net(*[torch.from_numpy(np.ascontiguousarray(a[None], np.float32))
                           for a in inputs[:1]], torch.zeros(1),
                         *[torch.from_numpy(np.ascontiguousarray(a[None], np.float32))
                           for a in inputs[1:]])
            acc[:, y:y + p, x:x + p] += x0.clamp(-1, 1)[0].double().numpy() * weight
            wsum[y:y + p, x:x + p] += weight
    expected = tile.lms + scale * acc / np.maximum(wsum, 1e-12)
    top = 2 ** report.sensor["bit_depth"] - 1
    expected = np.clip(np.round(expected), 0, top)
    inner = (slice(None), slice(64, 192), slice(64, 192))  # covered by the same patches
    assert np.abs(got[inner] - expected[inner]).max() <= 1
    assert np.abs(got[inner] - np.clip(np.round(tile.lms), 0, top)[inner]).max() > 5  # not lms


def test_checkpoint_round_trip(tmp_path):
    path = _checkpoint(tmp_path / "m")
    net, card = zoo.load_checkpoint(path)
    again, _ = zoo.load_checkpoint(str(path) + ".safetensors")
    for (k, a), (_, b) in zip(net.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert card.bands == 4 and card.model["variant"] == "fast"


@requires_data
def test_mismatched_checkpoint_is_refused(scene, tmp_path):
    pan, ms, _, tmp = scene
    eight = _checkpoint(tmp / "tiny-8band", bands=8)
    with pytest.raises(ModelError, match="4 MS bands but model tiny-8band was made for 8"):
        _run(pan, ms, tmp_path / "x.tif", eight)
    assert not (tmp_path / "x.tif").exists()


def test_weights_that_do_not_fit_the_card_are_refused(tmp_path):
    path = _checkpoint(tmp_path / "m")
    card = zoo.read_card(path)
    card.model["base_channels"] = 32
    (tmp_path / "m.json").write_text(__import__("json").dumps(card.to_dict()))
    with pytest.raises(ModelError, match="do not fit the card"):
        zoo.load_checkpoint(path)


@requires_data
def test_cuda_request_without_a_gpu_is_a_clear_error(scene, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    pan, ms, model, _ = scene
    with pytest.raises(ModelError, match="no CUDA GPU"):
        _run(pan, ms, tmp_path / "x.tif", model, method_options={"device": "cuda"})


@requires_data
def test_scene_adaptation_changes_the_model_and_stays_reproducible(scene, tmp_path):
    pan, ms, model, _ = scene
    _run(pan, ms, tmp_path / "plain.tif", model)
    a = _run(pan, ms, tmp_path / "a.tif", model, method_options={"adapt": 4})
    _run(pan, ms, tmp_path / "b.tif", model, method_options={"adapt": 4})
    assert a.method["adapt_steps"] == 4
    assert np.array_equal(_read(tmp_path / "a.tif"), _read(tmp_path / "b.tif"))
    assert not np.array_equal(_read(tmp_path / "a.tif"), _read(tmp_path / "plain.tif"))


@requires_data
def test_shipped_default_model_beats_classical_fusion_on_a_scene_it_never_saw(tmp_path):
    # Wald protocol on the GeoEye-1 scene: the default (generalist) model never trained on it,
    # nor on any GeoEye-1 data (models/README.md lists its training scenes).
    card = zoo.find_model_for(4, 4, "ge1")
    if card is None or zoo.family(card).name != "generalist":
        pytest.skip("no shipped generalist model")
    assert "ge1_grip" not in json.dumps(card.training.get("scenes", []))
    from ssdiff_cli.evaluate import evaluate_reduced

    pan, ms = scene_paths("ge1_grip")
    ev = evaluate_reduced(pan, [ms], ["ssdiff", "mtf-glp-fs", "gsa"])
    rows = ev.rows
    assert rows["ssdiff"]["ERGAS"] < min(rows["mtf-glp-fs"]["ERGAS"], rows["gsa"]["ERGAS"])
    assert rows["ssdiff"]["SAM"] < min(rows["mtf-glp-fs"]["SAM"], rows["gsa"]["SAM"])


@requires_data
def test_auto_picks_the_generalist_for_every_sensor_and_ratio_and_mtf_glp_without_models(
        tmp_path, monkeypatch):
    from ssdiff_cli.pipeline import resolve_method
    from ssdiff_cli.scene import prepare_scene

    scenes = ("ge1_grip", "landsat8_satellite", "wv3_cristianics", "wv2_grip")
    detections = {}
    for name in scenes:
        pan, ms = scene_paths(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            detections[name] = prepare_scene(pan, [ms])[:2]
    if zoo.find_model_for(4, 2) is not None:
        for name in scenes:
            assert resolve_method("auto", *detections[name]) == "ssdiff", name
        assert zoo.find_model_for(8, 4, "wv3").name == zoo.DEFAULT_GENERALIST
        assert zoo.find_model_for(4, 2, "l8").name == zoo.DEFAULT_GENERALIST
    monkeypatch.setattr(zoo, "model_dirs", lambda: [tmp_path])  # an empty zoo
    for name in scenes:
        assert resolve_method("auto", *detections[name]) == "mtf-glp", name


@requires_data
def test_chunked_network_runs_agree_with_one_window_per_tile(scene, tmp_path):
    # The local network runs over each tile in chunks that carry its halo: chunk size changes
    # how the work is cut, not the result (to the rounding of the output type).
    pan, ms, model, _ = scene
    small = _run(pan, ms, tmp_path / "small.tif", model, method_options={"chunk": 256})
    _run(pan, ms, tmp_path / "whole.tif", model, method_options={"chunk": 4096})
    assert small.method["chunk"] == 256
    diff = np.abs(_read(tmp_path / "small.tif") - _read(tmp_path / "whole.tif"))
    assert diff.max() <= 1


@requires_data
def test_chunk_smaller_than_the_halo_is_refused(scene, tmp_path):
    pan, ms, model, _ = scene
    with pytest.raises(ModelError, match="chunk 128 PAN px leaves no room"):
        _run(pan, ms, tmp_path / "x.tif", model, method_options={"chunk": 128})
    assert not (tmp_path / "x.tif").exists()


@requires_data
def test_precision_auto_is_resolved_and_reported(scene, tmp_path):
    from ssdiff_cli.nn.precision import cpu_has_fast_bf16

    pan, ms, model, _ = scene
    report = _run(pan, ms, tmp_path / "a.tif", model)
    assert report.method["precision"] == ("bf16" if cpu_has_fast_bf16() else "fp32")
    fp32 = _run(pan, ms, tmp_path / "f.tif", model, method_options={"precision": "fp32"})
    assert fp32.method["precision"] == "fp32"
    with pytest.raises(ModelError, match="unknown precision 'fp16'"):
        _run(pan, ms, tmp_path / "x.tif", model, method_options={"precision": "fp16"})


def test_chunk_spans_cover_the_range_on_the_window_grid():
    from ssdiff_cli.tiling import chunk_spans

    for start, stop, most, g in [(96, 1152, 448, 32), (96, 200, 448, 32), (0, 1000, 64, 32),
                                 (64, 65, 100, 32)]:
        spans = chunk_spans(start, stop, most, g)
        assert spans[0][0] == start and spans[-1][1] == stop
        assert all(a < b for a, b in spans)
        assert all(b == c for (_, b), (c, _) in zip(spans[:-1], spans[1:]))
        assert all((a - start) % g == 0 for a, _ in spans)
        assert all(b - a <= max(g, most // g * g) for a, b in spans[:-1])
