"""ssdiff: scene-scale pansharpening with the SSDiff diffusion model and classical methods.

The library can be used without the CLI::

    from ssdiff_cli.pipeline import sharpen, SharpenOptions
    report = sharpen("pan.tif", ["ms.tif"], "out.tif", SharpenOptions(method="mtf-glp"))
"""

import os

__version__ = "0.1.0"

# GDAL's block cache defaults to 5 % of the machine's memory; tiles are written once and read
# once, so a small cache costs no speed and keeps peak memory bounded by the tile size. The
# output's blocks pass through it too: a larger cache fills with them until the cap, so the peak
# would grow with the scene up to the cap (64 MB: reached already at 2048² PAN px).
# Set GDAL_CACHEMAX yourself to override.
os.environ.setdefault("GDAL_CACHEMAX", "64")
