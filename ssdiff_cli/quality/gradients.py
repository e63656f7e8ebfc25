"""Sobel gradients and the streaming SCC (spatial correlation coefficient).

:class:`SccAccumulator` takes row strips top to bottom and keeps the running moments of the
Sobel gradient magnitudes of ``F`` and ``R``: the toolbox's SCC (uncentred, interior pixels) and
its Pearson variant (every pixel with a valid 3x3 neighbourhood). Strips need no overlap: the
accumulator keeps the last two rows of the previous strip.
"""

from __future__ import annotations

import math

import numpy as np

from .masks import as_mask
from .pixels import PIXEL_ROWS


def sobel_dtype(*dtypes) -> type:
    """Working dtype of the Sobel gradients: float32 when every input is a float of at most 32
    bits or an integer of at most 16 bits (whose values float32 holds exactly; the gradients
    then carry float32 rounding only, far below the data's own), float64 otherwise."""
    small = all(
        (np.dtype(d).kind == "f" and np.dtype(d).itemsize <= 4)
        or (np.dtype(d).kind in "uib" and np.dtype(d).itemsize <= 2)
        for d in dtypes
    )
    return np.float32 if small else np.float64


def sobel_rows(buf: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of the inner rows of ``buf`` ``(C, n, W)`` -> ``(C, n-2, W)``.

    Kernel ``[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]`` and its transpose; columns are extended by
    half-sample symmetric reflection (scipy ``mode="reflect"``), rows come from ``buf``."""
    up, mid, dn = buf[:, :-2], buf[:, 1:-1], buf[:, 2:]
    sv = mid * 2.0
    sv += up
    sv += dn
    dv = dn - up
    gx = np.empty_like(sv)
    gx[..., 1:-1] = sv[..., 2:] - sv[..., :-2]
    gx[..., 0] = sv[..., 1] - sv[..., 0] if sv.shape[-1] > 1 else 0.0
    gx[..., -1] = sv[..., -1] - sv[..., -2] if sv.shape[-1] > 1 else 0.0
    gy = dv * 2.0
    gy[..., 1:] += dv[..., :-1]
    gy[..., 0] += dv[..., 0]
    gy[..., :-1] += dv[..., 1:]
    gy[..., -1] += dv[..., -1]
    gx *= gx
    gy *= gy
    gx += gy
    return np.sqrt(gx, out=gx)


class Moments:
    """Running count, means, variances and covariance of two samples (Chan et al. merging)."""

    def __init__(self) -> None:
        self.n = 0
        self.ma = self.mb = self.m2a = self.m2b = self.cab = 0.0

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        """Add paired samples (any float dtype; sums are accumulated in float64)."""
        self.merge(Moments.of(a, b))

    @staticmethod
    def of(a: np.ndarray, b: np.ndarray) -> Moments:
        """The moments of one chunk of paired samples."""
        out = Moments()
        k = a.size
        if k == 0:
            return out
        out.n = k
        out.ma, out.mb = float(a.mean(dtype=np.float64)), float(b.mean(dtype=np.float64))
        ac, bc = np.subtract(a, out.ma, dtype=np.float64), np.subtract(b, out.mb, dtype=np.float64)
        out.m2a, out.m2b = float(np.vecdot(ac, ac)), float(np.vecdot(bc, bc))
        out.cab = float(np.vecdot(ac, bc))
        return out

    def merge(self, other: Moments) -> None:
        """Add another chunk's moments (Chan et al.); merging in a fixed order keeps results
        independent of where the chunks were computed."""
        k = other.n
        if k == 0:
            return
        n = self.n + k
        da, db = other.ma - self.ma, other.mb - self.mb
        w = self.n * k / n
        self.m2a += other.m2a + da * da * w
        self.m2b += other.m2b + db * db * w
        self.cab += other.cab + da * db * w
        self.ma += da * k / n
        self.mb += db * k / n
        self.n = n

    def corr(self) -> float:
        """Pearson correlation of the two samples. Both constant: 1; only one: 0."""
        if self.n == 0:
            return math.nan
        if self.m2a == 0 and self.m2b == 0:
            return 1.0
        if self.m2a == 0 or self.m2b == 0:
            return 0.0
        return self.cab / math.sqrt(self.m2a * self.m2b)

    def cosine(self) -> float:
        """Uncentred normalised inner product ``sum(ab) / sqrt(sum(a^2) sum(b^2))``, from the
        same moments (``sum(ab) = cab + n ma mb``...). Both all zero: 1; one: 0."""
        if self.n == 0:
            return math.nan
        saa = self.m2a + self.n * self.ma * self.ma
        sbb = self.m2b + self.n * self.mb * self.mb
        if saa == 0 and sbb == 0:
            return 1.0
        if saa == 0 or sbb == 0:
            return 0.0
        return (self.cab + self.n * self.ma * self.mb) / math.sqrt(saa * sbb)


def erode_cols(v: np.ndarray) -> np.ndarray:
    """Horizontal 3-erosion of a bool array; outside columns count as valid (reflection)."""
    out = v.copy()
    out[:, 1:] &= v[:, :-1]
    out[:, :-1] &= v[:, 1:]
    return out


class SccAccumulator:
    """SCC of a fused image ``F`` against a reference ``R`` over row strips fed top to bottom
    with :meth:`update`; :meth:`scc` and :meth:`scc_pearson` read the result.

    The Sobel kernel needs each pixel's vertical neighbours: the accumulator keeps the last two
    rows of the previous strip (and finishes the image's last row in :meth:`finish`), so strips
    need no overlap and may have any height; the top and bottom image rows are extended by
    reflection, like the left and right columns. ``every`` holds the moments over all pixels with
    a valid 3x3 neighbourhood (Pearson variant), ``inner`` the same but the image's border rows
    and columns (the toolbox's ``SCC.m``)."""

    def __init__(self) -> None:
        self.every = Moments()
        self.inner = Moments()
        self._ctx = None  # (F row, R row, mask row) above the pending row
        self._pending = None
        self._at_top = True  # no row scored yet: the next inner rows start at the image's first

    def update(self, f: np.ndarray, r: np.ndarray, mask: np.ndarray | None = None, pool=None) -> None:
        """Add a strip ``F, R`` ``(C, s, W)`` with an optional ``(s, W)`` validity mask. The
        gradients are computed in float32 when the data are float32 or 16-bit integers
        (:func:`sobel_dtype`). ``pool`` (an executor) spreads the rows over threads; moments are
        merged in a fixed order, so the result does not depend on it."""
        if self._ctx is not None and self._pending is None:
            raise ValueError("SCC already finished: no strip can follow the last")
        f = np.asarray(f)
        r = np.asarray(r)
        mask = as_mask(mask, f.shape[1:])
        wd = sobel_dtype(f.dtype, r.dtype)
        valid = np.ones(f.shape[1:], bool) if mask is None else mask
        f = np.asarray(f, wd)
        r = np.asarray(r, wd)
        if self._ctx is None:
            parts = [(f[:, :1], r[:, :1], valid[:1])]
        else:
            parts = [self._ctx, self._pending]
        parts.append((f, r, valid))
        self._run(parts, pool, first=self._at_top)

    def finish(self) -> None:
        """Score the image's last row; call after the last strip (later calls do nothing)."""
        if self._pending is not None:
            self._run([self._ctx, self._pending, self._pending], first=self._at_top, at_end=True)
            self._pending = None

    def scc(self) -> float:
        """The toolbox's SCC (:func:`ssdiff_cli.quality.reference.scc`) of the strips fed."""
        self.finish()
        return self.inner.cosine()

    def scc_pearson(self) -> float:
        """The Pearson SCC (:func:`ssdiff_cli.quality.reference.scc_pearson`) of the strips fed."""
        self.finish()
        return self.every.corr()

    def _run(self, parts, pool=None, first: bool = False, at_end: bool = False) -> None:
        """Sobel SCC moments of the inner rows of the rows of ``parts`` stacked (``(F, R, valid)``
        pieces, without copying the big ones); the last two rows are kept for the next call.
        ``first``/``at_end``: the inner rows begin/end with the image's first/last row, which the
        toolbox's SCC leaves out (as it does the first and last columns)."""
        offs = np.cumsum([0] + [p[0].shape[1] for p in parts])
        n = int(offs[-1])
        if n > 2:
            self._at_top = False

        def rows(a0: int, a1: int):
            got = [
                (p[0][:, lo - o : hi - o], p[1][:, lo - o : hi - o], p[2][lo - o : hi - o])
                for p, o in zip(parts, offs[:-1])
                for lo, hi in [(max(a0, int(o)), min(a1, int(o) + p[0].shape[1]))]
                if lo < hi
            ]
            if len(got) == 1:
                return got[0]
            return tuple(np.concatenate([g[k] for g in got], axis=1 if k < 2 else 0) for k in range(3))

        last = rows(n - 2, n)
        self._ctx = tuple(np.array(a[:, :1] if k < 2 else a[:1]) for k, a in enumerate(last))
        self._pending = tuple(np.array(a[:, 1:] if k < 2 else a[1:]) for k, a in enumerate(last))

        # gradient magnitudes a few rows at a time (temporaries stay in the cache)
        def chunk(y0: int) -> tuple[Moments, Moments]:
            y1 = min(n, y0 + PIXEL_ROWS + 2)
            fb, rb, vb = rows(y0, y1)
            gf = sobel_rows(fb)
            gr = sobel_rows(rb)
            v = erode_cols(vb[:-2] & vb[1:-1] & vb[2:])
            inner = v.copy()
            inner[:, [0, -1]] = False
            if first and y0 == 0:
                inner[0] = False
            if at_end and y1 == n:
                inner[-1] = False
            if v.all():
                every = Moments.of(gf.ravel(), gr.ravel())
            else:
                every = Moments.of(gf[:, v].ravel(), gr[:, v].ravel())
            return every, Moments.of(gf[:, inner].ravel(), gr[:, inner].ravel())

        run = pool.map if pool is not None else map
        for every, inner in run(chunk, range(0, n - 2, PIXEL_ROWS)):
            self.every.merge(every)
            self.inner.merge(inner)



def sobel_zero_padded(img: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of ``img`` ``(C, H, W)`` as MATLAB's ``imfilter`` gives it with
    ``fspecial('sobel')`` and its transpose (correlation, **zero padding**, same size):
    ``sqrt(gy^2 + gx^2)``, float64. Pixels on the border see zeros outside the image, so their
    gradients carry the image's own level (what the toolbox's SCC counts)."""
    x = np.pad(np.asarray(img, np.float64), ((0, 0), (1, 1), (1, 1)))
    up, mid, dn = x[:, :-2], x[:, 1:-1], x[:, 2:]
    rows = up + 2.0 * mid + dn  # vertical smoothing for the column gradient
    diff = up - dn  # fspecial('sobel') = [1 2 1; 0 0 0; -1 -2 -1]: row above minus row below
    gy = diff[:, :, :-2] + 2.0 * diff[:, :, 1:-1] + diff[:, :, 2:]
    gx = rows[:, :, :-2] - rows[:, :, 2:]
    return np.sqrt(gx * gx + gy * gy)
