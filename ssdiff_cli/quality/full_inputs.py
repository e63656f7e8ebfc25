"""Where the full-resolution indices read their inputs: the :class:`FullResInputs` protocol
(row ranges of the fused image, PAN, lms, MS and validity mask), its :class:`FullResRows`, and
:class:`ArrayInputs` over whole arrays. ``evaluate`` implements the protocol over raster files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .masks import as_mask


def check_full_shapes(F, pan, lms, ms, ratio):
    """Raise ``ValueError`` unless ``F``, ``lms`` ``(C, H, W)`` and ``pan`` ``(H, W)`` share the
    PAN grid and ``ms`` is ``(C, H/r, W/r)`` with ``H``, ``W`` multiples of the ratio."""
    c, h, w = F.shape
    if pan.shape != (h, w) or lms.shape != F.shape:
        raise ValueError(f"F {F.shape}, lms {lms.shape} and PAN {pan.shape} must share the PAN grid")
    if h % ratio or w % ratio or ms.shape != (c, h // ratio, w // ratio):
        raise ValueError(
            f"need PAN sizes divisible by the ratio and MS = PAN / ratio; got F {F.shape}, "
            f"MS {ms.shape} (crop with ssdiff_cli.quality.wald.crop_pair)"
        )


@dataclass
class FullResRows:
    """Rows ``a .. b - 1`` of every input of the full-resolution indices: the fused image ``F``
    ``(C, n, W)``, the ``pan`` ``(n, W)``, the ``lms`` ``(C, n, W)``, the low-res ``ms``
    ``(C, n/r, W/r)`` (``a``, ``b`` multiples of the ratio) and the ``valid`` mask ``(n, W)`` or
    ``None``. Any real dtype; invalid pixels may hold anything finite."""

    F: np.ndarray
    pan: np.ndarray
    lms: np.ndarray
    ms: np.ndarray
    valid: np.ndarray | None


class FullResInputs(Protocol):
    """Where :func:`ssdiff_cli.quality.full.full_resolution_from` reads its inputs: whole arrays
    (:class:`ArrayInputs`) or anything that can hand out row ranges, e.g. windows of raster
    files. The caller holds at most two results of :meth:`rows` at a time (the strip being scored
    and the next), so an implementation may reuse the buffers of the result before those."""

    shape: tuple[int, int, int]  # (C, H, W) of the fused image; H, W multiples of the ratio

    def rows(self, a: int, b: int) -> FullResRows:
        """Rows ``a .. b - 1`` (multiples of the ratio) of every input."""
        ...


class ArrayInputs:
    """:class:`FullResInputs` over arrays (memory-mapped ones welcome): rows are views."""

    def __init__(self, F, pan, lms, ms, ratio: int, mask=None):
        check_full_shapes(F, pan, lms, ms, ratio)
        self.F, self.pan, self.lms, self.ms, self.ratio = F, pan, lms, ms, ratio
        self.mask = None if mask is None else as_mask(mask, F.shape[1:])
        self.shape = F.shape

    def rows(self, a: int, b: int) -> FullResRows:
        """Rows ``a .. b - 1`` of every array (views)."""
        r = self.ratio
        return FullResRows(self.F[:, a:b], self.pan[a:b], self.lms[:, a:b], self.ms[:, a // r : b // r],
                           None if self.mask is None else self.mask[a:b])

