"""L-BAF: branch-wise alternating fine-tuning with low-rank adapters, adapter files, scene adaptation.

Schedule (the paper gives none; this is ours): rank-``rank`` adapters (:mod:`ssdiff_cli.nn.lora`)
on every Linear and Conv2d of *both* branches; only one branch's adapters train at a time, the
rest of the network is frozen; the branch switches every ``switch_every`` steps, starting with
the spatial branch (spatial for steps ``[0, K)``, spectral ``[K, 2K)``, ...). One AdamW over all
adapter weights (lr 5e-4, no weight decay): the frozen branch's adapters get no gradient, so
AdamW leaves them and their moments alone. Loss and noise as in training (L1 on the residual x0);
no EMA (runs are short).

Adapter files (``NAME.safetensors`` + ``NAME.json``) are the zoo's: written by
:func:`ssdiff_cli.zoo.save_adapter`, read and folded into their base by
:func:`ssdiff_cli.zoo.apply_adapter` (inference needs them without this training code); the
names stay importable from here. Training noise follows the model card's diffusion schedule, and
hold-outs are scored through the inference path with the card's sampling
(:func:`ssdiff_cli.methods.network.Sampling.from_card`).

Fine-tuning to another band count or ratio is impossible with adapters (the input, output and MS
skip layers are shaped by them): :func:`check_same_layout` says to train from scratch instead.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ssdiff_cli.diffusion import DDIMScheduler
from ssdiff_cli.errors import DegenerateOutputError, ModelError
from ssdiff_cli.methods.network import Sampling, card_scheduler
from ssdiff_cli.nn import merge_lora, set_trainable_branch

# Adapter I/O lives in the zoo; re-exported for the trainers and their tests.
from ssdiff_cli.zoo import (  # noqa: F401
    ADAPTER_KIND,
    MAX_RANK,
    adapter_paths,
    add_adapters,
    apply_adapter,
    read_adapter,
    save_adapter,
)


@dataclass
class FinetuneConfig:
    """L-BAF options (saved in the adapter's JSON)."""

    steps: int = 1000
    rank: int = 4
    alpha: float | None = None
    switch_every: int = 100
    first: str = "spatial"
    lr: float = 5e-4
    batch: int = 16
    crop: int = 32
    seed: int = 0
    precision: str = "auto"
    device: str = "cpu"


def branch_at(step: int, switch_every: int, first: str = "spatial") -> str:
    """The branch trained at ``step`` (0-based) under the alternating schedule."""
    other = "spectral" if first == "spatial" else "spatial"
    return first if (step // max(switch_every, 1)) % 2 == 0 else other


def check_same_layout(card, bands: int, ratio: int) -> None:
    """Adapters keep the base's band count and ratio; anything else needs ``ssdiff train``."""
    if card.bands != bands or card.ratio != ratio:
        raise ModelError(
            f"model {card.name} is for {card.bands} bands at ratio {card.ratio}, the data has {bands} "
            f"bands at ratio {ratio}: its input, output and MS-skip layers are shaped by these, so it "
            "cannot be fine-tuned to them; train a model from scratch with `ssdiff train`"
        )


def run_lbaf(net, sampler, config: FinetuneConfig, callback=None, progress=None,
             scheduler: DDIMScheduler | None = None) -> list[float]:
    """Train the adapters of ``net`` (already added) on ``sampler`` batches, noised with
    ``scheduler`` (the base's, :func:`card_scheduler`; default schedule without); returns the
    losses."""
    from ssdiff_cli.nn.precision import resolve_precision

    cfg = config
    dev = cfg.device
    dtype = resolve_precision(cfg.precision, dev, training=True)
    sched = scheduler or DDIMScheduler()
    gen = torch.Generator().manual_seed(cfg.seed)
    params = [p for n, p in net.named_parameters() if "lora_" in n]
    if not params:
        raise ValueError("the network carries no adapters (call add_adapters first)")
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    losses = []
    branch = None
    net.train()
    for step in range(cfg.steps):
        b_now = branch_at(step, cfg.switch_every, cfg.first)
        if b_now != branch:
            branch = b_now
            set_trainable_branch(net, branch)
        b = {k: torch.from_numpy(v).to(dev) for k, v in sampler.sample(cfg.batch).items()}
        x0 = b["gt"] - b["lms"]
        t = sched.sample_timesteps(x0.shape[0], generator=gen).to(dev)
        noise = torch.randn(x0.shape, generator=gen).to(dev)
        x_t = sched.add_noise(x0, noise, t)
        with torch.autocast(device_type="cuda" if dev.startswith("cuda") else "cpu", dtype=dtype,
                            enabled=dtype is not None):
            pred = net(x_t, t.float(), b["lms"], b["pan"], b["ms"])
        loss = F.l1_loss(pred.float(), x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
            raise DegenerateOutputError(
                f"fine-tuning diverged at step {step + 1} (loss {losses[-1]}); nothing written "
                f"from it (lower the learning rate, now {cfg.lr:g})")
        if progress is not None:
            progress(step + 1, cfg.steps, losses[-1], branch)
        if callback is not None:
            callback(step + 1, losses[-1], branch)
    net.eval()
    net.requires_grad_(False)
    return losses


def _holdout_scores(net, scenes, sampling: Sampling) -> dict:
    """Hold-out scores of every scene that has a hold-out, and their mean, fused with
    ``sampling`` (the base card's: :meth:`Sampling.from_card`)."""
    from ssdiff_cli.training.loop import score_holdout

    out = {s.name: score_holdout(net, sampling, s) for s in scenes
           if s.holdout_start < s.valid.shape[1]}
    if out:
        out["mean"] = {k: float(np.mean([v[k] for v in out.values()])) for k in ("SAM", "ERGAS", "Q2n")}
    return out


def finetune(base: str, scene_pairs: list[tuple], output, config: FinetuneConfig | None = None,
             sensor: str | None = None, mtf_gains=None, pan_gain=None, holdout: float = 0.2,
             merge: bool = False, progress=None, log=None) -> dict:
    """Fine-tune ``base`` (zoo name or path) on real scenes with L-BAF.

    Writes an adapter (``output.safetensors`` + ``.json``) or, with ``merge``, a full checkpoint
    with the adapters folded in. The scenes' hold-outs are scored before and after.
    """
    from ssdiff_cli import zoo
    from ssdiff_cli.training.crops import CropSampler, build_scene

    cfg = config or FinetuneConfig()
    net, card = zoo.load_checkpoint(base)
    norm = card.normalisation
    scenes = []
    for p, m in scene_pairs:
        kind = "scene" if norm.get("kind") == "scene" else "bitdepth"
        s = build_scene(p, m, sensor, mtf_gains, pan_gain, kind, float(norm.get("percentile", 99.0)), holdout)
        check_same_layout(card, s.bands, s.ratio)
        if norm.get("kind") == "fixed":  # the card's constant, not the scene's bit depth
            for key in ("pan", "lms", "ms", "gt"):
                setattr(s, key, getattr(s, key) * (s.scale / float(norm["scale"])))
            s.scale = float(norm["scale"])
        scenes.append(s)
    sampler = CropSampler(scenes, crop=cfg.crop, seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    sampling = Sampling.from_card(card)
    before = _holdout_scores(net, scenes, sampling)
    add_adapters(net, cfg.rank, cfg.alpha, seed=cfg.seed)
    losses = run_lbaf(net, sampler, cfg, progress=progress, scheduler=sampling.scheduler)
    after = _holdout_scores(net, scenes, sampling)
    if log:
        log(f"hold-out before {before.get('mean')}, after {after.get('mean')}")
    record = {"scenes": [s.describe() for s in scenes], "loss_first": losses[:10], "loss_last": losses[-10:],
              "holdout_before": before, "holdout_after": after}
    if merge:
        merge_lora(net)
        new = zoo.ModelCard(**{**card.to_dict(), "name": Path(output).with_suffix("").name})
        new.training = {**card.training, "finetune": {"base_model": card.name, **asdict(cfg), **record}}
        new.metrics = {**card.metrics, "finetune_holdout": after}
        path = zoo.save_checkpoint(net.cpu(), new, Path(output).with_suffix(""))
    else:
        path = save_adapter(net, card, output, cfg, extra=record)
    return {"path": str(path), "before": before, "after": after, "losses": losses, "merged": merge}


def adapt_to_scene(net, card, scene_pan, scene_ms, steps: int, pan_valid=None, ms_valid=None,
                   ms_gnyq=None, pan_gnyq=None, rank: int = 4, switch_every: int | None = None,
                   lr: float = 5e-4, batch: int = 8, crop: int = 32, seed: int = 0,
                   precision: str = "auto", device: str = "cpu", progress=None):
    """Scene adaptation (``sharpen --adapt N``): fine-tune adapters for ``steps`` L-BAF steps on
    reduced-resolution (Wald) crops of the scene being sharpened, merge them, return ``net``.

    ``scene_pan`` ``(H, W)`` and ``scene_ms`` ``(C, H/r, W/r)`` are in digital numbers (a
    decimated scene sample is fine when the scene is large); masks True where valid. MTF gains
    default to the card's sensor preset (0.3 / 0.15 when unknown). The whole scene is used (no
    hold-out): the target is the scene's own MS. The switch interval defaults to
    ``max(1, steps // 4)`` (spatial, spectral, spatial, spectral).
    """
    from ssdiff_cli.training.crops import CropSampler, scene_from_arrays

    ms = np.asarray(scene_ms, np.float32)
    r = card.ratio
    check_same_layout(card, ms.shape[0], r)
    if ms_gnyq is None or pan_gnyq is None:
        try:
            from ssdiff_cli.sensors import get_preset

            preset = get_preset(card.sensor)
            ms_gnyq = preset.ms_gnyq if ms_gnyq is None else ms_gnyq
            pan_gnyq = preset.pan_gnyq if pan_gnyq is None else pan_gnyq
        except Exception:
            ms_gnyq = 0.3 if ms_gnyq is None else ms_gnyq
            pan_gnyq = 0.15 if pan_gnyq is None else pan_gnyq
    norm = card.normalisation
    scale = float(norm["scale"]) if norm.get("kind") == "fixed" else None
    scene = scene_from_arrays(scene_pan, ms, r, ms_gnyq, pan_gnyq, pan_valid=pan_valid, ms_valid=ms_valid,
                              percentile=float(norm.get("percentile", 99.0)), holdout=0.0, scale=scale,
                              name="target scene", sensor=card.sensor, band_names=card.band_names)
    size = min(crop, (min(scene.valid.shape) // r) * r)
    sampler = CropSampler([scene], crop=size, seed=seed)
    cfg = FinetuneConfig(steps=steps, rank=rank, switch_every=switch_every or max(1, math.ceil(steps / 4)),
                         lr=lr, batch=batch, crop=size, seed=seed, precision=precision, device=device)
    add_adapters(net, rank, seed=seed)
    net.to(device)
    run_lbaf(net, sampler, cfg, progress=progress, scheduler=card_scheduler(card))
    merge_lora(net)
    net.requires_grad_(False)
    return net.eval()
