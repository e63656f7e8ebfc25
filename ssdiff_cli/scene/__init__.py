"""Opening a PAN + MS pair: validation, grids, the MS-to-PAN mapping, validity masks, tile reads.

A :class:`Scene` is what the pipeline works on. Its :class:`SceneSpec` is a small picklable value
from which any thread or worker process reopens the files and reads tile windows itself
(:func:`read_tile`), so only fused tiles travel between processes.

Geometry. The output grid is the PAN grid cut to the requested extent. The MS is brought onto it
by GDAL's warper with cubic resampling, which honours sub-pixel offsets between the grids
(Landsat's half-PAN-pixel offset, an MS corner inside a PAN pixel) from the geotransforms rather
than assuming aligned corners. Methods that want the low-resolution MS get it on the *coarse
grid*: the output grid with pixels ``ratio`` times larger, anchored at the output grid's corner,
so that tiles whose origins are multiples of the ratio see whole coarse pixels.

The rooms, each importing only those listed before it:

- :mod:`.grid`: :class:`Grid`, :class:`SceneSpec`, :class:`Scene` and the PAN/MS grid geometry;
- :mod:`.opening`: :func:`open_pair` (file and grid validation, the MS VRT);
- :mod:`.reading`: :class:`SceneReader`, :func:`read_tile`, :func:`read_arrays` (hole filling is
  :func:`ssdiff_cli.filters.fill_invalid`);
- :mod:`.sampling`: the decimated :class:`SceneSample` and the statistics taken from it;
- :mod:`.preparation`: :func:`prepare_scene` (sensor detection, opening and sampling together).
"""

from ssdiff_cli.scene.grid import Grid, Scene, SceneSpec
from ssdiff_cli.scene.opening import open_pair
from ssdiff_cli.scene.preparation import check_bit_depth, prepare_scene
from ssdiff_cli.scene.reading import (
    SceneReader,
    TileData,
    ms_files,
    read_arrays,
    read_mask_window,
    read_tile,
    read_window,
    reader_for,
)
from ssdiff_cli.scene.sampling import (
    SceneSample,
    fill_values,
    ms_maximum,
    scene_sample,
)

__all__ = [
    "Grid",
    "Scene",
    "SceneReader",
    "SceneSample",
    "SceneSpec",
    "TileData",
    "check_bit_depth",
    "fill_values",
    "ms_files",
    "ms_maximum",
    "open_pair",
    "prepare_scene",
    "read_arrays",
    "read_mask_window",
    "read_tile",
    "read_window",
    "reader_for",
    "scene_sample",
]
