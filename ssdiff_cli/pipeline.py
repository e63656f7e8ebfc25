"""``sharpen``: the whole scene pipeline as one library call.

open pair -> detect sensor -> co-registration check -> prepare method -> plan tiles ->
run (read, fuse, blend) -> write COG. The CLI is a thin layer over :func:`sharpen`.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ssdiff_cli import coreg
from ssdiff_cli.engine import fuse_tile, run_plan
from ssdiff_cli.errors import (
    MisregistrationError,
    MisregistrationWarning,
    SsdiffWarning,
    UsageError,
)
from ssdiff_cli.files import umask_mode
from ssdiff_cli.gdal_formats import OUTPUT_DTYPES
from ssdiff_cli.gdal_names import split_band_suffix
from ssdiff_cli.methods import MODEL_METHODS, SceneContext, get_method
from ssdiff_cli.methods.base import FusionMethod
from ssdiff_cli.output import (
    OutputTarget,
    TileWriter,
    check_destination,
    output_spec,
    publish_file,
)
from ssdiff_cli.output.spec import error_spec
from ssdiff_cli.quality.error_summary import ErrorSummary
from ssdiff_cli.scene import Scene, SceneSample, fill_values, prepare_scene
from ssdiff_cli.scene.registration import measure_registration, measure_scene
from ssdiff_cli.sensors import Detection
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
    tile_size: int | None = None  # None: the method's default
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
    adapt_objective: str = "full"
    #: ``--bit-depth``: the MS bit depth, overriding the preset and the data check.
    bit_depth: int | None = None
    #: ``--scale``: map the MS value range linearly onto the output type's range.
    scale: bool = False
    #: ``-b``: 1-based MS bands to use, in order (also ``ms.tif,band=...``).
    bands: list[int] | None = None
    #: ``--nodata``: the inputs' nodata value (a number, ``nan`` or ``none``).
    nodata: float | str | None = None
    #: ``-r``: the MS upsampling kernel (classical methods and upsample); None: the method's own
    #: (``default_resampling``: interp23tap for MTF-GLP and MTF-GLP-FS, cubic otherwise).
    resampling: str | None = None
    #: ``--coregister``: measure where the MS lies on the PAN grid (always) and move it there:
    #: ``auto`` when the measurement is confident, ``on`` whenever measured, ``off`` never.
    coregister: str = "auto"
    #: ``-of`` and ``--co``: output format and GDAL creation options.
    output_format: str | None = None
    creation_options: dict = field(default_factory=dict)
    #: ``--uncertainty``: also write the expected absolute error of every output pixel here (a
    #: model method only; :mod:`ssdiff_cli.methods.uncertainty`).
    uncertainty: str | None = None


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
    #: ``--uncertainty``: the file, the predictor, and per band the mean and 99th percentile.
    uncertainty: dict | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-friendly form."""
        return asdict(self)


def resolve_method(name: str, scene: Scene, detection: Detection) -> str:
    """``auto`` means SSDiff where a shipped model accepts the scene (the generalist takes 1-16
    bands at ratios 2-8), else MTF-GLP. With ``auto`` the model also checks itself on the scene
    and may fall back to its classical base (:func:`apply_guard`). The model is the one
    ``--method ssdiff`` picks (:func:`ssdiff_cli.methods.ssdiff.default_model`)."""
    if name != "auto":
        return name
    from ssdiff_cli.methods.ssdiff import default_model

    return "ssdiff" if default_model(scene, detection.preset) is not None else "mtf-glp"


#: What an adaptation that did not pass its check leaves, by what it adapted.
UNDONE = {"weights": "the model is used as shipped", "prior": "the prior is used as sampled"}


def adapt_scene(method: FusionMethod, scene: Scene, sample: SceneSample, opts: SharpenOptions,
                report: Report, progress: Callable | None = None, sensor=None) -> None:
    """``--adapt N``: fine-tune the prepared SSDiff model on this scene before fusing. A
    per-sensor model trains L-BAF adapters on reduced-resolution crops
    (:func:`ssdiff_cli.training.scene_adapt.adapt_per_sensor`, MTF gains of ``sensor``, the
    detected preset) and the method runs the merged network; a generalist model is fine-tuned in
    place, a KSDiff model's scene prior z optimised
    (:func:`ssdiff_cli.training.scene_adapt.adapt_generalist`, objective
    ``opts.adapt_objective``). What it did goes into the report."""
    steps = int(getattr(method, "adapt", 0) or 0)
    if steps <= 0 or getattr(method, "net", None) is None:
        return
    from ssdiff_cli.training import scene_adapt

    fusion = method.generalist
    start = time.perf_counter()
    step_progress = None if progress is None else lambda s, n, loss: progress(s, n, 0)
    if fusion is None:
        method.use_network(scene_adapt.adapt_per_sensor(
            method.net, method.card, scene, sensor, steps, seed=method.seed, device=method.device,
            progress=step_progress))
        report.method["adaptation"] = {"steps": steps, "objective": "reduced (L-BAF adapters)",
                                       "seconds": round(time.perf_counter() - start, 2)}
        return
    try:
        result = scene_adapt.adapt_generalist(
            fusion, scene.spec, fill_values(sample), steps, objective=opts.adapt_objective,
            seed=method.seed, progress=step_progress)
    except ValueError as exc:  # a scene smaller than one adaptation crop
        warnings.warn(f"{scene.pan_path}: --adapt skipped: {exc}", SsdiffWarning, stacklevel=2)
        report.method["adaptation"] = {"steps": 0, "skipped": str(exc)}
        return
    report.method["adaptation"] = {
        "steps": steps, "objective": opts.adapt_objective,
        "seconds": round(time.perf_counter() - start, 2), **result.summary()}
    if not result.kept:
        warnings.warn(f"{scene.pan_path}: --adapt did not lower the error at reduced resolution "
                      f"({result.check_before:.4f} -> {result.check_after:.4f}): "
                      + UNDONE[result.adapted], SsdiffWarning, stacklevel=2)


def calibrate_scene(method: FusionMethod, scene: Scene, sample: SceneSample, report: Report) -> None:
    """Scale a generalist model's correction per band to what the scene's own reduced
    resolution supports (:func:`ssdiff_cli.methods.generalist.calibrate`), after any
    adaptation; what it fitted goes into the report under ``method.calibration``."""
    fusion = getattr(method, "generalist", None)
    if fusion is None or not getattr(method, "calibrate", False):
        return
    from ssdiff_cli.methods.generalist import calibrate

    start = time.perf_counter()
    result = calibrate(fusion, scene.spec, fill_values(sample), method.chunk, method.network_lock)
    report.method["calibration"] = {**result, "seconds": round(time.perf_counter() - start, 2)}


def apply_guard(method: FusionMethod, scene: Scene, sample: SceneSample, detection: Detection,
                report: Report) -> FusionMethod:
    """``--method auto``'s self-check of a generalist model: when its full-resolution HQNR on a
    central window is below its classical base's, fuse with the base instead (said on stderr and
    in the report). Returns the method to run."""
    fusion = getattr(method, "generalist", None)
    if fusion is None:
        return method
    from ssdiff_cli.methods.generalist import guard_check

    guard = guard_check(fusion, scene.spec, fill_values(sample), detection.preset, method.chunk,
                        method.network_lock)
    report.method["guard"] = guard
    if guard.get("unmeasured"):
        warnings.warn(f"{scene.ms_paths[0]}: the model could not be checked on this scene "
                      f"({guard['unmeasured']}); using it unchecked", SsdiffWarning, stacklevel=2)
    if not guard["fallback"]:
        return method
    warnings.warn(
        f"{scene.ms_paths[0]}: the model scored below its classical base on this scene (HQNR "
        f"{guard['model']['HQNR']:.4f} < {guard['base']['HQNR']:.4f}); fusing with MTF-GLP-FS "
        "instead", SsdiffWarning, stacklevel=2)
    report.method = {**fusion.glp.describe(), "name": "mtf-glp-fs", "fallback_from": report.method,
                     "guard": guard}
    return fusion.glp


def _tile_workers(method: FusionMethod, opts: SharpenOptions, executor) -> int:
    """Tile threads: ``opts.workers``, at most the method's ``tile_workers`` on local threads (a
    compiled network takes every core and fuses a tile so fast that a second thread preparing
    the next one only adds its memory: measured no faster, 120 MB more on 8 bands)."""
    cap = getattr(method, "tile_workers", None)
    return opts.workers if executor is not None or not cap else min(opts.workers, cap)


def _report_compile(method: FusionMethod, report: Report) -> None:
    """Put what ``--compile`` did (known once the network has run) into the report, under the
    model's entry also when the guard fell back to the base."""
    compile_report = getattr(method, "compile_report", None)
    info = compile_report() if compile_report else None
    if info is not None:
        report.method.get("fallback_from", report.method)["compile"] = info






def register_scene(pan, ms, opts: SharpenOptions, scene: Scene, detection: Detection,
                   sample: SceneSample):
    """Measure where the MS lies on the PAN grid and, as ``opts.coregister`` says, reopen the
    pair with the MS moved there (the output grid unchanged). Returns ``(scene, detection,
    sample, registration, coarse)``: the scene to fuse, the refined measurement (its ``applied``,
    ``reason`` and ``residual`` set) and the scene sample's phase correlation."""
    registration, coarse = measure_scene(scene, sample, detection.preset)
    registration.reason = _registration_decision(registration, opts.coregister)
    if registration.applied:
        scene, detection, sample = prepare_scene(
            pan, ms, opts.sensor, opts.extent, bands=opts.bands, nodata=opts.nodata,
            resampling=opts.resampling or "cubic", bit_depth=opts.bit_depth,
            ms_shift=(registration.dy, registration.dx))
        registration.residual = measure_registration(scene.spec, detection.preset.ms_gnyq)
    return scene, detection, sample, registration, coarse


def registration_note(registration: coreg.Registration, mode: str) -> str | None:
    """The report's note on what registration did (None with ``--coregister off``)."""
    if registration.applied:
        return (f"registration: measured {registration.summary()}; MS moved by "
                f"{-registration.dy:+.3f} rows, {-registration.dx:+.3f} columns "
                f"({registration.reason}); now {registration.residual.summary()}")
    if mode != "off":
        return f"registration: MS left where the grids put it ({registration.reason})"
    return None


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
        Called as ``progress(tiles_done, tiles_total, pixels_done)``, from the calling thread;
        ``tiles_done`` counts the share done of tiles part-way (see :mod:`ssdiff_cli.engine`).
    executor : concurrent.futures.Executor, optional
        Where tile tasks run (a dask ``Client.get_executor()`` for a cluster); threads otherwise.

    Raises
    ------
    BadInputError, GridMismatchError, SensorMismatchError, MisregistrationError, OutputError
    """
    opts = options or SharpenOptions()
    validate_options(opts)
    ms_list = [ms] if isinstance(ms, (str, Path)) else list(ms)
    # the files behind the inputs (a ",band=" suffix names bands of a file, not another file)
    inputs = tuple(str(split_band_suffix(p)[0]) for p in [pan, *ms_list])
    target = OutputTarget(out, overwrite=opts.overwrite, format=opts.output_format, inputs=inputs)
    if not opts.check_only:
        target.check()
        if opts.quicklook:
            if target.streamed:
                raise UsageError("--quicklook needs -o to be a file (the PNG is made from it)")
            check_destination(opts.quicklook, overwrite=opts.overwrite, inputs=inputs,
                              others=[("output (-o)", out)], role="quicklook")
        if opts.uncertainty:
            check_destination(opts.uncertainty, overwrite=opts.overwrite, inputs=inputs,
                              others=[("output (-o)", out), ("quicklook", opts.quicklook)],
                              role="uncertainty")
    if opts.method != "auto":
        get_method(opts.method)  # an unknown name fails before any file is opened
    scene, detection, sample = prepare_scene(
        pan, ms, opts.sensor, opts.extent, bands=opts.bands, nodata=opts.nodata,
        resampling=opts.resampling or "cubic", bit_depth=opts.bit_depth)
    name = resolve_method(opts.method, scene, detection)
    if name in MODEL_METHODS and opts.resampling not in (None, "cubic"):
        raise UsageError(f"-r {opts.resampling}: the SSDiff model was trained on cubic upsampling; "
                         "-r applies to the classical methods (choose one with -m)")
    if opts.uncertainty and name not in MODEL_METHODS:
        why = ("no shipped model takes this scene" if opts.method == "auto"
               else f"{name} is a classical method")
        raise UsageError(f"--uncertainty predicts a model's error and {why}; choose "
                         f"-m {' or -m '.join(MODEL_METHODS)}")
    method_options = opts.method_options if name in MODEL_METHODS else {
        k: v for k, v in opts.method_options.items() if k == "weights"}
    method = get_method(name, **method_options)
    scene, detection, sample, registration, coarse = register_scene(
        pan, ms, opts, scene, detection, sample)
    coreg_note = registration_note(registration, opts.coregister)
    kernel = opts.resampling or getattr(method, "default_resampling", "cubic")
    if scene.spec.resampling != kernel:  # -r not given: the method's own kernel
        scene.spec = replace(scene.spec, resampling=kernel)
    report = Report(
        pan=str(pan),
        ms=[str(p) for p in scene.ms_paths],
        sensor={"name": detection.preset.name, "source": detection.source,
                "reason": detection.reason, "bit_depth": detection.bit_depth},
        grid=scene.spec.out.to_dict(),
        ratio=scene.ratio,
        shift=_shift_dict(registration, coarse, opts),
        method={"name": method.name},
        notes=[*scene.notes, *(n for n in detection.notes if "--bit-depth" in n
                                or "values reach" in n), *([coreg_note] if coreg_note else [])],
    )
    verdict = report.shift["verdict"]
    shift = _judged(registration, coarse)
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
    adapt_scene(method, scene, sample, opts, report, progress, sensor=detection.preset)
    calibrate_scene(method, scene, sample, report)
    prepared = method
    if opts.method == "auto":
        method = apply_guard(method, scene, sample, detection, report)
    if opts.uncertainty:
        method = with_uncertainty(prepared, method, scene, sample, detection, report)
    overlap = method.overlap if opts.overlap is None else opts.overlap
    grid = scene.spec.out
    tile_size = opts.tile_size or method.tile_size
    plan = plan_tiles(grid.height, grid.width, tile_size=tile_size, overlap=overlap,
                      halo=method.halo, align=math.lcm(method.align, scene.ratio))
    fills = fill_values(sample)
    ospec = output_spec(scene, detection, sample, opts.dtype, method, scale=opts.scale,
                        to_stdout=target.streamed, notes=report.notes)
    spec = scene.spec
    bands_vary = _bands_vary(sample)
    del sample  # the decimated scene (up to 1024² px, all bands) is not needed past this point

    def task(tile):
        return fuse_tile(spec, method, fills, tile)

    with contextlib.ExitStack() as files:
        writer = files.enter_context(TileWriter(target, ospec, compress=opts.compress,
                                                creation_options=opts.creation_options))
        write, errors = writer.write, None
        if opts.uncertainty:
            errors = files.enter_context(TileWriter(
                OutputTarget(opts.uncertainty, overwrite=opts.overwrite, format="COG",
                             inputs=inputs), error_spec(ospec), compress=opts.compress))
            summary = ErrorSummary(method.band_std)
            write = _split_writes(spec.bands, writer.write, errors.write, summary)
        blender = Blender(plan, spec.bands * (2 if errors else 1), write)
        stats = run_plan(plan, task, blender.add, workers=_tile_workers(method, opts, executor),
                         executor=executor,
                         progress=progress)
        if not blender.finished():
            raise RuntimeError("internal error: some tile seams were never completed")
        writer.check_result(input_varies=bands_vary)
        if errors:
            errors.check_result()
        writer.publish()
        if errors:
            errors.publish()
            report.uncertainty = {"path": opts.uncertainty, **method.head.summary(),
                                  "bands": summary.bands(ospec.band_names, ospec.scale)}
    _report_compile(prepared, report)
    if writer.reader_closed_early:
        report.notes.append("the reader closed the pipe before the end; the rest was not sent")
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
                  lambda tmp: write_quicklook(out, tmp, detection.preset.rgb,
                                              uncertainty=opts.uncertainty))
        report.notes.append(f"quicklook written to {opts.quicklook}")
    return report


def with_uncertainty(model: FusionMethod, output: FusionMethod, scene: Scene,
                     sample: SceneSample, detection: Detection, report: Report) -> FusionMethod:
    """``--uncertainty``: the prepared ``model`` wrapped so that each tile also carries its
    expected error (:class:`ssdiff_cli.methods.uncertainty.WithUncertainty`); the image is
    ``output``'s (the model's, or the base ``--method auto`` fell back to)."""
    from ssdiff_cli.methods.uncertainty import WithUncertainty, load_head

    wrapped = WithUncertainty(model, load_head(), output=None if output is model else output)
    wrapped.prepare(SceneContext(scene=scene, sample=sample, sensor=detection.preset))
    if output is not model:
        report.notes.append("uncertainty: the features come from the model the guard set "
                            "aside, the image is its base's")
    return wrapped


def _split_writes(bands: int, write_image, write_error, summary):
    """A blender's writer for tiles that carry the image and then its expected error."""
    def write(row, col, data, valid):
        write_image(row, col, data[:bands], valid)
        write_error(row, col, data[bands:], valid)
        summary.add(data[bands:], valid)
    return write


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
                             f"({', '.join(OUTPUT_DTYPES)})")
    if isinstance(opts.coregister, bool):  # the library's older boolean form
        opts.coregister = "on" if opts.coregister else "off"
    if opts.coregister not in COREGISTER_MODES:
        raise UsageError(f"--coregister {opts.coregister}: choose one of {', '.join(COREGISTER_MODES)}")
    if opts.uncertainty == "-":
        raise UsageError("--uncertainty -: give a file path (stdout can carry only the image)")
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


#: A measured displacement below this (PAN px) is left alone: under the measurement's precision.
MIN_CORRECTION_PX = 0.01
COREGISTER_MODES = ("auto", "on", "off")


def _registration_decision(reg: coreg.Registration, mode: str) -> str:
    """Decide whether to move the MS to where it was measured (sets ``reg.applied``); returns
    why, in words, for the report."""
    if not reg.measured:
        return "not measurable: " + reg.summary().partition("(")[2].rstrip(")")
    if mode == "off":
        return "--coregister off"
    if reg.magnitude < MIN_CORRECTION_PX:
        return f"below {MIN_CORRECTION_PX} PAN px"
    if mode == "auto" and not reg.confident:
        return (f"not confident: +-{reg.stderr:.3f} PAN px > {coreg.CONFIDENT_STDERR} "
                "(--coregister on applies it anyway)")
    reg.applied = True
    return "--coregister on" if mode == "on" else f"confident (+-{reg.stderr:.3f} PAN px)"


def _judged(reg: coreg.Registration, coarse: coreg.ShiftReport):
    """What --warn-px/--refuse-px judge: the displacement left after any correction, else the
    measured one (the scene sample's phase correlation when the refinement measured nothing)."""
    if reg.applied and reg.residual is not None and reg.residual.measured:
        return reg.residual
    return reg if reg.measured else coarse


def _shift_dict(reg: coreg.Registration, coarse: coreg.ShiftReport, opts: SharpenOptions) -> dict:
    """The report's ``shift``: the measured displacement (``dy``, ``dx``, PAN px, where the MS
    content lay relative to the PAN), its precision, whether it was corrected and why, what was
    left (``residual``), and the verdict on what is left."""
    judged = _judged(reg, coarse)
    out = reg.to_dict() if reg.measured else {
        **reg.to_dict(), **({"dy": round(coarse.dy, 3), "dx": round(coarse.dx, 3),
                             "magnitude": round(coarse.magnitude, 3)} if coarse.measured else {})}
    out["coregister"] = opts.coregister
    if not judged.measured:
        out.update(verdict="unmeasured", summary=reg.summary())
        return out
    out["verdict"] = coreg.verdict(judged, warn_px=opts.warn_px, refuse_px=_refuse_limit(opts))
    out["summary"] = judged.summary() + (" after correction" if judged is reg.residual else "")
    return out

