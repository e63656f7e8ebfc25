"""Where the result may go: checking a path before any work, and moving a finished file into
place.

No path the tool writes ever resolves to a file an input reads (:func:`check_destination`); a
FIFO or a character device is written into, never replaced.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ssdiff_cli.errors import BadInputError, OutputError, UsageError
from ssdiff_cli.files import FileSet, input_files
from ssdiff_cli.gdal_formats import resolve_format


def _is_virtual(path: str) -> bool:
    return path == "-" or path.startswith("/vsi") or "://" in path


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` name one file: the same path after ``..`` and symlinks are
    resolved, or the same inode (a hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def is_stream(path: str | os.PathLike) -> bool:
    """True for a character device or a FIFO (``/dev/null``, a named pipe): written into
    directly, never replaced."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def check_destination(path: str | os.PathLike, *, overwrite: bool, inputs: Iterable = (),
                      others: Iterable[tuple[str, str]] = (), role: str = "output") -> None:
    """Refuse, before any work, a path the tool would write (output, quicklook, model...).

    * it resolves (``..``, symlinks, hard links) to a file an input reads: the input itself, a
      source file of an input VRT, the local file behind a ``/vsi`` name
      (:func:`~ssdiff_cli.files.dataset_files`): :class:`BadInputError` (exit 3), with or
      without ``--overwrite``; ``inputs`` may also be a :class:`~ssdiff_cli.files.FileSet`
      already resolved;
    * it resolves to another path written by the same run (``others``: ``(label, path)``):
      :class:`UsageError`;
    * it is a folder, a block device or a socket, or it exists without ``overwrite``, or its
      folder is missing or not writable: :class:`OutputError` (exit 5).

    A symlink is followed: its target is what is checked and, later, replaced (the link stays).
    A character device or FIFO (``/dev/null``) is written into as a stream and needs no
    ``--overwrite``, since nothing is replaced.
    """
    text = os.fspath(path)
    refuse_input(text, inputs if isinstance(inputs, FileSet) else input_files(inputs), role)
    for label, other in others:
        if other is not None and not _is_virtual(os.fspath(other)) and same_file(text, other):
            raise UsageError(f"{text}: the {role} is also the {label}; give them different paths")
    if text != "-" and _is_virtual(text):
        raise OutputError(f"{text}: GDAL virtual file systems (/vsi..., URLs) are not supported "
                          f"as the {role}; write a local file (and copy it there)")
    real = Path(os.path.realpath(text))
    try:  # a name too long for the file system is an output problem, not a crash
        os.lstat(real)
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as exc:
        raise OutputError(f"{text}: cannot be written ({exc.strerror or exc})") from None
    if real.is_dir():
        raise OutputError(f"{text}: is a folder; give a file name for the {role}")
    if real.exists():
        mode = real.stat().st_mode
        if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
            return
        if not stat.S_ISREG(mode):
            raise OutputError(f"{text}: is not a regular file (a device or socket); not replaced")
        if not overwrite:
            raise OutputError(f"{text}: already exists; pass --overwrite to replace it")
    folder = real.parent
    if not folder.is_dir():
        raise OutputError(f"{text}: folder {folder} does not exist")
    try:  # try for real: access() says yes to root even on read-only mounts
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".ssdiff-probe-"):
            pass
    except OSError:
        raise OutputError(f"{text}: folder {folder} is not writable") from None


def input_message(path: str, hit: tuple[str, str], role: str = "output") -> str:
    """The one-line refusal of ``path``, which is ``hit`` (``(file, input)``, from
    :meth:`~ssdiff_cli.files.FileSet.find`)."""
    file, inp = hit
    what = f"the input {inp}" if same_file(file, inp) else f"{file}, which the input {inp} reads"
    return f"{path}: the {role} would replace {what}; choose another {role} path"


def refuse_input(path: str, inputs: FileSet, role: str = "output") -> None:
    """:class:`BadInputError` when ``path`` is one of the files ``inputs`` read."""
    if _is_virtual(path):
        return
    hit = inputs.find(path)
    if hit is not None:
        raise BadInputError(input_message(path, hit, role))


def publish_file(tmp: str | os.PathLike, dest: str | os.PathLike, overwrite: bool) -> None:
    """Move a finished temporary file to ``dest`` (renamed onto a symlink's target, streamed into
    a device or FIFO); refuses if ``dest`` appeared meanwhile without ``overwrite``."""
    if is_stream(dest):
        with open(tmp, "rb") as src, open(dest, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.unlink(tmp)
        return
    real = os.path.realpath(dest)
    if os.path.exists(real) and not overwrite:
        raise OutputError(f"{dest}: appeared while working; not replaced")
    os.replace(tmp, real)


@dataclass(frozen=True)
class OutputTarget:
    """Where the result goes: a path, or stdout when ``path`` is ``-``. ``inputs`` are the files
    the run reads (an output resolving to one is refused)."""

    path: str
    overwrite: bool = False
    #: ``-of``: COG or GTiff (None: COG for a file, the streamable GeoTIFF for ``-``, a FIFO
    #: or a character device).
    format: str | None = None
    inputs: tuple = ()

    @property
    def to_stdout(self) -> bool:
        """True for ``-o -``."""
        return self.path == "-"

    @property
    def streamed(self) -> bool:
        """True when the COG is streamed out (stdout, a character device, a FIFO)."""
        return self.to_stdout or is_stream(self.path)

    def check(self) -> None:
        """Refuse before any work: a name the format cannot have, an input as output, existing
        output without overwrite, unwritable folder (see :func:`check_destination`)."""
        self.resolved_format()
        if self.to_stdout:
            if sys.stdout.isatty():
                raise OutputError("-: refusing to write a GeoTIFF to a terminal; redirect stdout")
            return
        check_destination(self.path, overwrite=self.overwrite, inputs=self.inputs)

    def resolved_format(self) -> str:
        """The output format (:func:`~ssdiff_cli.gdal_formats.resolve_format`): a FIFO or a
        character device is written as a stream, like ``-o -`` (any name, streamable GeoTIFF
        unless ``-of`` says otherwise)."""
        if not self.to_stdout and is_stream(self.path):
            return resolve_format("-", self.format)
        return resolve_format(self.path, self.format)

    def work_dir(self) -> Path:
        """Folder for the hidden working files (beside the output, so the move is a rename)."""
        if self.streamed:
            return Path(tempfile.gettempdir())
        return Path(os.path.realpath(self.path)).parent

