"""The interface every fusion method implements, classical or neural.

A method is configured by its constructor, learns whatever scene-wide statistics it needs once in
:meth:`FusionMethod.prepare` (never per tile, so tiling cannot change them), and then fuses tiles
independently in :meth:`FusionMethod.fuse`. After ``prepare`` the object is picklable and is
shipped as is to threads or dask workers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from ssdiff_cli.engine import progress_hook, report_progress
from ssdiff_cli.scene import Scene, SceneSample, TileData

# Part-way progress is the engine's (below the methods); the names stay importable from here.
__all__ = ["FusionMethod", "SceneContext", "progress_hook", "report_progress"]


@dataclass(frozen=True)
class SceneContext:
    """What ``prepare`` may look at: the scene, a decimated whole-scene sample and the sensor.

    ``sensor`` is a :class:`ssdiff_cli.sensors.SensorPreset`.
    """

    scene: Scene
    sample: SceneSample
    sensor: object


class FusionMethod(ABC):
    """A pansharpening method as the pipeline sees it.

    Attributes
    ----------
    name : str
        The ``--method`` name.
    halo : int
        Context (PAN px) the method needs around each pixel so that a tile's result does not
        depend on where the tile was cut.
    align : int
        Tile read windows start at multiples of this (PAN px), e.g. the ratio for methods that
        decimate, or a network's window size.
    needs_ms : bool
        Whether :meth:`fuse` needs the low-resolution MS on the coarse grid (``tile.ms``).
    overlap : int
        Default blend width between tiles (PAN px); exactly local methods need none.
    tile_size : int
        Default tile core size (PAN px): what keeps a tile's arrays, and the method's working
        memory, small while the halo's share of the work stays modest.
    """

    name: str = ""
    halo: int = 0
    align: int = 1
    needs_ms: bool = False
    overlap: int = 0
    tile_size: int = 1024

    @abstractmethod
    def prepare(self, ctx: SceneContext) -> None:
        """Compute scene-wide statistics once, before any tile is fused."""

    @abstractmethod
    def fuse(self, tile: TileData) -> np.ndarray:
        """Fuse one tile; returns (C, H, W) float32 over the tile's whole read window."""

    def describe(self) -> dict:
        """Settings and learnt statistics worth reporting (JSON-friendly)."""
        return {"name": self.name}
