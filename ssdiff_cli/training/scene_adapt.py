"""Scene adaptation (``sharpen --adapt N``): a per-sensor model's L-BAF on the scene, and a
generalist model's fine-tuning, or a KSDiff model's prior, with one of two objectives.

A per-sensor model (:func:`adapt_per_sensor`) trains rank-4 L-BAF adapters on reduced-resolution
(Wald) crops of a central window of the scene (:func:`ssdiff_cli.training.finetune.adapt_to_scene`)
and merges them.

A generalist model (:func:`adapt_generalist`) has two objectives.

``full`` (default), the unsupervised full-resolution objective of Z-PNN / lambda-PNN:

* spectral consistency: the fused image, low-passed with each band's MTF and decimated by the
  ratio, must match the MS (L1, in band standard deviations). The filter is evaluated only at
  the decimated positions (a strided separable convolution), never densely;
* structural consistency: in every ``2r x 2r`` neighbourhood, the correlation of each fused band
  with the PAN should reach the correlation of the upsampled MS band with the PAN low-passed by
  that band's MTF (the correlation the scene shows at the MS's own scale); shortfalls cost.

``reduced``: the Wald protocol on the scene itself (degrade the window by the ratio, learn the
correction of the classical base against the original MS), as in training.

Both fine-tune every weight of a generalist's network (it is small) with Adam on random crops of
a central window of the scene, from the network's one-step output at t = T - 1 (what inference
runs). A KSDiff model (:class:`ssdiff_cli.methods.ksdiff.KSDiffFusion`) keeps its weights: its
scene prior z alone (N x C_z numbers, computed once per scene) is optimised, kept within the
(-1, 1) the prior is trained and sampled in, and fixes every tile's kernels afterwards. What a
fusion adapts is its class's ``adapted`` (:data:`PARTS`).

Then a check (:func:`reduced_check`) decides whether to keep the result: the network's error
against the scene's own reference under the Wald protocol (the window degraded by the ratio: L1
of the correction over a fixed grid of crops) is measured before and after; an adaptation that
does not lower it is undone, so ``--adapt`` never hands back a network that does worse on that
check than the one it started from. The full-resolution objective can disagree with it (on
Landsat-7 scenes it lowered the objective and raised ERGAS at reduced resolution).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ssdiff_cli import filters
from ssdiff_cli.methods.generalist import GeneralistFusion, conditions, reduced_window
from ssdiff_cli.scene import read_arrays, read_tile

#: Side (PAN px) of the central window adaptation crops are drawn from.
ADAPT_WINDOW = 1024
OBJECTIVES = ("full", "reduced")


def adapt_per_sensor(net, card, scene, sensor, steps: int, seed: int = 0, device: str = "cpu",
                     progress: Callable[[int, int, float], None] | None = None):
    """L-BAF adapters trained for ``steps`` steps on a central window (at most ``ADAPT_WINDOW``
    PAN px a side, on the ratio's grid) of ``scene``, merged into ``net``; returns the network
    (see :func:`ssdiff_cli.training.finetune.adapt_to_scene`). ``sensor`` gives the MTF gains.
    The network is trained in PyTorch's default memory layout, whatever layout inference runs
    it in. ``progress(step, steps, loss)`` is called after each step."""
    from ssdiff_cli.training.finetune import adapt_to_scene

    spec, r = scene.spec, scene.ratio
    side = min(ADAPT_WINDOW, spec.out.height // r * r, spec.out.width // r * r)
    row = (spec.out.height - side) // 2 // r * r
    col = (spec.out.width - side) // 2 // r * r
    pan, pan_valid, ms, ms_valid = read_arrays(spec, row, col, side, side)
    net = net.to(memory_format=torch.contiguous_format)
    return adapt_to_scene(
        net, card, np.nan_to_num(pan), np.nan_to_num(ms), steps, pan_valid=pan_valid,
        ms_valid=ms_valid, ms_gnyq=getattr(sensor, "ms_gnyq", None),
        pan_gnyq=getattr(sensor, "pan_gnyq", None), seed=seed, device=device,
        progress=None if progress is None else lambda s, n, loss, branch: progress(s, n, loss),
    )


def degrade_kernels(gnyq, ratio: int) -> tuple[torch.Tensor, int]:
    """Per-band 1-D kernels of :func:`ssdiff_cli.filters.degrade` (C, L) and its first output
    position ``start`` (the decimated samples sit at ``start + ratio * k``)."""
    ks = []
    for g in gnyq:
        sigma = filters.mtf_sigma(float(g), ratio)
        taps = filters.MTF_TAPS + (0 if ratio % 2 else 1)
        ks.append(filters.gaussian_taps(sigma, taps))
    start = (ratio - 1) // 2 if ratio % 2 else ratio // 2
    return torch.tensor(np.stack(ks), dtype=torch.float32), start


def degrade_at(x: torch.Tensor, kernels: torch.Tensor, ratio: int, start: int) -> tuple[torch.Tensor, int]:
    """``filters.degrade`` of ``x`` (N, C, H, W) computed only where it is fully inside ``x``:
    returns the low-res samples (N, C, h, w) and the low-res index of the first one."""
    n, c, h, w = x.shape
    length = kernels.shape[1]
    centre = length // 2
    off = (start - centre) % ratio  # first input row whose window is centred on a sample
    k0 = (off + centre - start) // ratio
    kv = kernels[:, None, :, None].to(x.dtype)
    kh = kernels[:, None, None, :].to(x.dtype)
    y = F.conv2d(x[:, :, off:, off:], kv, stride=(ratio, 1), groups=c)
    y = F.conv2d(y, kh, stride=(1, ratio), groups=c)
    return y, k0


def local_correlation(a: torch.Tensor, b: torch.Tensor, size: int) -> torch.Tensor:
    """Correlation coefficient of ``a`` and ``b`` (N, C, H, W) in every ``size x size`` window."""
    pool = lambda t: F.avg_pool2d(t, size, stride=1)  # noqa: E731
    ma, mb = pool(a), pool(b)
    cov = pool(a * b) - ma * mb
    va = (pool(a * a) - ma * ma).clamp_min(1e-6)
    vb = (pool(b * b) - mb * mb).clamp_min(1e-6)
    return cov / torch.sqrt(va * vb)


class _Weights:
    """A generalist's adaptation: every weight of its network, run one step from the card's
    start timestep (what inference runs)."""

    name = "weights"
    lr = 1e-4

    def __init__(self, fusion: GeneralistFusion) -> None:
        self.fusion = fusion

    def start(self) -> list[torch.Tensor]:
        """The tensors to optimise, made trainable."""
        self.fusion.net.train().requires_grad_(True)
        return list(self.fusion.net.parameters())

    def stepped(self) -> None:
        """After each optimiser step."""

    def finish(self) -> None:
        """Back to inference."""
        self.fusion.net.eval().requires_grad_(False)

    def snapshot(self) -> dict:
        """What :meth:`restore` puts back exactly."""
        return {k: v.detach().clone() for k, v in self.fusion.net.state_dict().items()}

    def restore(self, saved: dict) -> None:
        """Undo the adaptation."""
        self.fusion.net.load_state_dict(saved)

    def correction(self, cond: dict, noise: torch.Tensor) -> torch.Tensor:
        """The network's correction (B, C, H, W) on a batch of conditions, from ``noise``."""
        f = self.fusion
        t = torch.full((len(noise),), float(_start_timestep(f)))
        with torch.autocast("cpu", dtype=f.dtype, enabled=f.dtype is not None):
            return f.net(noise, t, cond["base"], cond["lms"], cond["pan"], cond["pan_lp"],
                         f.ratio).float()


class _Prior:
    """A KSDiff model's adaptation: the scene's prior z (1, N, C_z) alone, the weights frozen;
    z stays within (-1, 1), the range it was trained and is sampled in."""

    name = "prior"
    lr = 1e-2

    def __init__(self, fusion) -> None:
        self.fusion = fusion
        self.z = fusion.z.detach().clone()  # a plain tensor: the fusion's is an inference one

    def start(self) -> list[torch.Tensor]:
        """z, made trainable (the network's weights are not)."""
        self.fusion.net.requires_grad_(False)
        return [self.z.requires_grad_(True)]

    def stepped(self) -> None:
        """Keep z in (-1, 1)."""
        with torch.no_grad():
            self.z.clamp_(-1.0, 1.0)

    def finish(self) -> None:
        """The fusion's kernels from the adapted z."""
        self.fusion.set_prior(self.z.detach().clone())

    def snapshot(self) -> torch.Tensor:
        """The prior now."""
        return self.z.detach().clone()

    def restore(self, saved: torch.Tensor) -> None:
        """Back to the prior ``saved`` (and its kernels)."""
        self.z = saved.clone()
        self.fusion.set_prior(saved.clone())

    def correction(self, cond: dict, noise: torch.Tensor) -> torch.Tensor:
        """The network's correction (B, C, H, W) with the kernels of z (``noise`` unused: given
        its kernels the pass is deterministic)."""
        f = self.fusion
        return f.net(cond["base"], cond["lms"], cond["pan"], cond["pan_lp"], f.ratio,
                     f.net.kernels(self.z)).float()


#: What ``--adapt`` optimises, by the fusion class's ``adapted``.
PARTS = {"weights": _Weights, "prior": _Prior}


def adapted_part(fusion):
    """What ``--adapt`` optimises for ``fusion`` (its class's ``adapted``: :data:`PARTS`)."""
    return PARTS[fusion.adapted](fusion)


@dataclass
class Adaptation:
    """What :func:`adapt_generalist` did: what it adapted (``weights`` or ``prior``), the loss
    of every step, the check before and after (None where the window is too small for it) and
    whether the adaptation was kept."""

    losses: list[float] = field(default_factory=list)
    check_before: float | None = None
    check_after: float | None = None
    kept: bool = True
    adapted: str = "weights"

    def summary(self) -> dict:
        """The report's ``adaptation`` fields."""
        out = {"adapted": self.adapted, "loss_first": round(self.losses[0], 5),
               "loss_last": round(float(np.mean(self.losses[-10:])), 5), "kept": self.kept}
        if self.check_before is not None:
            out["check"] = {"reduced_l1_before": round(self.check_before, 5),
                            "reduced_l1_after": round(self.check_after, 5)}
        return out


def adapt_generalist(fusion: GeneralistFusion, spec, fills, steps: int, objective: str = "full",
                     crop: int = 64, batch: int = 4, lr: float | None = None, seed: int = 0,
                     progress: Callable[[int, int, float], None] | None = None) -> Adaptation:
    """Adapt ``fusion`` to the scene in place (a generalist's network, a KSDiff model's prior:
    :func:`adapted_part`), keeping the result only if it passes :func:`reduced_check` (else it
    is restored exactly). ``lr`` None: the adapted part's (1e-4 for weights, 1e-2 for z).

    ``progress(step, steps, loss)`` is called after each step.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"adaptation objective must be one of {OBJECTIVES}, not {objective!r}")
    r = fusion.ratio
    if objective == "full" and crop < filters.MTF_TAPS + 2 * r:
        raise ValueError(f"adaptation crops of {crop} px are smaller than the MTF filter "
                         f"({filters.MTF_TAPS} taps) at ratio {r}")
    side = _window(spec, r, crop)
    row = (spec.out.height - side[0]) // 2 // r * r
    col = (spec.out.width - side[1]) // 2 // r * r
    tile = read_tile(spec, row, col, side[0], side[1], fills, want_ms=True)
    if objective == "full":
        data = _full_data(fusion, tile)
        try:
            reduced = reduced_window(fusion, tile)
        except ValueError:  # too small to degrade: no check
            reduced = None
    else:
        data = reduced = reduced_window(fusion, tile)
    part = adapted_part(fusion)
    result = Adaptation(adapted=part.name)
    result.check_before = None if reduced is None else reduced_check(fusion, reduced, crop, seed)
    original = None if result.check_before is None else part.snapshot()
    opt = torch.optim.Adam(part.start(), lr=part.lr if lr is None else lr)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for step in range(steps):
        batch_data = _crops(data, crop, batch, rng, data["ratio"])
        cond = {k: torch.from_numpy(batch_data[k]) for k in ("base", "lms", "pan", "pan_lp")}
        noise = torch.randn(cond["base"].shape, generator=gen)
        x0 = part.correction(cond, noise)
        if objective == "full":
            loss = _full_loss(x0 + cond["base"], batch_data, data)
        else:
            loss = F.l1_loss(x0, torch.from_numpy(batch_data["target"]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        part.stepped()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, steps, losses[-1])
    part.finish()
    result.losses = losses
    if result.check_before is not None:
        result.check_after = reduced_check(fusion, reduced, crop, seed)
        result.kept = result.check_after < result.check_before
        if not result.kept:
            part.restore(original)
    return result


def reduced_check(fusion: GeneralistFusion, reduced: dict, crop: int, seed: int) -> float | None:
    """Mean L1 of the network's correction against the Wald target of ``reduced``
    (:func:`ssdiff_cli.methods.generalist.reduced_window`) over a fixed grid of crops (at most
    16, ``crop`` px or the degraded window if smaller, on the ratio's grid), from fixed noise;
    None where the degraded window is under 16 px."""
    r = reduced["ratio"]
    h, w = reduced["pan"].shape[-2:]
    size = min(crop, h, w) // r * r
    if size < 16:
        return None
    ys = np.unique(np.linspace(0, (h - size) // r, 4).astype(int)) * r
    xs = np.unique(np.linspace(0, (w - size) // r, 4).astype(int)) * r
    keys = ("base", "lms", "pan", "pan_lp", "target")
    b = {k: torch.from_numpy(np.ascontiguousarray(np.stack(
        [reduced[k][..., y:y + size, x:x + size] for y in ys for x in xs]))) for k in keys}
    valid = torch.from_numpy(np.stack([reduced["valid"][y:y + size, x:x + size]
                                       for y in ys for x in xs]))[:, None].float()
    noise = torch.randn(b["base"].shape, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        x0 = adapted_part(fusion).correction(b, noise)
    err = (x0 - b["target"]).abs() * valid
    return float(err.sum() / (valid.sum() * x0.shape[1]).clamp_min(1))


def _start_timestep(fusion: GeneralistFusion) -> int:
    """The timestep one-step inference starts from: the card's ``t_start``, else T - 1."""
    return fusion.scheduler.num_train_timesteps - 1 if fusion.t_start is None else fusion.t_start


def _window(spec, r: int, crop: int) -> tuple[int, int]:
    h = min(ADAPT_WINDOW, spec.out.height) // r * r
    w = min(ADAPT_WINDOW, spec.out.width) // r * r
    if h < crop or w < crop:
        raise ValueError(f"the scene ({spec.out.height}x{spec.out.width} PAN px) is smaller than "
                         f"one adaptation crop ({crop} px)")
    return h, w


def _full_data(fusion: GeneralistFusion, tile) -> dict:
    """Standardised conditions at full resolution, the MS (band standard deviations), masks."""
    glp, stats = fusion.glp, fusion.stats
    base, cond = conditions(glp, stats, tile.pan, tile.lms)
    ms = ((tile.ms - stats.ms_mean[:, None, None]) / stats.ms_std[:, None, None]).astype(np.float32)
    kernels, start = degrade_kernels(glp.gnyq, fusion.ratio)
    return {**cond, "ms": ms, "valid": tile.valid, "ratio": fusion.ratio, "kernels": kernels,
            "start": start}


def _crops(data: dict, crop: int, batch: int, rng, r: int) -> dict:
    h, w = data["pan"].shape[-2:]
    keys = [k for k in ("base", "lms", "pan", "pan_lp", "target") if k in data]
    out = {k: [] for k in keys + (["ms", "valid"] if "ms" in data else [])}
    for _ in range(batch):
        y = int(rng.integers(0, (h - crop) // r + 1)) * r
        x = int(rng.integers(0, (w - crop) // r + 1)) * r
        for k in keys:
            out[k].append(data[k][..., y:y + crop, x:x + crop])
        if "ms" in data:
            out["ms"].append(data["ms"][:, y // r:(y + crop) // r, x // r:(x + crop) // r])
            out["valid"].append(data["valid"][y:y + crop, x:x + crop])
    return {k: np.ascontiguousarray(np.stack(v)) for k, v in out.items()}


def _full_loss(fused: torch.Tensor, b: dict, data: dict) -> torch.Tensor:
    """Spectral (MTF-degraded fused vs MS) plus structural (local correlation with the PAN)."""
    r = data["ratio"]
    low, k0 = degrade_at(fused, data["kernels"], r, data["start"])
    n_h, n_w = low.shape[-2:]
    ms = torch.from_numpy(b["ms"])[:, :, k0:k0 + n_h, k0:k0 + n_w]
    valid = torch.from_numpy(b["valid"])[:, None].float()
    valid_lr = -F.max_pool2d(-valid, r, r)[:, :, k0:k0 + n_h, k0:k0 + n_w]
    spectral = ((low - ms).abs() * valid_lr).sum() / (valid_lr.sum() * fused.shape[1]).clamp_min(1)
    pan = torch.from_numpy(b["pan"])
    pan_lp = torch.from_numpy(b["pan_lp"])
    lms = torch.from_numpy(b["lms"])
    size = 2 * r
    rho = local_correlation(fused, pan.expand_as(fused), size)
    rho_ref = local_correlation(lms, pan_lp, size).detach()
    valid_c = -F.max_pool2d(-valid, size, stride=1)
    structural = (F.relu(rho_ref - rho) * valid_c).sum() / (valid_c.sum() * fused.shape[1]).clamp_min(1)
    return spectral + structural


def full_objective(fusion: GeneralistFusion, spec, fills, crop: int = 64, batch: int = 16,
                   seed: int = 1) -> float:
    """The ``full`` objective of the current network on fixed crops of the adaptation window
    (lower is better; for tests and benchmarks)."""
    r = fusion.ratio
    side = _window(spec, r, crop)
    row = (spec.out.height - side[0]) // 2 // r * r
    col = (spec.out.width - side[1]) // 2 // r * r
    tile = read_tile(spec, row, col, side[0], side[1], fills, want_ms=True)
    data = _full_data(fusion, tile)
    b = _crops(data, crop, batch, np.random.default_rng(seed), r)
    cond = {k: torch.from_numpy(b[k]) for k in ("base", "lms", "pan", "pan_lp")}
    noise = torch.randn(cond["base"].shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        x0 = adapted_part(fusion).correction(cond, noise)
        return float(_full_loss(x0 + cond["base"], b, data))


