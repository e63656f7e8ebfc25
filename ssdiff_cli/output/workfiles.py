"""The hidden work files beside an output: their names, removing those of dead runs, room on
the disk, and one-line errors for a disk that fills up (what libtiff prints on file descriptor 2
meanwhile is held: :func:`c_stderr_held`).

Work files are named after the run (``.NAME.HOST-PID-TOKEN.*``) so that a later run removes
those a killed one left behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import socket
import sys
import tempfile
from pathlib import Path

from ssdiff_cli.errors import OutputError


def disk_error(path: str | os.PathLike, exc: BaseException,
               folder: str | os.PathLike | None = None, needed: int = 2**20) -> OutputError | None:
    """A one-line :class:`OutputError` for a write that failed for lack of space, or None.

    GDAL's own message ("Write failed") hides the cause: it is looked for along the exception's
    chain, and failing that in the free space left in ``folder`` (less than ``needed`` bytes:
    GDAL removes a file it failed to finish, so the space may be free again)."""
    full = False
    seen = exc
    while seen is not None and not full:
        text = str(seen)
        full = (isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT)) \
            or "No space left" in text or "Disk quota" in text
        seen = seen.__cause__ or seen.__context__
    if not full and folder is not None:
        with contextlib.suppress(OSError):
            vfs = os.statvfs(folder)
            full = vfs.f_bavail * vfs.f_frsize < needed
    if full:
        return OutputError(f"{path}: no space left on the device while writing it; nothing was "
                           "written (free some space or choose another folder)")
    return None


def check_free_space(path: str | os.PathLike, folder: Path, needed: int) -> None:
    """Refuse before any work when ``folder`` has less room than the uncompressed work file."""
    try:
        vfs = os.statvfs(folder)
    except OSError:
        return
    free = vfs.f_bavail * vfs.f_frsize
    if free < needed:
        raise OutputError(f"{path}: no space left on the device for it: the work file needs "
                          f"{needed / 2**20:.0f} MB, {free / 2**20:.0f} MB are free in {folder}")


@contextlib.contextmanager
def c_stderr_held():
    """Hold what C libraries print on file descriptor 2 while GDAL writes (libtiff prints its
    own "No space left" lines there); the error raised says it in one line."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


# Hidden work files are named ``.{stem}.{host}-{pid}-{token}.{kind}`` beside the output, so a
# later run for the same output can tell those of dead processes on this machine and remove them.
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_MAX_STEM_BYTES = 96


def work_stem(name: str) -> str:
    """The output's name as used in work-file names, shortened (with a hash) when a long name
    would push the hidden names past the file system's 255-byte limit."""
    raw = name.encode()
    if len(raw) <= _MAX_STEM_BYTES:
        return name
    short = raw[:_MAX_STEM_BYTES - 9].decode(errors="ignore")
    return f"{short}~{hashlib.sha1(raw).hexdigest()[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_work_files(folder: Path, stem: str) -> list[Path]:
    """Remove the work files of dead runs (this machine) for the output ``stem``; returns them."""
    pattern = re.compile(rf"^\.{re.escape(stem)}\.{_HOST}-(\d+)-[0-9a-f]{{8}}\.")
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed

