"""The training loop: SSDiff's recipe on random crops, EMA, hold-out scoring, exact resume.

Recipe (reference §2, adapted to short CPU runs, see ``ssdiff_cli/models/README.md``): x0 = gt - lms (the
residual), t uniform in [0, T), x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, the network predicts x0,
loss L1; AdamW (lr 1e-3, no weight decay, no schedule); EMA of the weights with decay 0.999
(the paper's 0.9999 averages over ~10 k steps, about the length of a whole CPU run; 0.999 averages
over ~1 k steps), warmed up as ``min(decay, (1 + step) / (10 + step))``.

Files written beside the output prefix ``P`` (e.g. ``my-models/ssdiff-8band``):

* ``P.safetensors`` + ``P.json``: the EMA weights with the best hold-out ERGAS (or the last EMA
  weights when there is no hold-out), with a full model card;
* ``P.state.safetensors``: everything ``resume`` needs (model, EMA, optimiser, step, elapsed
  time, every RNG state, the log), written at every evaluation, at the end and on Ctrl-C or
  SIGTERM. No pickle: tensors (weights, optimiser moments, torch RNG states) are safetensors
  tensors, the rest is JSON in the file's metadata (:func:`save_state_file`);
* ``P.log.csv``: step, loss, lr, elapsed, steps/s and the hold-out metrics when evaluated;
* ``P.curves.png``: loss and hold-out ERGAS/SAM curves (:mod:`.plot`).
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import stat
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ssdiff_cli.diffusion import DDIMScheduler, DiffusionConfig
from ssdiff_cli.methods.network import Sampling
from ssdiff_cli.nn import ModelConfig, SSDiffDenoiser
from ssdiff_cli.nn.precision import resolve_precision


@dataclass
class TrainConfig:
    """Options of a training run (all saved in the card's ``training`` section)."""

    name: str
    output: str
    sensor: str | None = None
    variant: str = "fast"
    model_overrides: dict = field(default_factory=dict)
    crop: int = 32
    batch: int = 16
    lr: float = 1e-3
    ema: float = 0.999
    max_steps: int = 20000
    max_minutes: float | None = None
    eval_every: int = 500
    eval_steps: int = 1
    seed: int = 0
    precision: str = "auto"
    threads: int | None = None
    device: str = "cpu"
    log_every: int = 25
    norm: str = "scene"
    percentile: float = 99.0
    holdout: float = 0.2
    description: str = ""


class EMA:
    """Exponential moving average of a model's parameters (buffers are copied)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        ema_p = list(self.model.parameters())
        torch._foreach_lerp_(ema_p, [p.detach() for p in model.parameters()], 1.0 - d)
        for be, b in zip(self.model.buffers(), model.buffers()):
            be.copy_(b)


def score_holdout(net, sampling, scene) -> dict:
    """Fuse a scene's reduced-resolution hold-out strip through the inference path
    (:func:`ssdiff_cli.methods.ssdiff.fuse_arrays`, with ``sampling``, a
    :class:`~ssdiff_cli.methods.network.Sampling`) and score it against the original MS
    (SAM, ERGAS, Q2n, ... from :func:`ssdiff_cli.quality.indices.reduced_resolution`)."""
    from ssdiff_cli.methods.ssdiff import fuse_arrays
    from ssdiff_cli.quality import indices

    hold = scene.holdout()
    fused = fuse_arrays(net, sampling, hold["lms"], hold["pan"], hold["ms"],
                        col=scene.holdout_start)
    rng = float(2**scene.bit_depth - 1) if scene.bit_depth else None
    scores = indices.reduced_resolution(fused * scene.scale, hold["gt"] * scene.scale, scene.ratio,
                                        mask=hold["valid"], data_range=rng)
    return {k: float(scores[k]) for k in ("SAM", "ERGAS", "Q2n", "SCC")}


@dataclass
class TrainResult:
    """What a run did."""

    step: int
    elapsed_s: float
    interrupted: bool
    best: dict
    checkpoint: str
    state: str
    log: str
    last_loss: float


class Trainer:
    """Train an :class:`SSDiffDenoiser` on a batch source.

    ``source.sample(batch)`` returns numpy ``pan, lms, ms, gt`` batches (normalised) and
    ``source.get_state() / set_state()`` its RNG state; ``holdouts`` are objects scored by
    :func:`score_holdout` (``TrainScene``) or anything with ``name`` and
    ``score(net, sampling)``. Hold-outs are sampled as the card the run writes says
    (:meth:`sampling`: ``eval_steps`` DDIM steps from pure noise at T - 1).
    ``card`` is a :class:`ssdiff_cli.zoo.ModelCard` template (sensor, bands, normalisation...);
    its model, diffusion, sampling, training and metrics sections are filled in here.
    """

    def __init__(self, source, holdouts: list, card, config: TrainConfig, resume: bool = False,
                 init_state: dict | None = None) -> None:
        self.source, self.holdouts, self.card, self.cfg = source, holdouts, card, config
        cfg = config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = cfg.device
        self.dtype = resolve_precision(cfg.precision, self.device, training=True)
        self.prefix = Path(cfg.output)
        if self.prefix.suffix in (".safetensors", ".json"):
            self.prefix = self.prefix.with_suffix("")
        self.state_path = state_path(self.prefix)
        self.log_path = self.prefix.with_name(self.prefix.name + ".log.csv")
        self.png_path = self.prefix.with_name(self.prefix.name + ".curves.png")
        torch.manual_seed(cfg.seed)
        self.model_config = ModelConfig(bands=card.bands, ratio=card.ratio, variant=cfg.variant,
                                        **cfg.model_overrides)
        self.net = SSDiffDenoiser(self.model_config).to(self.device)
        if init_state is not None:
            self.net.load_state_dict(init_state)
        self.diffusion = DiffusionConfig()
        self.scheduler = DDIMScheduler(self.diffusion)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=0.0)
        self.ema = EMA(self.net, cfg.ema)
        self.gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        self.step = 0
        self.elapsed = 0.0
        self.rows: list[dict] = []
        self.best: dict = {}
        self.classical: dict = {}
        self._saved_step: int | None = None  # the step of the state file on disk
        if resume:
            self._load_state()
        if self.device == "cpu" and self.dtype is not None:
            self.net.to(memory_format=torch.channels_last)

    # ------------------------------------------------------------------ state
    def _state(self) -> tuple[dict, dict]:
        """``(tensors, info)``: what :meth:`save_state` writes."""
        tensors = {f"model.{k}": v for k, v in self.net.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in self.ema.model.state_dict().items()})
        opt_tensors, opt_info = flatten_optimizer(self.opt.state_dict())
        tensors.update(opt_tensors)
        tensors["rng.gen"] = self.gen.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        info = {"step": self.step, "elapsed": self.elapsed, "opt": opt_info,
                "np_source": self.source.get_state(), "rows": self.rows, "best": self.best,
                "config": asdict(self.cfg), "model_config": self.model_config.to_dict()}
        return tensors, info

    def save_state(self) -> None:
        self._check_finite()
        save_state_file(self.state_path, *self._state())
        self._saved_step = self.step

    def _check_finite(self) -> None:
        """Nothing is saved from a diverged run: NaN or infinite weights stop it, naming the step."""
        for net in (self.net, self.ema.model):
            if not all(bool(torch.isfinite(p).all()) for p in net.parameters()):
                self._diverged("its weights are NaN or infinite")

    def _diverged(self, what: str) -> None:
        from ssdiff_cli.errors import DegenerateOutputError

        kept = (f"; {self.state_path.name} keeps step {self._saved_step}"
                if self._saved_step is not None else "")
        raise DegenerateOutputError(
            f"{self.prefix}: training diverged at step {self.step} ({what}); nothing written from "
            f"it{kept} (lower --lr, now {self.opt.param_groups[0]['lr']:g})")

    def _load_state(self) -> None:
        from ssdiff_cli.errors import BadInputError
        from ssdiff_cli.training.state import check_state

        tensors, st = load_state_file(self.state_path, self.device)
        if st.get("model_config") != self.model_config.to_dict():
            raise BadInputError(f"{self.state_path}: saved run has another architecture; "
                                "resume with the same --variant and band layout")
        check_state(self.state_path, tensors, st,
                    {"model.": self.net.state_dict(), "ema.": self.ema.model.state_dict()})
        try:
            self.net.load_state_dict(_prefixed(tensors, "model."))
            self.ema.model.load_state_dict(_prefixed(tensors, "ema."))
            self.opt.load_state_dict(unflatten_optimizer(tensors, st["opt"]))
            self.step, self.elapsed = int(st["step"]), float(st["elapsed"])
            self.gen.set_state(tensors["rng.gen"].cpu())
            torch.set_rng_state(tensors["rng.torch"].cpu())
            self.source.set_state(st["np_source"])
            self.rows, self.best = list(st["rows"]), dict(st["best"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise BadInputError(f"{self.state_path}: damaged training state ({exc})") from None
        self._saved_step = self.step

    # ------------------------------------------------------------------ steps
    def _batch(self) -> dict[str, torch.Tensor]:
        b = self.source.sample(self.cfg.batch)
        out = {}
        for k, v in b.items():
            t = torch.from_numpy(v).to(self.device)
            if self.dtype is not None and self.device == "cpu":
                t = t.contiguous(memory_format=torch.channels_last)
            out[k] = t
        return out

    def train_step(self) -> float:
        """One optimiser step; returns the loss."""
        self.net.train()
        b = self._batch()
        x0 = b["gt"] - b["lms"]
        t = self.scheduler.sample_timesteps(x0.shape[0], generator=self.gen)
        noise = torch.randn(x0.shape, generator=self.gen).to(self.device)
        t = t.to(self.device)
        x_t = self.scheduler.add_noise(x0, noise, t)
        dev = "cuda" if self.device.startswith("cuda") else "cpu"
        with torch.autocast(device_type=dev, dtype=self.dtype, enabled=self.dtype is not None):
            pred = self.net(x_t, t.float(), b["lms"], b["pan"], b["ms"])
        loss = F.l1_loss(pred.float(), x0)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        self.ema.update(self.net, self.step)
        return float(loss.detach())

    def sampling_card(self) -> dict:
        """The ``sampling`` section of the card this run writes."""
        return {"steps": self.cfg.eval_steps, "t_start": self.diffusion.num_train_timesteps - 1}

    def sampling(self) -> Sampling:
        """How hold-outs are fused: the card's sampling, on the run's device and precision."""
        card = self.sampling_card()
        return Sampling(self.scheduler, card["steps"], card["t_start"], self.device, self.dtype)

    def evaluate(self) -> dict:
        """Score every hold-out with the EMA model; returns ``{scene: metrics, "mean": ...}``."""
        out = {}
        sampling = self.sampling()
        for h in self.holdouts:
            if hasattr(h, "score"):
                out[h.name] = h.score(self.ema.model, sampling)
            else:
                out[h.name] = score_holdout(self.ema.model, sampling, h)
        if out:
            out["mean"] = {k: float(np.mean([v[k] for v in out.values()])) for k in ("SAM", "ERGAS", "Q2n")}
        return out

    # ------------------------------------------------------------------ run
    def run(self, callback: Callable | None = None, progress: Callable | None = None) -> TrainResult:
        """Train until ``max_steps`` or ``max_minutes``; Ctrl-C saves and returns
        (``interrupted=True``). ``callback(trainer, loss)`` runs after every step (it may raise
        KeyboardInterrupt); ``progress(step, total, loss, steps_per_s, seconds_left)``."""
        cfg = self.cfg
        interrupted = False
        losses: list[float] = []
        last_loss = float("nan")
        t_run = time.perf_counter()
        base_elapsed, base_step = self.elapsed, self.step
        limit_s = cfg.max_minutes * 60 if cfg.max_minutes else math.inf
        try:
            while self.step < cfg.max_steps and self.elapsed < limit_s:
                last_loss = self.train_step()
                if not math.isfinite(last_loss):
                    self._diverged(f"loss {last_loss}")
                losses.append(last_loss)
                self.elapsed = base_elapsed + time.perf_counter() - t_run
                rate = (self.step - base_step) / max(self.elapsed - base_elapsed, 1e-9)
                if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                    self._log(float(np.mean(losses)), rate)
                    losses = []
                if cfg.eval_every and self.step % cfg.eval_every == 0:
                    self._evaluate_and_keep()
                if progress is not None:
                    left = min((cfg.max_steps - self.step) / max(rate, 1e-9), limit_s - self.elapsed)
                    progress(self.step, cfg.max_steps, last_loss, rate, max(left, 0.0))
                if callback is not None:
                    callback(self, last_loss)
        except KeyboardInterrupt:
            interrupted = True
        if losses:
            self._log(float(np.mean(losses)), 0.0)
        if not interrupted and (not self.rows or self.rows[-1].get("ERGAS") in (None, "")):
            if self.holdouts and cfg.eval_every:
                self._evaluate_and_keep()
        if not self.best or not self.holdouts:
            self._save_checkpoint(self.ema.model, {})
        self.save_state()
        self._write_log()
        return TrainResult(step=self.step, elapsed_s=self.elapsed, interrupted=interrupted,
                           best=self.best, checkpoint=str(self.prefix.with_suffix(".safetensors")),
                           state=str(self.state_path), log=str(self.log_path), last_loss=last_loss)

    def _log(self, loss: float, rate: float) -> None:
        self.rows.append({"step": self.step, "loss": loss, "lr": self.opt.param_groups[0]["lr"],
                          "elapsed_s": round(self.elapsed, 2), "steps_per_s": round(rate, 3)})

    def _evaluate_and_keep(self) -> None:
        scores = self.evaluate()
        if not scores:
            return
        row = {"step": self.step, "loss": "", "lr": self.opt.param_groups[0]["lr"],
               "elapsed_s": round(self.elapsed, 2), "steps_per_s": ""}
        row.update({k: scores["mean"][k] for k in ("SAM", "ERGAS", "Q2n")})
        for name, v in scores.items():
            if name != "mean":
                row.update({f"{name}_{k}": v[k] for k in ("SAM", "ERGAS", "Q2n")})
        self.rows.append(row)
        if not self.best or scores["mean"]["ERGAS"] < self.best["mean"]["ERGAS"]:
            self.best = {"step": self.step, "elapsed_s": round(self.elapsed, 1), **scores}
            self._save_checkpoint(self.ema.model, self.best)
        self.save_state()
        self._write_log()

    def _write_log(self) -> None:
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        tmp = self.log_path.with_suffix(".csv.tmp")
        try:
            with open(tmp, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=keys)
                w.writeheader()
                w.writerows(self.rows)
            os.replace(tmp, self.log_path)
        finally:
            tmp.unlink(missing_ok=True)
        try:
            from ssdiff_cli.training.plot import plot_log

            plot_log(self.rows, self.png_path, title=self.card.name)
        except Exception:  # a plot must never stop a run
            pass

    def card_for(self, best: dict):
        """The model card of the current run (template + architecture + training record)."""
        from ssdiff_cli.zoo import ModelCard

        cfg = self.cfg
        c = self.card
        training = dict(c.training)
        training.update({
            "steps": self.step, "best_step": best.get("step"), "wall_time_s": round(self.elapsed, 1),
            "batch": cfg.batch, "crop": cfg.crop, "lr": cfg.lr, "optimizer": "AdamW (no weight decay)",
            "loss": "L1 on the residual x0", "ema": cfg.ema, "seed": cfg.seed,
            "precision": "bf16" if self.dtype is not None else "fp32", "threads": torch.get_num_threads(),
            "device": self.device, "holdout": training.get("holdout", {"fraction": cfg.holdout}),
        })
        metrics = dict(c.metrics)
        if best:
            metrics["holdout_training_eval"] = {
                "note": f"EMA weights at step {best.get('step')}; {cfg.eval_steps} DDIM step(s) from "
                        "pure noise at t=999; reduced resolution (Wald) on each scene's hold-out",
                **{k: v for k, v in best.items() if k not in ("step", "elapsed_s")}}
        return ModelCard(name=c.name, sensor=c.sensor, band_names=list(c.band_names), bands=c.bands,
                         ratio=c.ratio, normalisation=dict(c.normalisation),
                         model=self.model_config.to_dict(), diffusion=self.diffusion.to_dict(),
                         sampling=self.sampling_card(),
                         training=training, metrics=metrics, description=c.description)

    def _save_checkpoint(self, model, best: dict) -> None:
        from ssdiff_cli.zoo import save_checkpoint

        self._check_finite()
        model = copy.deepcopy(model).to("cpu").to(memory_format=torch.contiguous_format)
        save_checkpoint(model, self.card_for(best), self.prefix)


def state_path(prefix: Path) -> Path:
    """The resumable state of the run at output prefix ``prefix``."""
    return prefix.with_name(prefix.name + ".state.safetensors")


def run_files(prefix: Path) -> list[Path]:
    """Every file a training run at ``prefix`` writes."""
    return [prefix.with_suffix(".safetensors"), prefix.with_suffix(".json"), state_path(prefix),
            *(prefix.with_name(prefix.name + ext) for ext in (".log.csv", ".curves.png"))]


#: Largest state file read back (a state holds three copies of a model of at most a few M params).
MAX_STATE_BYTES = 2**32


def flatten_optimizer(state: dict) -> tuple[dict, dict]:
    """An optimiser ``state_dict`` as ``(tensors, info)``: tensors named ``opt.{param}.{name}``,
    everything else (hyper-parameters, scalar entries) JSON-ready."""
    tensors, scalars = {}, {}
    for pid, entries in state["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"opt.{pid}.{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict, info: dict) -> dict:
    """The inverse of :func:`flatten_optimizer`."""
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for pid, entries in info.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(entries)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in info["param_groups"]]
    return {"state": state, "param_groups": groups}


def _prefixed(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def save_state_file(path: Path, tensors: dict, info: dict) -> None:
    """Write a resumable state atomically: ``tensors`` as safetensors, ``info`` as JSON in the
    file's metadata (one file, so tensors and the rest can never disagree)."""
    from safetensors.torch import save_file

    from ssdiff_cli.files import umask_mode

    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)  # -o's folder is made at the first write
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    save_file(flat, str(tmp), metadata={"format": "ssdiff-train-state",
                                        "info": json.dumps(info)})
    umask_mode(tmp)
    os.replace(tmp, path)


def load_state_file(path: Path, device: str = "cpu") -> tuple[dict, dict]:
    """``(tensors, info)`` of a state written by :func:`save_state_file`. Never unpickles:
    a planted file is refused with :class:`~ssdiff_cli.errors.BadInputError` (exit 3)."""
    from safetensors import SafetensorError, safe_open

    from ssdiff_cli.errors import BadInputError
    from ssdiff_cli.json_files import parse_json_object

    if not path.exists():
        old = path.with_name(path.name.replace(".state.safetensors", ".state.pt"))
        hint = (f"; {old.name} (the old pickle format) is not loaded, as it could run code"
                if old.exists() else "")
        raise BadInputError(f"{path}: no training state to resume from{hint}; "
                            "run without --resume (and with --overwrite) to start over")
    if not stat.S_ISREG(path.stat().st_mode):
        raise BadInputError(f"{path}: not a regular file (a FIFO or a device?); not a training state")
    if path.stat().st_size > MAX_STATE_BYTES:
        raise BadInputError(f"{path}: {path.stat().st_size / 2**30:.1f} GiB; not a training state")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
            if meta.get("format") != "ssdiff-train-state":
                raise ValueError("not an ssdiff training state")
            info = parse_json_object(meta["info"], str(path), "training state", BadInputError)
            tensors = {k: fh.get_tensor(k).to(device) if not k.startswith("rng.")
                       else fh.get_tensor(k) for k in fh.keys()}
    except BadInputError:
        raise
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise BadInputError(f"{path}: not a readable training state ({exc})") from None
    return tensors, info


def card_template(name: str, scenes: list, config: TrainConfig, sensor_key: str | None = None,
                  band_names: list[str] | None = None, bands: int | None = None,
                  ratio: int | None = None, extra_training: dict | None = None):
    """The card fields known before training: sensor, bands, normalisation, data and terms."""
    from ssdiff_cli.zoo import ModelCard

    first = scenes[0] if scenes else None
    if config.norm == "scene":
        norm = {"kind": "scene", "percentile": float(config.percentile)}
    else:
        scale = float(first.scale) if first is not None else float(config.model_overrides.get("scale", 2047))
        norm = {"kind": "fixed", "scale": scale}
    training = {
        "scenes": [s.describe() for s in scenes],
        "terms": sorted({s.terms for s in scenes}),
        "pairs": "Wald protocol: MTF-matched Gaussian (41 taps) per band, decimation by the ratio, "
                 "cubic upsampling for lms; crops with random flips and right-angle rotations, "
                 "never touching nodata",
        "holdout": {"fraction": config.holdout, "side": "right columns",
                    "guard_px": "filters.support(ratio) reduced px between training area and hold-out",
                    "scenes": {s.name: [s.holdout_start, s.valid.shape[1]] for s in scenes}},
    }
    training.update(extra_training or {})
    return ModelCard(
        name=name, sensor=sensor_key or (first.sensor if first else config.sensor),
        band_names=list(band_names or (first.band_names if first else [])),
        bands=int(bands or (first.bands if first else 0)), ratio=int(ratio or (first.ratio if first else 4)),
        normalisation=norm, model={}, training=training, description=config.description)


def train_scenes(scene_pairs: list[tuple], config: TrainConfig, mtf_gains=None, pan_gain=None,
                 resume: bool = False, callback=None, progress=None, log=None) -> TrainResult:
    """Train on real scenes: ``scene_pairs`` is a list of (pan, ms) paths (see :mod:`.crops`)."""
    from ssdiff_cli.training.crops import CropSampler, build_scene

    sensor = None if config.sensor in (None, "", "auto") else config.sensor
    scenes = [build_scene(p, m, sensor, mtf_gains, pan_gain, config.norm, config.percentile,
                          config.holdout) for p, m in scene_pairs]
    if log:
        for s in scenes:
            log(f"{s.name}: reduced {s.valid.shape[0]}x{s.valid.shape[1]} px, scale {s.scale:.4g}, "
                f"training columns 0-{s.train_end}, hold-out {s.holdout_start}-{s.valid.shape[1]}")
    sampler = CropSampler(scenes, crop=config.crop, seed=config.seed)
    card = card_template(config.name, scenes, config, sensor_key=sensor or scenes[0].sensor)
    holdouts = [s for s in scenes
                if s.holdout_start < s.valid.shape[1] and s.valid[:, s.holdout_start:].any()]
    trainer = Trainer(sampler, holdouts, card, config, resume=resume)
    return trainer.run(callback=callback, progress=progress)
