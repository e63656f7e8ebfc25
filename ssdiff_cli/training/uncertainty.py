"""Fitting the ``--uncertainty`` head where the truth is known: at reduced resolution (Wald).

Per scene the pair is degraded by its ratio (:func:`ssdiff_cli.evaluate.evaluate_reduced`), the
model (``--method ssdiff``), the base (``mtf-glp-fs -r cubic``) and the cubic upsampling are run
on it through ``sharpen``, and the head's features (:func:`ssdiff_cli.methods.uncertainty.log_features`)
are paired with the model's actual absolute error against the original MS. The head is the
least-squares fit of ``log(error / band_std)`` on them, every scene weighted alike, with a scale
that makes the mean prediction the mean error.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ssdiff_cli import filters
from ssdiff_cli.evaluate import evaluate_reduced
from ssdiff_cli.methods.uncertainty import FLOOR, UncertaintyHead, feature_names, log_features, scene_scales
from ssdiff_cli.pipeline import SharpenOptions


@dataclass
class ReducedErrors:
    """One scene at reduced resolution: the model's image, the arrays its features come from,
    its actual error and the pixels scored."""

    model: np.ndarray
    base: np.ndarray
    lms: np.ndarray
    pan: np.ndarray
    error: np.ndarray
    valid: np.ndarray
    band_std: np.ndarray
    pan_std: float


def reduced_errors(pan, ms, options: SharpenOptions | None = None) -> ReducedErrors:
    """Run the model, its base and the upsampling on the scene degraded by its ratio."""
    opts = replace(options or SharpenOptions(), resampling="cubic")
    keep: dict = {}
    evaluate_reduced(pan, ms, ["ssdiff", "mtf-glp-fs"], options=opts, keep=keep)
    fused, ref, valid, pair = keep["fused"], keep["reference"], keep["mask"], keep["degraded"]
    h, w = ref.shape[1:]
    r = pair.ratio
    ms_ok = pair.ms_valid if pair.ms_valid is not None else np.ones(pair.ms.shape[1:], bool)
    pan_lr = filters.decimate_mean(pair.pan[: pair.ms.shape[1] * r, : pair.ms.shape[2] * r], r)
    ms_ok = ms_ok & np.isfinite(pair.ms).all(axis=0) & np.isfinite(pan_lr)
    band_std, pan_std = scene_scales(pair.ms[:, ms_ok], pan_lr[ms_ok])
    model = fused["ssdiff"]
    error = np.abs(model - ref)
    # Invalid pixels hold nodata (-1e30 or NaN): set to the band's valid mean so that the
    # features' smoothing cannot carry them into valid pixels (sharpen's tiles never hold them:
    # it fills its inputs locally before fusing).
    model, base, lms = (_filled(a, valid) for a in (model, fused["mtf-glp-fs"],
                                                    fused["upsample (baseline)"]))
    return ReducedErrors(model=model, base=base, lms=lms, pan=_filled(pair.pan[None, :h, :w], valid)[0],
                         error=error, valid=valid, band_std=band_std, pan_std=pan_std)


def _filled(arr: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``arr`` (C, H, W) with each band's invalid or non-finite pixels set to its valid mean
    (what the shipped head was fitted with)."""
    out = np.array(arr, np.float32)
    for band in out:
        ok = valid & np.isfinite(band)
        band[~ok] = band[ok].mean() if ok.any() else 0.0
    return out


def design(scene: ReducedErrors, pixels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The head's inputs ``(n, features)`` and target ``log(error / band_std)`` ``(n,)`` over the
    valid pixels of every band (``pixels``: indices into them, a subsample)."""
    names = feature_names()
    c = scene.model.shape[0]
    n = int(scene.valid.sum())
    x = np.empty((c, n, len(names)), np.float32)
    for b, name, feature in log_features(scene.pan, scene.lms, scene.model, scene.base,
                                         scene.band_std, scene.pan_std):
        values = feature[scene.valid]
        for band in range(c) if b is None else [b]:
            x[band, :, names.index(name)] = values
    y = np.log(FLOOR + scene.error[:, scene.valid] / scene.band_std[:, None])
    x, y = x.reshape(c * n, -1), y.reshape(-1)
    return (x, y) if pixels is None else (x[pixels], y[pixels])


def fit_head(scenes: list[ReducedErrors], per_scene: int = 50_000, seed: int = 0,
             info: dict | None = None) -> UncertaintyHead:
    """Least squares over a subsample of ``per_scene`` values of each scene."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for scene in scenes:
        total = int(scene.valid.sum()) * scene.model.shape[0]
        pick = rng.choice(total, min(per_scene, total), replace=False) if total else None
        x, y = design(scene, pick)
        xs.append(x)
        ys.append(y)
    x, y = np.concatenate(xs).astype(np.float64), np.concatenate(ys).astype(np.float64)
    a = np.c_[x, np.ones(len(x))]
    coef = np.linalg.lstsq(a, y, rcond=None)[0]
    pred = np.exp(a @ coef)
    actual = np.exp(y) - FLOOR
    scale = float(actual.mean() / pred.mean())
    weights = {n: round(float(w), 6) for n, w in zip(feature_names(), coef[:-1])}
    return UncertaintyHead(weights, round(float(coef[-1]), 6), round(scale, 6), info or {})
