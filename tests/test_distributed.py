"""Running ``sharpen`` on a real dask cluster (worker processes), surviving worker deaths, failing
cleanly, and batches of pairs."""

from __future__ import annotations

import csv
import os
import signal
import warnings

import numpy as np
import pytest
import rasterio

from ssdiff_cli import pipeline
from ssdiff_cli.distributed import BatchItem, ClusterError, open_executor, read_batch, sharpen_batch
from ssdiff_cli.errors import EXIT_BAD_INPUT, BadInputError
from ssdiff_cli.methods.classical import MTFGLP
from ssdiff_cli.pipeline import SharpenOptions, sharpen
from tests.conftest import requires_data, scene_paths

pytestmark = requires_data

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
def cluster():
    """A real LocalCluster: two worker processes, one thread each, under nannies."""
    with open_executor(cluster="local:2") as (executor, description):
        assert "2 workers" in description
        yield executor


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The single-process result (the pipeline's own thread pool, one thread)."""
    out = tmp_path_factory.mktemp("reference") / "single.tif"
    report = _sharpen(out, workers=1)
    assert report.tiles == 100
    return _read(out)


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


def _batch_folder(tmp_path):
    """A CSV (relative paths) of two real pairs, one with its MS as one file per band, and two
    bad rows."""
    ge1_pan, ge1_ms = scene_paths("ge1_grip")
    ls_pan, ls_ms = scene_paths("landsat8_satellite")
    bands = []
    with rasterio.open(ls_ms) as src:
        profile = {**src.profile, "count": 1}
        for b in range(1, src.count + 1):
            name = f"ls_b{b}.tif"
            with rasterio.open(tmp_path / name, "w", **profile) as dst:
                dst.write(src.read(b), 1)
            bands.append(name)
    table = tmp_path / "pairs.csv"
    with open(table, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["pan", "ms", "out"])
        w.writerow([ge1_pan, ge1_ms, "out/ge1.tif"])
        w.writerow([tmp_path / "missing_pan.tif", ge1_ms, "out/missing.tif"])
        w.writerow([ls_pan, ";".join(bands), "out/landsat.tif"])
        w.writerow([ls_pan, "", "out/no_ms.tif"])
    return table


def test_batch_runs_pairs_skips_done_ones_and_reports_bad_rows(cluster, tmp_path):
    table = _batch_folder(tmp_path)
    items = read_batch(table)
    assert [len(i.ms) for i in items] == [1, 1, 4, 0]
    assert items[2].ms[0] == str(tmp_path / "ls_b1.tif")  # relative to the CSV's folder
    assert items[3].error and "ms" in items[3].error

    calls = []
    opts = SharpenOptions(method="mtf-glp", force=True)
    results = sharpen_batch(items, opts, executor=cluster, progress=lambda *a: calls.append(a))
    status = [r["status"] for r in results]
    assert status == ["done", "failed", "done", "failed"]
    assert results[1]["exit_code"] == EXIT_BAD_INPUT and "missing_pan.tif" in results[1]["error"]
    assert "\n" not in results[1]["error"]
    for r in (results[0], results[2]):
        assert r["error"] is None and r["tiles"] >= 1
        with rasterio.open(r["out"]) as ds:
            assert ds.count == 4 and ds.read(masked=True).count() > 0
    # One progress stream over the whole batch: never going back, ending with every tile.
    done = [c[0] for c in calls]
    assert done == sorted(done) and calls[-1][0] == calls[-1][1] == results[0]["tiles"] + results[2]["tiles"]

    again = sharpen_batch(read_batch(table), opts, executor=cluster)
    assert [r["status"] for r in again] == ["skipped", "failed", "skipped", "failed"]


def test_batch_globs_folders_and_pan_files(tmp_path):
    for name in ("wv2_grip", "ge1_grip"):
        pan, ms = scene_paths(name)
        (tmp_path / "scenes" / name).mkdir(parents=True)
        os.symlink(pan, tmp_path / "scenes" / name / "pan.tif")
        os.symlink(ms, tmp_path / "scenes" / name / "ms.tif")
    items = read_batch(str(tmp_path / "scenes" / "*"), out_dir=tmp_path / "out")
    assert [(i.pan, i.ms, i.out) for i in items] == [
        (str(tmp_path / "scenes" / n / "pan.tif"), [str(tmp_path / "scenes" / n / "ms.tif")],
         str(tmp_path / "out" / f"{n}.tif"))
        for n in ("ge1_grip", "wv2_grip")
    ]
    # The same pairs named by their PAN files; and PAN/MS files side by side.
    by_pan = read_batch(str(tmp_path / "scenes" / "*" / "pan.tif"), out_dir=tmp_path / "out")
    assert [(i.pan, i.ms, i.out) for i in by_pan] == [(i.pan, i.ms, i.out) for i in items]
    pan, ms = scene_paths("ge1_grip")
    os.symlink(pan, tmp_path / "scene7_PAN.tif")
    os.symlink(ms, tmp_path / "scene7_MS.tif")
    (item,) = read_batch(str(tmp_path / "scene7_*PAN.tif"), out_dir=tmp_path / "out")
    assert item.ms == [str(tmp_path / "scene7_MS.tif")] and item.out == str(tmp_path / "out" / "scene7.tif")
    with pytest.raises(BadInputError, match="matches no file"):
        read_batch(str(tmp_path / "nothing*"))
    with pytest.raises(BadInputError, match="pan,ms,out"):
        (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
        read_batch(tmp_path / "bad.csv")


def test_sharpen_batch_without_a_cluster_and_with_a_bad_item(tmp_path):
    pan, ms = scene_paths("landsat8_satellite")
    items = [BatchItem(str(pan), [str(ms)], str(tmp_path / "a" / "ls.tif")),
             BatchItem(str(pan), [str(ms)], "", error="pairs.csv:3: no value for out")]
    results = sharpen_batch(items, SharpenOptions(force=True))
    assert [r["status"] for r in results] == ["done", "failed"]
    assert (tmp_path / "a" / "ls.tif").exists() and results[1]["exit_code"] == EXIT_BAD_INPUT


def test_open_executor_without_a_cluster_and_with_bad_addresses():
    with open_executor() as (executor, description):
        assert executor is None and description == "threads"
    with pytest.raises(BadInputError, match="local:N"), open_executor(cluster="remote:2"):
        pass
    with pytest.raises(ClusterError, match="cannot reach"), \
            open_executor(scheduler="tcp://127.0.0.1:9", timeout=1):
        pass
