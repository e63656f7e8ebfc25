"""Writing the fused scene: checks before work, tile writes, COG translation, atomic move.

One job per module:

- :mod:`~ssdiff_cli.output.spec`: what the file holds (:func:`output_spec`, :class:`OutputSpec`)
  and the conversion of fused values to its type;
- :mod:`~ssdiff_cli.output.destination`: checking a path before any work
  (:func:`check_destination`, :class:`OutputTarget`) and moving a finished file into place;
- :mod:`~ssdiff_cli.output.workfiles`: hidden work files, free space, disk-full errors;
- :mod:`~ssdiff_cli.output.writer`: :class:`TileWriter`, tiles -> work GeoTIFF -> COG -> rename;
- :mod:`~ssdiff_cli.output.stream`: the streamable GeoTIFF of ``-o -`` and copying to stdout.

GDAL's creation options for COG and GTiff are chosen in :mod:`ssdiff_cli.gdal_formats`.
"""

from ssdiff_cli.output.destination import (
    OutputTarget,
    check_destination,
    is_stream,
    publish_file,
    same_file,
)
from ssdiff_cli.output.spec import OutputSpec, output_spec, to_output_dtype, value_range
from ssdiff_cli.output.stream import ifd_follows_header, stream_to_stdout, write_streamable
from ssdiff_cli.output.workfiles import (
    _HOST,
    c_stderr_held,
    check_free_space,
    disk_error,
    remove_stale_work_files,
    work_stem,
)
from ssdiff_cli.output.writer import TileWriter

__all__ = [
    "OutputSpec",
    "OutputTarget",
    "TileWriter",
    "_HOST",
    "c_stderr_held",
    "check_destination",
    "check_free_space",
    "disk_error",
    "ifd_follows_header",
    "is_stream",
    "output_spec",
    "publish_file",
    "remove_stale_work_files",
    "same_file",
    "stream_to_stdout",
    "to_output_dtype",
    "value_range",
    "work_stem",
    "write_streamable",
]
