"""Output formats and GDAL creation options: ``-of``, ``--co KEY=VALUE``, ``--compress``, and the
streamable layout of ``-o -``.

Files are Cloud-Optimized GeoTIFFs (``-of COG``, the default) or plain tiled GeoTIFFs
(``-of GTiff``); both are TIFFs, so an output name must end in ``.tif`` or ``.tiff`` (a ``.vrt``
or ``.png`` name is refused rather than silently given TIFF bytes). ``-o -`` writes to a pipe: a
COG's header points past its ghost area and its overviews, which GDAL cannot read from a stream,
so the default there is GDAL's streamable GeoTIFF layout (``STREAMABLE_OUTPUT=YES``: the IFD at
offset 8, uncompressed strips in order), which ``gdalinfo /vsistdin/`` and ``gdal_translate
/vsistdin/ out.tif`` read; ``-of COG -o -`` streams the COG for readers that buffer the whole
stream (``/vsistdin?buffer_limit=-1``). ``--co`` options are passed to GDAL's driver after the
tool's own, so they win.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ssdiff_cli.errors import UsageError

#: Output formats (GDAL driver names) ``-of`` accepts.
FORMATS = ("COG", "GTiff")
#: Names an output file may have: both formats are TIFF files.
TIFF_EXTENSIONS = (".tif", ".tiff")
#: Data types an output may have (``--dtype``): GDAL's integer and float types.
OUTPUT_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")

#: Compression profiles of ``--compress``; one registry entry per profile, returned as copies.
COMPRESSION = {
    # Level 1: on imagery with a predictor it compresses as well as 6 at two thirds of the time.
    "deflate": {"COMPRESS": "DEFLATE", "PREDICTOR": "YES", "LEVEL": "1"},
    "lzw": {"COMPRESS": "LZW", "PREDICTOR": "YES"},
    "zstd": {"COMPRESS": "ZSTD", "PREDICTOR": "YES"},
    "none": {"COMPRESS": "NONE"},
}


def parse_creation_options(items: list[str] | None) -> dict[str, str]:
    """``["BLOCKSIZE=256", "level=9"]`` -> ``{"BLOCKSIZE": "256", "LEVEL": "9"}`` (keys upper-case,
    as GDAL compares them); a malformed item is a :class:`UsageError`."""
    options: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value:
            raise UsageError(f"--co {item!r}: creation options are KEY=VALUE, e.g. --co BLOCKSIZE=256")
        options[key.strip().upper()] = value
    return options


def resolve_format(path: str, fmt: str | None) -> str:
    """The driver for ``path``: ``fmt`` (case-insensitive) or COG; ``-`` is the streamable TIFF
    unless ``-of`` is given. Refuses unknown formats and non-TIFF file names."""
    if fmt is not None:
        match = [f for f in FORMATS if f.lower() == fmt.lower()]
        if not match:
            raise UsageError(f"-of {fmt}: ssdiff writes {' or '.join(FORMATS)}; convert with "
                             "gdal_translate for other formats")
        fmt = match[0]
    if path == "-":
        return fmt or "stream"
    if Path(path).suffix.lower() not in TIFF_EXTENSIONS:
        raise UsageError(f"{path}: output must be a {'/'.join(TIFF_EXTENSIONS)} file "
                         f"({fmt or 'COG'} is a GeoTIFF); convert with gdal_translate for other formats")
    return fmt or "COG"


def translate_options(fmt: str, compress: str, dtype: str, user: dict[str, str] | None = None
                      ) -> tuple[str, dict[str, str]]:
    """``(driver, creation options)`` for translating the working file into the output.

    ``fmt`` is ``COG``, ``GTiff`` or ``stream`` (see :func:`resolve_format`); ``user`` holds the
    ``--co`` options, applied last. The driver ``stream`` means GTiff written row by row in order
    (GDAL honours ``STREAMABLE_OUTPUT`` when writing in order, not in CreateCopy):
    :func:`ssdiff_cli.output.write_streamable`."""
    if fmt == "stream":
        if (user or {}).get("COMPRESS", "NONE").upper() != "NONE":
            raise UsageError("-o -: a streamed GeoTIFF cannot be compressed (GDAL reads only "
                             "uncompressed TIFFs from a pipe); use -of COG -o - or a file")
        options = {"STREAMABLE_OUTPUT": "YES", "COMPRESS": "NONE"}
        options.update(user or {})
        return "stream", options
    try:
        options = dict(COMPRESSION[compress.lower()])
    except KeyError:
        raise UsageError(f"--compress {compress}: choose one of {', '.join(COMPRESSION)}") from None
    options["BIGTIFF"] = "IF_SAFER"
    options["NUM_THREADS"] = "ALL_CPUS"
    if fmt == "COG":
        options.update({"OVERVIEWS": "AUTO", "BLOCKSIZE": "512", "OVERVIEW_RESAMPLING": "AVERAGE"})
    else:
        options.update({"TILED": "YES", "BLOCKXSIZE": "512", "BLOCKYSIZE": "512"})
    if np.dtype(dtype).kind == "f" and options.get("PREDICTOR"):
        options["PREDICTOR"] = "FLOATING_POINT" if fmt == "COG" else "3"
    elif options.get("PREDICTOR") and fmt == "GTiff":
        options["PREDICTOR"] = "2"
    options.update(user or {})
    return ("COG" if fmt == "COG" else "GTiff"), options
