"""Training: Wald crops, nodata, hold-out, loss, resume, interruption, overfitting, PanCollection."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from ssdiff_cli import filters, zoo
from ssdiff_cli.sensors import get_preset
from ssdiff_cli.training.crops import CropSampler, build_scene, crop_origins
from ssdiff_cli.training.loop import TrainConfig, Trainer, card_template
from tests.conftest import requires_data, scene_paths

pytestmark = requires_data

#: A tiny network so that the loop tests run in seconds on two shared cores.
TINY = {"base_channels": 16, "time_dim": 16, "embed_dim": 32, "window": 4}


@pytest.fixture(scope="module")
def ge1():
    pan, ms = scene_paths("ge1_grip")
    return build_scene(pan, ms, holdout=0.2)


def _trainer(scene, tmp_path, name="run", **kw):
    cfg = TrainConfig(name=name, output=str(tmp_path / name), model_overrides=TINY, crop=16, batch=4,
                      precision="fp32", eval_every=0, log_every=1, seed=3, **kw)
    card = card_template(name, [scene], cfg)
    return Trainer(CropSampler([scene], crop=16, seed=3), [], card, cfg, resume=kw.get("max_steps", 0) < 0)


def test_degradation_matches_the_wald_formulas(ge1):
    preset = get_preset("ge1")
    for g in (*preset.ms_gnyq, preset.pan_gnyq):
        sigma = filters.mtf_sigma(g, 4)
        assert sigma == pytest.approx(4 * np.sqrt(-2 * np.log(g)) / np.pi)
        assert filters.nyquist_gain(filters.mtf_kernel(g, 4), 4) == pytest.approx(g, abs=2e-3)
    pan_path, ms_path = scene_paths("ge1_grip")
    with rasterio.open(pan_path) as p, rasterio.open(ms_path) as m:
        pan, ms = p.read(1).astype(np.float32), m.read().astype(np.float32)
    s = ge1
    np.testing.assert_allclose(s.pan[0] * s.scale, filters.degrade(pan, preset.pan_gnyq, 4),
                               rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(s.ms * s.scale, filters.degrade(ms, preset.ms_gnyq, 4), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(s.gt * s.scale, ms, rtol=1e-6, atol=1e-4)  # the reference is the MS
    assert s.scale == pytest.approx(np.percentile(s.pan[0] * s.scale, 99), rel=1e-5)


def test_crops_never_touch_nodata(tmp_path):
    pan_path, ms_path = scene_paths("wv3_cristianics")
    out = {}
    for key, path in (("pan", pan_path), ("ms", ms_path)):
        with rasterio.open(path) as src:
            data, prof = src.read(), src.profile
        if key == "pan":
            data[:, :, :120] = 0  # a nodata border (nodata = 0) on the left
            data[:, 300:340, :] = 0  # and a band across the middle
        prof.update(nodata=0)
        out[key] = tmp_path / f"{key}.tif"
        with rasterio.open(out[key], "w", **prof) as dst:
            dst.write(data)
    s = build_scene(out["pan"], out["ms"], holdout=0.2)
    assert not s.valid[:, :30].any()  # reduced grid: 120 PAN px = 30 px
    assert not s.valid[75:85].any()
    sampler = CropSampler([s], crop=16, seed=0)
    o = sampler.origins[0]
    assert len(o) > 0
    for y, x in o:
        assert s.valid[y:y + 16, x:x + 16].all()
    # every sampled crop comes from valid pixels: mark invalid pixels and sample many batches
    s.gt[:, ~s.valid] = 1e6
    for _ in range(20):
        assert sampler.sample(16)["gt"].max() < 1e5


def test_holdout_is_never_sampled(ge1):
    s = build_scene(*scene_paths("ge1_grip"), holdout=0.2)
    w = s.valid.shape[1]
    assert s.holdout_start == w - 64 and s.train_end == s.holdout_start - filters.support(4)
    o = crop_origins(s.valid, 32, 4, s.train_end)
    assert (o[:, 1] + 32 <= s.train_end).all()
    s.gt[:, :, s.train_end:] = 1e6
    s.pan[:, :, s.train_end:] = 1e6
    sampler = CropSampler([s], crop=32, seed=1)
    for _ in range(30):
        b = sampler.sample(16)
        assert b["gt"].max() < 1e5 and b["pan"].max() < 1e5


def test_steps_lower_loss_resume_is_exact_and_interrupt_saves(ge1, tmp_path):
    torch.set_num_threads(1)
    losses_a = []
    t = _trainer(ge1, tmp_path, "a", max_steps=30)
    t.run(callback=lambda tr, loss: losses_a.append(loss))
    assert np.mean(losses_a[-8:]) < 0.7 * np.mean(losses_a[:3])
    # interrupted at step 12 by a callback: checkpoint and state are left and loadable
    def stop(tr, loss):
        if tr.step == 12:
            raise KeyboardInterrupt

    res = _trainer(ge1, tmp_path, "b", max_steps=30).run(callback=stop)
    assert res.interrupted and res.step == 12
    net, card = zoo.load_checkpoint(tmp_path / "b")
    assert card.training["steps"] == 12 and card.bands == 4
    # resume: same step counter, and the next losses equal the uninterrupted run's
    cfg = TrainConfig(name="b", output=str(tmp_path / "b"), model_overrides=TINY, crop=16, batch=4,
                      precision="fp32", eval_every=0, log_every=1, seed=3, max_steps=16)
    t2 = Trainer(CropSampler([ge1], crop=16, seed=99), [], card_template("b", [ge1], cfg), cfg, resume=True)
    assert t2.step == 12
    losses_b = []
    t2.run(callback=lambda tr, loss: losses_b.append(loss))
    assert t2.step == 16
    np.testing.assert_allclose(losses_b, losses_a[12:16], rtol=1e-5)


class _OneCrop:
    def __init__(self, batch):
        self.batch = batch

    def sample(self, n):
        return self.batch

    def get_state(self):
        return {}

    def set_state(self, s):
        pass


def test_small_model_overfits_one_real_crop(ge1, tmp_path):
    torch.set_num_threads(1)
    one = CropSampler([ge1], crop=16, seed=5).sample(1)
    batch = {k: np.repeat(v, 4, axis=0) for k, v in one.items()}
    cfg = TrainConfig(name="o", output=str(tmp_path / "o"), model_overrides=TINY, crop=16, batch=4,
                      precision="fp32", eval_every=0, log_every=50, seed=0, max_steps=300, lr=2e-3)
    t = Trainer(_OneCrop(batch), [], card_template("o", [ge1], cfg), cfg)
    losses = []
    t.run(callback=lambda tr, loss: losses.append(loss))
    assert np.mean(losses[-20:]) * 10 <= np.mean(losses[:5])


def test_pancollection_h5_streams_batches(ge1, tmp_path):
    h5py = pytest.importorskip("h5py")
    from ssdiff_cli.training.pancollection import PanCollectionSource, train_pancollection

    crops = CropSampler([ge1], crop=32, seed=2).sample(6)
    path = tmp_path / "tiny.h5"
    with h5py.File(path, "w") as f:
        for k, v in crops.items():
            f[k] = (v * 2047.0).astype(np.float64)  # as PanCollection: float64 digital numbers
    src = PanCollectionSource(path, crop=16, seed=0, holdout=0.34)
    assert src.n_train == 4 and src.n_hold == 2
    b = src.sample(3)
    assert b["pan"].shape == (3, 1, 16, 16) and b["ms"].shape == (3, 4, 4, 4)
    assert b["gt"].max() < 5
    cfg = TrainConfig(name="pc", output=str(tmp_path / "pc"), model_overrides=TINY, crop=16, batch=2,
                      precision="fp32", eval_every=2, seed=0, max_steps=2)
    res = train_pancollection(path, cfg, sensor="ge1")
    card = zoo.read_card(tmp_path / "pc")
    assert res.step == 2 and card.normalisation == {"kind": "fixed", "scale": 2047.0}
    assert "pancollection_holdout" in res.best
