"""Strip and thread machinery of the streaming scorers: how many rows a strip holds, the thread
pool that spreads a strip's work, and reading the next strip while the current one is scored."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from threadpoolctl import threadpool_limits

#: Bytes of float32 image (all bands) a strip holds by default: strips get fewer rows as scenes get
#: wider, so memory is bounded by this, not by the scene (64 MB: 512 rows of 4096 px x 8 bands).
STRIP_BYTES = 64 << 20


def rows_per_strip(width: int, bands: int, multiple: int, requested: int | None = None) -> int:
    """Rows per strip: ``requested``, by default as many as fit :data:`STRIP_BYTES` of a
    ``width`` px, ``bands`` band float32 strip, rounded down to a multiple of ``multiple`` (at
    least one such unit)."""
    rows = requested or STRIP_BYTES // (4 * max(1, width) * max(1, bands))
    return max(multiple, rows // multiple * multiple)


def prefetched(fetch: Callable, items: list):
    """Yield ``fetch(item)`` for each item in order, the next one being fetched on a background
    thread while the caller works on the current one (reading then overlaps the arithmetic). At
    most two results are alive at a time: the one yielded and the one being fetched."""
    with ThreadPoolExecutor(1) as reader:
        pending = reader.submit(fetch, items[0]) if items else None
        for i in range(len(items)):
            result = pending.result()
            if i + 1 < len(items):
                pending = reader.submit(fetch, items[i + 1])
            yield result


@contextmanager
def worker_pool(workers: int | None = None):
    """A thread pool for the scorers (default: one thread per core), with BLAS held to one
    thread meanwhile: the pool is the parallelism, BLAS's own threads would only contend."""
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        yield pool

