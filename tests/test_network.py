"""The one inference path (``ssdiff_cli.methods.network``): chunks with a halo, blended patches,
the card's sampling. Data-free: stand-in networks whose results are known exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssdiff_cli import zoo
from ssdiff_cli.diffusion import DDIMScheduler, DiffusionConfig, position_noise
from ssdiff_cli.methods.network import (
    FAITHFUL_PATCH,
    Sampling,
    patch_corners,
    patch_weights,
    run_chunks,
    run_patches,
)
from ssdiff_cli.methods.ssdiff import fuse_arrays
from ssdiff_cli.nn import ModelConfig, SSDiffDenoiser

TINY = {"base_channels": 16, "time_dim": 16, "embed_dim": 32, "window": 4}


def _box3(a: np.ndarray) -> np.ndarray:
    """A local 'network': the 3x3 sum with zero padding at the window's edges."""
    p = np.pad(a, ((0, 0), (1, 1), (1, 1)))
    h, w = a.shape[-2:]
    return sum(p[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3))


@pytest.mark.parametrize("keep", [0, 8])
def test_chunks_with_a_halo_equal_one_run_over_the_window(keep):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 100, (2, 70, 90)).astype(np.float64)  # sums of integers are exact
    want = _box3(a)
    got = np.full_like(a, np.nan)
    seen = np.zeros(a.shape[1:], int)
    windows = []

    def inputs(y0, y1, x0, x1):
        windows.append((y1 - y0, x1 - x0))
        return a[:, y0:y1, x0:x1]

    def emit(y0, y1, x0, x1, core):
        got[:, y0:y1, x0:x1] = core
        seen[y0:y1, x0:x1] += 1

    run_chunks(70, 90, keep, 4, 4, 24, inputs, _box3, emit)
    inner = (slice(keep, 70 - keep), slice(keep, 90 - keep))
    assert (seen[inner] == 1).all() and seen.sum() == seen[inner].size  # each pixel once
    np.testing.assert_array_equal(got[:, inner[0], inner[1]], want[:, inner[0], inner[1]])
    assert len(windows) > 4 and max(max(w) for w in windows) <= 24  # bounded by the chunk


def test_patches_blend_with_raised_cosine_weights_and_cover_edges_on_request():
    h, w, r = 100, 72, 4
    zeros = np.zeros((1, h, w), np.float32)
    ms = np.zeros((1, h // r, w // r), np.float32)
    corners = patch_corners(h, w, r)
    assert corners == [(y, x) for y in (0, 32) for x in (0,)]
    calls = []

    def sample(batch):  # patch k returns the constant k
        n = batch[0].shape[0]
        out = np.stack([np.full((1, FAITHFUL_PATCH, FAITHFUL_PATCH), len(calls) * 2 + i,
                                np.float32) for i in range(n)])
        calls.append(n)
        return out

    res = run_patches(zeros, zeros, zeros, ms, r, sample, batch=2)
    wt = patch_weights(FAITHFUL_PATCH)
    y, x = 40, 10  # under patches 0 (rows 0-63) and 1 (rows 32-95)
    expect = (0 * wt[y, x] + 1 * wt[y - 32, x]) / (wt[y, x] + wt[y - 32, x])
    assert res[0, y, x] == pytest.approx(expect, rel=1e-6)
    assert (res[0, 96:] == 0).all()  # no patch reaches the last rows: a tile's halo covers them
    calls.clear()
    covered = run_patches(zeros, zeros, zeros, ms, r, lambda b: np.ones(
        (b[0].shape[0], 1, FAITHFUL_PATCH, FAITHFUL_PATCH), np.float32), batch=16,
        cover_edges=True)
    np.testing.assert_allclose(covered, 1.0, rtol=1e-6)
    assert patch_corners(h, w, r, cover_edges=True) == [(0, 0), (0, 8), (32, 0), (32, 8),
                                                        (36, 0), (36, 8)]


def test_sampling_follows_the_card():
    card = zoo.ModelCard(name="m", sensor="ge1", band_names=["b"], bands=1, ratio=4,
                         normalisation={"kind": "fixed", "scale": 1.0}, model={},
                         diffusion=DiffusionConfig(num_train_timesteps=500).to_dict(),
                         sampling={"steps": 3, "t_start": 499})
    s = Sampling.from_card(card)
    assert (s.steps, s.t_start, s.scheduler.num_train_timesteps) == (3, 499, 500)
    assert Sampling.from_card(card, steps=5).steps == 5
    plain = zoo.ModelCard(**{**card.to_dict(), "diffusion": {}, "sampling": {"steps": 2}})
    s = Sampling.from_card(plain)
    assert (s.steps, s.t_start, s.scheduler.num_train_timesteps) == (2, None, 1000)
    seen = []
    s.sample(lambda x, t: seen.append(float(t[0])) or torch.zeros_like(x), torch.zeros(1, 1, 2, 2))
    assert seen == [500.0, 0.0]  # the released rule without t_start


def _tiny(variant="fast"):
    torch.manual_seed(0)
    size = TINY if variant == "fast" else {**TINY, "base_channels": 32}
    net = SSDiffDenoiser(ModelConfig(bands=4, ratio=4, variant=variant, **size))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return net.eval()


def _arrays(h=160, w=160, seed=1):
    rng = np.random.default_rng(seed)
    lms = rng.random((4, h, w), dtype=np.float32)
    return lms, rng.random((1, h, w), dtype=np.float32), lms[:, ::4, ::4].copy()


def test_whole_array_fusion_does_not_depend_on_the_chunk():
    net = _tiny()
    lms, pan, ms = _arrays()
    sampling = Sampling(DDIMScheduler(), 1, 999)
    whole = fuse_arrays(net, sampling, lms, pan, ms, seed=2, row=8, col=16, chunk=4096)
    small = fuse_arrays(net, sampling, lms, pan, ms, seed=2, row=8, col=16, chunk=176)
    np.testing.assert_allclose(small, whole, atol=2e-5, rtol=0)
    # one window: the network on the whole arrays with noise keyed at (row, col)
    noise = position_noise(2, 4, 8, 16, 160, 160)
    with torch.no_grad():
        x0 = net(torch.from_numpy(noise[None]), torch.tensor([999.0]),
                 *(torch.from_numpy(a[None]) for a in (lms, pan, ms))).clamp(-1, 1)[0].numpy()
    np.testing.assert_allclose(whole, x0 + lms, atol=2e-5, rtol=0)


def test_whole_array_fusion_of_a_global_network_reaches_every_pixel():
    net = _tiny("faithful")
    lms, pan, ms = _arrays(100, 76)
    sampling = Sampling(DDIMScheduler(), 1, 999)
    out = fuse_arrays(net, sampling, lms, pan, ms)
    assert np.isfinite(out).all()
    assert (np.abs(out - lms).max(axis=0) > 0).all()  # a residual everywhere, edges included
