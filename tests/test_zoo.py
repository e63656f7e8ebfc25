"""The zoo's adapter files: written, read back, applied to their base (and refused elsewhere).

Data-free: a tiny network stands in for a trained base.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import pytest
import torch

from ssdiff_cli import zoo
from ssdiff_cli.errors import ModelError
from ssdiff_cli.nn import ModelConfig, SSDiffDenoiser

TINY = {"base_channels": 16, "time_dim": 16, "embed_dim": 32, "window": 4}


@dataclass
class _Options:
    """What ``save_adapter`` records of a fine-tuning run (FinetuneConfig's fields it reads)."""

    rank: int = 2
    alpha: float | None = None
    first: str = "spatial"
    switch_every: int = 3
    steps: int = 6


@pytest.fixture()
def base(tmp_path):
    torch.manual_seed(0)
    net = SSDiffDenoiser(ModelConfig(bands=4, ratio=4, **TINY)).eval()
    card = zoo.ModelCard(name="tiny-base", sensor="ge1", band_names=["b", "g", "r", "n"], bands=4,
                         ratio=4, normalisation={"kind": "fixed", "scale": 2047.0},
                         model=net.config.to_dict())
    zoo.save_checkpoint(net, card, tmp_path / "tiny-base")
    return net, card


def _tuned(net, seed=3):
    """``net`` with rank-2 adapters whose B matrices are random (a trained adapter does not leave
    them at their zero initialisation)."""
    tuned = copy.deepcopy(net)
    zoo.add_adapters(tuned, 2, seed=1)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            if "lora_B" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return tuned.eval()


def _inputs():
    g = torch.Generator().manual_seed(5)
    return (torch.randn(2, 4, 16, 16, generator=g), torch.tensor([999.0, 10.0]),
            torch.rand(2, 4, 16, 16, generator=g), torch.rand(2, 1, 16, 16, generator=g),
            torch.rand(2, 4, 4, 4, generator=g))


def test_adapter_round_trip_applies_the_same_network(base, tmp_path):
    net, card = base
    tuned = _tuned(net)
    path = zoo.save_adapter(tuned, card, tmp_path / "ad", _Options(), extra={"note": "x"})
    assert path == tmp_path / "ad.safetensors"
    info, state = zoo.read_adapter(tmp_path / "ad.json")  # either file names the adapter
    assert info["kind"] == zoo.ADAPTER_KIND and info["base_model"] == "tiny-base"
    assert info["rank"] == 2 and info["schedule"]["switch_every"] == 3 and info["note"] == "x"
    assert info["base_architecture"] == card.model
    own = {k: v for k, v in tuned.state_dict().items() if "lora_" in k}
    assert set(state) == set(own) and all(torch.equal(state[k], own[k]) for k in own)
    fresh, card2 = zoo.load_checkpoint(tmp_path / "tiny-base")
    applied = zoo.apply_adapter(fresh, tmp_path / "ad", card2)
    assert not any("lora_" in k for k in applied.state_dict())  # merged: the base's structure
    with torch.no_grad():
        want, got, plain = tuned(*_inputs()), applied(*_inputs()), net(*_inputs())
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert (got - plain).abs().max() > 1e-3  # the adapter did change the network


def test_adapter_for_another_base_or_architecture_is_refused(base, tmp_path):
    net, card = base
    zoo.save_adapter(_tuned(net), card, tmp_path / "ad", _Options())
    other = zoo.ModelCard(**{**card.to_dict(), "name": "other"})
    with pytest.raises(ModelError, match="made for model 'tiny-base'"):
        zoo.apply_adapter(zoo.build_model(other), tmp_path / "ad", other)
    wider = zoo.ModelCard(**{**card.to_dict(), "model": {**card.model, "base_channels": 32}})
    with pytest.raises(ModelError, match="another architecture"):
        zoo.apply_adapter(zoo.build_model(wider), tmp_path / "ad", wider)


def test_foreign_or_damaged_adapter_files_are_refused(base, tmp_path):
    net, card = base
    zoo.save_adapter(_tuned(net), card, tmp_path / "ad", _Options())
    meta = tmp_path / "ad.json"
    with pytest.raises(ModelError, match="adapter file missing"):
        zoo.read_adapter(tmp_path / "none")
    info = json.loads(meta.read_text())
    for change, words in (({"kind": "something"}, "not an SSDiff L-BAF adapter"),
                          ({"rank": 10**6}, "rank"), ({"rank": True}, "rank"),
                          ({"alpha": float("inf")}, "alpha")):
        meta.write_text(json.dumps({**info, **change}))
        with pytest.raises(ModelError, match=words):
            zoo.read_adapter(tmp_path / "ad")
    meta.write_text("{not json")
    with pytest.raises(ModelError, match="unreadable adapter description"):
        zoo.read_adapter(tmp_path / "ad")


def test_add_adapters_is_seeded_and_leaves_the_global_generator_alone(base):
    net, _ = base
    a, b = copy.deepcopy(net), copy.deepcopy(net)
    torch.manual_seed(11)
    zoo.add_adapters(a, 2, seed=4)
    after_a = torch.rand(1)
    torch.manual_seed(11)
    zoo.add_adapters(b, 2, seed=4)
    assert torch.equal(torch.rand(1), after_a)  # no draw from the global generator
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = copy.deepcopy(net)
    zoo.add_adapters(c, 2, seed=5)
    assert any(not torch.equal(sa[k], v) for k, v in c.state_dict().items() if "lora_A" in k)
