"""``evaluate``: score fusion methods, or any fused image, with the field's standard indices.

Three ways in, one table out:

- :func:`evaluate_reduced`: the Wald protocol. The pair is degraded by the ratio with the
  sensor's MTF-matched filters, each method fuses the degraded pair *through the same pipeline as
  ``sharpen``* (files, tiling, COG), and the result is scored against the original MS (SAM,
  ERGAS, Q2n, SCC, Q, PSNR).
- :func:`evaluate_full`: each method fuses the pair at full resolution and is scored without a
  reference (D_lambda Khan, D_s, HQNR, and the classic QNR).
- :func:`evaluate_images`: score an image made by any tool, against a reference
  (``reference``) or without one (``pan`` + ``ms``).
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from ssdiff_cli.errors import BadInputError
from ssdiff_cli.pipeline import SharpenOptions, prepare_scene, sharpen
from ssdiff_cli.quality import indices, wald
from ssdiff_cli.scene import Scene, read_arrays

#: Which way each index improves, for marking the best value of a column.
HIGHER_IS_BETTER = {"Q2n": True, "SCC": True, "Q_mean": True, "PSNR_mean": True, "HQNR": True,
                    "QNR": True, "SAM": False, "ERGAS": False, "D_lambda": False, "D_s": False,
                    "QNR_D_lambda": False, "QNR_D_s": False, "seconds": False}
REDUCED_COLUMNS = ("SAM", "ERGAS", "Q2n", "SCC", "Q_mean", "PSNR_mean")
FULL_COLUMNS = ("D_lambda", "D_s", "HQNR", "QNR")


@dataclass
class Evaluation:
    """Scores per method (or image), the protocol used, and what was compared."""

    protocol: str
    columns: tuple[str, ...]
    rows: dict[str, dict] = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    def best(self, column: str) -> str | None:
        """Name of the row with the best value in ``column``."""
        values = {k: v[column] for k, v in self.rows.items()
                  if isinstance(v.get(column), int | float) and np.isfinite(v[column])}
        if not values:
            return None
        pick = max if HIGHER_IS_BETTER.get(column, True) else min
        return pick(values, key=values.get)

    def to_dict(self) -> dict:
        """JSON-friendly form, with the best row of each column."""
        return {"protocol": self.protocol, "rows": self.rows, "details": self.details,
                "best": {c: self.best(c) for c in self.columns}}


def _with_baseline(methods: list[str]) -> list[str]:
    """The methods to run: plain upsampling (the baseline, also the lms) first, then the rest."""
    return ["upsample", *[m for m in methods if m != "upsample"]]


def _fuse(pan, ms, out: Path, method: str, sensor, base: SharpenOptions, progress):
    """Fuse through ``sharpen`` into a float32 file for scoring (misregistration not refused)."""
    opts = SharpenOptions(**{**base.__dict__, "method": method, "sensor": sensor, "force": True,
                             "overwrite": True, "dtype": "float32", "quicklook": None})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sharpen(pan, ms, str(out), opts, progress=progress)


def _write(path: Path, data: np.ndarray, transform: Affine, crs, nodata, names=None, tags=None):
    data = data if data.ndim == 3 else data[None]
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype="float32", transform=transform, nodata=nodata, tiled=True,
                   blockxsize=256, blockysize=256, photometric="MINISBLACK")
    if crs:
        profile["crs"] = crs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data.astype(np.float32))
            if names:
                for i, n in enumerate(names, start=1):
                    dst.set_band_description(i, n)
            if tags:
                dst.update_tags(**tags)


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with rasterio.open(path) as ds:
        data = ds.read().astype(np.float32)
        valid = ds.read_masks(1) > 0
    return data, valid & np.all(np.isfinite(data), axis=0)


def evaluate_reduced(pan, ms, methods: list[str], sensor: str | None = None,
                     options: SharpenOptions | None = None, progress: Callable | None = None,
                     keep: dict | None = None) -> Evaluation:
    """Wald protocol: degrade, fuse the degraded pair with each method via ``sharpen``, score.

    ``keep``, when given, receives the arrays used (reference, lms and each fused image) for
    quicklooks.
    """
    scene, detection, _ = prepare_scene(pan, ms, sensor)
    preset, r = detection.preset, scene.ratio
    pan_a, pan_valid, ms_a, ms_valid = read_arrays(scene.spec)
    pair = wald.degrade_pair(pan_a, ms_a, r, preset.ms_gnyq, preset.pan_gnyq,
                             pan_valid=pan_valid, ms_valid=ms_valid)
    ref = pair.reference
    ref_valid = pair.reference_valid
    if scene.spec.georeferenced:
        pan_t = scene.spec.coarse.transform
        ms_t = pan_t @ Affine.scale(r)
    else:  # no georeferencing: grids related by their sizes, as for the original pair
        pan_t = ms_t = Affine.identity()
    crs = scene.spec.out.crs
    data_range = float(2**detection.bit_depth - 1) if detection.bit_depth else None
    ev = Evaluation("reduced", REDUCED_COLUMNS + ("seconds",))
    ev.details = {"sensor": preset.name, "ratio": r, "reference_shape": list(ref.shape),
                  "pan": str(pan), "ms": [str(p) for p in scene.ms_paths]}
    with tempfile.TemporaryDirectory(prefix="ssdiff-eval-") as tmp:
        tmp = Path(tmp)
        lr_pan, lr_ms = tmp / "pan_lr.tif", tmp / "ms_lr.tif"
        tags = {"SENSOR": preset.name}
        nodata = -1e30
        _write(lr_pan, np.where(pair.pan_valid, pair.pan, nodata), pan_t, crs, nodata, tags=tags)
        _write(lr_ms, np.where(pair.ms_valid, pair.ms, nodata), ms_t, crs, nodata,
               names=scene.band_names, tags=tags)
        base = options or SharpenOptions()
        for method in _with_baseline(methods):
            out = tmp / f"{method}.tif"
            report = _fuse(lr_pan, lr_ms, out, method, preset.key, base, progress)
            fused, fused_valid = _read(out)
            h, w = min(fused.shape[1], ref.shape[1]), min(fused.shape[2], ref.shape[2])
            fused, mask = fused[:, :h, :w], fused_valid[:h, :w]
            if ref_valid is not None:
                mask = mask & ref_valid[:h, :w]
            scores = indices.reduced_resolution(fused, ref[:, :h, :w], r, mask=mask,
                                                data_range=data_range)
            scores["seconds"] = report.seconds
            name = "upsample (no fusion)" if method == "upsample" else method
            if method == "upsample" and "upsample" not in methods:
                name = "upsample (baseline)"
            ev.rows[name] = _plain(scores)
            if keep is not None:
                keep.setdefault("fused", {})[name] = fused
                keep["reference"] = ref[:, :h, :w]
                keep["mask"] = mask
                keep["rgb"] = preset.rgb
    return ev


def evaluate_full(pan, ms, methods: list[str], sensor: str | None = None,
                  options: SharpenOptions | None = None, progress: Callable | None = None,
                  keep: dict | None = None) -> Evaluation:
    """Fuse at full resolution with each method via ``sharpen`` and score without a reference."""
    scene, detection, _ = prepare_scene(pan, ms, sensor)
    ev = Evaluation("full", FULL_COLUMNS + ("seconds",))
    ev.details = {"sensor": detection.preset.name, "ratio": scene.ratio, "pan": str(pan),
                  "ms": [str(p) for p in scene.ms_paths]}
    base = options or SharpenOptions()
    with tempfile.TemporaryDirectory(prefix="ssdiff-eval-") as tmp:
        fused_paths = {}
        seconds = {}
        for method in _with_baseline(methods):
            out = Path(tmp) / f"{method}.tif"
            report = _fuse(pan, ms, out, method, sensor, base, progress)
            fused_paths[method], seconds[method] = out, report.seconds
        lms, lms_valid = _read(fused_paths["upsample"])
        arrays = read_arrays(scene.spec)
        for method in methods:
            scores = score_full(fused_paths[method], scene, detection, lms=(lms, lms_valid),
                                arrays=arrays)
            scores["seconds"] = seconds[method]
            ev.rows[method] = scores
            if keep is not None:
                keep.setdefault("fused", {})[method] = _read(fused_paths[method])[0]
        if keep is not None:
            keep["reference"] = lms
            keep["mask"] = lms_valid
            keep["rgb"] = detection.preset.rgb
    return ev


def score_full(fused_path: Path, scene: Scene, detection, lms=None, arrays=None) -> dict:
    """Full-resolution indices of a fused image on the scene's output grid; ``arrays`` is
    :func:`ssdiff_cli.scene.read_arrays` of the scene, read here when not given."""
    fused, fused_valid = _read(fused_path)
    pan_a, pan_valid, ms_a, ms_valid = arrays if arrays is not None else read_arrays(scene.spec)
    if fused.shape[1:] != pan_a.shape or fused.shape[0] != scene.bands:
        raise BadInputError(
            f"{fused_path}: {fused.shape[0]} bands of {fused.shape[2]}x{fused.shape[1]} px, "
            f"expected {scene.bands} bands of {pan_a.shape[1]}x{pan_a.shape[0]} on the PAN grid"
        )
    if lms is None:
        raise ValueError("lms (the MS upsampled onto the PAN grid) is required")
    lms_a, lms_valid = lms
    r = scene.ratio
    h, w = (pan_a.shape[0] // r) * r, (pan_a.shape[1] // r) * r
    hc, wc = h // r, w // r
    mask = fused_valid & pan_valid & lms_valid
    preset = detection.preset
    scores = indices.full_resolution(
        fused[:, :h, :w], np.nan_to_num(pan_a[:h, :w]), lms_a[:, :h, :w],
        np.nan_to_num(ms_a[:, :hc, :wc]), r, preset.ms_gnyq, preset.pan_gnyq, mask=mask[:h, :w],
    )
    return _plain(scores)


def evaluate_images(fused: list[Path], reference: Path | None = None, pan: Path | None = None,
                    ms: list[Path] | None = None, sensor: str | None = None) -> Evaluation:
    """Score images made by any tool: against ``reference``, or without one (``pan`` + ``ms``)."""
    if reference is not None:
        ref, ref_valid = _read_checked(reference)
        ev = Evaluation("reference", REDUCED_COLUMNS)
        ev.details = {"reference": str(reference)}
        ratio = _ratio_guess(reference)
        for path in fused:
            data, valid = _read_checked(path)
            if data.shape != ref.shape:
                raise BadInputError(
                    f"{path}: shape {data.shape} differs from the reference's {ref.shape}"
                )
            ev.rows[path.name] = _plain(indices.reduced_resolution(
                data, ref, ratio, mask=valid & ref_valid))
        return ev
    if pan is None or not ms:
        raise BadInputError("give --reference, or --pan and --ms, to score an image")
    scene, detection, _ = prepare_scene(pan, ms, sensor)
    ev = Evaluation("full", FULL_COLUMNS)
    ev.details = {"pan": str(pan), "ms": [str(p) for p in ms], "sensor": detection.preset.name}
    with tempfile.TemporaryDirectory(prefix="ssdiff-eval-") as tmp:
        out = Path(tmp) / "lms.tif"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sharpen(pan, ms, str(out), SharpenOptions(method="upsample", sensor=sensor,
                                                      force=True, dtype="float32"))
        lms = _read(out)
        arrays = read_arrays(scene.spec)
        for path in fused:
            _read_checked(path)
            ev.rows[path.name] = score_full(path, scene, detection, lms=lms, arrays=arrays)
    return ev


def _read_checked(path: Path):
    if not Path(path).exists():
        raise BadInputError(f"{path}: file does not exist")
    try:
        return _read(path)
    except rasterio.errors.RasterioIOError:
        raise BadInputError(f"{path}: not a raster GDAL can read") from None


def _ratio_guess(reference: Path) -> int:
    """ERGAS needs the ratio; reference images carry no PAN, so 4 unless tagged RATIO."""
    with rasterio.open(reference) as ds:
        return int(ds.tags().get("RATIO", 4))


def _plain(scores: dict) -> dict:
    out = {}
    for k, v in scores.items():
        if isinstance(v, np.ndarray | list | tuple):
            out[k] = [float(x) for x in np.asarray(v).ravel()]
        else:
            out[k] = float(v)
    return out


def write_evaluation_quicklook(keep: dict, png: str | Path, protocol: str) -> Path:
    """The quicklook panel of an evaluation: composites with one stretch, and error maps."""
    from ssdiff_cli.quality.quicklook import comparison_panel

    return comparison_panel(keep["fused"], keep["reference"], keep["mask"], keep["rgb"], png,
                            with_errors=protocol == "reduced")
