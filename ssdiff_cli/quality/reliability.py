"""How well a predicted error ranks and sizes the actual one (``--uncertainty``'s validation):
the rank correlation pooled over pixels and bands, and the actual error by decile of the
predicted error."""

from __future__ import annotations

import numpy as np


def _pooled(predicted: np.ndarray, actual: np.ndarray, valid: np.ndarray):
    """The valid pixels of every band of (C, H, W) arrays, flattened (finite pairs only)."""
    p = predicted[:, valid].ravel().astype(np.float64)
    a = actual[:, valid].ravel().astype(np.float64)
    keep = np.isfinite(p) & np.isfinite(a)
    return p[keep], a[keep]


def rank_correlation(predicted: np.ndarray, actual: np.ndarray, valid: np.ndarray) -> float:
    """Spearman's rank correlation of predicted and actual error, pooled over the valid pixels
    of every band (ties get their mean rank); NaN with fewer than 3 values."""
    from scipy import stats

    p, a = _pooled(predicted, actual, valid)
    if p.size < 3:
        return float("nan")
    return float(stats.spearmanr(p, a).statistic)


def deciles(predicted: np.ndarray, actual: np.ndarray, valid: np.ndarray, bins: int = 10
            ) -> list[dict]:
    """Pixels (and bands) sorted by predicted error into ``bins`` equal groups: per group its
    mean predicted and mean actual error (a reliable predictor's two columns rise together and
    agree)."""
    p, a = _pooled(predicted, actual, valid)
    order = np.argsort(p, kind="stable")
    out = []
    for k, idx in enumerate(np.array_split(order, bins)):
        if idx.size:
            out.append({"decile": k + 1, "predicted": float(p[idx].mean()),
                        "actual": float(a[idx].mean()), "pixels": int(idx.size)})
    return out


def monotone(rows: list[dict], key: str = "actual") -> bool:
    """Whether ``key`` rises (never falls) from one decile to the next."""
    values = [r[key] for r in rows]
    return all(b >= a for a, b in zip(values, values[1:]))
