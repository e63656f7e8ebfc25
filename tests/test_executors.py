"""Executors: running ``sharpen``'s tiles on a real dask cluster (worker processes) gives the
single-process result bit for bit, survives worker deaths, fails cleanly; and the choice between
threads and a cluster."""

from __future__ import annotations

import os
import signal
import warnings

import numpy as np
import pytest
import rasterio

from ssdiff_cli import pipeline
from ssdiff_cli.errors import BadInputError, ClusterError
from ssdiff_cli.executors import open_executor, parse_cluster
from ssdiff_cli.methods.classical import MTFGLP
from ssdiff_cli.pipeline import SharpenOptions, sharpen
from tests.conftest import requires_data, scene_paths

TILE = 128  # 100 tiles on wv2_grip: a run lasts long enough to kill workers in the middle


def _sharpen(out, executor=None, progress=None, **opts):
    pan, ms = scene_paths("wv2_grip")
    opts = {"method": "mtf-glp", "tile_size": TILE, "force": True, **opts}
    if executor is not None:
        opts.setdefault("workers", executor.nthreads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sharpen(pan, ms, str(out), SharpenOptions(**opts), progress=progress, executor=executor)


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read()


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The single-process result (the pipeline's own thread pool, one thread)."""
    out = tmp_path_factory.mktemp("reference") / "single.tif"
    report = _sharpen(out, workers=1)
    assert report.tiles == 100
    return _read(out)


@requires_data
def test_two_worker_processes_give_the_single_process_result_bit_for_bit(cluster, reference, tmp_path):
    out = tmp_path / "cluster.tif"
    seen = []
    report = _sharpen(out, executor=cluster, progress=lambda d, t, p: seen.append((d, t)))
    assert report.tiles == 100 and seen[-1] == (100, 100)
    result = _read(out)
    assert result.dtype == reference.dtype and result.shape == reference.shape
    assert np.array_equal(result, reference)
    # The tiles really ran in the worker processes, not in this one.
    assert os.getpid() not in cluster.client.run(os.getpid).values()


@requires_data
def test_killed_workers_mid_run_still_give_the_complete_identical_output(cluster, reference, tmp_path):
    client = cluster.client
    client.wait_for_workers(2, timeout=30)
    before = client.run(os.getpid)
    resubmitted = cluster.resubmitted
    killed: list[str] = []

    def kill(done, total, pixels):
        # Runs in this thread between results, so the run cannot end before the kill lands.
        if done == 20 and not killed:  # one worker: its in-flight tiles are rescheduled
            addr, pid = sorted(before.items())[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(addr)
        elif done == 50 and len(killed) == 1:  # every worker: the scattered method is lost too
            for pid in client.run(os.getpid).values():
                os.kill(pid, signal.SIGKILL)
            killed.append("all")

    out = tmp_path / "survivor.tif"
    report = _sharpen(out, executor=cluster, progress=kill)
    assert killed == [sorted(before)[0], "all"]
    assert cluster.resubmitted > resubmitted  # tiles whose scattered method was lost went again
    assert report.tiles == 100
    assert np.array_equal(_read(out), reference)
    assert _leftovers(tmp_path) == []
    client.wait_for_workers(2, timeout=30)  # the nannies restarted them
    assert not set(client.run(os.getpid).values()) & set(before.values())


@requires_data
def test_a_failing_run_leaves_no_partial_output(cluster, tmp_path, monkeypatch):
    class Explodes(MTFGLP):  # defined here: cloudpickle ships it to the workers by value
        def fuse(self, tile):
            if tile.row >= 600:
                raise RuntimeError("boom on a worker")
            return super().fuse(tile)

    monkeypatch.setattr(pipeline, "get_method", lambda name, **kw: Explodes("hpm"))
    out = tmp_path / "never.tif"
    with pytest.raises(RuntimeError, match="boom on a worker"):
        _sharpen(out, executor=cluster)
    assert not out.exists() and _leftovers(tmp_path) == []

    # A failure on the client side (here: in the progress callback) mid-run, too.
    monkeypatch.undo()

    def stop(done, total, pixels):
        if done == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _sharpen(out, executor=cluster, progress=stop)
    assert not out.exists() and _leftovers(tmp_path) == []


def test_open_executor_without_a_cluster_and_with_bad_addresses():
    with open_executor() as (executor, description):
        assert executor is None and description == "threads"
    with pytest.raises(BadInputError, match="local:N"), open_executor(cluster="remote:2"):
        pass
    with pytest.raises(ClusterError, match="cannot reach"), \
            open_executor(scheduler="tcp://127.0.0.1:9", timeout=1):
        pass


def test_parse_cluster_counts_local_workers():
    assert parse_cluster("local:3") == 3
    assert parse_cluster(" local ") == (os.cpu_count() or 1)
    for bad in ("local:0", "remote:2", "local:x", ""):
        with pytest.raises(BadInputError):
            parse_cluster(bad)
