"""Training the generalist model: every scene, both ratios, jittered MTFs, no pickle.

Data. Each scene (PAN + MS) is brought to each training ratio r (2 and 4 by default): at a
native ratio r0 that r divides, the PAN is first degraded by r0 / r; at a ratio r that is a
multiple of r0, the MS is degraded by r / r0 and becomes the reference. Then the Wald protocol
degrades the pair by r with MTF gains jittered around the sensor's (a few versions each), so the
network sees sensors a little blurrier or sharper than their presets. Each version also draws
where the degradation takes its samples (:func:`draw_phase`): at the blocks' centres (what the
project's own protocol and a block-centred product give), at the toolbox's samples ``ratio / 2
+ ratio * k`` (§9 of the reference: the phase of PanCollection-style sets and published tables),
or at a uniform sub-pixel offset, the same for the PAN and the MS as one producer's code would
do; half the versions then move the MS alone by a small residual misregistration, what a
registration leaves. The target stays the original MS, so the network learns to fuse whatever
phase its inputs were taken at, instead of assuming one. Per version the classical
base (MTF-GLP-FS with the sensor's nominal gains, exactly what inference computes), the PAN
low-passes and the standardisation come from :mod:`ssdiff_cli.methods.generalist`: training and
inference share them. The target is the correction ``(gt - base) / std``.

Sampling. Every step draws ``groups`` versions (a family, i.e. an acquisition, uniformly, then one
of its versions), ``batch`` crops of each (ratio-aligned, all valid, flips and right-angle
rotations) and, half the time, a random subset of at least three bands, so band count and order
vary.

State. ``P.state.safetensors`` (model, EMA and optimiser tensors, RNG states; the rest as JSON
in its metadata: :func:`ssdiff_cli.training.loop.save_state_file`, no pickle) is written every
``save_every`` steps, on SIGINT/SIGTERM and at the end; ``resume`` continues from it.
``P.safetensors`` + ``P.json`` hold the EMA weights.
"""

from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ssdiff_cli import filters
from ssdiff_cli.diffusion import DDIMScheduler, DiffusionConfig
from ssdiff_cli.errors import BadInputError
from ssdiff_cli.methods.classical import MTFGLP
from ssdiff_cli.methods.generalist import Standardisation, conditions, target
from ssdiff_cli.nn.generalist import GeneralistConfig, GeneralistDenoiser
from ssdiff_cli.quality import wald
from ssdiff_cli.training.crops import augment, crop_origins, read_scene_arrays, scene_from_arrays
from ssdiff_cli.training.loop import (
    EMA,
    flatten_optimizer,
    load_state_file,
    save_state_file,
    state_path,
    unflatten_optimizer,
)

COND_KEYS = ("base", "lms", "pan", "pan_lp")
#: Where a training pair's degradation takes its samples (:func:`draw_phase`).
PHASE_KINDS = ("block", "toolbox", "jitter")


@dataclass
class Version:
    """One degraded version of one scene, ready to crop (all arrays on the reduced PAN grid)."""

    name: str
    family: str
    ratio: int
    cond: dict
    target: np.ndarray
    origins: np.ndarray
    phase: dict = field(default_factory=dict)

    @property
    def bands(self) -> int:
        return self.target.shape[0]


@dataclass
class GeneralistTrainConfig:
    """Options of a generalist training run (saved in the card)."""

    output: str
    name: str = "ssdiff-generalist"
    ratios: tuple = (2, 4)
    jitters: int = 3
    jitter: float = 0.25
    crop: int = 32
    batch: int = 8
    groups: int = 2
    lr: float = 5e-4
    ema: float = 0.999
    max_steps: int = 20000
    max_minutes: float | None = None
    save_every: int = 200
    seed: int = 0
    threads: int | None = None
    precision: str = "auto"
    model: dict = field(default_factory=dict)
    description: str = ""
    phases: tuple = PHASE_KINDS
    phase_jitter: float = 0.5
    misregistration: float = 0.3
    misregistered: float = 0.5


def toolbox_phase(ratio: int) -> float:
    """Offset (pixels of the decimated image) of the toolbox's samples from the blocks' centres:
    ``imresize(.., 1/ratio, 'nearest')`` keeps 0-based ``ratio // 2 + ratio * k`` (§9), 0.5 at
    an even ratio, 0 at an odd one."""
    return ratio // 2 - (ratio - 1) / 2.0


def draw_phase(rng: np.random.Generator, ratio: int, kind: str, jitter: float = 0.5,
               misregistration: float = 0.3, misregistered: float = 0.5) -> dict:
    """The decimation phases of one Wald-degraded version.

    ``kind`` is ``"block"`` (samples at the blocks' centres, offset 0), ``"toolbox"``
    (:func:`toolbox_phase` on both axes) or ``"jitter"`` (``U(-jitter, jitter)`` per axis); the
    PAN and the MS are decimated at the same offset ``d``, each in its own pixels (as the
    toolbox does). With probability ``misregistered`` the MS is then moved by ``s ~
    U(-misregistration, misregistration)`` per axis, in pixels of the reduced PAN, which are
    the original MS's pixels: its phase becomes ``d + s``. Returns ``{"kind", "pan", "ms",
    "misregistration"}`` with ``(dy, dx)`` pairs."""
    if kind == "block":
        d = (0.0, 0.0)
    elif kind == "toolbox":
        d = (toolbox_phase(ratio),) * 2
    elif kind == "jitter":
        d = tuple(float(v) for v in rng.uniform(-jitter, jitter, 2))
    else:
        raise BadInputError(f"unknown decimation phase {kind!r}; choose {', '.join(PHASE_KINDS)}")
    s = (0.0, 0.0)
    if misregistration > 0 and rng.random() < misregistered:
        s = tuple(float(v) for v in rng.uniform(-misregistration, misregistration, 2))
    return {"kind": kind, "pan": d, "ms": (d[0] + s[0], d[1] + s[1]), "misregistration": s}


def _retarget(pan, pan_valid, ms, ms_valid, r0: int, r: int, gains, pan_gain):
    """PAN and MS at ratio ``r`` from a pair at native ratio ``r0`` (see the module docstring)."""
    if r == r0:
        return pan, pan_valid, ms, ms_valid
    if r0 % r == 0:
        k = r0 // r
        pan, _ = wald.crop_pair(pan, ms, r0, multiple=k)
        pan = filters.degrade(np.nan_to_num(pan), pan_gain, k)
        return pan, wald.degrade_mask(pan_valid[: pan.shape[0] * k, : pan.shape[1] * k], k), ms, ms_valid
    if r % r0 == 0:
        k = r // r0
        ms = wald.crop_to_multiple(ms, k)
        mv = wald.degrade_mask(ms_valid[: ms.shape[1], : ms.shape[2]], k)
        ms = filters.degrade(np.nan_to_num(ms), gains, k)
        return pan, pan_valid, ms, mv
    raise BadInputError(f"cannot bring ratio {r0} to ratio {r}")


def build_versions(pan_path, ms_path, family: str, ratios=(2, 4), jitters: int = 3,
                   jitter: float = 0.25, crop: int = 32, seed: int = 0, phases=("block",),
                   phase_jitter: float = 0.5, misregistration: float = 0.0,
                   misregistered: float = 0.5) -> list[Version]:
    """Every (ratio, jittered MTF) version of one scene (see the module docstring).

    At each ratio the versions take the ``phases`` kinds in a random order (each kind once in
    every ``len(phases)`` versions; :func:`draw_phase`), drawn from their own generator so that
    the MTF jitter is the same as without them."""
    scene, det, pan, pan_valid, ms, ms_valid = read_scene_arrays(pan_path, ms_path)
    preset, r0 = det.preset, scene.ratio
    # the MS may have one coarse row or column more than the PAN covers
    hm, wm = min(ms.shape[1], pan.shape[0] // r0), min(ms.shape[2], pan.shape[1] // r0)
    ms, ms_valid = ms[:, :hm, :wm], ms_valid[:hm, :wm]
    pan, pan_valid = pan[: hm * r0, : wm * r0], pan_valid[: hm * r0, : wm * r0]
    nominal = np.broadcast_to(np.asarray(preset.ms_gnyq, float), (scene.bands,))
    rng = np.random.default_rng(seed)
    phase_rng = np.random.default_rng((seed, 1))
    name = f"{family}/{Path(pan_path).resolve().parent.name}"
    out = []
    for r in ratios:
        if not (r0 % r == 0 or r % r0 == 0):
            continue
        p, pv, m, mv = _retarget(pan, pan_valid, ms, ms_valid, r0, r, nominal, preset.pan_gnyq)
        kinds: list = []
        for j in range(jitters):
            f = np.exp(rng.uniform(-jitter, jitter, scene.bands + 1)) if j else np.ones(scene.bands + 1)
            gains = np.clip(nominal * f[:-1], 0.08, 0.7)
            pg = float(np.clip(preset.pan_gnyq * f[-1], 0.05, 0.7))
            if not kinds:
                kinds = [phases[i] for i in phase_rng.permutation(len(phases))]
            ph = draw_phase(phase_rng, r, kinds.pop(), phase_jitter, misregistration, misregistered)
            try:
                ts = scene_from_arrays(p, m, r, gains, pg, pan_valid=pv, ms_valid=mv, scale=1.0,
                                       holdout=0.0, name=name, pan_phase=ph["pan"], ms_phase=ph["ms"])
            except (BadInputError, ValueError):
                continue
            v = _version(ts, nominal, name, family, crop)
            if v is not None:
                v.phase = {"ratio": r, **{k: [round(x, 4) for x in val] if isinstance(val, tuple)
                                          else val for k, val in ph.items()}}
                out.append(v)
    return out


def _version(ts, nominal_gains, name: str, family: str, crop: int) -> Version | None:
    """Base, conditions and target of one reduced pair (``TrainScene`` in DN, scale 1)."""
    r = ts.ratio
    pan = ts.pan[0]
    valid_lr = ts.valid.reshape(ts.valid.shape[0] // r, r, ts.valid.shape[1] // r, r).all(axis=(1, 3))
    if valid_lr.sum() < 64:
        return None
    glp = MTFGLP("fs")
    glp.fit(filters.decimate_mean(pan, r)[valid_lr], ts.ms[:, valid_lr], r, nominal_gains)
    stats = Standardisation.from_glp(glp)
    base, cond = conditions(glp, stats, pan, ts.lms)
    tgt = target(ts.gt, base, stats)
    origins = crop_origins(ts.valid, crop, r, ts.valid.shape[1])
    if len(origins) == 0:
        return None
    return Version(name=name, family=family, ratio=r, cond=cond, target=tgt, origins=origins)


class VersionSampler:
    """Random training batches from versions grouped by family (see the module docstring)."""

    def __init__(self, versions: list[Version], crop: int, seed: int = 0) -> None:
        if not versions:
            raise BadInputError("no training scene gave a usable version")
        self.versions, self.crop = versions, crop
        self.families = sorted({v.family for v in versions})
        self.by_family = {f: [i for i, v in enumerate(versions) if v.family == f] for f in self.families}
        self.rng = np.random.default_rng(seed)

    def sample(self, batch: int) -> tuple[dict, np.ndarray, int]:
        """``(cond, target, ratio)`` for ``batch`` crops of one version (numpy, batch-first)."""
        fam = self.families[self.rng.integers(len(self.families))]
        v = self.versions[self.by_family[fam][self.rng.integers(len(self.by_family[fam]))]]
        c = self.crop
        bands = np.arange(v.bands)
        if v.bands > 3 and self.rng.random() < 0.5:
            k = int(self.rng.integers(3, v.bands + 1))
            bands = np.sort(self.rng.choice(v.bands, size=k, replace=False))
        parts = {k: [] for k in (*COND_KEYS, "target")}
        for _ in range(batch):
            y, x = v.origins[self.rng.integers(len(v.origins))]
            rot, flip = int(self.rng.integers(4)), bool(self.rng.integers(2))
            arrays = [v.cond["pan"][:, y:y + c, x:x + c]] + [
                a[bands, y:y + c, x:x + c] for a in (v.cond["base"], v.cond["lms"], v.cond["pan_lp"],
                                                     v.target)]
            arrays = augment(arrays, rot, flip)
            for key, a in zip(("pan", "base", "lms", "pan_lp", "target"), arrays):
                parts[key].append(a)
        out = {k: np.stack(v_) for k, v_ in parts.items()}
        return {k: out[k] for k in COND_KEYS}, out["target"], v.ratio


def _rng_to_json(state: dict) -> dict:
    return json.loads(json.dumps(state, default=int))


# ------------------------------------------------------------------ the run
class GeneralistTrainer:
    """Train a :class:`GeneralistDenoiser` on a :class:`VersionSampler` (module docstring)."""

    def __init__(self, sampler: VersionSampler, config: GeneralistTrainConfig, card_extra: dict,
                 resume: bool = False) -> None:
        self.sampler, self.cfg, self.card_extra = sampler, config, card_extra
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.model_config = GeneralistConfig(**config.model)
        self.net = GeneralistDenoiser(self.model_config)
        self.ema = EMA(self.net, config.ema)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=config.lr, weight_decay=0.0)
        self.diffusion = DiffusionConfig()
        self.scheduler = DDIMScheduler(self.diffusion)
        self.gen = torch.Generator().manual_seed(config.seed)
        from ssdiff_cli.nn.precision import precision_name, resolve_precision

        self.dtype = resolve_precision(config.precision, "cpu", training=True)
        self.precision = precision_name(self.dtype)
        self.prefix = Path(config.output).with_suffix("") if Path(config.output).suffix in (
            ".json", ".safetensors") else Path(config.output)
        self.step, self.elapsed, self.log = 0, 0.0, []
        if resume:
            self._resume()

    def _resume(self) -> None:
        tensors, meta = load_state_file(state_path(self.prefix))
        if meta["model_config"] != self.model_config.to_dict():
            raise BadInputError(f"{self.prefix}: saved run has another architecture")
        self.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        self.ema.model.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        self.opt.load_state_dict(unflatten_optimizer(tensors, meta["optimizer"]))
        self.step, self.elapsed, self.log = meta["step"], meta["elapsed"], meta["log"]
        self.gen.set_state(tensors["rng.torch"].to(torch.uint8))
        self.sampler.rng.bit_generator.state = meta["sampler_rng"]

    def save(self) -> None:
        """The resumable state and the EMA checkpoint with its card."""
        from ssdiff_cli.zoo import save_checkpoint

        opt_t, opt_meta = flatten_optimizer(self.opt.state_dict())
        tensors = {**{f"net.{k}": v for k, v in self.net.state_dict().items()},
                   **{f"ema.{k}": v for k, v in self.ema.model.state_dict().items()},
                   **opt_t, "rng.torch": self.gen.get_state()}
        meta = {"step": self.step, "elapsed": self.elapsed, "log": self.log[-2000:],
                "optimizer": opt_meta, "model_config": self.model_config.to_dict(),
                "sampler_rng": _rng_to_json(self.sampler.rng.bit_generator.state),
                "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.cfg).items()}}
        save_state_file(state_path(self.prefix), tensors, meta)
        save_checkpoint(self.ema.model, self.card(), self.prefix)

    def card(self):
        """The model card of the run so far."""
        from ssdiff_cli.zoo import ModelCard

        cfg = self.cfg
        training = {**self.card_extra, "steps": self.step, "wall_time_s": round(self.elapsed, 1),
                    "crop": cfg.crop, "batch": f"{cfg.groups} x {cfg.batch} crops", "lr": cfg.lr,
                    "ema": cfg.ema, "ratios": list(cfg.ratios), "mtf_jitter": cfg.jitter,
                    "jittered_versions": cfg.jitters, "seed": cfg.seed,
                    "decimation_phases": {
                        "kinds": list(cfg.phases), "jitter_px": cfg.phase_jitter,
                        "toolbox_px": {str(r): toolbox_phase(r) for r in cfg.ratios},
                        "misregistration_px": cfg.misregistration,
                        "misregistered_fraction": cfg.misregistered,
                        "note": "per version: one kind per version in turn at each ratio; PAN and "
                                "MS decimated at the same offset from the block centres (each in its "
                                "own pixels), then the MS alone moved by U(-m, m) reduced-PAN px per "
                                "axis on the misregistered fraction; base and target unchanged"},
                    "precision": self.precision, "threads": torch.get_num_threads(),
                    "loss": "L1 on the standardised correction x0 = (gt - base) / std",
                    "optimizer": "AdamW (no weight decay)"}
        return ModelCard(
            name=cfg.name, sensor="any", band_names=[], bands=0, ratio=0,
            normalisation={"kind": "band-standardised",
                           "note": "per scene: MS bands and PAN standardised by the MTF-GLP-FS fit"},
            model=self.model_config.to_dict(), diffusion=self.diffusion.to_dict(),
            sampling={"steps": 1, "t_start": self.diffusion.num_train_timesteps - 1,
                      "base": "mtf-glp-fs"},
            training=training, description=cfg.description or
            "Generalist SSDiff: any band count (1-16) and ratio (2-8); corrects MTF-GLP-FS")

    def train_step(self) -> float:
        """One optimiser step over ``groups`` versions; returns the mean loss."""
        self.net.train()
        self.opt.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(self.cfg.groups):
            cond, tgt, ratio = self.sampler.sample(self.cfg.batch)
            c = {k: torch.from_numpy(v) for k, v in cond.items()}
            x0 = torch.from_numpy(tgt)
            t = self.scheduler.sample_timesteps(x0.shape[0], generator=self.gen)
            noise = torch.randn(x0.shape, generator=self.gen)
            x_t = self.scheduler.add_noise(x0, noise, t)
            with torch.autocast("cpu", dtype=self.dtype, enabled=self.dtype is not None):
                pred = self.net(x_t, t.float(), c["base"], c["lms"], c["pan"], c["pan_lp"], ratio)
            loss = F.l1_loss(pred.float(), x0) / self.cfg.groups
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()
        self.step += 1
        self.ema.update(self.net, self.step)
        return total

    def run(self, log=print) -> None:
        """Train until ``max_steps`` or ``max_minutes``; SIGINT/SIGTERM save and stop."""
        def record(losses: list[float]) -> None:
            self.log.append([self.step, round(float(np.mean(losses)), 5), round(self.elapsed, 1)])
            log(f"step {self.step} loss {np.mean(losses):.4f} {self.elapsed:.0f}s")

        run_interruptibly(self, self.train_step, record, save_on_error=True)


#: Steps between two lines of a training log.
LOG_EVERY = 25


def run_interruptibly(trainer, train_step, record, save_on_error: bool) -> None:
    """The training loop of a checkpointing trainer (``step``, ``elapsed``, ``cfg`` with
    ``max_steps``, ``max_minutes`` and ``save_every``, ``save()``): ``train_step()`` until the
    step or time limit, ``record(results)`` with the last :data:`LOG_EVERY` steps' results, a
    save every ``save_every`` steps and at the end. SIGINT/SIGTERM stop it after the current
    step; ``save_on_error`` saves also when a step raises (the saved weights are checked finite
    either way)."""
    cfg = trainer.cfg
    stop = {"flag": False}

    def _stop(signum, frame):
        stop["flag"] = True

    old = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    limit = cfg.max_minutes * 60 if cfg.max_minutes else math.inf
    t0, base_elapsed, window = time.perf_counter(), trainer.elapsed, []
    finished = False
    try:
        while trainer.step < cfg.max_steps and trainer.elapsed < limit and not stop["flag"]:
            window.append(train_step())
            trainer.elapsed = base_elapsed + time.perf_counter() - t0
            if trainer.step % LOG_EVERY == 0:
                record(window)
                window = []
            if trainer.step % cfg.save_every == 0:
                trainer.save()
        finished = True
    finally:
        if finished or save_on_error:
            trainer.save()
        for s, h in old.items():
            signal.signal(s, h)


def training_versions(scenes: list[tuple], config: GeneralistTrainConfig,
                      extra: dict | None = None, log=print) -> tuple[list[Version], dict]:
    """Every training version of ``scenes`` (``(pan, ms, family, terms)`` tuples) at
    ``config``'s ratios, jitters, crop and phases, and the card's facts about them (every scene,
    its files, family, terms, versions and phases; ``extra`` added)."""
    versions, described = [], []
    for i, (pan, ms, family, terms) in enumerate(scenes):
        vs = build_versions(pan, ms, family, config.ratios, config.jitters, config.jitter,
                            config.crop, seed=config.seed + i, phases=tuple(config.phases),
                            phase_jitter=config.phase_jitter,
                            misregistration=config.misregistration,
                            misregistered=config.misregistered)
        versions += vs
        described.append({"name": Path(pan).parent.as_posix() if not Path(pan).is_absolute()
                          else Path(pan).parent.name, "pan": str(pan), "ms": str(ms),
                          "family": family, "terms": terms, "versions": len(vs),
                          "phases": [v.phase for v in vs]})
        log(f"{pan}: {len(vs)} versions")
    return versions, {"scenes": described, "families": sorted({s[2] for s in scenes}),
                      "terms": sorted({s[3] for s in scenes}), **(extra or {})}


def train_generalist(scenes: list[tuple], config: GeneralistTrainConfig, init: str | None = None,
                     resume: bool = False, extra: dict | None = None, log=print) -> GeneralistTrainer:
    """Train (or, from ``init``, fine-tune) a generalist on ``scenes``: ``(pan, ms, family,
    terms)`` tuples; a family is one acquisition (crops of one acquisition share one)."""
    versions, card_extra = training_versions(scenes, config, extra, log)
    trainer = GeneralistTrainer(VersionSampler(versions, config.crop, config.seed), config,
                                card_extra, resume=resume)
    if init is not None:  # a resumed run keeps its own weights but still records its start
        from ssdiff_cli.zoo import load_checkpoint

        net, card = load_checkpoint(init)
        if card.model != trainer.model_config.to_dict():
            raise BadInputError(f"{init}: another architecture than this run's")
        if not resume:
            trainer.net.load_state_dict(net.state_dict())
            trainer.ema.model.load_state_dict(net.state_dict())
        trainer.card_extra["initialised_from"] = card.name
    trainer.run(log=log)
    return trainer
