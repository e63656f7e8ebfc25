"""Shared test helpers: where the real scenes live, and how to skip without them."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SCENES = ("wv2_grip", "ge1_grip", "wv3_cristianics", "landsat8_satellite")

requires_data = pytest.mark.skipif(
    not (DATA / "wv2_grip" / "pan.tif").exists(),
    reason=f"shared real scenes not found at {DATA} (they live beside the project, not in it)",
)


def scene_paths(name: str) -> tuple[Path, Path]:
    """(pan, ms) of a shared scene."""
    return DATA / name / "pan.tif", DATA / name / "ms.tif"
