"""KSDiff's two-stage training (``ssdiff_cli.training.ksdiff``) on a real scene: stage 1 trains
PLFE1, the generator and the backbone and leaves the denoiser alone; stage 2 freezes PLFE1 and
trains the denoiser jointly with the regressor; the checkpoint (safetensors + JSON) is a KSDiff
model that ``--method ksdiff`` runs; a run resumes exactly where it stopped."""

from __future__ import annotations

import torch
from conftest import DATA, requires_data

from ssdiff_cli import zoo
from ssdiff_cli.families import FAMILIES, training_entry
from ssdiff_cli.nn.ksdiff import KSDiffNetwork
from ssdiff_cli.training.ksdiff import KSDiffTrainConfig, KSDiffTrainer, train_ksdiff
from ssdiff_cli.training.loop import state_path

SCENE = "l7_fusebox/07"


def _scenes():
    return [(DATA / SCENE / "pan.tif", DATA / SCENE / "ms.tif", "l7", "public domain")]


def _params(net, part):
    return {k: v.detach().clone() for k, v in getattr(net, part).state_dict().items()}


def _changed(before, after) -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before)


@requires_data
def test_two_stages_train_their_parts_and_resume_exactly(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    assert training_entry(FAMILIES["ksdiff"]) is train_ksdiff
    cfg = KSDiffTrainConfig(output=str(tmp_path / "run"), max_steps=6, stage1=0.5, threads=1,
                            batch=2, groups=1, jitters=1)
    snapshots = []
    step = KSDiffTrainer.train_step

    def recorded(self, stage):
        before = {p: _params(self.net, p) for p in ("plfe1", "plfe2", "denoiser", "backbone")}
        out = step(self, stage)
        snapshots.append((stage, out, {p: _changed(b, _params(self.net, p))
                                       for p, b in before.items()}))
        return out

    monkeypatch.setattr(KSDiffTrainer, "train_step", recorded)
    trainer = train_ksdiff(_scenes(), cfg, log=lambda m: None)
    assert [s for s, _, _ in snapshots] == [1, 1, 1, 2, 2, 2] and trainer.stage2_from == 3
    # PLFE1 learns from the third step on: the backbone's last layer and the generator's cores
    # start at zero (an untrained model returns the base, W1 = W0), so the gradient reaches
    # the cores at the second step and z at the third
    assert [c["plfe1"] for _, _, c in snapshots[:3]] == [False, False, True]
    for stage, losses, changed in snapshots:
        assert changed["backbone"]
        if stage == 1:
            assert set(losses) == {"image"}
            assert not changed["denoiser"] and not changed["plfe2"]
        else:
            assert set(losses) == {"latent", "image"} and not changed["plfe1"]
            assert changed["denoiser"] and changed["plfe2"]
    net, card = zoo.load_checkpoint(tmp_path / "run")
    assert isinstance(net, KSDiffNetwork) and zoo.family(card).name == "ksdiff"
    assert card.training["steps"] == 6 and card.training["stage2_from_step"] == 3
    assert state_path(tmp_path / "run").exists()

    # resumed for two more steps = one run of eight (switching to stage 2 at the same step)
    monkeypatch.setattr(KSDiffTrainer, "train_step", step)
    resumed = train_ksdiff(_scenes(), KSDiffTrainConfig(**{**cfg.__dict__, "max_steps": 8}),
                           resume=True, log=lambda m: None)
    whole = train_ksdiff(_scenes(), KSDiffTrainConfig(**{**cfg.__dict__, "max_steps": 8,
                                                          "stage1": 0.375,
                                                          "output": str(tmp_path / "whole")}),
                         log=lambda m: None)
    assert resumed.step == whole.step == 8
    for (k, a), b in zip(resumed.net.state_dict().items(), whole.net.state_dict().values()):
        assert torch.equal(a, b), k
