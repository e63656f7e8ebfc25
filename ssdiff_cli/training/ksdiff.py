"""Training a KSDiff model (:class:`ssdiff_cli.nn.ksdiff.KSDiffNetwork`) in two stages, no pickle.

Data: the generalist's, unchanged (:mod:`ssdiff_cli.training.generalist`: every scene at ratios
2 and 4, jittered MTFs, random decimation phases and residual misregistration, the MTF-GLP-FS
base and standardisation inference computes, random band subsets, flips and rotations); only
the crop is larger (the backbone's halo is 60 PAN px, and the prior pools a whole crop).

Stage 1 (the first ``stage1`` share of the run): PLFE1 encodes the crop with its reference into
the target prior z0; z0 fixes each crop's kernels; the regressor's correction is fitted with L1
against the true correction. Trained: PLFE1, the kernel generator, the backbone.

Stage 2 (the rest): PLFE1 is frozen and gives z0; z0 is noised at a random timestep of the
card's schedule; the latent denoiser, conditioned on PLFE2 of the crop (PAN + upsampled MS, no
reference), predicts z0 back (ẑ0); the regressor runs on ẑ0's kernels. Loss ``L1(z0, ẑ0) +
L1(image)``; the denoiser, PLFE2, the generator and the backbone are trained jointly (§11: the
paper measured separate training worse).

State: ``P.state.safetensors`` (network, EMA and optimiser tensors, RNG states; the rest as JSON
metadata: :func:`ssdiff_cli.training.loop.save_state_file`) every ``save_every`` steps, on
SIGINT/SIGTERM and at the end; ``resume`` continues it (stage included). ``P.safetensors`` +
``P.json``: the EMA weights and their card. A loss or weights that turn NaN stop the run and
nothing is written from it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ssdiff_cli.diffusion import DDIMScheduler, DiffusionConfig
from ssdiff_cli.errors import BadInputError, DegenerateOutputError
from ssdiff_cli.nn.ksdiff import KSDiffNetwork
from ssdiff_cli.nn.ksdiff_config import KSDiffConfig
from ssdiff_cli.training.generalist import (
    GeneralistTrainConfig,
    VersionSampler,
    run_interruptibly,
    toolbox_phase,
    training_versions,
)
from ssdiff_cli.training.loop import (
    EMA,
    flatten_optimizer,
    load_state_file,
    save_state_file,
    state_path,
    unflatten_optimizer,
)

#: DDIM steps a KSDiff card samples its prior with (the latent is a few hundred numbers: cheap).
PRIOR_STEPS = 5
#: Parts trained in each stage (PLFE1 is frozen in stage 2, the denoiser and PLFE2 idle in 1).
STAGE_PARTS = {1: ("backbone", "generator", "plfe1"),
               2: ("backbone", "generator", "plfe2", "denoiser")}


@dataclass
class KSDiffTrainConfig(GeneralistTrainConfig):
    """Options of a KSDiff run (saved in the card): the generalist's data options, larger
    crops, and ``stage1``, the share of the run (of ``max_minutes`` when set, else of
    ``max_steps``) spent in stage 1."""

    name: str = "ksdiff"
    crop: int = 64
    batch: int = 4
    lr: float = 5e-4
    stage1: float = 0.5
    precision: str = "fp32"
    model: dict = field(default_factory=dict)


class KSDiffTrainer:
    """Two-stage training of a :class:`KSDiffNetwork` (module docstring)."""

    def __init__(self, sampler: VersionSampler, config: KSDiffTrainConfig, card_extra: dict,
                 resume: bool = False) -> None:
        self.sampler, self.cfg, self.card_extra = sampler, config, card_extra
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.model_config = KSDiffConfig.from_dict(config.model)
        self.net = KSDiffNetwork(self.model_config)
        self.ema = EMA(self.net, config.ema)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=config.lr, weight_decay=0.0)
        self.diffusion = DiffusionConfig()
        self.scheduler = DDIMScheduler(self.diffusion)
        self.gen = torch.Generator().manual_seed(config.seed)
        self.prefix = Path(config.output).with_suffix("") if Path(config.output).suffix in (
            ".json", ".safetensors") else Path(config.output)
        self.step, self.elapsed, self.log, self.stage, self.stage2_from = 0, 0.0, [], 1, None
        if resume:
            self._resume()

    # ------------------------------------------------------------------ state
    def _resume(self) -> None:
        tensors, meta = load_state_file(state_path(self.prefix))
        if meta.get("model_config") != self.model_config.to_dict():
            raise BadInputError(f"{state_path(self.prefix)}: saved run has another architecture")
        self.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        self.ema.model.load_state_dict({k[4:]: v for k, v in tensors.items()
                                        if k.startswith("ema.")})
        self.opt.load_state_dict(unflatten_optimizer(tensors, meta["optimizer"]))
        self.step, self.elapsed, self.log = meta["step"], meta["elapsed"], meta["log"]
        self.stage, self.stage2_from = meta["stage"], meta["stage2_from"]
        self.gen.set_state(tensors["rng.torch"].to(torch.uint8))
        self.sampler.rng.bit_generator.state = meta["sampler_rng"]

    def _check_finite(self) -> None:
        for net in (self.net, self.ema.model):
            if not all(bool(torch.isfinite(p).all()) for p in net.parameters()):
                self._diverged("its weights are NaN or infinite")

    def _diverged(self, what: str) -> None:
        raise DegenerateOutputError(f"{self.prefix}: training diverged at step {self.step} "
                                    f"({what}); nothing written from it (lower the lr, now "
                                    f"{self.cfg.lr:g})")

    def save(self) -> None:
        """The resumable state and the EMA checkpoint with its card."""
        from ssdiff_cli.zoo import save_checkpoint

        self._check_finite()
        opt_t, opt_meta = flatten_optimizer(self.opt.state_dict())
        tensors = {**{f"net.{k}": v for k, v in self.net.state_dict().items()},
                   **{f"ema.{k}": v for k, v in self.ema.model.state_dict().items()},
                   **opt_t, "rng.torch": self.gen.get_state()}
        meta = {"step": self.step, "elapsed": self.elapsed, "log": self.log[-2000:],
                "stage": self.stage, "stage2_from": self.stage2_from,
                "optimizer": opt_meta, "model_config": self.model_config.to_dict(),
                "sampler_rng": json_rng(self.sampler.rng.bit_generator.state),
                "config": {k: (list(v) if isinstance(v, tuple) else v)
                           for k, v in asdict(self.cfg).items()}}
        save_state_file(state_path(self.prefix), tensors, meta)
        save_checkpoint(self.ema.model, self.card(), self.prefix)

    def card(self):
        """The model card of the run so far."""
        from ssdiff_cli.zoo import ModelCard

        cfg = self.cfg
        training = {**self.card_extra, "family": "ksdiff", "steps": self.step,
                    "stage2_from_step": self.stage2_from, "wall_time_s": round(self.elapsed, 1),
                    "crop": cfg.crop, "batch": f"{cfg.groups} x {cfg.batch} crops", "lr": cfg.lr,
                    "ema": cfg.ema, "ratios": list(cfg.ratios), "mtf_jitter": cfg.jitter,
                    "jittered_versions": cfg.jitters, "seed": cfg.seed,
                    "decimation_phases": {
                        "kinds": list(cfg.phases), "jitter_px": cfg.phase_jitter,
                        "toolbox_px": {str(r): toolbox_phase(r) for r in cfg.ratios},
                        "misregistration_px": cfg.misregistration,
                        "misregistered_fraction": cfg.misregistered},
                    "precision": "fp32", "threads": torch.get_num_threads(),
                    "stages": {"1": "PLFE1 + kernel generator + regressor, L1 on the correction",
                               "2": "PLFE1 frozen; latent denoiser (PLFE2) jointly with the "
                                    "regressor: L1(z0, z0_hat) + L1 on the correction",
                               "stage1_share": cfg.stage1},
                    "optimizer": "AdamW (no weight decay), gradient norm clipped to 1"}
        return ModelCard(
            name=cfg.name, sensor="any", band_names=[], bands=0, ratio=0,
            normalisation={"kind": "band-standardised",
                           "note": "per scene: MS bands and PAN standardised by the MTF-GLP-FS fit"},
            model=self.model_config.to_dict(), diffusion=self.diffusion.to_dict(),
            sampling={"steps": PRIOR_STEPS, "t_start": self.diffusion.num_train_timesteps - 1,
                      "base": "mtf-glp-fs"},
            training=training, description=cfg.description or
            "KSDiff: any band count (1-16) and ratio (2-8); corrects MTF-GLP-FS with one CNN pass "
            "whose kernels a scene-level prior sets")

    # ------------------------------------------------------------------ steps
    def _parts(self, stage: int) -> None:
        for name in ("backbone", "generator", "plfe1", "plfe2", "denoiser"):
            getattr(self.net, name).requires_grad_(name in STAGE_PARTS[stage])

    def losses(self, cond: dict, tgt: torch.Tensor, ratio: int, stage: int) -> dict:
        """The stage's losses on one batch (tensors, batch-first)."""
        net = self.net
        ref = cond["base"] + tgt  # the reference, standardised as the backbone's inputs
        out = {}
        if stage == 1:
            z = net.prior_target(cond["pan"], cond["lms"], ref, ratio)
        else:
            with torch.no_grad():
                z0 = net.prior_target(cond["pan"], cond["lms"], ref, ratio)
            t = self.scheduler.sample_timesteps(z0.shape[0], generator=self.gen)
            z_t = self.scheduler.add_noise(z0, torch.randn(z0.shape, generator=self.gen), t)
            z = net.denoise(z_t, t.float(), net.condition(cond["pan"], cond["lms"], ratio))
            out["latent"] = F.l1_loss(z, z0)
        pred = net(cond["base"], cond["lms"], cond["pan"], cond["pan_lp"], ratio, net.kernels(z))
        out["image"] = F.l1_loss(pred, tgt)
        return out

    def train_step(self, stage: int) -> dict:
        """One optimiser step over ``groups`` versions; returns the mean losses."""
        self.net.train()
        self._parts(stage)
        self.opt.zero_grad(set_to_none=True)
        totals: dict = {}
        for _ in range(self.cfg.groups):
            cond, tgt, ratio = self.sampler.sample(self.cfg.batch)
            parts = self.losses({k: torch.from_numpy(v) for k, v in cond.items()},
                                torch.from_numpy(tgt), ratio, stage)
            loss = sum(parts.values()) / self.cfg.groups
            loss.backward()
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + float(v.detach()) / self.cfg.groups
        if not all(math.isfinite(v) for v in totals.values()):
            self._diverged(f"loss {totals}")
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()
        self.step += 1
        self.ema.update(self.net, self.step)
        return totals

    def _stage_now(self, limit_s: float) -> int:
        cfg = self.cfg
        if self.stage == 2:
            return 2
        done = (self.elapsed >= cfg.stage1 * limit_s if math.isfinite(limit_s)
                else self.step >= cfg.stage1 * cfg.max_steps)
        if done:
            self.stage, self.stage2_from = 2, self.step
        return self.stage

    def run(self, log=print) -> None:
        """Train until ``max_steps`` or ``max_minutes`` (stage 2 from ``stage1`` of either);
        SIGINT/SIGTERM save and stop."""
        limit = self.cfg.max_minutes * 60 if self.cfg.max_minutes else math.inf

        def record(window: list[dict]) -> None:
            mean = {k: round(float(np.mean([w[k] for w in window if k in w])), 5)
                    for k in window[-1]}
            self.log.append([self.step, self.stage, mean, round(self.elapsed, 1)])
            log(f"step {self.step} stage {self.stage} "
                + " ".join(f"{k} {v:.4f}" for k, v in mean.items()) + f" {self.elapsed:.0f}s")

        run_interruptibly(self, lambda: self.train_step(self._stage_now(limit)), record,
                          save_on_error=False)


def json_rng(state: dict) -> dict:
    """A NumPy bit generator's state as plain JSON (its integers as Python ints)."""
    import json

    return json.loads(json.dumps(state, default=int))


def train_ksdiff(scenes: list[tuple], config: KSDiffTrainConfig, resume: bool = False,
                 extra: dict | None = None, log=print) -> KSDiffTrainer:
    """Train a KSDiff model on ``scenes``: ``(pan, ms, family, terms)`` tuples (a family is one
    acquisition), from the generalist's training versions at ``config.crop``."""
    versions, card_extra = training_versions(scenes, config, extra, log)
    trainer = KSDiffTrainer(VersionSampler(versions, config.crop, config.seed), config,
                            card_extra, resume=resume)
    trainer.run(log=log)
    return trainer
