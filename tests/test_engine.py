"""The tile engine: part-way progress from inside a tile, reported from the calling thread."""

from __future__ import annotations

import threading

import numpy as np

from ssdiff_cli.engine import report_progress, run_plan
from ssdiff_cli.tiling import plan_tiles


def test_progress_moves_inside_a_tile_and_never_goes_back():
    plan = plan_tiles(64, 128, tile_size=64)  # two tiles
    seen_half = threading.Event()
    calls = []
    main = threading.get_ident()

    def task(tile):
        report_progress(0.25)
        # The tile does not finish until the engine has reported its share: progress moves
        # while a tile is still running.
        assert seen_half.wait(timeout=30), "part-way progress was never reported"
        report_progress(1.0)
        return tile, np.zeros((1, tile.height, tile.width), np.float32), np.ones(
            (tile.height, tile.width), bool)

    def progress(done, total, pixels):
        assert threading.get_ident() == main  # reported from the calling thread
        calls.append((done, total, pixels))
        if 0 < done < 2 and done != int(done):
            seen_half.set()

    stats = run_plan(plan, task, lambda *a: None, workers=2, progress=progress)
    assert stats.tiles == 2
    assert any(d != int(d) for d, _, _ in calls)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    assert [c[2] for c in calls] == sorted(c[2] for c in calls)
    assert calls[-1] == (2, 2, sum(t.height * t.width for t in plan))


def test_report_progress_outside_the_engine_does_nothing():
    report_progress(0.3)  # no hook installed: no error, no effect


def test_the_engine_stands_below_the_methods():
    # The engine knows a method only by its protocol; the methods report progress through it.
    import ast
    from pathlib import Path

    import ssdiff_cli.engine as engine
    from ssdiff_cli.methods import base

    tree = ast.parse(Path(engine.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m and m.startswith("ssdiff_cli.methods") for m in imported)
    assert base.report_progress is report_progress
