"""Tests of ssdiff_cli.diffusion: schedule, DDIM steps, the sampling loop, position noise."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ssdiff_cli.diffusion import (
    DDIMScheduler,
    DiffusionConfig,
    cosine_betas,
    position_noise,
    sample,
)


def _alpha_bar_reference(t: int, big_t: int = 1000, s: float = 0.008) -> float:
    """Closed form, float64, from the betas of the cosine schedule (capped at 0.999)."""
    f = [math.cos(((i / big_t) + s) / (1 + s) * math.pi / 2) ** 2 for i in range(t + 2)]
    prod = 1.0
    for i in range(t + 1):
        prod *= 1.0 - min(1.0 - f[i + 1] / f[i], 0.999)
    return prod


def test_schedule_is_float32_monotone_and_capped():
    sched = DDIMScheduler()
    assert sched.alphas_cumprod.dtype == torch.float32
    assert sched.alphas_cumprod.shape == (1000,)
    assert (sched.alphas_cumprod[1:] < sched.alphas_cumprod[:-1]).all()
    assert float(sched.betas.max()) == pytest.approx(0.999)  # the last beta hits the cap
    betas = cosine_betas(1000)
    assert betas.dtype == np.float64 and betas.max() == pytest.approx(0.999)


def test_set_timesteps_10_is_900_to_0():
    sched = DDIMScheduler()
    assert sched.set_timesteps(10).tolist() == [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    assert sched.timesteps.dtype == torch.int64
    assert sched.set_timesteps(3).tolist() == [666, 333, 0]
    assert sched.set_timesteps(1).tolist() == [0]
    assert sched.set_timesteps(1000).tolist() == list(range(999, -1, -1))


def test_set_timesteps_too_many_names_both_numbers():
    with pytest.raises(ValueError, match=r"1001.*1000"):
        DDIMScheduler().set_timesteps(1001)
    with pytest.raises(ValueError):
        DDIMScheduler().set_timesteps(0)


def test_step_without_schedule_says_what_to_do():
    x = torch.zeros(1, 2, 4, 4)
    with pytest.raises(RuntimeError, match="set_timesteps"):
        DDIMScheduler().step(x, 900, None, x)


def test_model_receives_exactly_the_timesteps():
    seen = []

    def model_fn(x_t, t):
        assert t.dtype == torch.float32 and t.shape == (3,)
        assert torch.all(t == t[0])
        seen.append(float(t[0]))
        return torch.zeros_like(x_t)

    sample(model_fn, torch.randn(3, 4, 8, 8), steps=10)
    assert seen == [900.0, 800.0, 700.0, 600.0, 500.0, 400.0, 300.0, 200.0, 100.0, 0.0]


def test_ddim_with_true_x0_reproduces_x0_from_noise():
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 4, 16, 16, generator=g) * 1.6 - 0.8
    noise = torch.randn(x0.shape, generator=g)
    out = sample(lambda x_t, t: x0, noise, steps=10)
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)


def test_ddim_step_with_true_x0_and_eps_lands_on_the_forward_process():
    sched = DDIMScheduler()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 3, 8, 8, generator=g) - 0.5
    eps = torch.randn(x0.shape, generator=g)
    x_t = sched.add_noise(x0, eps, 900)
    out = sched.step(x0, 900, 800, x_t)
    torch.testing.assert_close(out.prev_sample, sched.add_noise(x0, eps, 800), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.pred_original_sample, x0)
    final = sched.step(x0, 0, -1, sched.add_noise(x0, eps, 0))
    torch.testing.assert_close(final.prev_sample, x0, atol=1e-5, rtol=0)


def test_step_clamps_x0_to_given_bounds():
    sched = DDIMScheduler()
    x = torch.full((1, 1, 2, 2), 5.0)
    out = sched.step(x, 0, -1, x)
    assert torch.all(out.pred_original_sample == 1.0)
    lms = torch.full((1, 1, 2, 2), 0.25)
    out = sched.step(x, 0, -1, x, clip=(-lms, 1 - lms))
    assert torch.all(out.prev_sample == 0.75)


def test_add_noise_matches_closed_form():
    sched = DDIMScheduler()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 2, 5, 5, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([0, 1, 500, 999])
    got = sched.add_noise(x0, noise, t)
    for i, ti in enumerate(t.tolist()):
        ab = _alpha_bar_reference(ti)
        expect = math.sqrt(ab) * x0[i] + math.sqrt(1 - ab) * noise[i]
        torch.testing.assert_close(got[i], expect, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="1000"):
        sched.add_noise(x0, noise, torch.tensor([1000, 0, 0, 0]))


def test_sample_timesteps_are_uniform_integers_in_range():
    t = DDIMScheduler().sample_timesteps(10_000, generator=torch.Generator().manual_seed(0))
    assert t.dtype == torch.int64 and int(t.min()) >= 0 and int(t.max()) <= 999
    assert abs(float(t.float().mean()) - 499.5) < 15


def test_config_round_trip():
    cfg = DiffusionConfig(clip_range=(-0.5, 0.5))
    assert DiffusionConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert DiffusionConfig.from_dict(DiffusionConfig(clip_range=None).to_dict()).clip_range is None
    with pytest.raises(ValueError, match="clip_range"):
        DiffusionConfig(clip_range=(1.0, 0.0))


def test_position_noise_is_keyed_by_global_position():
    a = position_noise(7, 3, row_off=100, col_off=-20, height=40, width=50)
    b = position_noise(7, 3, row_off=120, col_off=10, height=40, width=50)
    assert a.shape == (3, 40, 50) and a.dtype == np.float32
    # overlap: global rows 120..139, cols 10..29
    np.testing.assert_array_equal(a[:, 20:40, 30:50], b[:, 0:20, 0:20])
    # a band subset is the same noise
    np.testing.assert_array_equal(position_noise(7, 2, 100, -20, 40, 50), a[:2])
    assert not np.allclose(position_noise(8, 3, 100, -20, 40, 50), a)
    assert not np.allclose(position_noise(7, 3, 100, -20, 40, 50, step=1), a)


def test_position_noise_is_standard_normal():
    z = position_noise(0, 4, 0, 0, 256, 256).ravel().astype(np.float64)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(np.mean(z**4) - 3) < 0.1  # kurtosis of a normal
    # neighbouring pixels and bands are uncorrelated
    img = position_noise(0, 2, 0, 0, 256, 256).astype(np.float64)
    assert abs(np.corrcoef(img[0, :, :-1].ravel(), img[0, :, 1:].ravel())[0, 1]) < 0.02
    assert abs(np.corrcoef(img[0].ravel(), img[1].ravel())[0, 1]) < 0.02


def test_trailing_schedule_starts_from_pure_noise():
    from ssdiff_cli.diffusion import DDIMScheduler

    sched = DDIMScheduler()
    assert sched.set_timesteps(1, t_start=999).tolist() == [999]
    assert sched.set_timesteps(4, t_start=999).tolist() == [999, 749, 499, 249]
    # The released schedule is unchanged without t_start.
    assert sched.set_timesteps(10).tolist() == list(range(900, -1, -100))
    with pytest.raises(ValueError, match="t_start"):
        sched.set_timesteps(4, t_start=2)


def test_every_inference_path_samples_with_this_one_loop(monkeypatch):
    # sharpen's per-sensor path, the generalist's, and hold-out scoring all run `sample`, with
    # the scheduler, steps and t_start they are given (the card's).
    from ssdiff_cli import diffusion
    from ssdiff_cli.methods.generalist import sample_correction
    from ssdiff_cli.methods.network import Sampling, denoise_batch
    from ssdiff_cli.methods.ssdiff import fuse_arrays
    from ssdiff_cli.nn import ModelConfig, SSDiffDenoiser

    calls = []

    def recording(model_fn, noise, scheduler=None, steps=10, clip=None, t_start=None):
        calls.append((scheduler, steps, t_start))
        return sample(model_fn, noise, scheduler, steps, clip, t_start)

    monkeypatch.setattr(diffusion, "sample", recording)
    sched = DDIMScheduler(DiffusionConfig(num_train_timesteps=400))
    sampling = Sampling(sched, 2, 399)
    net = SSDiffDenoiser(ModelConfig(bands=2, ratio=4, base_channels=16, time_dim=16,
                                     embed_dim=32, window=4)).eval()
    z = np.zeros((2, 32, 32), np.float32)
    denoise_batch(net, sampling, [z[None], z[None], z[None, :1], z[None, :, :8, :8]])
    fuse_arrays(net, sampling, z, z[:1], z[:, :8, :8])

    def generalist(x, t, base, lms, pan, pan_lp, ratio):
        return base

    sample_correction(generalist, sched, {k: z[None] for k in ("base", "lms", "pan", "pan_lp")},
                      z[None], 4, 3, None)
    assert calls == [(sched, 2, 399), (sched, 2, 399), (sched, 3, None)]
