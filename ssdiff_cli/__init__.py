"""ssdiff: scene-scale pansharpening with the SSDiff diffusion model and classical methods.

The library can be used without the CLI::

    from ssdiff_cli.pipeline import sharpen, SharpenOptions
    report = sharpen("pan.tif", ["ms.tif"], "out.tif", SharpenOptions(method="mtf-glp"))
"""

import os
import re
from importlib import metadata
from pathlib import Path


def _version() -> str:
    """The installed distribution's version; in a source checkout that is not installed, the
    version in the checkout's ``pyproject.toml``, marked ``+source``."""
    try:
        return metadata.version("ssdiff")
    except metadata.PackageNotFoundError:
        pass
    try:
        text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    except OSError:
        return "unknown"
    found = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
    return f"{found.group(1)}+source" if found else "unknown"


__version__ = _version()

# GDAL's block cache defaults to 5 % of the machine's memory; tiles are written once and read
# once, so a small cache costs no speed and keeps peak memory bounded by the tile size. The
# output's blocks pass through it too: a larger cache fills with them until the cap, so the peak
# would grow with the scene up to the cap (64 MB: reached already at 2048² PAN px).
# Set GDAL_CACHEMAX yourself to override.
os.environ.setdefault("GDAL_CACHEMAX", "64")
