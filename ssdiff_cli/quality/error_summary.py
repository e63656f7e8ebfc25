"""A scene summary of an expected-error image written tile by tile: per band the mean and the
99th percentile over valid pixels, in constant memory (a log-spaced histogram per band)."""

from __future__ import annotations

import numpy as np

#: Histogram edges, in units of the band's scene standard deviation: 1e-5 to 1e3, 200 bins a
#: decade (a percentile is located to within 1.2 %).
_EDGES = np.logspace(-5, 3, 8 * 200 + 1)


class ErrorSummary:
    """Accumulates per band the sum, count and histogram of what :meth:`add` is given."""

    def __init__(self, band_std: np.ndarray):
        self.band_std = np.asarray(band_std, np.float64)
        bands = len(self.band_std)
        self.total = np.zeros(bands)
        self.count = 0
        self.hist = np.zeros((bands, len(_EDGES) + 1), np.int64)  # under, bins..., over

    def add(self, errors: np.ndarray, valid: np.ndarray) -> None:
        """Count the valid pixels of ``errors`` (C, h, w)."""
        values = errors[:, valid].astype(np.float64)
        if not values.shape[1]:
            return
        self.count += values.shape[1]
        self.total += values.sum(axis=1)
        for b, band in enumerate(values):
            idx = np.searchsorted(_EDGES, band / self.band_std[b])
            self.hist[b] += np.bincount(idx, minlength=self.hist.shape[1])

    def percentile(self, q: float) -> np.ndarray:
        """Per band, the ``q`` th percentile (upper edge of the bin it falls in), in DN."""
        out = np.full(len(self.band_std), np.nan)
        for b, h in enumerate(self.hist):
            if self.count:
                k = int(np.searchsorted(np.cumsum(h), q / 100.0 * self.count))
                out[b] = _EDGES[min(k, len(_EDGES) - 1)] * self.band_std[b]
        return out

    def bands(self, names: list[str], scale: tuple[float, float] | None = None) -> list[dict]:
        """Per band: name, mean and 99th percentile, in the output's units (``scale``'s gain)."""
        gain = 1.0 if scale is None else abs(float(scale[0]))
        mean = self.total / max(self.count, 1) * gain
        p99 = self.percentile(99.0) * gain
        return [{"band": name, "mean": float(f"{m:.6g}"), "p99": float(f"{p:.6g}")}
                for name, m, p in zip(names, mean, p99)]
