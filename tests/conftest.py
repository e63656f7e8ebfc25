"""Shared test helpers: where the real scenes live, how to skip without them, and the tiny
generated pairs (``tests/make_fixtures.py``) that logic tests use instead."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: At most this many test worker processes (pyproject's ``-n auto``): each may hold a model and
#: a scene (1-2 GB), and beyond a few the shared scenes' reads contend.
MAX_WORKERS = 4


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: one worker per core, at most :data:`MAX_WORKERS`."""
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


def _share_the_cores() -> None:
    """Under several workers each gets its share of the cores for PyTorch, OpenMP and the
    child processes it starts (inherited), instead of every worker taking them all."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        share = str(max(1, (os.cpu_count() or 1) // workers))
        os.environ.setdefault("OMP_NUM_THREADS", share)
        os.environ.setdefault("MKL_NUM_THREADS", share)


_share_the_cores()

# The shared real scenes live beside the project; SSDIFF_TEST_DATA points elsewhere (for example
# on a GPU machine that receives only the repository). The one definition every test module uses.
DATA = Path(os.environ.get("SSDIFF_TEST_DATA")
            or Path(__file__).resolve().parents[1].parent / "shared" / "data")
SCENES = ("wv2_grip", "ge1_grip", "wv3_cristianics", "landsat8_satellite")

requires_data = pytest.mark.skipif(
    not (DATA / "wv2_grip" / "pan.tif").exists(),
    reason=f"shared real scenes not found at {DATA} (they live beside the project, not in it)",
)


def scene_paths(name: str) -> tuple[Path, Path]:
    """(pan, ms) of a shared scene."""
    return DATA / name / "pan.tif", DATA / name / "ms.tif"


def use_generalist_base(monkeypatch) -> None:
    """Make ``-m mtf-glp-fs`` the model families' own base for the test (cubic lms, the
    project's low-pass: what the generalist and KSDiff correct), not the toolbox-matched
    method. A zero generalist gives exactly this base (tests/test_generalist.py)."""
    from ssdiff_cli import pipeline
    from ssdiff_cli.methods.classical import MTFGLP

    real = pipeline.get_method
    monkeypatch.setattr(pipeline, "get_method", lambda name, **kw: MTFGLP("fs", matched=False)
                        if name == "mtf-glp-fs" else real(name, **kw))


@pytest.fixture
def one_thread():
    """PyTorch on one thread for the test (the machine is shared), restored after it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def detail_injected_scene(gains) -> tuple:
    """(fused, pan, lms, ms), synthetic for index formulas: a smooth 320 x 256 PAN, 4 MS bands
    that follow it degraded with ``gains`` at ratio 4, the cubic lms, and a fused image that
    injects the PAN's detail (float32, as the pipeline's)."""
    import numpy as np

    from ssdiff_cli import filters

    rng = np.random.default_rng(0)
    pan = (800 + rng.normal(0, 40, (320, 256)).cumsum(axis=0).cumsum(axis=1) / 50).astype(np.float32)
    hi = np.stack([pan * g + rng.normal(0, 5, pan.shape)
                   for g in (0.8, 1.0, 1.1, 0.6)]).astype(np.float32)
    ms = filters.degrade(hi, gains, 4)
    lms = filters.upsample_cubic(ms, 4)
    fused = (lms * (pan / lms.mean(axis=0))[None]).astype(np.float32)
    return fused, pan, lms, ms


@pytest.fixture(scope="session")
def fixture_pairs(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """The generated pairs of ``tests/make_fixtures.py`` (``{name: (pan, ms)}``: ``ms4_r4``,
    ``ms3_r2``), written once per session into a temporary folder. Treat them as read-only."""
    from tests.make_fixtures import make_fixtures

    return make_fixtures(tmp_path_factory.mktemp("fixtures"))


@pytest.fixture(scope="module")
def cluster():
    """A real dask LocalCluster for a test module: two worker processes, one thread each, under
    nannies (:func:`ssdiff_cli.executors.open_executor`)."""
    from ssdiff_cli.executors import open_executor

    with open_executor(cluster="local:2") as (executor, description):
        assert "2 workers" in description
        yield executor


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


requires_cuda = pytest.mark.skipif(not _has_cuda(), reason="needs a CUDA GPU")
