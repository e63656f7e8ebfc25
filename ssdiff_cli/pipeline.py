"""``sharpen``: the whole scene pipeline as one library call.

open pair -> detect sensor -> co-registration check -> prepare method -> plan tiles ->
run (read, fuse, blend) -> write COG. The CLI is a thin layer over :func:`sharpen`.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ssdiff_cli import coreg
from ssdiff_cli.engine import fuse_tile, run_plan
from ssdiff_cli.errors import (
    BadInputError,
    MisregistrationError,
    MisregistrationWarning,
    UsageError,
)
from ssdiff_cli.files import umask_mode
from ssdiff_cli.methods import SceneContext, get_method
from ssdiff_cli.methods.base import FusionMethod
from ssdiff_cli.output import (
    OutputSpec,
    OutputTarget,
    TileWriter,
    check_destination,
    publish_file,
    value_range,
)
from ssdiff_cli.scene import Scene, SceneSample, open_pair, scene_sample
from ssdiff_cli.sensors import Detection, detect_sensor
from ssdiff_cli.tiling import Blender, plan_tiles


def default_workers() -> int:
    """Tile threads by default: one per CPU core (NumPy, GDAL and PyTorch release the GIL)."""
    return max(1, os.cpu_count() or 1)


@dataclass
class SharpenOptions:
    """Everything ``sharpen`` can be told. Sizes are in PAN pixels."""

    method: str = "auto"
    sensor: str | None = None
    extent: str = "intersection"
    tile_size: int = 1024
    overlap: int | None = None  # None: the method's default
    workers: int = field(default_factory=lambda: default_workers())
    dtype: str | None = None
    overwrite: bool = False
    force: bool = False
    warn_px: float = 0.5
    refuse_px: float | None = None  # None: coreg.REFUSE_PX, and an unmeasurable shift only warns
    check_only: bool = False
    compress: str = "deflate"
    quicklook: str | None = None
    method_options: dict = field(default_factory=dict)


@dataclass
class Report:
    """What ``sharpen`` did, for ``--json`` and the terminal summary."""

    pan: str
    ms: list[str]
    sensor: dict
    grid: dict
    ratio: int
    shift: dict
    method: dict
    tiles: int = 0
    tile_size: int = 0
    overlap: int = 0
    halo: int = 0
    seconds: float = 0.0
    megapixels_per_second: float = 0.0
    output: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-friendly form."""
        return asdict(self)


def prepare_scene(pan: str | Path, ms: list, sensor: str | None = None,
                  extent: str = "intersection",
                  with_sample: bool = True) -> tuple[Scene, Detection, SceneSample | None]:
    """Detect the sensor, open the pair and read the decimated scene sample (unless
    ``with_sample`` is false: the sample is then ``None``, and reading it, a pass over the whole
    PAN, is saved)."""
    ms = [ms] if isinstance(ms, (str, Path)) else list(ms)
    for path in [pan, *ms]:
        if not Path(path).exists() and not str(path).startswith("/vsi"):
            raise BadInputError(f"{path}: file does not exist")
    detection = detect_sensor(pan, ms, override=sensor)
    scene = open_pair(pan, ms, extent=extent, expected_bands=detection.preset.n_bands)
    if scene.bands != detection.preset.n_bands:
        raise BadInputError(
            f"{ms[0]}: {scene.bands} MS bands, but sensor {detection.preset.name} has "
            f"{detection.preset.n_bands}"
        )
    if not with_sample:
        return scene, detection, None
    sample = scene_sample(scene.spec)
    if not sample.valid.any():
        raise BadInputError(f"{pan}: no pixel is valid in both the PAN and the MS")
    return scene, detection, sample


def resolve_method(name: str, scene: Scene, detection: Detection) -> str:
    """``auto`` means SSDiff where a shipped model was made for the detected sensor, else MTF-GLP.

    (A model of the same band layout made for another sensor is used only when asked for with
    ``--method ssdiff``: it may not transfer, see models/README.md.)"""
    if name != "auto":
        return name
    from ssdiff_cli.zoo import find_model_for

    card = find_model_for(scene.bands, scene.ratio, detection.preset.key, same_sensor=True)
    return "ssdiff" if card is not None else "mtf-glp"


def check_registration(scene: Scene, sample: SceneSample, detection: Detection) -> coreg.ShiftReport:
    """Measure the MS-to-PAN shift on the scene sample (PAN pixels)."""
    weights = detection.preset.weights()
    intensity = np.tensordot(weights.astype(np.float32), sample.ms, axes=1)
    return coreg.measure_shift(sample.pan, intensity, valid=sample.valid, ratio=sample.factor)


def fill_values(sample: SceneSample) -> tuple[np.ndarray, float]:
    """Per-band MS means and the PAN mean over valid sample pixels (far-from-data fill)."""
    ms_means = sample.ms[:, sample.valid].mean(axis=1).astype(np.float32)
    return ms_means, float(sample.pan[sample.valid].mean())


def output_spec(scene: Scene, detection: Detection, sample: SceneSample, dtype: str | None,
                method: FusionMethod) -> OutputSpec:
    """Output grid, type, range and nodata: the MS type clipped to its valid range by default."""
    spec = scene.spec
    dtype = dtype or spec.ms_dtype
    if np.dtype(dtype).kind not in "uif":
        raise BadInputError(f"unsupported output type {dtype!r}")
    bit_depth = detection.bit_depth if np.dtype(dtype) == np.dtype(spec.ms_dtype) else None
    lo, hi = value_range(dtype, bit_depth)
    if np.dtype(dtype).kind == "f" and float(np.nanmin(sample.ms[:, sample.valid])) >= 0:
        lo = 0.0  # reflectances and radiances are not negative
    nodata = spec.ms_nodata
    if nodata is None and spec.pan_nodata is not None and lo <= spec.pan_nodata <= hi:
        nodata = spec.pan_nodata
    if nodata is None:
        nodata = float("nan") if np.dtype(dtype).kind == "f" else lo
    return OutputSpec(
        transform=spec.out.transform if spec.georeferenced else _identity(),
        width=spec.out.width,
        height=spec.out.height,
        crs=spec.out.crs,
        dtype=dtype,
        bands=spec.bands,
        nodata=nodata,
        band_names=_band_names(scene, detection),
        value_min=lo,
        value_max=hi,
        tags={"SSDIFF_METHOD": method.name, "SENSOR": detection.preset.name},
    )


def _band_names(scene: Scene, detection: Detection) -> list[str]:
    """The MS band descriptions, or the sensor preset's band names where the file has none."""
    preset = detection.preset.band_names
    return [name if not (name.startswith("band ") and len(preset) == scene.bands) else preset[i]
            for i, name in enumerate(scene.band_names)]


def _identity():
    from affine import Affine

    return Affine.identity()


def sharpen(
    pan: str | Path,
    ms: str | Path | list,
    out: str,
    options: SharpenOptions | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    executor=None,
) -> Report:
    """Pansharpen a scene and write a COG.

    Parameters
    ----------
    pan, ms : paths
        The PAN raster and the MS raster (or one single-band file per MS band).
    out : str
        Output path, or ``"-"`` for stdout.
    options : SharpenOptions
    progress : callable, optional
        Called as ``progress(tiles_done, tiles_total, pixels_done)``.
    executor : concurrent.futures.Executor, optional
        Where tile tasks run (a dask ``Client.get_executor()`` for a cluster); threads otherwise.

    Raises
    ------
    BadInputError, GridMismatchError, SensorMismatchError, MisregistrationError, OutputError
    """
    opts = options or SharpenOptions()
    validate_options(opts)
    ms_list = [ms] if isinstance(ms, (str, Path)) else list(ms)
    inputs = tuple(str(p) for p in [pan, *ms_list])
    target = OutputTarget(out, overwrite=opts.overwrite, inputs=inputs)
    if not opts.check_only:
        target.check()
        if opts.quicklook:
            if target.streamed:
                raise UsageError("--quicklook needs -o to be a file (the PNG is made from it)")
            check_destination(opts.quicklook, overwrite=opts.overwrite, inputs=inputs,
                              others=[("output (-o)", out)], role="quicklook")
    if opts.method != "auto":
        get_method(opts.method)  # an unknown name fails before any file is opened
    scene, detection, sample = prepare_scene(pan, ms, opts.sensor, opts.extent)
    name = resolve_method(opts.method, scene, detection)
    method_options = opts.method_options if name == "ssdiff" else {
        k: v for k, v in opts.method_options.items() if k == "weights"}
    method = get_method(name, **method_options)
    shift = check_registration(scene, sample, detection)
    report = Report(
        pan=str(pan),
        ms=[str(p) for p in scene.ms_paths],
        sensor={"name": detection.preset.name, "source": detection.source,
                "reason": detection.reason, "bit_depth": detection.bit_depth},
        grid=scene.spec.out.to_dict(),
        ratio=scene.ratio,
        shift=_shift_dict(shift, opts),
        method={"name": method.name},
        notes=list(scene.notes),
    )
    verdict = report.shift["verdict"]
    if opts.check_only:
        return report
    if verdict == "refuse" and not opts.force:
        raise MisregistrationError(
            f"{scene.ms_paths[0]}: MS is shifted {shift.magnitude:.2f} PAN px from the PAN "
            f"(limit {_refuse_limit(opts)}); co-register the pair or pass --force"
        )
    if verdict == "unmeasured" and not opts.force:
        why = (f"{scene.ms_paths[0]}: the PAN/MS shift cannot be measured with confidence "
               f"({shift.summary()}); PAN and MS may not show the same scene, or one is flipped")
        if opts.refuse_px is not None:
            raise MisregistrationError(why + "; check the pair or pass --force")
        warnings.warn(why, MisregistrationWarning, stacklevel=2)
    if verdict in ("warn", "refuse"):
        warnings.warn(f"{scene.ms_paths[0]}: {shift.summary()}", MisregistrationWarning,
                      stacklevel=2)

    start = time.perf_counter()
    method.prepare(SceneContext(scene=scene, sample=sample, sensor=detection.preset))
    report.method = method.describe()
    overlap = method.overlap if opts.overlap is None else opts.overlap
    grid = scene.spec.out
    plan = plan_tiles(grid.height, grid.width, tile_size=opts.tile_size, overlap=overlap,
                      halo=method.halo, align=math.lcm(method.align, scene.ratio))
    fills = fill_values(sample)
    ospec = output_spec(scene, detection, sample, opts.dtype, method)
    spec = scene.spec

    def task(tile):
        return fuse_tile(spec, method, fills, tile)

    with TileWriter(target, ospec, compress=opts.compress) as writer:
        blender = Blender(plan, spec.bands, writer.write)
        stats = run_plan(plan, task, blender.add, workers=opts.workers, executor=executor,
                         progress=progress)
        if not blender.finished():
            raise RuntimeError("internal error: some tile seams were never completed")
        writer.check_result(input_varies=_bands_vary(sample))
        writer.publish()
    report.tiles = stats.tiles
    report.tile_size = plan.tile_size
    report.overlap = plan.overlap
    report.halo = plan.halo
    report.seconds = round(time.perf_counter() - start, 3)
    report.megapixels_per_second = round(grid.width * grid.height / 1e6 / max(report.seconds, 1e-9), 3)
    report.output = out
    if opts.quicklook and not target.streamed:
        from ssdiff_cli.quality.quicklook import write_quicklook

        write_png(opts.quicklook, opts.overwrite,
                  lambda tmp: write_quicklook(out, tmp, detection.preset.rgb))
        report.notes.append(f"quicklook written to {opts.quicklook}")
    return report


def write_png(dest: str | Path, overwrite: bool, write: Callable[[str], object]) -> None:
    """Write a PNG through a hidden temporary beside ``dest`` (``write(tmp_path)``), then move it
    into place: nothing half-written ever sits at ``dest``."""
    real = Path(os.path.realpath(dest))
    tmp = real.parent / f".{real.stem[:96]}.{os.getpid()}.tmp.png"
    try:
        write(str(tmp))
        umask_mode(tmp)
        publish_file(tmp, dest, overwrite)
    finally:
        tmp.unlink(missing_ok=True)


def validate_options(opts: SharpenOptions) -> None:
    """Refuse option values that make no sense, before any file is opened (usage errors)."""
    for name, value in (("--warn-px", opts.warn_px), ("--refuse-px", _refuse_limit(opts))):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise UsageError(f"{name} {value}: give a shift in PAN pixels, a number >= 0")
    if opts.dtype is not None:
        try:
            kind = np.dtype(opts.dtype).kind
        except TypeError:
            kind = None
        if kind not in ("u", "i", "f"):
            raise UsageError(f"--dtype {opts.dtype}: give an integer or float type "
                             "(uint8, uint16, int16, uint32, int32, float32, float64)")
    weights = opts.method_options.get("weights")
    if weights is not None and not all(math.isfinite(w) for w in weights):
        raise UsageError("-w/--weight: weights must be finite numbers")


def _bands_vary(sample: SceneSample) -> np.ndarray:
    """Per MS band: does it take more than one value over the valid sample pixels?"""
    values = sample.ms[:, sample.valid]
    if values.shape[1] == 0:
        return np.zeros(sample.ms.shape[0], bool)
    return np.nanmax(values, axis=1) > np.nanmin(values, axis=1)


def _refuse_limit(opts: SharpenOptions) -> float:
    return coreg.REFUSE_PX if opts.refuse_px is None else opts.refuse_px


def _shift_dict(shift: coreg.ShiftReport, opts: SharpenOptions) -> dict:
    if not shift.measured:
        return {"dy": None, "dx": None, "magnitude": None, "windows": 0,
                "verdict": "unmeasured", "summary": shift.summary()}
    verdict = coreg.verdict(shift, warn_px=opts.warn_px, refuse_px=_refuse_limit(opts))
    return {
        "dy": round(shift.dy, 3), "dx": round(shift.dx, 3),
        "magnitude": round(shift.magnitude, 3), "windows": shift.n_used,
        "verdict": verdict, "summary": shift.summary(),
    }

