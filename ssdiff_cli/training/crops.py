"""Training pairs from real scenes by the Wald protocol, cut into random crops.

Each scene (a PAN + MS pair) is degraded **once**, whole, in memory: PAN ``(H, W)`` and MS
``(C, h, w)`` are low-passed with Gaussians matched to the sensor's MTF gains at Nyquist and
decimated by the ratio (:func:`ssdiff_cli.quality.wald.degrade_pair`). The reduced pair is the
network's input, the original MS its target. A scene of a few thousand pixels a side costs a few
hundred MB at most this way (float32, one copy of each array); larger scenes should be cut into
pieces first.

Grids below ("reduced grid") are the reduced PAN grid, which is also the original MS grid:

* ``pan``  ``(H', W')``   reduced PAN
* ``lms``  ``(C, H', W')`` reduced MS upsampled by the ratio (Keys cubic, area-centred)
* ``ms``   ``(C, H'/r, W'/r)`` reduced MS
* ``gt``   ``(C, H', W')`` the original MS (the reference)
* ``valid`` ``(H', W')`` True where every input and the reference are valid

Spatial hold-out: the right ``holdout`` fraction of columns (rounded up to whole multiples of
``HOLDOUT_MULTIPLE`` px so that Q2n's 32 px blocks fit) is never sampled, and a guard band as
wide as the degradation filter's reach (:func:`ssdiff_cli.filters.support`, 24 px at ratio 4)
separates it from the training area, so that no training input was filtered from hold-out
pixels. Crops are aligned to the ratio (so that the MS crop is whole pixels), lie entirely in the
training area, and touch no invalid pixel. Normalisation divides everything by one number per
scene: the reduced PAN's 99th percentile (``norm="scene"``, the default; the reduced PAN is what
the network sees when a reduced pair is fused, and at full resolution inference takes the same
percentile of the full PAN), or ``2**bit_depth - 1`` (``norm="bitdepth"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ssdiff_cli import filters
from ssdiff_cli.errors import BadInputError
from ssdiff_cli.quality import wald

#: Hold-out widths are rounded up to a multiple of this (Q2n blocks are 32 px).
HOLDOUT_MULTIPLE = 32

#: Terms of the shared scenes (``/work/shared/data/README.md``), keyed by folder name.
KNOWN_TERMS = {
    "wv2_grip": "GRIP group, University Federico II of Naples (PNN sample images): non-profit use "
                "only, keep the notices, cite the authors",
    "ge1_grip": "GRIP group, University Federico II of Naples (PNN sample images): non-profit use "
                "only, keep the notices, cite the authors",
    "wv3_cristianics": "Maxar WorldView-3 via CristianICS/gdal-pansharpening (GPL-3.0 repository, "
                       "imagery licence not stated): tests and benchmarks; do not redistribute",
    "landsat8_satellite": "Landsat-8 OLI (R package satellite): public domain",
}


@dataclass
class TrainScene:
    """A scene ready for training: reduced pair, reference, masks, hold-out (see module doc)."""

    name: str
    sensor: str
    band_names: list[str]
    ratio: int
    pan: np.ndarray
    lms: np.ndarray
    ms: np.ndarray
    gt: np.ndarray
    valid: np.ndarray
    scale: float
    train_end: int
    holdout_start: int
    bit_depth: int | None = None
    ms_gnyq: tuple = ()
    pan_gnyq: float = 0.0
    terms: str = ""
    paths: dict = field(default_factory=dict)

    @property
    def bands(self) -> int:
        return self.gt.shape[0]

    def holdout(self) -> dict:
        """Arrays of the hold-out strip (columns ``holdout_start:``) in normalised units."""
        x0, r = self.holdout_start, self.ratio
        return {"pan": self.pan[:, :, x0:], "lms": self.lms[:, :, x0:], "ms": self.ms[:, :, x0 // r:],
                "gt": self.gt[:, :, x0:], "valid": self.valid[:, x0:]}

    def describe(self) -> dict:
        """JSON-friendly summary for the model card."""
        h, w = self.valid.shape
        return {"name": self.name, "sensor": self.sensor, "pan": self.paths.get("pan"),
                "ms": self.paths.get("ms"), "terms": self.terms, "reduced_size": [h, w],
                "scale": self.scale, "train_columns": [0, self.train_end],
                "holdout_columns": [self.holdout_start, w]}


def scene_terms(pan_path: str | Path) -> str:
    """Terms of a shared scene, from its folder name; "unknown" for anything else."""
    folder = Path(pan_path).resolve().parent.name
    return KNOWN_TERMS.get(folder, "unknown: state the licence of your imagery")


def parse_scene_arg(arg: str) -> tuple[Path, Path]:
    """``PAN,MS`` or a folder holding ``pan.tif`` and ``ms.tif``."""
    if "," in arg:
        pan, ms = (Path(p.strip()) for p in arg.split(",", 1))
    else:
        folder = Path(arg)
        if not folder.is_dir():
            raise BadInputError(f"{arg}: a scene is PAN,MS or a folder holding pan.tif and ms.tif")
        pan, ms = folder / "pan.tif", folder / "ms.tif"
    for p in (pan, ms):
        if not p.exists():
            raise BadInputError(f"{p}: file does not exist")
    return pan, ms


def read_scene_arrays(pan_path, ms_path, sensor: str | None = None):
    """Whole-scene PAN, coarse MS, their masks and the detection (through the pipeline's reader,
    so nodata, alpha and georeferencing are handled as in ``sharpen``)."""
    from ssdiff_cli.scene import prepare_scene, read_arrays

    scene, detection, _ = prepare_scene(pan_path, [ms_path], sensor)
    pan, pan_valid, ms, ms_valid = read_arrays(scene.spec)
    return scene, detection, pan, pan_valid, ms, ms_valid


def holdout_columns(width: int, fraction: float, ratio: int) -> int:
    """First hold-out column on the reduced grid: the right ``fraction`` of ``width``, rounded
    up to a multiple of ``HOLDOUT_MULTIPLE`` px (0 -> no hold-out: returns ``width``)."""
    if fraction <= 0:
        return width
    unit = math.lcm(HOLDOUT_MULTIPLE, ratio)
    cols = int(math.ceil(fraction * width / unit)) * unit
    return max(0, width - cols)


def build_scene(pan_path, ms_path, sensor: str | None = None, mtf_gains=None,
                pan_gain: float | None = None, norm: str = "scene", percentile: float = 99.0,
                holdout: float = 0.2) -> TrainScene:
    """Read, degrade (Wald), normalise and mask one scene (see the module docstring).

    ``mtf_gains`` (one per band or one for all) and ``pan_gain`` override the preset's GNyq.
    """
    scene, det, pan, pan_valid, ms, ms_valid = read_scene_arrays(pan_path, ms_path, sensor)
    preset, r = det.preset, scene.ratio
    gains = preset.ms_gnyq if mtf_gains is None else tuple(np.broadcast_to(
        np.asarray(mtf_gains, float), (scene.bands,)))
    pgain = preset.pan_gnyq if pan_gain is None else float(pan_gain)
    bits = det.bit_depth or preset.bit_depth
    return scene_from_arrays(
        pan, ms, r, gains, pgain, pan_valid=pan_valid, ms_valid=ms_valid, norm=norm,
        percentile=percentile, holdout=holdout, bit_depth=bits,
        name=Path(pan_path).resolve().parent.name, sensor=preset.key,
        band_names=list(scene.band_names or preset.band_names), terms=scene_terms(pan_path),
        paths={"pan": str(pan_path), "ms": str(ms_path)})


def scene_from_arrays(pan, ms, ratio: int, ms_gnyq, pan_gnyq: float, pan_valid=None, ms_valid=None,
                      norm: str = "scene", percentile: float = 99.0, holdout: float = 0.2,
                      bit_depth: int | None = None, scale: float | None = None, name: str = "scene",
                      sensor: str = "generic", band_names=None, terms: str = "",
                      paths: dict | None = None, pan_phase=(0.0, 0.0),
                      ms_phase=(0.0, 0.0)) -> TrainScene:
    """:func:`build_scene` on arrays: PAN ``(H, W)`` and MS ``(C, h, w)`` in digital numbers,
    masks True where valid; ``scale`` (when given) overrides the normalisation; ``pan_phase`` /
    ``ms_phase`` are the decimation phases of :func:`ssdiff_cli.quality.wald.degrade_pair`."""
    r = ratio
    pan = np.asarray(pan, np.float32)
    ms = np.asarray(ms, np.float32)
    if pan_valid is None:
        pan_valid = np.isfinite(pan)
    if ms_valid is None:
        ms_valid = np.isfinite(ms).all(0)
    gains = tuple(np.broadcast_to(np.asarray(ms_gnyq, float), (ms.shape[0],)))
    pair = wald.degrade_pair(pan, ms, r, gains, pan_gnyq, pan_valid=pan_valid, ms_valid=ms_valid,
                             pan_phase=pan_phase, ms_phase=ms_phase)
    # crop to whole MS pixels of the reduced pair
    hm, wm = pair.ms.shape[-2:]
    H, W = hm * r, wm * r
    gt = np.ascontiguousarray(pair.reference[:, :H, :W], dtype=np.float32)
    pan_lr = pair.pan[:H, :W]
    ms_lr = pair.ms
    lms = wald.upsample_ms(ms_lr, r)
    valid = pair.pan_valid[:H, :W] & pair.reference_valid[:H, :W]
    mv = pair.ms_valid
    if not mv.all():  # the cubic interpolator reaches 2 coarse pixels
        mv = filters.erode(mv, 2)
    valid &= np.repeat(np.repeat(mv, r, axis=0), r, axis=1)
    valid &= np.isfinite(gt).all(0) & np.isfinite(lms).all(0) & np.isfinite(pan_lr)
    if scale is not None:
        scale = float(scale)
    elif norm == "scene":
        values = pan_lr[valid]
        if values.size == 0:
            raise BadInputError(f"{name}: no valid pixel left after degradation")
        scale = float(max(np.percentile(values, percentile), 1e-6))
    elif norm in ("bitdepth", "fixed"):
        if not bit_depth:
            raise BadInputError(f"{name}: bit depth unknown; use --norm scene")
        scale = float(2**bit_depth - 1)
    else:
        raise BadInputError(f"unknown normalisation {norm!r}; choose scene or bitdepth")
    start = holdout_columns(W, holdout, r)
    guard = filters.support(r)
    train_end = max(0, start - guard) if start < W else W
    inv = 1.0 / scale

    def clean(a):
        return np.nan_to_num(a * inv, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    return TrainScene(
        name=name, sensor=sensor, band_names=list(band_names or [f"b{i + 1}" for i in range(ms.shape[0])]),
        ratio=r, pan=clean(pan_lr)[None], lms=clean(lms), ms=clean(ms_lr), gt=clean(gt), valid=valid,
        scale=scale, train_end=train_end, holdout_start=start, bit_depth=bit_depth,
        ms_gnyq=tuple(float(g) for g in gains), pan_gnyq=float(pan_gnyq), terms=terms,
        paths=paths or {},
    )


def crop_origins(valid: np.ndarray, crop: int, ratio: int, col_end: int) -> np.ndarray:
    """``(N, 2)`` (row, col) origins, multiples of ``ratio``, of every ``crop``-sized window lying
    in columns ``[0, col_end)`` whose pixels are all valid."""
    h, w = valid.shape
    w = min(w, col_end)
    if h < crop or w < crop:
        return np.zeros((0, 2), np.int64)
    v = valid[:, :w].astype(np.int64)
    ii = np.zeros((h + 1, w + 1), np.int64)
    ii[1:, 1:] = v.cumsum(0).cumsum(1)
    ys = np.arange(0, h - crop + 1, ratio)
    xs = np.arange(0, w - crop + 1, ratio)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    total = ii[yy + crop, xx + crop] - ii[yy, xx + crop] - ii[yy + crop, xx] + ii[yy, xx]
    ok = total == crop * crop
    return np.stack([yy[ok], xx[ok]], axis=1)


def augment(arrays: list[np.ndarray], k: int, flip: bool) -> list[np.ndarray]:
    """The same right-angle rotation (``k`` quarter turns) and horizontal flip on ``(..., H, W)``
    arrays (PAN-grid and MS-grid crops stay aligned because crops are ratio-aligned)."""
    out = []
    for a in arrays:
        if flip:
            a = a[..., ::-1]
        out.append(np.ascontiguousarray(np.rot90(a, k, axes=(-2, -1))))
    return out


class CropSampler:
    """Random batches of augmented crops from a list of :class:`TrainScene`.

    A scene is drawn with probability proportional to the square root of its number of valid
    crop positions (big scenes dominate less than with area weights), then a position uniformly.
    """

    def __init__(self, scenes: list[TrainScene], crop: int = 32, seed: int = 0) -> None:
        if not scenes:
            raise BadInputError("no training scene given")
        bands = {s.bands for s in scenes}
        ratios = {s.ratio for s in scenes}
        if len(bands) > 1 or len(ratios) > 1:
            raise BadInputError(f"scenes disagree on band count {sorted(bands)} or ratio {sorted(ratios)}")
        r = scenes[0].ratio
        if crop % r:
            raise BadInputError(f"crop size {crop} must be a multiple of the ratio {r}")
        self.scenes, self.crop, self.ratio = scenes, crop, r
        self.origins = [crop_origins(s.valid, crop, r, s.train_end) for s in scenes]
        counts = np.array([len(o) for o in self.origins], float)
        for s, n in zip(scenes, counts):
            if n == 0:
                where = ", ".join(s.paths.values()) if s.paths else s.name
                raise BadInputError(
                    f"{where}: no valid {crop}x{crop} crop left of the hold-out (the reduced "
                    f"scene is {s.valid.shape[1]}x{s.valid.shape[0]} px, {s.train_end} columns "
                    "for training); give a larger scene, or a smaller --crop or --holdout")
        w = np.sqrt(counts)
        self.weights = w / w.sum()
        self.rng = np.random.default_rng(seed)

    def sample(self, batch: int) -> dict[str, np.ndarray]:
        """``{"pan" (B,1,c,c), "lms" (B,C,c,c), "ms" (B,C,c/r,c/r), "gt" (B,C,c,c)}`` float32."""
        c, r = self.crop, self.ratio
        out = {"pan": [], "lms": [], "ms": [], "gt": []}
        which = self.rng.choice(len(self.scenes), size=batch, p=self.weights)
        for i in which:
            s = self.scenes[i]
            y, x = self.origins[i][self.rng.integers(len(self.origins[i]))]
            k, flip = int(self.rng.integers(4)), bool(self.rng.integers(2))
            parts = augment([s.pan[:, y:y + c, x:x + c], s.lms[:, y:y + c, x:x + c],
                             s.ms[:, y // r:(y + c) // r, x // r:(x + c) // r],
                             s.gt[:, y:y + c, x:x + c]], k, flip)
            for key, a in zip(("pan", "lms", "ms", "gt"), parts):
                out[key].append(a)
        return {k: np.stack(v) for k, v in out.items()}

    def get_state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
