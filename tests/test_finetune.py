"""L-BAF fine-tuning, adapter files, merging, scene adaptation, and the models/train CLI."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import rasterio
import torch
import typer
from typer.testing import CliRunner

from ssdiff_cli import zoo
from ssdiff_cli.errors import ModelError
from ssdiff_cli.nn import ModelConfig, SSDiffDenoiser, merge_lora
from ssdiff_cli.training.crops import CropSampler, build_scene
from ssdiff_cli.training.finetune import (
    FinetuneConfig,
    adapt_to_scene,
    add_adapters,
    apply_adapter,
    branch_at,
    check_same_layout,
    run_lbaf,
    save_adapter,
)
from tests.conftest import requires_data, scene_paths

TINY = {"base_channels": 16, "time_dim": 16, "embed_dim": 32, "window": 4}


@pytest.fixture(scope="module")
def ge1():
    return build_scene(*scene_paths("ge1_grip"), holdout=0.2)


@pytest.fixture()
def base(ge1, tmp_path):
    torch.manual_seed(0)
    net = SSDiffDenoiser(ModelConfig(bands=4, ratio=4, **TINY)).eval()
    with torch.no_grad():  # stand-in for a trained base: no zero-initialised layer left
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    card = zoo.ModelCard(name="tiny-base", sensor="ge1", band_names=ge1.band_names, bands=4, ratio=4,
                         normalisation={"kind": "scene", "percentile": 99.0}, model=net.config.to_dict())
    zoo.save_checkpoint(net, card, tmp_path / "tiny-base")
    return net, card


def _inputs(ge1):
    b = CropSampler([ge1], crop=16, seed=7).sample(2)
    t = {k: torch.from_numpy(v) for k, v in b.items()}
    x = torch.randn(t["gt"].shape, generator=torch.Generator().manual_seed(1))
    return x, torch.tensor([999.0, 500.0]), t["lms"], t["pan"], t["ms"]


def test_schedule_alternates_starting_with_spatial():
    assert [branch_at(s, 2) for s in range(6)] == ["spatial"] * 2 + ["spectral"] * 2 + ["spatial"] * 2


@requires_data
def test_finetune_changes_only_adapters_and_adapter_file_round_trips(ge1, base, tmp_path):
    torch.set_num_threads(1)
    net, card = base
    tuned = copy.deepcopy(net)
    before = {k: v.clone() for k, v in tuned.state_dict().items()}
    add_adapters(tuned, rank=2)
    cfg = FinetuneConfig(steps=4, rank=2, switch_every=2, batch=2, crop=16, precision="fp32", lr=1e-2)
    run_lbaf(tuned, CropSampler([ge1], crop=16, seed=0), cfg)
    after = tuned.state_dict()
    for k, v in before.items():  # every base weight (now under .base) is untouched
        key = k if k in after else k.rsplit(".", 1)[0] + ".base." + k.rsplit(".", 1)[1]
        assert torch.equal(after[key], v), k
    lora_b = {k: v for k, v in after.items() if "lora_B" in k}
    spatial = [v for k, v in lora_b.items() if k.startswith("spatial")]
    spectral = [v for k, v in lora_b.items() if k.startswith("spectral")]
    assert any(v.abs().sum() > 0 for v in spatial) and any(v.abs().sum() > 0 for v in spectral)
    inputs = _inputs(ge1)
    with torch.no_grad():
        want = tuned(*inputs)
    save_adapter(tuned, card, tmp_path / "ad", cfg)
    info = json.loads((tmp_path / "ad.json").read_text())
    assert info["base_model"] == "tiny-base" and info["rank"] == 2
    assert info["schedule"]["first"] == "spatial" and info["schedule"]["switch_every"] == 2
    fresh, card2 = zoo.load_checkpoint(tmp_path / "tiny-base")
    applied = apply_adapter(fresh, tmp_path / "ad", card2)
    with torch.no_grad():
        got = applied(*inputs)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # merged full checkpoint equals base + adapter
    merged = merge_lora(copy.deepcopy(tuned))
    zoo.save_checkpoint(merged, zoo.ModelCard(**{**card.to_dict(), "name": "merged"}), tmp_path / "merged")
    m, _ = zoo.load_checkpoint(tmp_path / "merged")
    with torch.no_grad():
        torch.testing.assert_close(m(*inputs), want, atol=1e-5, rtol=1e-5)
    # an adapter refuses another base
    other = zoo.ModelCard(**{**card.to_dict(), "name": "other"})
    with pytest.raises(ModelError, match="tiny-base"):
        apply_adapter(zoo.build_model(other), tmp_path / "ad", other)


@requires_data
def test_other_band_count_says_train_from_scratch(base):
    with pytest.raises(ModelError, match="ssdiff train"):
        check_same_layout(base[1], 8, 4)


def _objective(net, scene, seed=123, batch=32):
    """L-BAF's objective (L1 on the residual x0) on fixed crops, noise and timesteps."""
    from ssdiff_cli.diffusion import DDIMScheduler

    b = {k: torch.from_numpy(v) for k, v in CropSampler([scene], crop=16, seed=seed).sample(batch).items()}
    g = torch.Generator().manual_seed(seed)
    x0 = b["gt"] - b["lms"]
    t = DDIMScheduler().sample_timesteps(batch, generator=g)
    x_t = DDIMScheduler().add_noise(x0, torch.randn(x0.shape, generator=g), t)
    with torch.no_grad():
        return float(torch.nn.functional.l1_loss(net(x_t, t.float(), b["lms"], b["pan"], b["ms"]), x0))


@requires_data
def test_adapt_to_scene_returns_a_merged_network_that_fits_the_scene_better(ge1, base):
    from ssdiff_cli.sensors import get_preset
    from ssdiff_cli.training.crops import scene_from_arrays

    torch.set_num_threads(1)
    net, card = base
    pan_path, ms_path = scene_paths("ge1_grip")
    with rasterio.open(pan_path) as p, rasterio.open(ms_path) as m:
        pan, ms = p.read(1)[:256, :256], m.read()[:, :64, :64]
    out = adapt_to_scene(copy.deepcopy(net), card, pan, ms, steps=24, batch=8, crop=16, lr=1e-2,
                         precision="fp32")
    # merged: the base's structure, no adapter left, nothing trainable
    assert not any("lora_" in k for k in out.state_dict())
    assert set(out.state_dict()) == set(net.state_dict())
    assert not out.training and not any(p.requires_grad for p in out.parameters())
    # the adaptation changed the weights of both branches (L-BAF alternates them)...
    changed = [k for k, v in out.state_dict().items() if not torch.equal(v, net.state_dict()[k])]
    assert any(k.startswith("spatial") for k in changed) and any(k.startswith("spectral") for k in changed)
    # ...and the adapted network fits the scene's own reduced-resolution pairs (its objective,
    # on crops, noise and timesteps it never trained on) better than the base
    preset = get_preset("ge1")
    scene = scene_from_arrays(pan, ms, 4, preset.ms_gnyq, preset.pan_gnyq, holdout=0.0)
    before, after = _objective(net, scene), _objective(out, scene)
    assert after < 0.95 * before, (before, after)


@requires_data
def test_finetune_scores_holdouts_with_the_cards_sampling(ge1, base, tmp_path):
    # Hold-out scores go through the inference path with the base card's scheduler, steps and
    # t_start (this card has none: one step at t = 0, as sharpen samples it), not a default
    # scheduler started at T - 1 as before issue 15.
    from ssdiff_cli.diffusion import DDIMScheduler
    from ssdiff_cli.methods.network import Sampling
    from ssdiff_cli.training.finetune import finetune
    from ssdiff_cli.training.loop import score_holdout

    torch.set_num_threads(1)
    net, card = base
    cfg = FinetuneConfig(steps=2, rank=2, switch_every=1, batch=2, crop=16, precision="fp32")
    res = finetune(str(tmp_path / "tiny-base"), [scene_paths("ge1_grip")], tmp_path / "ad", cfg)
    want = score_holdout(net, Sampling.from_card(card), ge1)
    assert res["before"][ge1.name] == want
    old = score_holdout(net, Sampling(DDIMScheduler(), 1, 999), ge1)
    assert old != want
    assert (tmp_path / "ad.safetensors").exists() and res["after"][ge1.name] != want


@requires_data
def test_models_list_and_show_cli(base, tmp_path, monkeypatch):
    from ssdiff_cli.cli import register_commands as register

    monkeypatch.setenv("SSDIFF_MODELS", str(tmp_path))
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """test app"""

    register(app)
    runner = CliRunner()
    res = runner.invoke(app, ["models", "list", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)["models"]}
    # $SSDIFF_MODELS adds its folder to the shipped models
    assert rows["tiny-base"]["bands"] == 4 and {"ssdiff-4band", "ssdiff-8band"} <= set(rows)
    res = runner.invoke(app, ["models", "list"])
    assert res.exit_code == 0 and "tiny-base" in res.output
    res = runner.invoke(app, ["models", "show", "tiny-base"])
    assert res.exit_code == 0, res.output
    card = json.loads(res.stdout)
    assert card["parameters"] == sum(p.numel() for p in base[0].parameters())
    res = runner.invoke(app, ["models", "show", "nope"])
    assert res.exit_code == 6


@requires_data
def test_train_cli_writes_a_checkpoint(tmp_path):
    from ssdiff_cli.cli import register_commands as register

    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """test app"""

    register(app)
    pan, ms = scene_paths("ge1_grip")
    out = tmp_path / "cli-model"
    res = CliRunner().invoke(app, ["train", f"{pan},{ms}", "-o", str(out), "--max-steps", "2",
                                   "--batch-size", "2", "--eval-every", "0", "--precision", "fp32",
                                   "--threads", "1", "-q", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["step"] == 2
    card = zoo.read_card(out)
    assert card.sensor == "ge1" and card.normalisation == {"kind": "scene", "percentile": 99.0}
    assert "non-profit" in card.training["terms"][0]
    assert np.isfinite(card.training["wall_time_s"])
