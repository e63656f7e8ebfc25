"""What a resumable training state may hold, checked field by field before the first step.

A state (``NAME.state.safetensors``, :func:`ssdiff_cli.training.loop.save_state_file`) is an
input like any other: it may be damaged or tampered with. :func:`check_state` refuses, with a
:class:`~ssdiff_cli.errors.BadInputError` (exit 3) naming the file and the field, anything a run
could not continue from exactly: a step count that is not a whole number from 0 to
:data:`MAX_STEP`, a learning rate that is not a finite number in ``(0, MAX_LR]``, NaN weights or
moments, tensors of the wrong names or shapes, a log that is not a list of rows. A run that
resumed from such a state would fail (or diverge) only after training, having replaced the
checkpoint.
"""

from __future__ import annotations

import math

from ssdiff_cli.errors import BadInputError

#: Largest step count a state may record, and largest learning rate (AdamW moves each weight
#: by about lr per step: far above this, the first step already destroys the model).
MAX_STEP = 2**31
MAX_LR = 10.0
#: Most log rows a state may carry (one per ``--log-every`` steps and per evaluation).
MAX_ROWS = 10**6


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _refuse(path, field: str, value, need: str) -> None:
    raise BadInputError(f"{path}: training state's {field} is {value!r:.60}; it must be {need}")


def check_scalars(path, info: dict) -> None:
    """The JSON side of a state: ``step``, ``elapsed``, the optimiser's hyper-parameters, the log
    rows and the best hold-out scores."""
    if not isinstance(info, dict):
        _refuse(path, "information", info, "a JSON object")
    step, elapsed = info.get("step"), info.get("elapsed")
    if not _whole(step) or not 0 <= step <= MAX_STEP:
        _refuse(path, "step", step, f"a whole number from 0 to {MAX_STEP}")
    if not _number(elapsed) or elapsed < 0:
        _refuse(path, "elapsed", elapsed, "a finite number of seconds >= 0")
    opt = info.get("opt")
    groups = opt.get("param_groups") if isinstance(opt, dict) else None
    if not isinstance(groups, list) or not groups or not all(isinstance(g, dict) for g in groups):
        _refuse(path, "opt.param_groups", groups, "a list of the optimiser's parameter groups")
    if not isinstance(opt.get("scalars", {}), dict):
        _refuse(path, "opt.scalars", opt.get("scalars"), "a JSON object")
    for g in groups:
        lr, eps, decay, betas = g.get("lr"), g.get("eps", 1e-8), g.get("weight_decay", 0.0), \
            g.get("betas", (0.9, 0.999))
        if not _number(lr) or not 0 < lr <= MAX_LR:
            _refuse(path, "learning rate (lr)", lr, f"a finite number in (0, {MAX_LR:g}]")
        if not _number(eps) or eps <= 0 or not _number(decay) or decay < 0:
            _refuse(path, "eps / weight_decay", (eps, decay), "finite numbers, eps > 0")
        if (not isinstance(betas, (list, tuple)) or len(betas) != 2
                or not all(_number(b) and 0 <= b < 1 for b in betas)):
            _refuse(path, "betas", betas, "two numbers in [0, 1)")
        if not isinstance(g.get("params"), list) or not all(_whole(p) for p in g["params"]):
            _refuse(path, "opt.param_groups.params", g.get("params"), "a list of whole numbers")
    rows = info.get("rows")
    if (not isinstance(rows, list) or len(rows) > MAX_ROWS
            or not all(isinstance(r, dict) and all(isinstance(k, str) for k in r) for r in rows)):
        _refuse(path, "rows (the log)", rows, f"a list of at most {MAX_ROWS} rows")
    for r in rows:
        if not all(v is None or isinstance(v, str) or _number(v) for v in r.values()):
            _refuse(path, "log row", r, "strings and finite numbers")
    best = info.get("best")
    mean = best.get("mean") if isinstance(best, dict) else None
    if not isinstance(best, dict) or (best and not (
            isinstance(mean, dict) and all(_number(mean.get(k)) for k in ("SAM", "ERGAS", "Q2n")))):
        _refuse(path, "best", best, "{} or the best hold-out scores (finite SAM, ERGAS, Q2n)")


def check_tensors(path, tensors: dict, expected: dict[str, dict]) -> None:
    """The tensors of a state: for each prefix of ``expected`` (``"model."``: the network's
    ``state_dict``, ``"ema."``: the EMA's), exactly those names and shapes, floating point where
    the network's are, every value finite; the optimiser's moments (``opt.N.*``) shaped as
    parameter N and finite."""
    import torch

    for prefix, own in expected.items():
        found = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        missing, extra = sorted(set(own) - set(found)), sorted(set(found) - set(own))
        wrong = sorted(k for k in set(own) & set(found) if tuple(own[k].shape) != tuple(found[k].shape))
        if missing or extra or wrong:
            detail = (missing and f"missing {missing[0]}") or (extra and f"unexpected {extra[0]}") \
                or f"shape of {wrong[0]}"
            raise BadInputError(f"{path}: training state's {prefix.rstrip('.')} tensors do not fit "
                                f"the network ({detail})")
    params = list(expected.get("model.", {}).values())
    for key, t in tensors.items():
        if key.startswith("rng."):
            continue
        if key.startswith("opt."):
            _, pid, name = (key.split(".", 2) + ["", ""])[:3]
            if not pid.isdigit() or int(pid) >= len(params):
                raise BadInputError(f"{path}: training state's tensor {key} names no parameter")
            if name.startswith("exp_avg") and tuple(t.shape) != tuple(params[int(pid)].shape):
                raise BadInputError(f"{path}: training state's tensor {key} does not fit parameter "
                                    f"{pid} ({tuple(t.shape)} vs {tuple(params[int(pid)].shape)})")
        if not t.is_floating_point():
            own = next((e[key[len(p):]] for p, e in expected.items() if key.startswith(p)), None)
            if own is None or own.is_floating_point():
                raise BadInputError(f"{path}: training state's tensor {key} holds "
                                    f"{str(t.dtype).removeprefix('torch.')} values, not floating point")
        elif not bool(torch.isfinite(t).all()):
            raise BadInputError(f"{path}: training state's tensor {key} holds NaN or infinite "
                                "values (saved from a diverged run?); start over with --overwrite")


def check_state(path, tensors: dict, info: dict, expected: dict[str, dict]) -> None:
    """Every field of a state (:func:`check_scalars`, :func:`check_tensors`), before the first
    step of a resumed run."""
    check_scalars(path, info)
    check_tensors(path, tensors, expected)
