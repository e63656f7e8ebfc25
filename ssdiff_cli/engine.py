"""Running a tile plan: read, fuse and blend every tile, on threads or on a dask cluster.

Each tile task reads its own window (:func:`ssdiff_cli.scene.read_tile`) and fuses it; only the
fused blend extent comes back. Results are handed to the caller in completion order, and at most
``max_in_flight`` tasks are outstanding, so memory stays bounded by tile size times workers.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from ssdiff_cli.methods.base import FusionMethod
from ssdiff_cli.scene import SceneSpec, read_tile
from ssdiff_cli.tiling import Tile, TilePlan

Progress = Callable[[int, int, int], None]  # (tiles done, tiles total, pixels done)


def fuse_tile(spec: SceneSpec, method: FusionMethod, fill_values, tile: Tile):
    """Read and fuse one tile; returns ``(tile, data, valid)`` over its blend extent."""
    data = read_tile(
        spec, tile.read_row, tile.read_col, tile.read_height, tile.read_width,
        fill_values, want_ms=method.needs_ms,
    )
    fused = method.fuse(data)
    rows, cols = tile.inner
    return tile, np.ascontiguousarray(fused[:, rows, cols], dtype=np.float32), data.valid[rows, cols]


@dataclass
class RunStats:
    """What a run did: tiles, pixels and seconds."""

    tiles: int
    pixels: int
    seconds: float


def run_plan(
    plan: TilePlan,
    task: Callable[[Tile], tuple],
    on_result: Callable[[Tile, np.ndarray, np.ndarray], None],
    workers: int = 1,
    executor: cf.Executor | None = None,
    progress: Progress | None = None,
    max_in_flight: int | None = None,
) -> RunStats:
    """Run ``task`` over every tile of ``plan`` and pass results to ``on_result`` in the calling
    thread, as they complete.

    ``executor`` may be any :class:`concurrent.futures.Executor` (a dask ``Client``'s
    ``get_executor()`` included); by default a thread pool of ``workers`` threads is used (NumPy,
    GDAL and PyTorch release the GIL).
    """
    start = time.perf_counter()
    own = executor is None
    if own:
        executor = cf.ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="tile")
    limit = max_in_flight or max(2, 2 * max(1, workers))
    done = pixels = 0
    total = len(plan)
    tiles: Iterable[Tile] = iter(plan)
    pending: set[cf.Future] = set()
    try:
        for tile in tiles:
            pending.add(executor.submit(task, tile))
            if len(pending) >= limit:
                done, pixels, pending = _drain(pending, cf.FIRST_COMPLETED, on_result, progress,
                                               done, pixels, total)
        while pending:
            done, pixels, pending = _drain(pending, cf.FIRST_COMPLETED, on_result, progress,
                                           done, pixels, total)
    except BaseException:
        for f in pending:
            f.cancel()
        raise
    finally:
        if own:
            executor.shutdown(wait=True, cancel_futures=True)
    return RunStats(tiles=done, pixels=pixels, seconds=time.perf_counter() - start)


def _drain(pending, when, on_result, progress, done, pixels, total):
    finished, pending = cf.wait(pending, return_when=when)
    for fut in finished:
        tile, data, valid = fut.result()
        on_result(tile, data, valid)
        done += 1
        pixels += tile.height * tile.width
        if progress is not None:
            progress(done, total, pixels)
    return done, pixels, pending
