"""Where to trust a model's output: the expected absolute error of every output pixel and band.

``sharpen --uncertainty PATH`` runs the model method wrapped in :class:`WithUncertainty`: each
tile is fused as usual, and beside it a second image, in the output's units, predicts
``|output - truth|`` per pixel and band. The predictor is a log-linear head
(:class:`UncertaintyHead`, JSON, fitted by :mod:`ssdiff_cli.training.uncertainty` at reduced
resolution, where the truth is known) over local features of the tile:

* ``corr``: how far the model moved away from its classical base, ``|model - MTF-GLP-FS|``
  (the project's MTF-GLP-FS on the model's cubic upsampling, ``-m mtf-glp-fs -r cubic``);
* ``hp``, ``pgrad``: the PAN's detail (its difference from a Gaussian of ``PAN_DETAIL_SIGMA`` px)
  and its gradient, in PAN standard deviations;
* ``lgrad``: the upsampled band's gradient; ``level``: the band's value.

Each (but ``level``) at the Gaussian scales :data:`SCALES`; band features are in the band's
scene standard deviation, and the prediction is brought back to DN by it, so one head serves
any band count, ratio, bit depth and model. Which signal to use was measured
(``benchmarks/bench_uncertainty.py``, README): the spread of a second diffusion sample added
nothing the model/base disagreement did not already say (and costs a model pass), a small MLP
over the same features no more than the linear head.

Every feature at a pixel depends only on pixels within :data:`REACH` px of it, and the model and
base are exact inside their halos: with the wrapper's halo the uncertainty of a tile does not
depend on where the tile was cut, like the image's.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssdiff_cli.errors import ModelError
from ssdiff_cli.json_files import read_json_object
from ssdiff_cli.methods.base import FusionMethod, SceneContext
from ssdiff_cli.methods.classical import MTFGLP, valid_pixels
from ssdiff_cli.scene import TileData

#: Gaussian scales (px) the features are taken at; 0 is the pixel itself.
SCALES = (0.0, 1.0, 2.0, 4.0)
#: Width (px) of the Gaussian the PAN detail is measured against.
PAN_DETAIL_SIGMA = 2.0
#: Context (px) the features need around a pixel: the widest smoothing (4 sigma at 4 px) on the
#: PAN detail (4 sigma at 2 px), one more for the gradients, rounded up.
REACH = 32
#: Floor under every feature before its logarithm (features are in standard deviations).
FLOOR = 1e-3
#: The head shipped with the package, fitted on the generalist's errors.
SHIPPED_HEAD = Path(__file__).resolve().parents[1] / "models" / "heads" / "uncertainty.json"
HEAD_KIND = "ssdiff-uncertainty-head"


def feature_names() -> list[str]:
    """The head's features, in the order its weights are stored."""
    return [f"{f}{s:g}" for f in ("corr", "hp", "lgrad", "pgrad") for s in SCALES] + ["level"]


def _smooth(img: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage

    return img if sigma == 0 else ndimage.gaussian_filter(img, sigma, mode="nearest", truncate=4.0)


def _gradient(img: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient(img)
    return np.hypot(gy, gx)


def _logs(name: str, img: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    for s in SCALES:
        yield f"{name}{s:g}", np.log(FLOOR + _smooth(img, s))


def log_features(pan: np.ndarray, lms: np.ndarray, model: np.ndarray, base: np.ndarray,
                 band_std: np.ndarray, pan_std: float) -> Iterator[tuple[int | None, str, np.ndarray]]:
    """The head's log-features over a window: yields ``(band, name, log feature (H, W))``,
    ``band`` None for the PAN's features (shared by every band), first. ``pan`` (H, W), ``lms``,
    ``model`` and ``base`` (C, H, W) in DN; ``band_std`` (C,) and ``pan_std`` the scene's
    standard deviations (:func:`scene_scales`). One band's arrays at a time are alive."""
    pan = pan.astype(np.float32, copy=False)
    inv = np.float32(1.0 / max(pan_std, 1e-12))
    yield from ((None, n, a) for n, a in _logs("hp", np.abs(pan - _smooth(pan, PAN_DETAIL_SIGMA)) * inv))
    yield from ((None, n, a) for n, a in _logs("pgrad", _gradient(pan) * inv))
    for b in range(lms.shape[0]):
        binv = np.float32(1.0 / max(float(band_std[b]), 1e-12))
        yield from ((b, n, a) for n, a in _logs("corr", np.abs(model[b] - base[b]) * binv))
        yield from ((b, n, a) for n, a in _logs("lgrad", _gradient(lms[b]) * binv))
        yield b, "level", np.log(FLOOR + np.maximum(lms[b], 0) * binv)


def scene_scales(ms_values: np.ndarray, pan_values: np.ndarray) -> tuple[np.ndarray, float]:
    """Per band and for the PAN, the standard deviation of valid values ``(C, n)`` and ``(n,)``
    on the MS grid (the scene sample's; the PAN averaged onto it): the units the features are
    measured in."""
    band_std = np.maximum(np.asarray(ms_values, np.float64).std(axis=1), 1e-6)
    return band_std.astype(np.float32), float(max(np.asarray(pan_values, np.float64).std(), 1e-6))


@dataclass(frozen=True)
class UncertaintyHead:
    """``log(E|error| / band_std) = bias + weights . log_features``, times ``scale`` (which makes
    the mean prediction the mean error on the data it was fitted on)."""

    weights: dict[str, float]
    bias: float
    scale: float
    info: dict

    def predict(self, pan, lms, model, base, band_std, pan_std) -> np.ndarray:
        """The expected absolute error (C, H, W) float32 in DN (:func:`log_features`)."""
        c = lms.shape[0]
        shared = np.full(pan.shape, self.bias + math.log(self.scale), np.float32)
        out = np.empty((c,) + pan.shape, np.float32)
        band, acc = None, shared
        for b, name, feature in log_features(pan, lms, model, base, band_std, pan_std):
            if b is None:  # the PAN's features come first
                shared += np.float32(self.weights[name]) * feature
                continue
            if b != band:
                if band is not None:
                    out[band] = np.exp(acc) * band_std[band]
                band, acc = b, shared.copy()
            acc += np.float32(self.weights[name]) * feature
        out[band] = np.exp(acc) * band_std[band]
        return out

    def summary(self) -> dict:
        """What the report says of the predictor."""
        return {"predictor": "log-linear head over the model/base disagreement and the local "
                "detail of PAN and MS (ssdiff_cli.methods.uncertainty)",
                **{k: self.info[k] for k in ("fitted_on", "validation") if k in self.info}}

    def to_dict(self) -> dict:
        """The JSON form (:func:`load_head` reads it)."""
        return {"kind": HEAD_KIND, "features": feature_names(),
                "weights": [self.weights[n] for n in feature_names()], "bias": self.bias,
                "scale": self.scale, **self.info}


def load_head(path: str | Path = SHIPPED_HEAD) -> UncertaintyHead:
    """Read a head written by :meth:`UncertaintyHead.to_dict` (bounded JSON, checked)."""
    doc = read_json_object(path, "uncertainty head", ModelError)
    names = feature_names()
    weights, bias, scale = doc.get("weights"), doc.get("bias"), doc.get("scale")
    numbers = (isinstance(weights, list) and len(weights) == len(names)
               and all(isinstance(w, (int, float)) and math.isfinite(w) for w in weights)
               and isinstance(bias, (int, float)) and math.isfinite(bias)
               and isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0)
    if doc.get("kind") != HEAD_KIND or doc.get("features") != names or not numbers:
        raise ModelError(f"{path}: not an ssdiff uncertainty head (kind {HEAD_KIND}, features "
                         f"{', '.join(names)}, finite weights, a positive scale)")
    info = {k: v for k, v in doc.items() if k not in ("kind", "features", "weights", "bias", "scale")}
    return UncertaintyHead(dict(zip(names, map(float, weights))), float(bias), float(scale), info)


class WithUncertainty(FusionMethod):
    """A model method whose tiles carry their expected error: :meth:`fuse` returns ``2C``
    bands, the image (``output``'s, the model's by default) and then its expected absolute
    error (:meth:`UncertaintyHead.predict`, features from the model's own output). ``model``
    is prepared; ``output`` (``--method auto``'s fallback to the base) is prepared too."""

    def __init__(self, model: FusionMethod, head: UncertaintyHead, output: FusionMethod | None = None):
        self.model, self.head, self.output = model, head, output
        self.name = (output or model).name
        self.base = MTFGLP("fs", matched=True)

    def prepare(self, ctx: SceneContext) -> None:
        """Fit the base and the feature scales on the scene sample; take the geometry of the
        methods wrapped, with :data:`REACH` px more halo."""
        self.base.prepare(ctx)
        pan, ms = valid_pixels(ctx)
        self.band_std, self.pan_std = scene_scales(ms, pan)
        inner = [m for m in (self.model, self.output, self.base) if m is not None]
        self.align = math.lcm(*(m.align for m in inner))
        self.halo = -(-(max(m.halo for m in inner) + REACH) // self.align) * self.align
        self.needs_ms = any(m.needs_ms for m in inner)
        self.overlap = (self.output or self.model).overlap
        self.tile_size = (self.output or self.model).tile_size
        self.tile_workers = getattr(self.output or self.model, "tile_workers", None)

    def fuse(self, tile: TileData) -> np.ndarray:
        """The image and its expected error, stacked (2C, H, W)."""
        model = self.model.fuse(tile)
        image = model if self.output is None else self.output.fuse(tile)
        base = self.base.fuse(tile)
        error = self.head.predict(tile.pan, tile.lms, model, base, self.band_std, self.pan_std)
        return np.concatenate([image.astype(np.float32, copy=False), error])

    def describe(self) -> dict:
        """The wrapped method's description."""
        return (self.output or self.model).describe()
