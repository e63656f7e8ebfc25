"""Where tile tasks run: the pipeline's own threads, or a dask cluster.

Executors
---------
:func:`open_executor` yields ``(executor, description)``:

- ``scheduler="tcp://HOST:8786"`` connects a :class:`distributed.Client` to a running cluster
  (``dask scheduler`` + ``dask worker tcp://HOST:8786`` on each machine, or any dask deployment);
- ``cluster="local:N"`` starts a :class:`distributed.LocalCluster` of ``N`` worker *processes*
  with one thread each (dashboard off) and closes it at the end (``"local"``: one per CPU);
- neither yields ``None``: :func:`ssdiff_cli.engine.run_plan` then runs tiles on local threads.

The executor is a :class:`DaskExecutor`, a :class:`concurrent.futures.Executor` whose futures
are real :class:`concurrent.futures.Future` objects, so :func:`ssdiff_cli.engine.run_plan` (which
calls :func:`concurrent.futures.wait`) uses it exactly as it uses a thread pool. Give
``SharpenOptions.workers`` at least ``executor.nthreads`` so enough tiles are in flight to keep
every worker busy (``run_plan`` keeps ``2 * workers`` tasks outstanding).

Workers
-------
Workers need ssdiff (same version) installed; :func:`open_executor` checks that every worker can
import it. dask starts worker processes with ``MALLOC_TRIM_THRESHOLD_=65536``, which pins glibc's
mmap threshold at 128 KiB: every tile-sized temporary then costs a fresh ``mmap`` and its page
faults, and tile fusion measured 3x slower than in-process. ``local:N`` unsets it for its
workers. For a cluster of your own, give the workers' nannies a dask config file (in
``~/.config/dask/`` or ``$DASK_CONFIG``) holding
``distributed: {nanny: {pre-spawn-environ: {MALLOC_TRIM_THRESHOLD_: null}}}`` (a
``DASK_...`` environment variable cannot unset it: dask lower-cases the key).

What travels
------------
- **To the workers: paths, never pixels.** A tile task is ``fuse_tile(spec, method, fills,
  tile)``; the :class:`~ssdiff_cli.scene.SceneSpec` carries only the PAN path and a VRT naming the
  MS file(s), so each worker opens the inputs itself and reads just its tile's window. Inputs
  must therefore be reachable *by the same name* from every worker: a shared filesystem, or
  GDAL virtual paths such as ``/vsis3/bucket/pan.tif``, ``/vsigs/...``, ``/vsicurl/https://...``
  (credentials set in the workers' environment). Relative paths only work when every worker runs
  in the client's working directory (true for ``local:N``); :func:`ssdiff_cli.batch.sharpen_batch`
  makes local paths absolute.
- **Back to the client: fused tiles only** (the blend extent as float32 plus its validity mask).
  The client blends the seams and writes the COG, so the output path only needs to be writable
  by the client, and no worker ever writes a file.
- **The method is sent once per worker, not once per tile.** The pipeline submits one closure
  (spec + prepared method + fill values) for every tile. :class:`DaskExecutor` scatters that
  callable with ``client.scatter(fn, broadcast=True, hash=False)`` the first time it sees it and
  submits every tile as ``_call(<scattered fn>, (tile,), {})``: a large method (the SSDiff network and
  its weights) crosses the network once per worker, workers keep one unpickled copy (so their
  per-thread GDAL handles, keyed by the spec object, are reused across tiles), and nothing is
  tokenized per task (tasks are submitted with ``pure=False``). The scattered copy is released
  when the pipeline drops its closure at the end of the scene (the cache is a weak mapping).
  ``get_executor()`` of a plain ``Client`` would instead pickle - and, with its default
  ``pure=True``, hash - the whole method for every tile.

Fault tolerance
---------------
- A worker that dies mid-run (killed, out of memory, machine lost) has its running and queued
  tasks rescheduled by the dask scheduler on the remaining or restarted workers (``local:N``
  workers run under a nanny that restarts them); the scattered method has replicas on the other
  workers. Should every copy be lost (a one-worker cluster whose worker dies), the dask future
  comes back cancelled: the executor scatters the callable again and resubmits the tile, up to
  ``resubmits`` times per tile. Tiles are pure functions of their inputs, so the output is
  complete and bit-identical to a single-process run.
- A task that keeps killing workers (``distributed.KilledWorker``, after the scheduler's
  ``allowed-failures``) or raises fails the run: the exception propagates out of ``sharpen``,
  pending tiles are cancelled, and the pipeline's ``TileWriter`` removes its work files, so no
  partial output is left at the output path.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import os
import re
import threading
import weakref
from collections.abc import Iterator

from ssdiff_cli.errors import BadInputError, ClusterError

_TRIM_KEY = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"

__all__ = ["DaskExecutor", "open_executor", "parse_cluster"]


def _call(fn, args, kwargs):
    """Runs on a worker: ``fn`` arrives as the worker's local copy of the scattered callable."""
    return fn(*args, **kwargs)


def _limit_threads(threads: int) -> int:
    """In a worker: cap PyTorch's intra-op threads, so N local workers share the cores instead of
    each trying to use all of them."""
    import torch

    torch.set_num_threads(threads)
    return torch.get_num_threads()


def _probe() -> str:
    """Runs on every worker at connection time: can it import ssdiff?"""
    import ssdiff_cli

    return getattr(ssdiff_cli, "__version__", "unknown")

class DaskExecutor(cf.Executor):
    """A :class:`concurrent.futures.Executor` over a :class:`distributed.Client`.

    ``submit`` returns a :class:`concurrent.futures.Future` (so ``concurrent.futures.wait`` and
    ``as_completed`` work); the callable is scattered to every worker once (see the module
    docstring), each call runs as a non-pure dask task, and a task whose dask future comes back
    cancelled because the cluster lost its inputs is resubmitted up to ``resubmits`` times.
    Cancelling the returned future cancels the dask task. ``shutdown`` releases everything this
    executor holds on the cluster; it never closes the client.
    """

    def __init__(self, client, resubmits: int = 3, scatter: bool = True):
        self.client = client
        self.resubmits = resubmits
        self.scatter = scatter
        self._lock = threading.Lock()
        self._scattered: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._active: dict[int, object] = {}  # id(cf future) -> its current dask future
        self._shutdown = False
        self.resubmitted = 0  # tasks sent again after the cluster lost what they needed

    @property
    def nthreads(self) -> int:
        """Worker threads in the cluster now (at least 1)."""
        try:
            return max(1, sum(self.client.nthreads().values()))
        except Exception:  # noqa: BLE001 - a transient scheduler hiccup must not fail a run
            return 1

    # -- scattering ---------------------------------------------------------------------------

    def _remote_fn(self, fn, stale=None):
        """The scattered copy of ``fn`` (scattered now if there is none, or only ``stale``, a
        copy the cluster lost), or ``fn`` itself when it cannot be cached."""
        if not self.scatter:
            return fn
        with self._lock:
            try:
                cached = self._scattered.get(fn)
            except TypeError:  # not weak-referenceable / not hashable: send it with each task
                return fn
            if cached is not None and cached is not stale and cached.status == "finished":
                return cached
            remote = self.client.scatter(fn, broadcast=True, hash=False)
            try:
                self._scattered[fn] = remote
            except TypeError:
                pass
            return remote

    # -- submitting ---------------------------------------------------------------------------

    def submit(self, fn, /, *args, **kwargs) -> cf.Future:
        """Run ``fn(*args, **kwargs)`` on the cluster; returns a concurrent.futures Future."""
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        result: cf.Future = cf.Future()
        result.add_done_callback(self._on_local_done)
        self._launch(result, fn, args, kwargs, attempt=0)
        return result

    def _launch(self, result: cf.Future, fn, args, kwargs, attempt: int, stale=None) -> None:
        remote = self._remote_fn(fn, stale=stale)
        dfut = self.client.submit(_call, remote, args, kwargs, pure=False)
        with self._lock:
            if result.done():  # cancelled while we were submitting
                dfut.cancel()
                return
            self._active[id(result)] = dfut

        def relay(done_future) -> None:
            self._relay(done_future, result, fn, args, kwargs, attempt, remote)

        dfut.add_done_callback(relay)

    def _relay(self, dfut, result: cf.Future, fn, args, kwargs, attempt: int, remote) -> None:
        """Runs in dask's callback thread: hand the dask outcome to ``result``."""
        with self._lock:
            if self._active.get(id(result)) is dfut:
                del self._active[id(result)]
        if result.done():
            return
        cancelled = dfut.status == "cancelled"
        if not cancelled:
            try:
                value = dfut.result()  # the value, or raises the task's error (or KilledWorker)
            except cf.CancelledError:
                # cancelled by the cluster after its status was read (distributed raises its
                # FutureCancelledError, a CancelledError): the same case as below
                cancelled = True
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                with contextlib.suppress(cf.InvalidStateError):
                    result.set_exception(exc)
                return
        if cancelled:
            # Not cancelled by us (result is not done): the cluster lost something this task
            # needed, typically every copy of the scattered callable. Try again.
            if attempt < self.resubmits and not self._shutdown:
                self.resubmitted += 1
                self._launch(result, fn, args, kwargs, attempt + 1, stale=remote)
                return
            with contextlib.suppress(cf.InvalidStateError):
                result.set_exception(cf.CancelledError(f"dask task {dfut.key} was cancelled by the cluster"))
            return
        with contextlib.suppress(cf.InvalidStateError):
            result.set_result(value)

    def _on_local_done(self, result: cf.Future) -> None:
        if result.cancelled():
            with self._lock:
                dfut = self._active.pop(id(result), None)
            if dfut is not None:
                dfut.cancel()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting work; cancel outstanding tasks if asked (or wait for them), and
        release the scattered callables."""
        self._shutdown = True
        with self._lock:
            active = list(self._active.values())
        if cancel_futures or not wait:
            for dfut in active:
                dfut.cancel()
        elif active:
            from distributed import wait as dask_wait

            with contextlib.suppress(Exception):
                dask_wait(active)
        with self._lock:
            self._scattered.clear()
            self._active.clear()


def parse_cluster(cluster: str) -> int:
    """``"local:N"`` -> N; ``"local"`` -> one worker per CPU."""
    match = re.fullmatch(r"\s*local\s*(?::\s*(\d+))?\s*", cluster or "")
    if not match:
        raise BadInputError(f"cluster {cluster!r}: expected 'local' or 'local:N' (N worker processes)")
    n = int(match.group(1)) if match.group(1) else (os.cpu_count() or 1)
    if n < 1:
        raise BadInputError(f"cluster {cluster!r}: needs at least one worker")
    return n


@contextlib.contextmanager
def open_executor(scheduler: str | None = None, cluster: str | None = None,
                  timeout: float = 30.0) -> Iterator[tuple[DaskExecutor | None, str]]:
    """Yield ``(executor, description)`` for a dask cluster, or ``(None, "threads")``.

    ``scheduler``: address of a running scheduler (``tcp://HOST:8786``); ``cluster``:
    ``"local:N"`` to start N local worker processes (one thread each) for the duration. Giving
    both is an error (:class:`BadInputError`, as is a malformed ``cluster``). Raises
    :class:`ClusterError` when the scheduler cannot be reached, no worker joins within
    ``timeout`` seconds, or a worker cannot import ssdiff.
    """
    if scheduler and cluster:
        raise BadInputError("give either a scheduler address or a local cluster, not both")
    if not scheduler and not cluster:
        yield None, "threads"
        return

    import dask
    from distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if cluster:
            n = parse_cluster(cluster)
            # dask sets MALLOC_TRIM_THRESHOLD_ in its workers; that pins glibc's mmap threshold at
            # 128 KiB, so every tile-sized temporary is a fresh mmap + page faults: tile fusion
            # ran 3x slower than in-process. Unset it for the workers we start.
            with dask.config.set({_TRIM_KEY: None}):
                local = stack.enter_context(LocalCluster(
                    n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                    silence_logs=logging.ERROR,
                ))
            client = stack.enter_context(Client(local, timeout=timeout))
            client.run(_limit_threads, max(1, (os.cpu_count() or 1) // n))
            where = f"local dask cluster, {n} worker process{'es' if n > 1 else ''} x 1 thread"
        else:
            try:
                client = stack.enter_context(Client(scheduler, timeout=timeout))
            except (OSError, TimeoutError) as exc:
                raise ClusterError(f"{scheduler}: cannot reach the dask scheduler ({exc})") from None
            where = f"dask scheduler {scheduler}"
        try:
            client.wait_for_workers(1, timeout=timeout)
        except (TimeoutError, cf.TimeoutError, OSError):
            raise ClusterError(
                f"{scheduler or cluster}: no dask worker joined within {timeout:g} s"
            ) from None
        try:
            client.run(_probe)
        except Exception as exc:  # noqa: BLE001 - typically ModuleNotFoundError on the worker
            raise ClusterError(
                f"{scheduler or cluster}: a dask worker cannot run ssdiff ({type(exc).__name__}: "
                f"{exc}); install ssdiff (same version) in every worker's environment"
            ) from None
        executor = DaskExecutor(client)
        nthreads = executor.nthreads
        workers = len(client.scheduler_info().get("workers", {}))
        description = (f"{where} ({workers} worker{'s' if workers != 1 else ''}, "
                       f"{nthreads} thread{'s' if nthreads != 1 else ''})")
        try:
            yield executor, description
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

