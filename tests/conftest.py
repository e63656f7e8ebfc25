"""Shared test helpers: where the real scenes live, and how to skip without them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The shared real scenes live beside the project; SSDIFF_TEST_DATA points elsewhere (for example
# on a GPU machine that receives only the repository).
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


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


requires_cuda = pytest.mark.skipif(not _has_cuda(), reason="needs a CUDA GPU")
