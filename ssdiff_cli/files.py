"""Small file-system helpers shared by every writer (no project imports: the bottom layer)."""

from __future__ import annotations

import os


def umask_mode(path: str | os.PathLike) -> None:
    """Give a file written through a private temporary (safetensors and mkstemp write 0600) the
    permissions the umask gives any new file."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
