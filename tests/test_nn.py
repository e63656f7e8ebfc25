"""Tests of ssdiff_cli.nn: shapes, parameter counts, zero-init, tile invariance, LoRA, overfit."""

from __future__ import annotations

import json
import time

import pytest
import torch
import torch.nn.functional as F

from ssdiff_cli.diffusion import DDIMScheduler
from ssdiff_cli.nn import (
    APFM,
    LoRAConv2d,
    LoRALinear,
    ModelConfig,
    SSDiffDenoiser,
    add_lora,
    lora_state_dict,
    merge_lora,
    set_trainable_branch,
)
from ssdiff_cli.nn.blocks import InputBlock, ResBlock
from ssdiff_cli.nn.fmim import window_lowfreq_scale


def _inputs(bands, ratio, h, w, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randn(batch, bands, h, w, generator=g)
    lms = torch.rand(batch, bands, h, w, generator=g)
    pan = torch.rand(batch, 1, h, w, generator=g)
    ms = torch.rand(batch, bands, h // ratio, w // ratio, generator=g)
    t = torch.tensor([999.0, 3.5][:batch] + [500.0] * max(0, batch - 2))
    return x_t, t, lms, pan, ms


def _randomize(model: torch.nn.Module, seed: int = 0, std: float = 0.05) -> None:
    """Perturb every parameter so that no path (zero-initialised convs included) is inactive."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(std * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("variant", ["fast", "faithful"])
@pytest.mark.parametrize("bands", [4, 8])
@pytest.mark.parametrize("ratio", [2, 4])
def test_output_shape(variant, bands, ratio):
    net = SSDiffDenoiser(ModelConfig(bands=bands, ratio=ratio, variant=variant)).eval()
    with torch.no_grad():
        out = net(*_inputs(bands, ratio, 32, 64))
    assert out.shape == (2, bands, 32, 64)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("variant", ["fast", "faithful"])
def test_sizes_not_multiple_of_granularity_are_padded(variant):
    net = SSDiffDenoiser(ModelConfig(bands=4, ratio=4, variant=variant)).eval()
    with torch.no_grad():
        out = net(*_inputs(4, 4, 36, 44, batch=1))
    assert out.shape == (1, 4, 36, 44)


def test_scalar_timestep_is_broadcast():
    net = SSDiffDenoiser(ModelConfig(bands=4, ratio=4)).eval()
    x_t, _, lms, pan, ms = _inputs(4, 4, 32, 32)
    with torch.no_grad():
        a = net(x_t, 250.0, lms, pan, ms)
        b = net(x_t, torch.tensor([250.0, 250.0]), lms, pan, ms)
    torch.testing.assert_close(a, b)


def test_bad_shapes_are_rejected_with_both_shapes():
    net = SSDiffDenoiser(ModelConfig(bands=4, ratio=4))
    x_t, t, lms, pan, ms = _inputs(4, 4, 32, 32)
    with pytest.raises(ValueError, match=r"\(2, 4, 8, 8\).*\(2, 4, 16, 16\)"):
        net(x_t, t, lms, pan, F.interpolate(ms, scale_factor=2))
    with pytest.raises(ValueError, match="x_t"):
        net(x_t[:, :3], t, lms, pan, ms)


def test_parameter_counts():
    counts = {
        (v, b): sum(p.numel() for p in SSDiffDenoiser(ModelConfig(bands=b, variant=v)).parameters())
        for v in ("faithful", "fast")
        for b in (4, 8)
    }
    assert 1_200_000 <= counts[("faithful", 8)] <= 1_450_000
    assert counts[("faithful", 4)] < counts[("faithful", 8)]
    # the fast variant swaps GroupNorm/BatchNorm for LayerNorm/none: nearly the same size
    assert abs(counts[("fast", 8)] - counts[("faithful", 8)]) < 1_000


def test_config_json_round_trip():
    cfg = ModelConfig(bands=4, ratio=2, variant="faithful", dropout=0.1)
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({**cfg.to_dict(), "nope": 1})
    with pytest.raises(ValueError, match="variant"):
        ModelConfig(variant="slow")


@pytest.mark.parametrize("group_norm", [True, False])
def test_resblock_is_identity_at_init(group_norm):
    block = ResBlock(64, 512, group_norm=group_norm)
    x = torch.randn(2, 64, 16, 16)
    emb = torch.randn(2, 512)
    assert torch.equal(block(x, emb), x)


def test_input_block_residual_is_identity_at_init():
    block = InputBlock(5, 32, 512, dropout=0.0, batch_norm=True).eval()
    x = torch.randn(2, 32, 16, 16)
    assert torch.equal(block.residual(x, torch.randn(2, 512)), x)


@pytest.mark.parametrize("window", [None, 8])
def test_apfm_is_identity_at_init(window):
    block = APFM(32, 16, window)
    x, y = torch.randn(2, 32, 16, 16), torch.randn(2, 32, 16, 16)
    assert torch.equal(block(x, y), x)


def test_apfm_window_fmim_matches_reference_filter():
    """The in-window FMIM equals window_lowfreq_scale followed by the plain windowed APFM."""
    block = APFM(32, 16, 8)
    _randomize(block)
    x, y = torch.randn(2, 32, 16, 24), torch.randn(2, 32, 16, 24)
    a = block(x, y, lowfreq_scale=0.3)
    b = block(x, window_lowfreq_scale(y, 0.3, 8))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_apfm_global_spatial_attention_is_sdpa():
    """With A_spe forced to the identity, APFM's fused product is (A_spa V) * Q."""
    torch.manual_seed(0)
    block = APFM(16, 16, None)
    _randomize(block)
    x, y = torch.randn(1, 16, 4, 4), torch.randn(1, 16, 4, 4)
    xt = x.flatten(2).transpose(1, 2)
    yt = y.flatten(2).transpose(1, 2)
    q, k = block.qk(block.norm(yt)).chunk(2, -1)
    v, u = block.vu(block.norm(xt)).chunk(2, -1)
    a_spa = torch.softmax(q @ k.transpose(1, 2) / 4.0, -1)
    a_spe = torch.softmax(v.transpose(1, 2) @ u * 4.0 / 16, -1)
    ref = xt + block.proj((a_spa @ v) * (q @ a_spe))
    ref = ref + block.ffn_out(F.leaky_relu(block.ffn_in(block.ffn_norm(ref)), 0.01))
    out = block(x, y).flatten(2).transpose(1, 2)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_fast_variant_is_tile_invariant():
    cfg = ModelConfig(bands=4, ratio=4, variant="fast")
    net = SSDiffDenoiser(cfg).eval()
    _randomize(net)
    g, rf = net.granularity, net.receptive_field
    assert g == 32
    x_t, t, lms, pan, ms = _inputs(4, 4, 256, 288, batch=1)
    r0, c0, h, w = g, 2 * g, 224, 224  # crop origin a multiple of the granularity
    crop = (
        x_t[..., r0 : r0 + h, c0 : c0 + w],
        t,
        lms[..., r0 : r0 + h, c0 : c0 + w],
        pan[..., r0 : r0 + h, c0 : c0 + w],
        ms[..., r0 // 4 : (r0 + h) // 4, c0 // 4 : (c0 + w) // 4],
    )
    with torch.no_grad():
        full = net(x_t, t, lms, pan, ms)
        part = net(*crop)
    a = full[..., r0 + rf : r0 + h - rf, c0 + rf : c0 + w - rf]
    b = part[..., rf : h - rf, rf : w - rf]
    assert a.numel() > 0
    torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    # and the edges do differ (the test would be vacuous otherwise)
    assert not torch.allclose(part[..., :4, :4], full[..., r0 : r0 + 4, c0 : c0 + 4], atol=1e-4)


def test_receptive_field_bounds_the_gradient_support():
    net = SSDiffDenoiser(ModelConfig(bands=4, ratio=4, variant="fast")).eval()
    _randomize(net)
    rf = net.receptive_field
    size = 288
    x_t, t, lms, pan, ms = _inputs(4, 4, size, size, batch=1)
    inputs = [x_t, lms, pan]
    for a in inputs:
        a.requires_grad_(True)
    p = 4 * 32 + 5  # an output pixel away from window boundaries
    net(x_t, t, lms, pan, ms)[0, :, p, p].sum().backward()
    support = sum(a.grad.abs().sum(dim=(0, 1)) for a in inputs) > 0
    rows, cols = torch.nonzero(support, as_tuple=True)
    reach = max(p - rows.min(), rows.max() - p, p - cols.min(), cols.max() - p).item()
    assert reach <= rf
    assert reach >= rf // 2  # the bound is not absurdly loose


def test_lora_starts_as_identity_and_merges_exactly():
    torch.manual_seed(0)
    net = SSDiffDenoiser(ModelConfig(bands=4, ratio=4)).eval()
    _randomize(net)
    args = _inputs(4, 4, 32, 32)
    with torch.no_grad():
        base = net(*args)
    n_spa = add_lora(net, "spatial", rank=4)
    n_spe = add_lora(net, "spectral", rank=2, alpha=4.0)
    assert n_spa > 0 and n_spe > 0
    with torch.no_grad():
        torch.testing.assert_close(net(*args), base, atol=0, rtol=0)
        for name, p in net.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
        adapted = net(*args)
    assert not torch.allclose(adapted, base, atol=1e-4)
    sd = lora_state_dict(net)
    assert sd and all("lora_" in k for k in sd)
    merge_lora(net)
    assert not any(isinstance(m, LoRALinear | LoRAConv2d) for m in net.modules())
    assert set(net.state_dict()) == set(SSDiffDenoiser(net.config).state_dict())
    with torch.no_grad():
        torch.testing.assert_close(net(*args), adapted, atol=1e-5, rtol=1e-4)


def test_lora_layers_compute_base_plus_low_rank():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 8, 3, padding=1)
    lora = LoRAConv2d(conv, rank=3, alpha=6.0)
    torch.nn.init.normal_(lora.lora_B)
    x = torch.randn(2, 6, 9, 9)
    expect = conv(x) + 2.0 * F.conv2d(F.conv2d(x, lora.lora_A, padding=1), lora.lora_B)
    torch.testing.assert_close(lora(x), expect)
    lin = torch.nn.Linear(5, 7)
    ll = LoRALinear(lin, rank=2)
    torch.nn.init.normal_(ll.lora_B)
    x = torch.randn(3, 5)
    torch.testing.assert_close(ll(x), lin(x) + x @ ll.lora_A.T @ ll.lora_B.T)


def test_set_trainable_branch_freezes_everything_else():
    net = SSDiffDenoiser(ModelConfig(bands=4, ratio=4))
    n_plain = set_trainable_branch(net, "spectral")
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("spectral_in", "spectral_blocks")) for n in trainable)
    assert n_plain == sum(p.numel() for p in net.parameters() if p.requires_grad)
    add_lora(net, "spatial")
    add_lora(net, "spectral")
    n_spa = set_trainable_branch(net, "spatial")
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert all(n.startswith("spatial") and "lora_" in n for n in trainable)
    assert 0 < n_spa < n_plain
    with pytest.raises(ValueError, match="branch"):
        set_trainable_branch(net, "both")


def _synthetic_crop(bands=4, size=32, ratio=4, seed=0):
    """A deterministic image-like crop: smooth random fields plus a little texture in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, bands, size // 4, size // 4, generator=g)
    gt = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    gt = gt + 0.1 * F.avg_pool2d(torch.rand(1, bands, size + 2, size + 2, generator=g), 3, 1)
    gt = (gt - gt.min()) / (gt.max() - gt.min())
    pan = gt.mean(1, keepdim=True)
    ms = F.avg_pool2d(gt, ratio)
    lms = F.interpolate(ms, scale_factor=ratio, mode="bilinear", align_corners=False)
    return gt, lms, pan, ms


@pytest.mark.slow
def test_small_model_overfits_one_crop(one_thread):
    """~200 steps, batch 4, 32x32 crop: about 10-25 s on one core."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    gt, lms, pan, ms = _synthetic_crop()
    x0 = gt - lms
    batch = 4

    def rep(a):
        return a.expand(batch, *a.shape[1:]).contiguous()

    x0, lms, pan, ms = rep(x0), rep(lms), rep(pan), rep(ms)
    net = SSDiffDenoiser(ModelConfig(bands=4, ratio=4, base_channels=16))
    sched = DDIMScheduler()
    t_eval = torch.linspace(0, 999, batch).round().long()
    n_eval = torch.randn(x0.shape, generator=g)

    def eval_loss():
        with torch.no_grad():
            pred = net(sched.add_noise(x0, n_eval, t_eval), t_eval.float(), lms, pan, ms)
        return F.l1_loss(pred, x0).item()

    start = eval_loss()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=0.0)
    t0 = time.perf_counter()
    for _ in range(200):
        t = sched.sample_timesteps(batch, generator=g)
        noise = torch.randn(x0.shape, generator=g)
        loss = F.l1_loss(net(sched.add_noise(x0, noise, t), t.float(), lms, pan, ms), x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    end = eval_loss()
    assert end * 10 <= start, (start, end, time.perf_counter() - t0)


def test_precision_auto_follows_the_cpu_flags(monkeypatch):
    from ssdiff_cli.nn import precision

    for flags, inference, training in [
        ({"avx512f"}, None, None),
        ({"avx512f", "avx512_bf16"}, torch.bfloat16, None),  # bf16 forward only
        ({"amx_bf16", "avx512_bf16"}, torch.bfloat16, torch.bfloat16),
    ]:
        monkeypatch.setattr(precision, "cpu_flags", lambda flags=flags: flags)
        assert precision.resolve_precision("auto", "cpu") == inference
        assert precision.resolve_precision("auto", "cpu", training=True) == training
    assert precision.resolve_precision("fp32", "cpu") is None
    assert precision.resolve_precision("bf16", "cpu") == torch.bfloat16
    assert precision.precision_name(torch.bfloat16) == "bf16"
    assert precision.precision_name(None) == "fp32"
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        precision.resolve_precision("fp16", "cpu")
