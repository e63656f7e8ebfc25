"""The demo's scene: a WorldView-2 tile over Rotterdam from the PyPI wheel ``solaris==0.4.0``
(``solaris/data/preproc_tutorial/``; Maxar WorldView-2, the SpaceNet 6 optical release,
CC-BY-SA 4.0), written as the PAN + MS pair ssdiff reads.

The tutorial stores the 2 m MS as a 2x nearest-neighbour upsampling (float64, 1 m pixels);
every second pixel gives back the true 2 m grid (twice the pixel size, the same origin, the
values unchanged, as uint16). The tutorial files carry no sensor metadata (their size alone
would match Pleiades), so both files are tagged ``SENSOR=WorldView-2``, ``BIT_DEPTH=11`` and
nodata 0, with band names: the same files as ``../shared/data/wv2_solaris_2`` and ``_3``.

Tile 1 is never read: it is held out of every training run, calibration fit and model choice,
for independent evaluation.

Usage: solaris_tiles.py WHEEL TILE DEST_DIR   (TILE 2 or 3; writes DEST_DIR/pan.tif, ms.tif)
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import rasterio
from rasterio.io import MemoryFile

WHEEL_NAME = "solaris-0.4.0-py3-none-any.whl"
WHEEL_SHA256 = "09445946221410ebb2ae807580cf7dea9fe3c9aa3bf045947b61a162d2d3a8df"
TILES = (2, 3)  # tile 1 is held out for independent evaluation
MEMBER = "solaris/data/preproc_tutorial/{kind}{tile}.tif"
MAX_MEMBER_BYTES = 8 << 20  # the tutorial's files are 0.7 MB (PAN) and 2.9 MB (MS)
ATTRIBUTION = ("Maxar WorldView-2 over Rotterdam (tiles 2 and 3), SpaceNet 6 optical release, via the "
               "preprocessing tutorial of CosmiQ/solaris (PyPI solaris 0.4.0); CC-BY-SA 4.0 "
               "(https://creativecommons.org/licenses/by-sa/4.0/): results derived from it are "
               "shared under the same terms")
TAGS = {"SENSOR": "WorldView-2", "BIT_DEPTH": "11"}
MS_BANDS = ("blue", "green", "red", "nir1")


def _read_member(wheel: zipfile.ZipFile, name: str) -> bytes:
    info = wheel.getinfo(name)
    if info.file_size > MAX_MEMBER_BYTES:
        raise ValueError(f"{name}: {info.file_size} bytes in the wheel, more than the "
                         f"{MAX_MEMBER_BYTES} a tutorial tile has")
    return wheel.read(info)


def _write(path: Path, data: np.ndarray, profile: dict, descriptions: tuple[str, ...]) -> None:
    """Write ``data`` at ``path`` through a temporary file in the same folder (never half-written)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tif", dir=path.parent)
    os.close(fd)
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
            dst.update_tags(**TAGS)
            dst.descriptions = descriptions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_wheel(wheel: str | os.PathLike) -> None:
    """Refuse a file that is not the published ``solaris-0.4.0`` wheel (sha256)."""
    digest = hashlib.sha256(Path(wheel).read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise ValueError(f"{wheel}: sha256 {digest}, not that of PyPI's {WHEEL_NAME}")


def convert_tile(wheel: str | os.PathLike, tile: int, dest: str | os.PathLike) -> tuple[Path, Path]:
    """Write tile ``tile`` (2 or 3) of the wheel's tutorial data as ``dest/pan.tif`` (0.5 m) and
    ``dest/ms.tif`` (the true 2 m grid). Returns (pan, ms)."""
    if tile not in TILES:
        raise ValueError(f"tile {tile}: the demo uses tiles {TILES} only (tile 1 is held out for "
                         "independent evaluation)")
    check_wheel(wheel)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        pan_bytes = _read_member(zf, MEMBER.format(kind="pan", tile=tile))
        ms_bytes = _read_member(zf, MEMBER.format(kind="ms", tile=tile))
    with MemoryFile(pan_bytes) as mem, mem.open() as src:
        pan, pan_profile = src.read(), src.profile
    with MemoryFile(ms_bytes) as mem, mem.open() as src:
        ms, ms_profile = src.read(), src.profile
    if pan.dtype != np.uint16 or ms.shape[0] != len(MS_BANDS):
        raise ValueError(f"tile {tile}: PAN {pan.dtype}, MS {ms.shape[0]} bands; expected uint16 "
                         f"and {len(MS_BANDS)}")
    if ms.shape[1] % 2 or ms.shape[2] % 2 or pan.shape[1] != 2 * ms.shape[1]:
        raise ValueError(f"tile {tile}: MS {ms.shape[1:]} is not the 2x upsampling of a grid "
                         f"4x coarser than the PAN {pan.shape[1:]}")
    ms = ms[:, ::2, ::2]
    if not (np.all(ms == np.round(ms)) and ms.min() >= 0 and ms.max() <= np.iinfo(np.uint16).max):
        raise ValueError(f"tile {tile}: MS values are not uint16 integers")
    common = {"driver": "GTiff", "tiled": True, "blockxsize": 256, "blockysize": 256,
              "compress": "deflate", "nodata": 0, "dtype": "uint16"}
    pan_path, ms_path = dest / "pan.tif", dest / "ms.tif"
    _write(pan_path, pan, {**pan_profile, **common, "interleave": "band"}, ("pan",))
    _write(ms_path, ms.astype(np.uint16),
           {**ms_profile, **common, "interleave": "pixel", "width": ms.shape[2],
            "height": ms.shape[1], "transform": ms_profile["transform"] @ rasterio.Affine.scale(2)},
           MS_BANDS)
    return pan_path, ms_path


if __name__ == "__main__":
    if len(sys.argv) != 4 or not sys.argv[2].isdigit():
        sys.exit(__doc__)
    try:
        pan_path, ms_path = convert_tile(sys.argv[1], int(sys.argv[2]), sys.argv[3])
    except (ValueError, KeyError, OSError) as exc:
        sys.exit(f"solaris_tiles.py: {exc}")
    print(f"wrote {pan_path} and {ms_path}\ndata: {ATTRIBUTION}")
