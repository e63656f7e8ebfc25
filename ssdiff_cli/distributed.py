"""Beyond one machine: running ``sharpen`` on a dask cluster, and sharpening many pairs.

Executors
---------
:func:`open_executor` yields ``(executor, description)``:

- ``scheduler="tcp://HOST:8786"`` connects a :class:`distributed.Client` to a running cluster
  (``dask scheduler`` + ``dask worker tcp://HOST:8786`` on each machine, or any dask deployment);
- ``cluster="local:N"`` starts a :class:`distributed.LocalCluster` of ``N`` worker *processes*
  with one thread each (dashboard off) and closes it at the end (``"local"``: one per CPU);
- neither yields ``None``: :func:`ssdiff_cli.pipeline.sharpen` then uses its own threads.

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
  in the client's working directory (true for ``local:N``); :func:`sharpen_batch` makes local
  paths absolute.
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

Batch
-----
:func:`read_batch` turns a CSV or a glob into :class:`BatchItem` pairs; :func:`sharpen_batch`
sharpens them one after another (each pair's tiles spread over the executor), skips pairs whose
output exists, records a one-line error for a failing pair and goes on with the next, and reports
progress as one stream across all pairs.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import csv
import dataclasses
import glob as globmod
import logging
import os
import re
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ssdiff_cli.errors import EXIT_RUNTIME, BadInputError, SsdiffError
from ssdiff_cli.gdal_names import split_band_suffix

_TRIM_KEY = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"

Progress = Callable[[int, int, int], None]  # (tiles done, tiles total, pixels done)

__all__ = [
    "BatchItem",
    "ClusterError",
    "DaskExecutor",
    "open_executor",
    "parse_cluster",
    "read_batch",
    "sharpen_batch",
]


# --------------------------------------------------------------------------------------------
# Executor
# --------------------------------------------------------------------------------------------


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


class ClusterError(SsdiffError):
    """The dask cluster cannot be used: scheduler unreachable, no worker, ssdiff missing on a
    worker. Exit code: runtime failure."""

    exit_code = EXIT_RUNTIME


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


# --------------------------------------------------------------------------------------------
# Batch
# --------------------------------------------------------------------------------------------


@dataclass
class BatchItem:
    """One pair to sharpen. ``error`` is set for an entry that could not even be read (a bad
    CSV row): :func:`sharpen_batch` reports it as failed without trying it. ``source`` says
    where it came from (``file.csv:3``, or the glob match)."""

    pan: str
    ms: list[str]
    out: str
    source: str = ""
    error: str | None = None


def _is_virtual(path: str) -> bool:
    return path.startswith("/vsi") or "://" in path


def _resolve(path: str, base: Path) -> str:
    path = path.strip()
    if _is_virtual(path):
        return path
    p = Path(path).expanduser()
    return os.path.abspath(p if p.is_absolute() else base / p)


def read_batch(spec: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> list[BatchItem]:
    """The pairs of a batch, from a CSV file or a glob pattern.

    CSV (``spec`` ends in ``.csv``): a header row ``pan,ms,out`` (any column order, extra columns
    ignored), then one pair per row. ``ms`` may hold several paths separated by ``;`` (one file
    per band, in band order). Relative paths are resolved against the CSV's folder (``out_dir``
    is then ignored); ``/vsi...`` and URL paths are kept as they are. Blank rows and rows whose
    first cell starts with ``#`` are skipped; a row missing a value becomes an item with
    ``error`` set.

    Glob (anything else): each match is either

    - a *folder* holding ``pan.tif`` and ``ms.tif`` -> output ``<out_dir>/<folder name>.tif``; or
    - a *PAN file* whose name contains ``pan`` (any case) -> its MS is the file beside it with
      the last ``pan`` in the name replaced by ``ms`` in the same case (``scene1_pan.tif`` ->
      ``scene1_ms.tif``, ``IMG_PAN.TIF`` -> ``IMG_MS.TIF``) and the output is
      ``<out_dir>/<name with that pan and the separator before it removed>.tif``
      (``scene1.tif``); a file called just ``pan.tif`` is named after its folder, as above.

    ``out_dir`` defaults to the current directory. Matches are sorted. Raises
    :class:`BadInputError` when the CSV cannot be read or has no such header, when a glob matches
    nothing or a match breaks the naming rules, and when two pairs would write the same output.
    """
    text = str(spec)
    if text.lower().endswith(".csv"):
        items = _read_csv(Path(text))
    else:
        items = _read_glob(text, Path(out_dir) if out_dir is not None else Path.cwd())
    seen: dict[str, str] = {}
    for item in items:
        if item.error:
            continue
        key = os.path.normcase(item.out)
        if key in seen:
            raise BadInputError(f"{item.source}: output {item.out} is also the output of {seen[key]}")
        seen[key] = item.source
    _refuse_inputs_as_outputs(items)
    return items


def _refuse_inputs_as_outputs(items: list[BatchItem]) -> None:
    """Mark (as failed) every pair whose output resolves to an input of any pair of the batch:
    the batch goes on, and no input is ever replaced."""
    keys, inodes = {}, {}
    for item in items:
        for name in ([] if item.error else [item.pan, *item.ms]):
            path = str(split_band_suffix(name)[0])  # "ms.tif,band=3" reads ms.tif
            if _is_virtual(path):
                continue
            keys[os.path.realpath(path)] = path
            with contextlib.suppress(OSError):
                st = os.stat(path)
                inodes[(st.st_dev, st.st_ino)] = path
    for item in items:
        if item.error or item.out == "-" or _is_virtual(item.out):
            continue
        hit = keys.get(os.path.realpath(item.out))
        if hit is None:
            with contextlib.suppress(OSError):
                st = os.stat(item.out)
                hit = inodes.get((st.st_dev, st.st_ino))
        if hit is not None:
            item.error = f"{item.source}: output {item.out} would replace the input {hit}"


def _read_csv(path: Path) -> list[BatchItem]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read the batch file ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BadInputError(f"{path}: not a CSV file ({exc})") from None
    header_at = next((i for i, r in enumerate(rows) if any(c.strip() for c in r)), None)
    if header_at is None:
        raise BadInputError(f"{path}: empty batch file")
    header = [c.strip().lower() for c in rows[header_at]]
    missing = [c for c in ("pan", "ms", "out") if c not in header]
    if missing:
        raise BadInputError(
            f"{path}: the header must name columns pan,ms,out (missing: {', '.join(missing)})"
        )
    col = {name: header.index(name) for name in ("pan", "ms", "out")}
    base = Path(os.path.abspath(path)).parent
    items = []
    for i in range(header_at + 1, len(rows)):
        row = rows[i]
        if not any(c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        source = f"{path}:{i + 1}"
        values = {k: (row[j].strip() if j < len(row) else "") for k, j in col.items()}
        ms = [p.strip() for p in values["ms"].split(";") if p.strip()]
        empty = [k for k in ("pan", "ms", "out") if not (values[k] if k != "ms" else ms)]
        if empty:
            items.append(BatchItem(values["pan"], ms, values["out"], source,
                                   error=f"{source}: no value for {', '.join(empty)}"))
            continue
        items.append(BatchItem(_resolve(values["pan"], base), [_resolve(p, base) for p in ms],
                               _resolve(values["out"], base), source))
    return items


_PAN = re.compile(r"pan", re.IGNORECASE)


def _swap_case(token: str, like: str) -> str:
    if like.isupper():
        return token.upper()
    if like[:1].isupper():
        return token.capitalize()
    return token.lower()


def _read_glob(pattern: str, out_dir: Path) -> list[BatchItem]:
    matches = sorted(globmod.glob(os.path.expanduser(pattern), recursive=True))
    if not matches:
        raise BadInputError(f"{pattern}: matches no file or folder")
    out_dir = Path(os.path.abspath(out_dir.expanduser()))
    items = []
    for match in matches:
        p = Path(os.path.abspath(match))  # symlinks kept: names are what the user sees
        if p.is_dir():
            pan, ms = p / "pan.tif", p / "ms.tif"
            if not pan.exists() or not ms.exists():
                raise BadInputError(f"{p}: a batch folder must hold pan.tif and ms.tif")
            items.append(BatchItem(str(pan), [str(ms)], str(out_dir / f"{p.name}.tif"), str(p)))
            continue
        found = list(_PAN.finditer(p.stem))
        if not found:
            raise BadInputError(f"{p}: a PAN file matched by a batch glob must have 'pan' in its name")
        m = found[-1]
        ms_name = p.stem[:m.start()] + _swap_case("ms", m.group()) + p.stem[m.end():] + p.suffix
        ms = p.with_name(ms_name)
        if not ms.exists():
            raise BadInputError(f"{p}: its MS file {ms.name} is not beside it")
        base = (p.stem[:m.start()].rstrip("_-. ") + p.stem[m.end():]).strip("_-. ")
        items.append(BatchItem(str(p), [str(ms)], str(out_dir / f"{base or p.parent.name}.tif"), str(p)))
    return items


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return line if isinstance(exc, SsdiffError) and line else f"{type(exc).__name__}: {line}".rstrip(": ")


def sharpen_batch(
    items: list[BatchItem],
    options=None,
    executor=None,
    progress: Progress | None = None,
    skip_existing: bool = True,
) -> list[dict]:
    """Sharpen every pair of ``items`` in turn and return one result dict per pair.

    Each result has ``pan``, ``ms``, ``out``, ``source``, ``status`` (``"done"``, ``"skipped"``
    or ``"failed"``), ``error`` (one line, or ``None``), ``exit_code`` (0, or the CLI exit code of
    the error), ``seconds``, ``tiles``, ``warnings`` (their messages) and, when done, ``report``
    (``Report.to_dict()``).

    A pair whose output exists is skipped when ``skip_existing`` (otherwise ``options.overwrite``
    decides, as for one pair). A pair that fails is recorded and the batch goes on; Ctrl-C stops
    it. The output's folder is created if needed. ``executor`` is shared by all pairs; with a
    :class:`DaskExecutor`, ``options.workers`` is raised to the cluster's thread count.
    ``progress(done, total, pixels)`` is one stream over the batch: counts of earlier pairs are
    added to the current pair's, so ``total`` grows as each pair's tiles are planned.
    """
    from ssdiff_cli.pipeline import SharpenOptions, sharpen

    opts = options or SharpenOptions()
    nthreads = getattr(executor, "nthreads", None)
    if nthreads and opts.workers < nthreads:
        opts = dataclasses.replace(opts, workers=nthreads)
    results: list[dict] = []
    base_done = base_total = base_pixels = 0

    for item in items:
        res = {"pan": item.pan, "ms": list(item.ms), "out": item.out, "source": item.source,
               "status": "failed", "error": None, "exit_code": 0, "seconds": 0.0, "tiles": 0,
               "warnings": []}
        results.append(res)
        if item.error:
            res.update(error=item.error, exit_code=BadInputError.exit_code)
            continue
        if skip_existing and item.out != "-" and Path(item.out).exists():
            res["status"] = "skipped"
            continue
        state = {"done": 0, "total": 0, "pixels": 0}

        def relay(done, total, pixels, state=state, base=(base_done, base_total, base_pixels)):
            state.update(done=done, total=total, pixels=pixels)
            if progress is not None:
                progress(base[0] + done, base[1] + total, base[2] + pixels)

        start = time.perf_counter()
        caught: list = []
        try:
            if item.out != "-" and not _is_virtual(item.out):
                Path(item.out).parent.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                report = sharpen(item.pan, item.ms if len(item.ms) > 1 else item.ms[0], item.out,
                                 opts, progress=relay, executor=executor)
            res.update(status="done", tiles=report.tiles, report=report.to_dict())
            state["done"] = state["total"] = report.tiles
        except Exception as exc:  # noqa: BLE001 - one pair's failure must not stop the batch
            res.update(error=_one_line(exc), exit_code=getattr(exc, "exit_code", EXIT_RUNTIME))
        res["seconds"] = round(time.perf_counter() - start, 3)
        res["warnings"] = list(dict.fromkeys(str(w.message) for w in caught
                                             if not _is_noise(w)))
        # Tiles of a failed pair that never ran are dropped from the total.
        base_done += state["done"]
        base_total += state["done"] if res["status"] != "done" else state["total"]
        base_pixels += state["pixels"]
    return results


def _is_noise(w: warnings.WarningMessage) -> bool:
    """rasterio's own not-georeferenced warning duplicates ssdiff's."""
    return (type(w.message).__name__ == "NotGeoreferencedWarning"
            and w.category.__module__.startswith("rasterio"))

