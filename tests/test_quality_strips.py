"""Strip and thread machinery: strip heights, read-ahead order and bound, the worker pool."""

from __future__ import annotations

import threading

import pytest

from ssdiff_cli.quality.strips import STRIP_BYTES, prefetched, rows_per_strip, worker_pool


def test_rows_per_strip():
    assert rows_per_strip(4096, 8, 32) == 512  # STRIP_BYTES of float32
    assert rows_per_strip(4096, 8, 32) * 4096 * 8 * 4 == STRIP_BYTES
    assert rows_per_strip(4000, 3, 96) % 96 == 0
    assert rows_per_strip(1 << 20, 8, 32) == 32  # at least one unit, however wide
    assert rows_per_strip(100, 4, 32, requested=100) == 96  # rounded down to the multiple
    assert rows_per_strip(100, 4, 32, requested=10) == 32
    assert rows_per_strip(0, 0, 8) == STRIP_BYTES // 4 // 8 * 8  # degenerate sizes count as 1


def test_prefetched_keeps_order_and_fetches_at_most_one_ahead():
    alive = []
    peak = [0]
    lock = threading.Lock()

    def fetch(i):
        with lock:
            alive.append(i)
            peak[0] = max(peak[0], len(alive))
        return i * i

    got = []
    for v in prefetched(fetch, list(range(6))):
        got.append(v)
        with lock:
            alive.remove(int(v**0.5))  # the caller is done with this one
    assert got == [0, 1, 4, 9, 16, 25]
    assert peak[0] <= 2
    assert list(prefetched(fetch, [])) == []


def test_prefetched_passes_errors_on():
    def fetch(i):
        if i == 2:
            raise OSError("cannot read strip 2")
        return i

    it = prefetched(fetch, [0, 1, 2, 3])
    assert [next(it), next(it)] == [0, 1]
    with pytest.raises(OSError, match="strip 2"):
        next(it)


def test_worker_pool_holds_blas_to_one_thread():
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        return [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]

    if not blas_threads():
        pytest.skip("numpy reports no BLAS library to threadpoolctl")
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        with worker_pool(3) as pool:
            assert pool._max_workers == 3
            assert set(blas_threads()) == {1}
            assert list(pool.map(lambda x: x + 1, range(4))) == [1, 2, 3, 4]
        assert set(blas_threads()) == {2}  # restored afterwards
