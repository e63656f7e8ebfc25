"""Running a tile plan: read, fuse and blend every tile, on threads or on a dask cluster.

Each tile task reads its own window (:func:`ssdiff_cli.scene.read_tile`) and fuses it; only the
fused blend extent comes back. Results are handed to the caller in completion order, and at most
``max_in_flight`` tasks are outstanding, so memory stays bounded by tile size times workers.

Progress is reported in tiles, with the share of the running tiles that their methods say is
done (:func:`report_progress`) counted in, so a slow method's progress moves within a tile; it is
reported from the calling thread at least every ``PROGRESS_INTERVAL`` seconds while anything
moved.

The engine sits below the methods: it knows a method only as a :class:`TileFuser` (anything with
``needs_ms`` and ``fuse(tile)``), and the methods report part-way progress through
:func:`report_progress`, defined here.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ssdiff_cli import allocator
from ssdiff_cli.scene import SceneSpec, TileData, read_tile
from ssdiff_cli.tiling import Tile, TilePlan

#: ``(tiles done, tiles total, pixels done)``; tiles done is fractional while tiles are part-way.
Progress = Callable[[float, int, int], None]

#: Seconds between progress reports while tiles are running.
PROGRESS_INTERVAL = 0.5


class TileFuser(Protocol):
    """What the engine needs of a fusion method (:class:`ssdiff_cli.methods.FusionMethod` is
    one)."""

    needs_ms: bool

    def fuse(self, tile: TileData) -> np.ndarray:
        """Fuse one tile; (C, H, W) float32 over the tile's whole read window."""


# A method that takes long over one tile says how far it has got, so progress moves between
# tiles: the engine installs a callback for the thread running ``fuse`` and the method calls
# :func:`report_progress`. Without a callback (a dask worker process) the call does nothing.
_hook = threading.local()


@contextmanager
def progress_hook(callback: Callable[[float], None]) -> Iterator[None]:
    """Route :func:`report_progress` calls made in this thread to ``callback`` meanwhile."""
    previous = getattr(_hook, "callback", None)
    _hook.callback = callback
    try:
        yield
    finally:
        _hook.callback = previous


def report_progress(fraction: float) -> None:
    """Tell the engine that ``fraction`` (0..1) of the tile being fused is done."""
    callback = getattr(_hook, "callback", None)
    if callback is not None:
        callback(min(max(float(fraction), 0.0), 1.0))


def fuse_tile(spec: SceneSpec, method: TileFuser, fill_values, tile: Tile):
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
    allocator.configure()
    own = executor is None
    if own:
        executor = cf.ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="tile")
    # Part-way progress needs the tasks to run in this process (threads); a cluster's workers
    # report whole tiles only.
    partial = _Partial() if isinstance(executor, cf.ThreadPoolExecutor) else None
    limit = max_in_flight or max(2, 2 * max(1, workers))
    state = _RunState(len(plan), progress, partial)
    pending: set[cf.Future] = set()
    try:
        for tile in plan:
            if partial is not None:
                pending.add(executor.submit(_tracked, task, tile, partial))
            else:
                pending.add(executor.submit(task, tile))
            while len(pending) >= limit:
                pending = state.drain(pending, on_result)
        while pending:
            pending = state.drain(pending, on_result)
    except BaseException:
        for f in pending:
            f.cancel()
        raise
    finally:
        if own:
            executor.shutdown(wait=True, cancel_futures=True)
    return RunStats(tiles=state.done, pixels=state.pixels, seconds=time.perf_counter() - start)


def _tracked(task: Callable[[Tile], tuple], tile: Tile, partial: _Partial):
    """Run ``task(tile)`` with the method's part-way reports going to ``partial``."""
    with progress_hook(lambda fraction: partial.set(tile, fraction)):
        return task(tile)


class _Partial:
    """The share done of each running tile, as its method reports it (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shares: dict[int, tuple[float, int]] = {}  # tile index -> (fraction, pixels)

    def set(self, tile: Tile, fraction: float) -> None:
        with self._lock:
            self._shares[tile.index] = (fraction, tile.height * tile.width)

    def finish(self, tile: Tile) -> None:
        with self._lock:
            self._shares.pop(tile.index, None)

    def totals(self) -> tuple[float, float]:
        """(tiles, pixels) done inside the running tiles."""
        with self._lock:
            shares = list(self._shares.values())
        return sum(f for f, _ in shares), sum(f * n for f, n in shares)


class _RunState:
    """Counts of finished tiles and pixels, and the progress reports made from them."""

    def __init__(self, total: int, progress: Progress | None, partial: _Partial | None):
        self.total = total
        self.progress = progress
        self.partial = partial
        self.done = 0
        self.pixels = 0
        self._reported = (0.0, 0)

    def drain(self, pending: set[cf.Future], on_result) -> set[cf.Future]:
        """Wait for at least one task (reporting part-way progress meanwhile), hand its result
        over and report; returns the tasks still pending."""
        while True:
            finished, pending = cf.wait(pending, timeout=PROGRESS_INTERVAL,
                                        return_when=cf.FIRST_COMPLETED)
            if finished:
                break
            self._report(force=False)
        for fut in finished:
            tile, data, valid = fut.result()
            on_result(tile, data, valid)
            if self.partial is not None:
                self.partial.finish(tile)
            self.done += 1
            self.pixels += tile.height * tile.width
            self._report(force=True)
        return pending

    def _report(self, force: bool) -> None:
        """Report; unless ``force`` (a tile finished), only when something moved."""
        if self.progress is None:
            return
        tiles, pixels = self.done, self.pixels
        if self.partial is not None:
            part_tiles, part_pixels = self.partial.totals()
            if part_tiles:
                tiles, pixels = tiles + part_tiles, pixels + int(part_pixels)
        tiles, pixels = max(tiles, self._reported[0]), max(pixels, self._reported[1])  # never back
        if not force and (tiles, pixels) == self._reported:
            return
        self._reported = (tiles, pixels)
        self.progress(tiles, self.total, pixels)
