"""Batches: reading ``--batch`` CSV files and globs into pairs, and sharpening them one after
another (on threads, or on a dask cluster) with one progress stream and one-line errors.

The reading rules and the batch bookkeeping run on the generated pairs of
``tests/make_fixtures.py``; the run on a cluster uses the real scenes."""

from __future__ import annotations

import csv
import os
import shutil

import pytest
import rasterio

from ssdiff_cli.batch import BatchItem, read_batch, sharpen_batch
from ssdiff_cli.errors import EXIT_BAD_INPUT, BadInputError
from ssdiff_cli.pipeline import SharpenOptions
from tests.conftest import requires_data, scene_paths


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


@requires_data
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


def test_batch_globs_folders_and_pan_files(tmp_path, fixture_pairs):
    for name, (pan, ms) in fixture_pairs.items():
        (tmp_path / "scenes" / name).mkdir(parents=True)
        os.symlink(pan, tmp_path / "scenes" / name / "pan.tif")
        os.symlink(ms, tmp_path / "scenes" / name / "ms.tif")
    items = read_batch(str(tmp_path / "scenes" / "*"), out_dir=tmp_path / "out")
    assert [(i.pan, i.ms, i.out) for i in items] == [
        (str(tmp_path / "scenes" / n / "pan.tif"), [str(tmp_path / "scenes" / n / "ms.tif")],
         str(tmp_path / "out" / f"{n}.tif"))
        for n in ("ms3_r2", "ms4_r4")
    ]
    # The same pairs named by their PAN files; and PAN/MS files side by side.
    by_pan = read_batch(str(tmp_path / "scenes" / "*" / "pan.tif"), out_dir=tmp_path / "out")
    assert [(i.pan, i.ms, i.out) for i in by_pan] == [(i.pan, i.ms, i.out) for i in items]
    pan, ms = fixture_pairs["ms4_r4"]
    os.symlink(pan, tmp_path / "scene7_PAN.tif")
    os.symlink(ms, tmp_path / "scene7_MS.tif")
    (item,) = read_batch(str(tmp_path / "scene7_*PAN.tif"), out_dir=tmp_path / "out")
    assert item.ms == [str(tmp_path / "scene7_MS.tif")] and item.out == str(tmp_path / "out" / "scene7.tif")
    os.symlink(pan, tmp_path / "lonely_pan.tif")
    with pytest.raises(BadInputError, match="lonely_ms.tif"):
        read_batch(str(tmp_path / "lonely_pan.tif"))
    with pytest.raises(BadInputError, match="matches no file"):
        read_batch(str(tmp_path / "nothing*"))
    with pytest.raises(BadInputError, match="pan,ms,out"):
        (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
        read_batch(tmp_path / "bad.csv")


def test_batch_csv_rows_paths_and_refusals(tmp_path, fixture_pairs):
    pan, ms = fixture_pairs["ms4_r4"]
    for name in ("pan.tif", "b1.tif", "b2.tif"):
        shutil.copy(pan, tmp_path / name)
    table = tmp_path / "pairs.csv"
    table.write_text("\ufeffout , pan,ms,note\n"  # a BOM, columns in any order, extra ones
                     "a.tif,pan.tif,b1.tif;b2.tif,x\n"
                     "\n"
                     "# b.tif,pan.tif,b1.tif\n"
                     f"c.tif,{pan},,\n"
                     "b2.tif,pan.tif,b1.tif\n"
                     "/vsimem/d.tif,/vsicurl/https://example.invalid/pan.tif,b1.tif\n",
                     encoding="utf-8")
    items = read_batch(table, out_dir=tmp_path / "ignored")
    assert [i.source for i in items] == [f"{table}:{n}" for n in (2, 5, 6, 7)]
    first = items[0]
    assert (first.pan, first.ms, first.out) == (
        str(tmp_path / "pan.tif"), [str(tmp_path / "b1.tif"), str(tmp_path / "b2.tif")],
        str(tmp_path / "a.tif"))
    assert items[1].error == f"{table}:5: no value for ms"
    assert "would replace the input" in items[2].error  # b2.tif is row 2's MS
    assert items[3].pan == "/vsicurl/https://example.invalid/pan.tif" and items[3].error is None
    assert items[3].out == "/vsimem/d.tif"

    table.write_text("pan,ms,out\npan.tif,b1.tif,same.tif\npan.tif,b2.tif,./same.tif\n")
    with pytest.raises(BadInputError, match="also the output of"):
        read_batch(table)
    with pytest.raises(BadInputError, match="cannot read"):
        read_batch(tmp_path / "missing.csv")


def test_sharpen_batch_without_a_cluster_and_with_a_bad_item(tmp_path, fixture_pairs):
    pan, ms = fixture_pairs["ms4_r4"]
    items = [BatchItem(str(pan), [str(ms)], str(tmp_path / "a" / "one.tif")),
             BatchItem(str(pan), [str(ms)], "", error="pairs.csv:3: no value for out"),
             BatchItem(str(tmp_path / "missing_pan.tif"), [str(ms)], str(tmp_path / "b.tif"))]
    calls = []
    results = sharpen_batch(items, SharpenOptions(method="mtf-glp", force=True),
                            progress=lambda *a: calls.append(a))
    assert [r["status"] for r in results] == ["done", "failed", "failed"]
    assert (tmp_path / "a" / "one.tif").exists() and results[1]["exit_code"] == EXIT_BAD_INPUT
    assert results[2]["exit_code"] == EXIT_BAD_INPUT and "missing_pan.tif" in results[2]["error"]
    assert results[0]["report"]["tiles"] == results[0]["tiles"] >= 1
    assert calls and calls[-1][0] == calls[-1][1] == results[0]["tiles"]
    again = sharpen_batch(items[:1], SharpenOptions(method="mtf-glp", force=True))
    assert again[0]["status"] == "skipped"


@requires_data
def test_a_failed_row_leaves_no_folder_behind(tmp_path):
    """Issue 25, item 16: a row whose inputs fail makes no output folder (or removes the ones it
    made); a row that succeeds keeps its folder."""
    pan, ms = scene_paths("landsat8_satellite")
    items = [BatchItem(str(pan), [str(tmp_path / "missing_ms.tif")],
                       str(tmp_path / "new" / "deep" / "out.tif")),
             BatchItem(str(pan), [str(ms)], str(tmp_path / "kept" / "out.tif"))]
    results = sharpen_batch(items, SharpenOptions(method="brovey", force=True))
    assert [r["status"] for r in results] == ["failed", "done"]
    assert not (tmp_path / "new").exists()
    assert (tmp_path / "kept" / "out.tif").exists()
