"""Small file-system helpers shared by every writer (no project imports: the bottom layer).

:func:`umask_mode` gives a privately written file the usual permissions; :func:`dataset_files`
lists the local files a GDAL dataset name reads (a VRT's sources, the file behind a ``/vsi``
name) and :class:`FileSet` says whether a path is one of them (by resolved path or inode), so no
writer replaces an input however it is named.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import warnings


def umask_mode(path: str | os.PathLike) -> None:
    """Give a file written through a private temporary (safetensors and mkstemp write 0600) the
    permissions the umask gives any new file."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


#: GDAL virtual file systems with no local file behind them (network, memory, standard
#: streams): nothing to resolve, and opening them to ask would cost a request or eat stdin.
_NOT_LOCAL = ("/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "/vsiadls", "/vsioss", "/vsiswift",
              "/vsiwebhdfs", "/vsihdfs", "/vsistdin", "/vsistdout", "/vsimem")
#: Archive file systems: ``/vsizip/ARCHIVE/member`` or ``/vsizip/{ARCHIVE}/member``.
_ARCHIVES = ("/vsizip/", "/vsitar/", "/vsi7z/", "/vsirar/")
#: Most VRT files opened to list their sources (nested VRTs), and nesting depth followed.
_MAX_VRT_OPENS, _MAX_DEPTH = 256, 8
_SUBFILE = re.compile(r"^/vsisubfile/[^,]*,(?P<inner>.*)$")


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _not_local(name: str) -> bool:
    return name.startswith(_NOT_LOCAL) or (bool(_URL.match(name)) and not name.startswith("vrt://"))


def _safe_to_open(name: str) -> bool:
    """False where a file the name points at is not a regular file: GDAL would block on a FIFO
    or read a device."""
    for f in local_names(name):
        with contextlib.suppress(OSError):
            if not stat.S_ISREG(os.stat(f).st_mode):
                return False
    return True


def _archive_file(inner: str, depth: int) -> list[str]:
    """The archive an archive file system's name reads: ``{ARCHIVE}/member``, or the longest
    prefix of ``ARCHIVE/member`` that resolves to a file."""
    if inner.startswith("{") and "}" in inner:
        return local_names(inner[1:inner.index("}")], depth + 1)
    parts = inner.split("/")
    for end in range(len(parts), 0, -1):
        candidate = "/".join(parts[:end])
        if not candidate:
            continue
        if candidate.startswith("/vsi"):
            found = local_names(candidate, depth + 1)
            if found and all(os.path.isfile(f) for f in found):
                return found
        elif os.path.isfile(candidate):
            return [os.path.abspath(candidate)]
    return []


def local_names(name: str, depth: int = 0) -> list[str]:
    """The local file(s) a dataset name itself points at, absolute, without opening it:
    ``x.tif`` for ``x.tif``, ``/vsisubfile/0_N,x.tif``, ``/vsizip/x.zip/m.tif``,
    ``/vsigzip/x.gz``, ``vrt://x.tif?bands=1``; nothing for network, memory or stream names."""
    name = os.fspath(name)
    if depth > _MAX_DEPTH or not name or name == "-" or _not_local(name):
        return []
    if name.startswith("vrt://"):
        return local_names(name[len("vrt://"):].split("?", 1)[0], depth + 1)
    if not name.startswith("/vsi"):
        return [os.path.abspath(name)]
    m = _SUBFILE.match(name)
    if m:
        return local_names(m["inner"], depth + 1)
    for prefix in _ARCHIVES:
        if name.startswith(prefix):
            return _archive_file(name[len(prefix):], depth)
    if name.startswith("/vsicrypt/") or name.startswith("/vsicached?"):
        inner = name.partition("file=")[2]
        return local_names(inner, depth + 1) if inner else []
    # /vsigzip/, /vsisparse/ and any other wrapper: the rest of the name is the file it reads.
    rest = name[4:].partition("/")[2]
    return local_names(rest, depth + 1) if rest else []


def dataset_files(name: str | os.PathLike) -> list[str]:
    """Every local file GDAL reads to open dataset ``name``, absolute, each once: the file(s) the
    name points at (:func:`local_names`), the files GDAL lists for the dataset (a VRT's sources,
    sidecar masks and overviews) and, for a VRT among them, its own sources in turn. Network,
    memory and stream names give nothing and are not opened; a name GDAL cannot open gives the
    files it points at (the error is for whoever reads it)."""
    import rasterio  # here: the helpers above serve modules that never open a raster

    found: dict[str, None] = {}
    todo, opened = [(os.fspath(name), 0)], 0
    while todo:
        current, depth = todo.pop()
        for f in local_names(current):
            found.setdefault(f)
        opens = current == os.fspath(name) or current.lower().endswith(".vrt")
        if (not opens or _not_local(current) or depth > _MAX_DEPTH or opened >= _MAX_VRT_OPENS
                or not _safe_to_open(current)):
            continue
        opened += 1
        listed: list[str] = []
        with contextlib.suppress(Exception), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(current) as ds:
                listed = list(ds.files or [])
        for f in listed:
            if f == current:
                continue
            if f.lower().endswith(".vrt") and not any(g in found for g in local_names(f)):
                todo.append((f, depth + 1))
            else:
                for g in local_names(f):
                    found.setdefault(g)
    return list(found)


class FileSet:
    """A set of local files, each with a label (the input it belongs to); :meth:`find` matches a
    path by its resolved name (``..``, symlinks) or, for an existing file, its inode (a hard
    link)."""

    def __init__(self) -> None:
        self._by_path: dict[str, tuple[str, str]] = {}
        self._by_inode: dict[tuple[int, int], tuple[str, str]] = {}

    def add(self, path: str, label: str) -> None:
        """Remember ``path`` (a local file) as a member labelled ``label``."""
        entry = (path, label)
        self._by_path.setdefault(os.path.normcase(os.path.realpath(path)), entry)
        with contextlib.suppress(OSError, ValueError):
            st = os.stat(path)
            self._by_inode.setdefault((st.st_dev, st.st_ino), entry)

    def find(self, path: str | os.PathLike) -> tuple[str, str] | None:
        """``(member, label)`` when ``path`` names a member, else None."""
        hit = self._by_path.get(os.path.normcase(os.path.realpath(path)))
        if hit is None:
            with contextlib.suppress(OSError, ValueError):
                st = os.stat(path)
                hit = self._by_inode.get((st.st_dev, st.st_ino))
        return hit


def input_files(inputs) -> FileSet:
    """A :class:`FileSet` of every local file the dataset names ``inputs`` read
    (:func:`dataset_files`), each labelled with the input it belongs to."""
    files = FileSet()
    for inp in inputs:
        inp = os.fspath(inp)
        for f in dataset_files(inp):
            files.add(f, inp)
    return files
