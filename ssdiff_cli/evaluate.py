"""``evaluate``: score fusion methods, or any fused image, with the field's standard indices.

Three ways in, one table out:

- :func:`evaluate_reduced`: the Wald protocol. The pair is degraded by the ratio with the
  sensor's MTF-matched filters, each method fuses the degraded pair *through the same pipeline as
  ``sharpen``* (files, tiling, COG), and the result is scored against the original MS (SAM,
  ERGAS, Q2n, SCC, Q, PSNR). ``protocol="ssdiff"`` degrades and scores as ssdiff always has;
  ``protocol="toolbox"`` exactly as the pansharpening toolbox does (:data:`PROTOCOLS`).
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
from rasterio.enums import Resampling
from rasterio.windows import Window

from ssdiff_cli.errors import BadInputError, UsageError
from ssdiff_cli.pipeline import SharpenOptions, register_scene, sharpen, validate_options
from ssdiff_cli.quality import indices, wald
from ssdiff_cli.quality.reduced import toolbox_reduced_resolution
from ssdiff_cli.scene import (
    Scene,
    fill_values,
    prepare_scene,
    read_tile,
    reader_for,
)
from ssdiff_cli.scene.grid import LOCAL_CRS
from ssdiff_cli.scene.registration import reference_arrays
from ssdiff_cli.sensors import generic_preset, get_preset

#: Which way each index improves, for marking the best value of a column.
HIGHER_IS_BETTER = {"Q2n": True, "SCC": True, "Q_mean": True, "PSNR_mean": True, "HQNR": True,
                    "QNR": True, "SAM": False, "ERGAS": False, "D_lambda": False, "D_s": False,
                    "QNR_D_lambda": False, "QNR_D_s": False, "seconds": False}
REDUCED_COLUMNS = ("SAM", "ERGAS", "Q2n", "SCC", "Q_mean", "PSNR_mean")
FULL_COLUMNS = ("D_lambda", "D_s", "HQNR", "QNR")

#: Reduced-resolution protocols (``evaluate --protocol``), and what each does.
PROTOCOLS = {
    "ssdiff": "MTF-matched Gaussians evaluated at each block's centre, then decimation; the "
              "degraded pair keeps the scene's georeferencing; every valid pixel scored, SCC over "
              "the interior with reflected edges, Q2n on whole 32x32 blocks",
    "toolbox": "the pansharpening toolbox's (reference section 9): genMTF's Kaiser-windowed FIR "
               "(41x41, edges replicated) for the MS and MTF_PAN's for the PAN, nearest "
               "decimation keeping samples ratio/2 + ratio*k; the degraded pair handed to each "
               "method without georeferencing; both images cut by 21 px (dim_cut), Q2n on "
               "mirror-padded 32x32 blocks of uint16 values, SCC.m's zero-padded Sobel, Q on "
               "sliding 32x32 windows",
}

#: How the bench may georeference a toolbox-degraded pair instead of handing it bare (never
#: what the toolbox does; for measuring a method apart from its phase finding): ``samples``
#: puts each degraded sample where the degradation took it from (the PAN's half an original
#: PAN pixel, the MS's half an original MS pixel past their blocks' centres: the MS then lies
#: ``0.5 - 0.5/ratio`` PAN px from a block-centred reading); ``reference`` keeps the PAN on the
#: reference's grid and puts the MS where the reference has it (0.5 PAN px: the convention of
#: the toolbox's own interp23tap).
PLACEMENTS = ("samples", "reference")


@dataclass
class Evaluation:
    """Scores per method (or image), the protocol used, and what was compared; for fused
    methods ``details["ran"]`` holds what each one ran (``sharpen --json``'s ``method``: the
    model, its calibration, whether ``auto``'s guard fell back) and ``details["registration"]``
    where each found the MS and whether it moved it (``sharpen --json``'s ``shift``)."""

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
    """A whole raster as float32 with its validity (see :func:`_read_window`)."""
    with rasterio.open(path) as ds:
        return _read_window(ds, None)


def _preset_name(preset) -> str | None:
    """The name ``--sensor`` knows the preset by, or None for a generic or derived preset (the
    degraded pair's SENSOR tag then lets detection find it again)."""
    from ssdiff_cli.sensors import get_preset

    if preset.generic:
        return None
    try:
        return preset.key if get_preset(preset.key) is preset else None
    except BadInputError:
        return None


def _degraded_grids(scene: Scene, protocol: str, placement: str | None):
    """Transforms of the degraded PAN and MS and their CRS: the scene's own (coarsened) for the
    ``ssdiff`` protocol, none for the ``toolbox`` one (its pairs carry no georeferencing) unless
    the bench asks for a ``placement`` (:data:`PLACEMENTS`)."""
    r, spec = scene.ratio, scene.spec
    if protocol == "toolbox":
        if placement is None:
            return Affine.identity(), Affine.identity(), None
        if placement not in PLACEMENTS:
            raise UsageError(f"placement {placement!r}: choose one of {', '.join(PLACEMENTS)}")
        t = spec.out.transform if spec.georeferenced else Affine.identity()
        pan_shift = 0.5 if placement == "samples" else 0.0  # original PAN px
        pan_t = t @ Affine.translation(pan_shift, pan_shift) @ Affine.scale(r)
        ms_t = t @ Affine.translation(0.5 * r, 0.5 * r) @ Affine.scale(r * r)
        return pan_t, ms_t, spec.out.crs or LOCAL_CRS
    if spec.georeferenced:
        pan_t = spec.coarse.transform
        return pan_t, pan_t @ Affine.scale(r), spec.out.crs
    # no georeferencing: grids related by their sizes, as for the original pair
    return Affine.identity(), Affine.identity(), spec.out.crs


def _score_reduced(protocol: str, fused, ref, ratio: int, mask, data_range, name: str) -> dict:
    """The reduced-resolution indices under ``protocol`` (the toolbox's conventions, or ssdiff's
    streamed scorer); a reference too small for the toolbox's border cut is a one-line error."""
    if protocol != "toolbox":
        return indices.reduced_resolution(fused, ref, ratio, mask=mask, data_range=data_range)
    try:
        return toolbox_reduced_resolution(fused, ref, ratio, mask=mask, data_range=data_range)
    except ValueError as exc:
        raise BadInputError(f"{name}: {exc}") from None


def _registered(pan, ms, sensor: str | None, options: SharpenOptions | None):
    """The pair (and its scene sample) opened with the MS where ``options.coregister`` puts it,
    as ``sharpen`` would (:func:`ssdiff_cli.pipeline.register_scene`). The reference a Wald
    protocol degrades, and the MS the full-resolution indices compare with, then lie on the PAN
    grid as an MS placed by its geotransform does: a pair and its copy without georeferencing
    score alike."""
    opts = SharpenOptions(sensor=sensor, coregister=(options or SharpenOptions()).coregister)
    validate_options(opts)
    scene, detection, sample = prepare_scene(pan, ms, sensor)
    scene, detection, sample, registration, _ = register_scene(pan, ms, opts, scene, detection,
                                                               sample)
    return scene, detection, sample, registration


@dataclass
class ReducedPairFiles:
    """A pair degraded by its ratio and written for ``sharpen`` (:func:`reduced_pair_files`)."""

    pan: Path
    ms: Path
    pair: wald.ReducedPair
    scene: Scene
    preset: object
    registration: object
    #: ``2**bit_depth - 1`` where the bit depth is known (the indices' data range), else None.
    data_range: float | None
    #: The name ``--sensor`` should give ``sharpen`` on the degraded pair (None: detect it).
    sensor: str | None


def reduced_pair_files(pan, ms, folder: Path, sensor: str | None = None,
                       options: SharpenOptions | None = None, protocol: str = "ssdiff",
                       placement: str | None = None) -> ReducedPairFiles:
    """Degrade the pair as ``protocol`` says (:func:`evaluate_reduced`) and write it into
    ``folder`` as ``pan_lr.tif`` and ``ms_lr.tif`` (float32, nodata -1e30, the SENSOR tag): what
    a method fuses at reduced resolution; the reference is ``pair.reference``."""
    if protocol not in PROTOCOLS:
        raise UsageError(f"--protocol {protocol}: choose one of {', '.join(PROTOCOLS)}")
    scene, detection, _, registration = _registered(pan, ms, sensor, options)
    preset, r = detection.preset, scene.ratio
    try:  # the MS file's own pixels are the reference; the PAN is brought onto them
        pan_a, pan_valid, ms_a, ms_valid = reference_arrays(scene.spec)
    except ValueError as exc:
        raise BadInputError(f"{scene.ms_paths[0]}: {exc}") from None
    degrade = wald.degrade_pair_toolbox if protocol == "toolbox" else wald.degrade_pair
    pair = degrade(pan_a, ms_a, r, preset.ms_gnyq, preset.pan_gnyq,
                   pan_valid=pan_valid, ms_valid=ms_valid)
    pan_t, ms_t, crs = _degraded_grids(scene, protocol, placement)
    lr_pan, lr_ms = folder / "pan_lr.tif", folder / "ms_lr.tif"
    tags = {"SENSOR": preset.name}
    nodata = -1e30
    _write(lr_pan, np.where(pair.pan_valid, pair.pan, nodata), pan_t, crs, nodata, tags=tags)
    _write(lr_ms, np.where(pair.ms_valid, pair.ms, nodata), ms_t, crs, nodata,
           names=scene.band_names, tags=tags)
    data_range = float(2**detection.bit_depth - 1) if detection.bit_depth else None
    return ReducedPairFiles(lr_pan, lr_ms, pair, scene, preset, registration, data_range,
                            _preset_name(preset))


def evaluate_reduced(pan, ms, methods: list[str], sensor: str | None = None,
                     options: SharpenOptions | None = None, progress: Callable | None = None,
                     keep: dict | None = None, protocol: str = "ssdiff",
                     placement: str | None = None) -> Evaluation:
    """Wald protocol: degrade, fuse the degraded pair with each method via ``sharpen``, score.

    ``protocol`` (:data:`PROTOCOLS`): ``"ssdiff"`` degrades with
    :func:`ssdiff_cli.quality.wald.degrade_pair` and scores with
    :func:`ssdiff_cli.quality.indices.reduced_resolution`, the degraded pair keeping the scene's
    georeferencing. ``"toolbox"`` follows the toolbox's reduced-resolution demo: the pair degraded
    by :func:`ssdiff_cli.quality.wald.degrade_pair_toolbox` and handed to each method as the
    toolbox hands it to an outside method, without georeferencing (a method must find the MS/PAN
    phase itself; ``options``, e.g. registration settings, pass through), then scored by
    :func:`ssdiff_cli.quality.reduced.toolbox_reduced_resolution` (``flag_cut_bounds = 1``,
    ``dim_cut = 21``, ``Qblocks_size = 32``, ``thvalues = 0``). Masks (the toolbox has none)
    exclude invalid pixels under both. ``placement`` (toolbox only, for benches: never what the
    toolbox does) georeferences the degraded pair instead (:data:`PLACEMENTS`).

    ``keep``, when given, receives the arrays used (reference, lms and each fused image) for
    quicklooks, and the degraded pair (``"degraded"``, a :class:`ssdiff_cli.quality.wald.ReducedPair`).
    """
    with tempfile.TemporaryDirectory(prefix="ssdiff-eval-") as folder:
        tmp = Path(folder)
        rp = reduced_pair_files(pan, ms, tmp, sensor, options, protocol, placement)
        scene, pair, preset = rp.scene, rp.pair, rp.preset
        ref, ref_valid, r = pair.reference, pair.reference_valid, pair.ratio
        ev = Evaluation("reduced", REDUCED_COLUMNS + ("seconds",))
        ev.details = {"sensor": preset.name, "ratio": r, "reference_shape": list(ref.shape),
                      "pan": str(pan), "ms": [str(p) for p in scene.ms_paths],
                      "protocol": {"name": protocol, "conventions": PROTOCOLS[protocol],
                                   **({"placement": placement} if placement else {})},
                      "mtf_gnyq": {"ms": [float(g) for g in preset.ms_gnyq],
                                   "pan": float(preset.pan_gnyq)},
                      "reference_registration": rp.registration.to_dict()}
        base = options or SharpenOptions()
        for method in _with_baseline(methods):
            out = tmp / f"{method}.tif"
            report = _fuse(rp.pan, rp.ms, out, method, rp.sensor, base, progress)
            fused, fused_valid = _read(out)
            h, w = min(fused.shape[1], ref.shape[1]), min(fused.shape[2], ref.shape[2])
            fused, mask = fused[:, :h, :w], fused_valid[:h, :w]
            if ref_valid is not None:
                mask = mask & ref_valid[:h, :w]
            scores = _score_reduced(protocol, fused, ref[:, :h, :w], r, mask, rp.data_range,
                                    str(scene.ms_paths[0]))
            scores["seconds"] = report.seconds
            name = "upsample (no fusion)" if method == "upsample" else method
            if method == "upsample" and "upsample" not in methods:
                name = "upsample (baseline)"
            ev.rows[name] = _plain(scores)
            ev.details.setdefault("ran", {})[name] = report.method
            ev.details.setdefault("registration", {})[name] = report.shift
            if keep is not None:
                keep.setdefault("fused", {})[name] = fused
                keep["reference"] = ref[:, :h, :w]
                keep["mask"] = mask
                keep["rgb"] = preset.rgb
                keep["degraded"] = pair
    return ev


def evaluate_full(pan, ms, methods: list[str], sensor: str | None = None,
                  options: SharpenOptions | None = None, progress: Callable | None = None,
                  keep: dict | None = None) -> Evaluation:
    """Fuse at full resolution with each method via ``sharpen`` and score without a reference
    (against the MS where registration put it, as the methods saw it)."""
    scene, detection, sample, registration = _registered(pan, ms, sensor, options)
    ev = Evaluation("full", FULL_COLUMNS + ("seconds",))
    ev.details = {"sensor": detection.preset.name, "ratio": scene.ratio, "pan": str(pan),
                  "ms": [str(p) for p in scene.ms_paths],
                  "reference_registration": registration.to_dict()}
    base = options or SharpenOptions()
    fills = fill_values(sample)
    with tempfile.TemporaryDirectory(prefix="ssdiff-eval-") as tmp:
        fused = {}
        for method in methods:
            fused[method] = out = Path(tmp) / f"{method}.tif"
            report = _fuse(pan, ms, out, method, sensor, base, progress)
            scores = score_full(out, scene, detection, fills)
            scores["seconds"] = report.seconds
            ev.rows[method] = scores
            ev.details.setdefault("ran", {})[method] = report.method
            ev.details.setdefault("registration", {})[method] = report.shift
        if keep is not None:
            _keep_small(keep, scene, detection, fused)
    return ev


def _keep_small(keep: dict, scene: Scene, detection, fused: dict[str, Path]) -> None:
    """Fill ``keep`` for a full-resolution quicklook: the PAN, the MS and each fused image on the
    output grid brought to at most :data:`QUICKLOOK_SIDE` a side (averaged down, the MS
    resampled from its own grid), so memory stays small whatever the scene's size."""
    from ssdiff_cli.quality.quicklook import read_decimated  # PIL only when asked for

    spec = scene.spec
    out = spec.out
    step = max(1, -(-max(out.width, out.height) // QUICKLOOK_SIDE))
    shape = (-(-out.height // step), -(-out.width // step))
    reader = reader_for(spec)
    ms = reader.coarse_vrt.read(out_shape=(scene.bands, *shape), resampling=Resampling.cubic)
    r0, c0 = spec.pan_offset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pan = reader.pan.read(1, window=Window(c0, r0, out.width, out.height), out_shape=shape,
                              resampling=Resampling.average, boundless=True, fill_value=0,
                              out_dtype="float32")
    keep.update(reference=ms, mask=np.all(np.isfinite(ms), axis=0), pan=pan, rgb=detection.preset.rgb,
                fused={name: read_decimated(path, QUICKLOOK_SIDE, shape)[0] for name, path in fused.items()})


def _scored_size(scene: Scene) -> tuple[int, int]:
    """The output grid cropped to whole low-res pixels (what the full-resolution indices score)."""
    r = scene.ratio
    return scene.spec.out.height // r * r, scene.spec.out.width // r * r


class FusedSceneInputs:
    """Inputs of the full-resolution indices read window by window (memory bounded by the strip,
    not the scene): a fused raster on the scene's output grid, the scene's PAN, its MS brought
    onto the PAN grid per window exactly as ``sharpen -m upsample`` does (the lms), and the MS on
    the coarse grid. Implements :class:`ssdiff_cli.quality.indices.FullResInputs`."""

    def __init__(self, fused_path: Path, scene: Scene, fills: tuple[np.ndarray, float]):
        self.spec, self.fills = scene.spec, fills
        self.ds = _open_checked(fused_path)
        out = scene.spec.out
        if (self.ds.count, self.ds.height, self.ds.width) != (scene.bands, out.height, out.width):
            self.ds.close()
            raise BadInputError(
                f"{fused_path}: {self.ds.count} bands of {self.ds.width}x{self.ds.height} px, "
                f"expected {scene.bands} bands of {out.width}x{out.height} on the PAN grid"
            )
        h, w = _scored_size(scene)
        self.shape = (scene.bands, h, w)
        self._slots, self._turn = [{}, {}], 0

    def rows(self, a: int, b: int) -> indices.FullResRows:
        """Rows ``a .. b - 1`` of every input (``a``, ``b`` multiples of the ratio).

        The two big arrays (fused image and lms) are written into buffers kept for the next
        call but one, so a strip's arrays stay valid while the next one is read, as
        :func:`ssdiff_cli.quality.indices.full_resolution_from` needs, and no fresh memory is
        taken per strip."""
        c, _, w = self.shape
        slot = self._slots[self._turn]
        self._turn ^= 1
        shape = (c, b - a, w)
        if slot.get("shape") != shape:
            slot.update(shape=shape, fused=np.empty(shape, np.float32), lms=np.empty(shape, np.float32))
        tile = read_tile(self.spec, a, 0, b - a, w, self.fills, want_ms=True, lms_out=slot["lms"])
        fused, valid = _read_window(self.ds, Window(0, a, w, b - a), out=slot["fused"])
        return indices.FullResRows(fused, tile.pan, tile.lms, tile.ms, valid & tile.valid)

    def close(self) -> None:
        """Close the fused raster."""
        self.ds.close()


def score_full(fused_path: Path, scene: Scene, detection, fills: tuple[np.ndarray, float],
               progress: Callable | None = None) -> dict:
    """Full-resolution indices of a fused raster on the scene's output grid, read strip by strip;
    ``fills`` is :func:`ssdiff_cli.scene.fill_values` of the scene's sample."""
    inputs = FusedSceneInputs(fused_path, scene, fills)
    preset = detection.preset
    try:
        scores = indices.full_resolution_from(inputs, scene.ratio, preset.ms_gnyq, preset.pan_gnyq,
                                              progress=progress)
    finally:
        inputs.close()
    return _plain(scores)


def evaluate_images(fused: list[Path], reference: Path | None = None, pan: Path | None = None,
                    ms: list[Path] | None = None, sensor: str | None = None,
                    progress: Callable | None = None, keep: dict | None = None) -> Evaluation:
    """Score images made by any tool: against ``reference``, or without one (``pan`` + ``ms``).

    Images are read strip by strip; ``progress(strips_done, strips_total, pixels_done)``.
    ``keep``, when given, receives small decimated copies of the images (and of the reference,
    or of the PAN and MS) for a quicklook."""
    if reference is not None:
        ev = Evaluation("reference", REDUCED_COLUMNS)
        ev.details = {"reference": str(reference)}
        for path in fused:
            ev.rows[path.name] = _plain(score_against(path, reference, progress))
        if keep is not None:
            from ssdiff_cli.quality.quicklook import read_decimated  # PIL only when asked for

            ref, valid = read_decimated(reference, QUICKLOOK_SIDE)
            keep.update(reference=ref, mask=valid, rgb=_reference_rgb(reference, sensor),
                        fused={p.name: read_decimated(p, QUICKLOOK_SIDE, ref.shape[1:])[0] for p in fused})
        return ev
    if pan is None or not ms:
        raise BadInputError("give --reference, or --pan and --ms, to score an image")
    scene, detection, _ = prepare_scene(pan, ms, sensor, with_sample=False)
    ev = Evaluation("full", FULL_COLUMNS)
    ev.details = {"pan": str(pan), "ms": [str(p) for p in ms], "sensor": detection.preset.name}
    # The fill values (what a hole takes far from any valid pixel) cannot change a score: every
    # pixel they reach is invalid itself or within the mask's erosion of one. So the scene sample
    # that sharpen reads them from is skipped.
    fills = (np.zeros(scene.bands, np.float32), 0.0)
    for path in fused:
        scores = score_full(path, scene, detection, fills, progress)
        if not np.isfinite(scores["HQNR"]):
            raise BadInputError(f"{path}: no block of 32x32 pixels is valid in it, the PAN and the MS")
        ev.rows[path.name] = scores
    if keep is not None:
        _keep_small(keep, scene, detection, {p.name: p for p in fused})
    return ev


#: Longest side, in pixels, of the images a quicklook panel shows.
QUICKLOOK_SIDE = 384


def _reference_rgb(reference: Path, sensor: str | None) -> tuple[int, int, int]:
    """True-colour bands of a reference: the sensor's, else its RGB_BANDS tag (1-based), else the
    usual order for its band count."""
    if sensor is not None:
        return get_preset(sensor).rgb
    with rasterio.open(reference) as ds:
        count, tag = ds.count, ds.tags().get("RGB_BANDS")
    if tag:
        try:
            rgb = tuple(int(b) - 1 for b in tag.replace(",", " ").split())
            if len(rgb) == 3 and all(0 <= b < count for b in rgb):
                return rgb  # type: ignore[return-value]
        except ValueError:
            pass
    return (4, 2, 1) if count == 8 else generic_preset(count, 4).rgb


def score_against(path: Path, reference: Path, progress: Callable | None = None,
                  strip_rows: int | None = None) -> dict:
    """Reduced-resolution indices of the raster ``path`` against the raster ``reference`` (same
    shape), read strip by strip. The ratio (for ERGAS) is the reference's RATIO tag, else 4."""
    with _open_checked(reference) as ref, _open_checked(path) as img:
        if (img.count, img.height, img.width) != (ref.count, ref.height, ref.width):
            raise BadInputError(
                f"{path}: {img.count} bands of {img.width}x{img.height} px, which differs from the "
                f"reference's {ref.count} bands of {ref.width}x{ref.height} px"
            )
        ratio = int(ref.tags().get("RATIO", 4))
        scorer = indices.ReducedScorer(ratio, ref.count)
        # whole 32-px blocks in every strip but the last
        step = indices.rows_per_strip(ref.width, 2 * ref.count, 32, strip_rows)
        wins = [Window(0, y, ref.width, min(step, ref.height - y)) for y in range(0, ref.height, step)]

        def fetch(win):
            (data, valid), (rdata, rvalid) = _read_window(img, win), _read_window(ref, win)
            return data, rdata, valid & rvalid

        with indices.worker_pool() as pool:
            for i, (win, (data, rdata, valid)) in enumerate(zip(wins, indices.prefetched(fetch, wins))):
                scorer.update(data, rdata, valid, pool)
                if progress is not None:
                    progress(i + 1, len(wins), (win.row_off + win.height) * ref.width)
        return scorer.result()


def _read_window(ds, win: Window | None, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A window (``None``: all) as float32 (into ``out`` when given) with its validity (dataset
    mask of band 1, finite in every band); invalid values are zeroed (they never enter a sum)."""
    data = ds.read(window=win, out_dtype="float32", out=out)
    valid = ds.read_masks(1, window=win) > 0
    if np.dtype(ds.dtypes[0]).kind == "f":  # integers are always finite
        finite = np.isfinite(data)
        if not finite.all():
            valid &= finite.all(axis=0)
            data[~finite] = 0.0  # masked out; keeps the filters free of NaN
    return data, valid


def _open_checked(path: Path):
    """Open a raster to score (GDAL decoding its compressed blocks on every core), or fail with
    a one-line error naming it."""
    if not Path(path).exists():
        raise BadInputError(f"{path}: file does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            ds = rasterio.open(path, NUM_THREADS="ALL_CPUS")
    except rasterio.errors.RasterioIOError:
        raise BadInputError(f"{path}: not a raster GDAL can read") from None
    complex_types = [t for t in ds.dtypes if "complex" in t]
    if complex_types:  # scored as their real part, silently, they would mean nothing
        ds.close()
        raise BadInputError(f"{path}: has complex values ({complex_types[0]}); give real-valued "
                            "imagery (e.g. its amplitude)")
    return ds


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
                            pan=keep.get("pan"), with_errors=protocol in ("reduced", "reference"))
