"""What the output file holds: its grid, type, value range, nodata, band names and colour
interpretation (:func:`output_spec`, decided once per scene), and the conversion of fused
values to that type (:func:`to_output_dtype`)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
from affine import Affine

from ssdiff_cli.errors import BadInputError, ClippingWarning

if TYPE_CHECKING:
    from ssdiff_cli.scene import Scene, SceneSample
    from ssdiff_cli.sensors import Detection


class _Named(Protocol):
    """A fusion method, as far as the output needs it: its name goes into the file's tags."""

    name: str


def value_range(dtype: str, bit_depth: int | None = None) -> tuple[float, float]:
    """Valid value range of an output type (integers limited to ``bit_depth`` bits if given)."""
    dt = np.dtype(dtype)
    if dt.kind in "ui":
        info = np.iinfo(dt)
        hi = float(info.max)
        if bit_depth and dt.kind == "u" and bit_depth < dt.itemsize * 8:
            hi = float(2**bit_depth - 1)
        return float(info.min), hi
    return float(np.finfo(dt).min), float(np.finfo(dt).max)


@dataclass
class OutputSpec:
    """Grid and radiometry of the output file."""

    transform: Affine | None  # None: not georeferenced
    width: int
    height: int
    crs: str | None
    dtype: str
    bands: int
    nodata: float | None
    band_names: list[str]
    value_min: float
    value_max: float
    tags: dict = field(default_factory=dict)
    #: 0-based bands shown as red, green, blue (colour interpretation); None: none set.
    rgb: tuple[int, int, int] | None = None
    #: ``(gain, offset)`` applied before clipping (``--scale``); None: values kept.
    scale: tuple[float, float] | None = None


def output_spec(scene: Scene, detection: Detection, sample: SceneSample, dtype: str | None,
                method: _Named, scale: bool = False, to_stdout: bool = False,
                notes: list[str] | None = None) -> OutputSpec:
    """Output grid, type, range and nodata: the MS type clipped to its valid range by default.

    Another ``dtype`` clips to its range (a warning gives the share of MS values outside it) unless
    ``scale`` maps the MS range (``0 .. 2**bit_depth - 1``, or the data's range for float or
    undeclared data) onto the type's range (``0 .. 1`` for floats), as ``gdal_translate -scale``
    does. No nodata value is invented when the inputs have none: the output then carries an
    internal mask, except on a stream (``to_stdout``: stdout, a FIFO or a device), which cannot.
    ``notes`` receives what was decided."""
    notes = notes if notes is not None else []
    spec = scene.spec
    dtype = dtype or spec.ms_dtype
    dt = np.dtype(dtype)
    if dt.kind not in "uif":
        raise BadInputError(f"unsupported output type {dtype!r}")
    same_type = dt == np.dtype(spec.ms_dtype)
    bit_depth = detection.bit_depth if same_type and not scale else None
    lo, hi = value_range(dtype, bit_depth)
    values = sample.ms[:, sample.valid]
    if dt.kind == "f" and float(np.nanmin(values)) >= 0:
        lo = 0.0  # reflectances and radiances are not negative
    gain_offset = None
    if scale:
        src = _source_range(spec.ms_dtype, detection.bit_depth, values)
        dst = (0.0, 1.0) if dt.kind == "f" else value_range(dtype)
        gain = (dst[1] - dst[0]) / max(src[1] - src[0], 1e-12)
        gain_offset = (gain, dst[0] - src[0] * gain)
        lo, hi = dst
        notes.append(f"values scaled from {src[0]:g}..{src[1]:g} to {dst[0]:g}..{dst[1]:g} "
                     f"({dtype}, --scale)")
    elif not same_type:
        outside = float(np.mean((values < lo) | (values > hi))) if values.size else 0.0
        notes.append(f"output {dtype}: values clipped to {lo:g}..{hi:g}"
                     + (f" ({100 * outside:.1f} % of the MS values lie outside)" if outside else ""))
        if outside > 0:
            warnings.warn(f"--dtype {dtype} clips to {lo:g}..{hi:g}: {100 * outside:.1f} % of "
                          "the MS values lie outside; --scale maps the range instead",
                          ClippingWarning, stacklevel=3)
    nodata = spec.ms_nodata
    if nodata is None and spec.pan_nodata is not None and lo <= spec.pan_nodata <= hi:
        nodata = spec.pan_nodata
    if nodata is not None and not np.isnan(nodata) and gain_offset is not None:
        nodata = None  # a nodata value of the input type means nothing after scaling
    if nodata is not None and not _representable(nodata, dt):
        notes.append(f"nodata {nodata:g} does not fit {dtype}: the output uses a mask")
        nodata = None
    if nodata is None and to_stdout:
        nodata = float("nan") if dt.kind == "f" else lo  # a streamed TIFF carries no mask
    return OutputSpec(
        transform=spec.out.transform if spec.georeferenced else None,
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
        rgb=tuple(detection.preset.rgb) if spec.bands >= 3 else None,
        scale=gain_offset,
    )


def _source_range(ms_dtype: str, bit_depth: int | None, values: np.ndarray) -> tuple[float, float]:
    """The MS value range ``--scale`` maps from: ``0 .. 2**bit_depth - 1`` for unsigned integers
    of known bit depth, else the data's own range (scene sample)."""
    if np.dtype(ms_dtype).kind == "u" and bit_depth:
        return 0.0, float(2**bit_depth - 1)
    return float(np.nanmin(values)), float(np.nanmax(values))


def _representable(value: float, dt: np.dtype) -> bool:
    if np.isnan(value):
        return dt.kind == "f"
    if dt.kind in "ui":
        info = np.iinfo(dt)
        return info.min <= value <= info.max and float(value).is_integer()
    return True


def _band_names(scene: Scene, detection: Detection) -> list[str]:
    """The MS band descriptions, or the sensor preset's band names where the file has none."""
    preset = detection.preset.band_names
    return [name if not (name.startswith("band ") and len(preset) == scene.bands) else preset[i]
            for i, name in enumerate(scene.band_names)]


def to_output_dtype(data: np.ndarray, valid: np.ndarray, spec: OutputSpec) -> np.ndarray:
    """Clip, round and cast ``data`` (C, h, w); invalid pixels become nodata, and valid pixels
    that would equal the nodata value are nudged one step inside the range."""
    dt = np.dtype(spec.dtype)
    # In place and in float32: np.clip with Python-float bounds would promote to float64.
    out = np.array(data, dtype=np.float32, copy=True)
    if spec.scale is not None:
        gain, offset = spec.scale
        out *= np.float32(gain)
        out += np.float32(offset)
    # Python floats: comparing a float64 type's bounds with a float32 would overflow (a warning)
    f32 = np.finfo(np.float32)
    np.maximum(out, np.float32(max(spec.value_min, float(f32.min))), out=out)
    np.minimum(out, np.float32(min(spec.value_max, float(f32.max))), out=out)
    if dt.kind in "ui":
        np.rint(out, out=out)
    out = out.astype(dt)
    if spec.nodata is not None:
        nd = dt.type(spec.nodata)
        if np.isnan(spec.nodata):
            out[:, ~valid] = np.nan
        else:
            step = 1 if dt.kind in "ui" else np.finfo(dt).eps * max(abs(float(nd)), 1.0)
            nudge = nd + step if nd < spec.value_max else nd - step
            collide = (out == nd) & valid[None]
            out[collide] = dt.type(nudge)
            out[:, ~valid] = nd
    return out


def error_spec(spec: OutputSpec) -> OutputSpec:
    """The grid of ``spec`` for an image of expected errors (``sharpen --uncertainty``): float32
    in the output's units (``--scale``'s gain applies, not its offset), the output's pixels
    masked (an internal mask), a band per output band."""
    hi = float(np.finfo(np.float32).max)
    return OutputSpec(
        transform=spec.transform, width=spec.width, height=spec.height, crs=spec.crs,
        dtype="float32", bands=spec.bands, nodata=None,
        band_names=[f"{name} expected error" for name in spec.band_names],
        value_min=0.0, value_max=hi,
        tags={**spec.tags, "SSDIFF_UNCERTAINTY": "expected absolute error per pixel, in the "
              "output's units"},
        rgb=None, scale=None if spec.scale is None else (spec.scale[0], 0.0))
