"""Pansharpening quality indices, computed strip by strip with bounded memory.

Conventions shared by every index of this package (the modules listed below):

* Images are in their digital numbers (any real dtype; statistics are accumulated in float64;
  the full-resolution filters run in float32, like the fusion pipeline's).
  Multiband arrays are ``(C, H, W)``, single bands ``(H, W)``.
* ``mask`` is an ``(H, W)`` bool array, ``True`` where a pixel is valid. Pixel indices (SAM, ERGAS,
  PSNR) use the valid pixels; block indices (Q, Q2n and the full-resolution ones) use only the
  blocks whose pixels are all valid; SCC uses the pixels whose 3x3 Sobel neighbourhood is all
  valid, except the image's border rows and columns (as the toolbox's ``SCC.m``). Invalid
  pixels may hold anything (even NaN): they never enter a sum.
* Block indices use non-overlapping ``block x block`` blocks (32 by default) anchored at the top
  left corner; rows and columns left over at the bottom and the right (fewer than ``block``) are
  not scored. A sliding-window variant (``stride``) exists for the per-band UIQI only.
* UIQI of two blocks x, y (Wang & Bovik):
  ``Q = 4 s_xy m_x m_y / ((s_x^2 + s_y^2)(m_x^2 + m_y^2))``, computed as ``L * C`` with
  ``L = 2 m_x m_y / (m_x^2 + m_y^2)`` and ``C = 2 s_xy / (s_x^2 + s_y^2)``.
  Degenerate blocks: ``L = 1`` when both means are 0 and ``C = 1`` when both blocks are constant,
  so two identical constant blocks score 1 and a constant block never gives NaN.
* If no pixel or block is valid an index is NaN.

This module is the public face of the indices; each job lives in its own module:

* :mod:`~ssdiff_cli.quality.reduced`: :class:`ReducedScorer` (row strips) and
  :func:`reduced_resolution` (whole arrays) for SAM, ERGAS, Q2n, SCC, Q and PSNR;
* :mod:`~ssdiff_cli.quality.full`: :class:`FullScorer`, :func:`full_resolution` and
  :func:`full_resolution_from` (any :class:`FullResInputs`, from
  :mod:`~ssdiff_cli.quality.full_inputs`; ``evaluate`` reads raster files window by window
  through one) for D_lambda, D_s, HQNR and QNR; :mod:`~ssdiff_cli.quality.full_blocks` keeps
  them per block of a scene (:func:`~ssdiff_cli.quality.full_blocks.full_resolution_blocks`);
* :mod:`~ssdiff_cli.quality.reference`: the whole-array definition of each index (:func:`sam`,
  :func:`q2n`, :func:`scc`, :func:`hqnr`, :func:`qnr`, ...);
* :mod:`~ssdiff_cli.quality.strips`: strip sizes and the thread pool (:func:`worker_pool`) that
  spreads the work within a strip; partial sums are always added in the same order, so results
  do not depend on the number of threads;
* kernels: :mod:`~ssdiff_cli.quality.blocks` (block statistics, UIQI),
  :mod:`~ssdiff_cli.quality.hypercomplex` (Q2n's algebra), :mod:`~ssdiff_cli.quality.pixels`
  (SAM, ERGAS, PSNR sums), :mod:`~ssdiff_cli.quality.gradients` (Sobel, streaming SCC),
  :mod:`~ssdiff_cli.quality.masks` (validity masks, the full-resolution erosion).
"""

from __future__ import annotations

from .full import FullScorer, full_res_halo, full_resolution, full_resolution_from, full_strip_rows
from .full_inputs import ArrayInputs, FullResInputs, FullResRows
from .gradients import SccAccumulator
from .masks import full_res_erosion
from .reduced import ReducedScorer, reduced_resolution
from .reference import (
    UiqiFn,
    d_lambda_khan,
    d_lambda_qnr,
    d_s,
    d_s_qnr,
    ergas,
    hqnr,
    pan_lowpass,
    psnr,
    q2n,
    q_index,
    qnr,
    sam,
    scc,
    scc_pearson,
    uiqi,
)
from .strips import STRIP_BYTES, prefetched, rows_per_strip, worker_pool

__all__ = [
    "STRIP_BYTES",
    "ArrayInputs",
    "FullResInputs",
    "FullResRows",
    "FullScorer",
    "ReducedScorer",
    "SccAccumulator",
    "UiqiFn",
    "d_lambda_khan",
    "d_lambda_qnr",
    "d_s",
    "d_s_qnr",
    "ergas",
    "full_res_erosion",
    "full_res_halo",
    "full_resolution",
    "full_resolution_from",
    "full_strip_rows",
    "hqnr",
    "pan_lowpass",
    "prefetched",
    "psnr",
    "q2n",
    "q_index",
    "qnr",
    "reduced_resolution",
    "rows_per_strip",
    "sam",
    "scc",
    "scc_pearson",
    "uiqi",
    "worker_pool",
]
