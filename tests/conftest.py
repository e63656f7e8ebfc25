"""Shared test helpers: where the real scenes live, how to skip without them, and the tiny
generated pairs (``tests/make_fixtures.py``) that logic tests use instead."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
