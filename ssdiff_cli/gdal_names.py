"""GDAL dataset names as the user typed them, and ``gdal_pansharpen.py``'s band-selection syntax.

A dataset name is what GDAL opens: a local path, or a virtual-file-system name such as
``/vsicurl/https://host/x.tif``, ``/vsizip//data/a.zip/b.tif``, ``/vsis3/bucket/key.tif`` or
``/vsistdin/``. ``pathlib.Path`` would rewrite the last three kinds (it folds ``//`` and drops a
trailing ``/``), so names travel as :class:`DatasetName`, a ``str`` that GDAL receives untouched
and that also answers the few path questions the code asks (``name``, ``parent``, ``exists()``).

Band selection follows ``gdal_pansharpen.py``: ``ms.tif,band=3`` takes band 3 of ``ms.tif``;
this tool also accepts a list, ``ms.tif,band=5,3,2``. :func:`split_band_suffix` separates it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ssdiff_cli.errors import BadInputError

#: Prefix of GDAL's virtual file systems (``/vsicurl/``, ``/vsizip/``, ``/vsis3/``, ...).
VSI_PREFIX = "/vsi"

_BAND_SUFFIX = re.compile(r"^(?P<name>.+),band=(?P<bands>[^,=]+(?:,[^,=]+)*)$")


class DatasetName(str):
    """A GDAL dataset name kept exactly as given; ``str(name)`` is what GDAL opens."""

    @property
    def is_virtual(self) -> bool:
        """True for a GDAL virtual file system name (``/vsi...``), which has no local file."""
        return self.startswith(VSI_PREFIX)

    @property
    def name(self) -> str:
        """The last part of the name (for messages): ``x.tif`` of ``/vsicurl/https://h/x.tif``."""
        stripped = self.rstrip("/")
        return stripped.rsplit("/", 1)[-1] or str(self)

    @property
    def stem(self) -> str:
        """:attr:`name` without its extension."""
        return Path(self.name).stem

    @property
    def parent(self) -> Path:
        """The local folder holding the file (sidecar search); a non-existent path for virtual
        names, so a folder listing there finds nothing."""
        if self.is_virtual:
            return Path("/nonexistent-virtual-folder")
        return Path(str(self)).parent

    def exists(self) -> bool:
        """Whether a local file exists; always True for a virtual name (GDAL will say)."""
        return self.is_virtual or os.path.exists(self)

    def is_dir(self) -> bool:
        """Whether a local name is a folder (never for a virtual name)."""
        return not self.is_virtual and os.path.isdir(self)

    def resolve(self) -> DatasetName:
        """An absolute name for a local file (VRT sources); virtual names unchanged."""
        return self if self.is_virtual else DatasetName(os.path.abspath(self))


def dataset_name(value: str | os.PathLike) -> DatasetName:
    """``value`` as a :class:`DatasetName` (a ``Path`` is converted with ``os.fspath``)."""
    if isinstance(value, DatasetName):
        return value
    return DatasetName(os.fspath(value))


def split_band_suffix(value: str | os.PathLike) -> tuple[DatasetName, list[int] | None]:
    """``("ms.tif", [5, 3, 2])`` from ``"ms.tif,band=5,3,2"``; ``(name, None)`` without a suffix.

    Band numbers are 1-based; anything else after ``,band=`` is a :class:`BadInputError`."""
    text = os.fspath(value)
    m = _BAND_SUFFIX.match(text)
    if m is None:
        return dataset_name(text), None
    try:
        bands = [int(b) for b in m.group("bands").split(",")]
    except ValueError:
        raise BadInputError(f"{text}: ',band=' wants band numbers, e.g. ms.tif,band=3,2,1") from None
    if any(b < 1 for b in bands):
        raise BadInputError(f"{text}: band numbers start at 1")
    return dataset_name(m.group("name")), bands


def ms_band_selection(ms_args: list, bands: list[int] | None = None
                      ) -> tuple[list[DatasetName], list[int] | None]:
    """The MS files and the 1-based bands to use from them (stacked in the order given), from the
    MS arguments (possibly with ``,band=`` suffixes) and ``-b`` (which picks from what the
    arguments give, as ``gdal_pansharpen.py -b`` does). ``None``: every band.

    ``ms.tif,band=1 ms.tif,band=2`` (one file named with several suffixes) is that file with
    bands 1 and 2; suffixes on several different files are refused."""
    parsed = [split_band_suffix(a) for a in ms_args]
    names = [n for n, _ in parsed]
    selection = None
    if any(b is not None for _, b in parsed):
        if len(set(names)) != 1 or any(b is None for _, b in parsed):
            raise BadInputError(
                f"{ms_args[0]}: ',band=' suffixes must all name the same MS file "
                "(give other files whole, one per band, or use -b)")
        names = names[:1]
        selection = [b for _, bs in parsed for b in bs]
    if bands:
        if any(b < 1 for b in bands):
            raise BadInputError(f"-b {bands}: band numbers start at 1")
        if selection is not None:
            if max(bands) > len(selection):
                raise BadInputError(f"-b {max(bands)}: only {len(selection)} bands given")
            selection = [selection[b - 1] for b in bands]
        else:
            selection = list(bands)
    return names, selection
