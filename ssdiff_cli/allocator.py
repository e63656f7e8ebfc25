"""Memory-allocator settings for the model's large, short-lived tensors (Linux, glibc).

A network run allocates and frees gigabytes of tensors of a few to a few tens of MB. Two things
go wrong with glibc's defaults:

* glibc raises its memory-map threshold to the largest block freed so far (up to 32 MB), after
  which tens-of-MB activations are carved from the heap and stay resident as fragments once
  freed: the peak grows by about half again over the live arrays. A fixed threshold of
  ``MMAP_THRESHOLD`` keeps each large array in its own map (and stops the raising).
* every such map is fresh memory the kernel zeroes page by page on first touch: on wv2_grip
  (1280², 8 bands, the default model) 16.8 million page faults and 68 s of system time beside
  85 s of compute. PyTorch backs allocations of 2 MB and more with transparent huge pages when
  ``THP_MEM_ALLOC_ENABLE`` is set, and one arena with a large top pad and no trimming keeps the
  smaller blocks in the process for reuse: 4.2 million faults, 30 s of system time, 99 s -> 70 s
  wall, peak 1.08 -> 1.19 GB.

:func:`configure` applies both, once per process: the CLI calls it before any work and
:func:`ssdiff_cli.engine.run_plan` before running tiles. ``SSDIFF_ALLOCATOR=default`` leaves
the allocator alone. Elsewhere than glibc it only sets the environment variable.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -2, -3, -8
#: Allocations above this many bytes get their own memory map, returned to the system when freed.
MMAP_THRESHOLD = 1 << 20
_TOP_PAD = 512 * 1024 * 1024
_NEVER_TRIM = 2**31 - 1  # the largest value mallopt takes
_configured: bool | None = None


def configure() -> bool:
    """Set the allocator up for the model (see the module docstring); True when glibc took the
    settings. Only the first call in a process does anything; call it before threads start
    allocating."""
    global _configured
    if _configured is not None:
        return _configured
    if os.environ.get("SSDIFF_ALLOCATOR", "").lower() == "default":
        return False
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    _configured = False
    name = ctypes.util.find_library("c")
    if not sys.platform.startswith("linux") or not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc: its allocator has its own policy
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
                (_M_TOP_PAD, _TOP_PAD), (_M_TRIM_THRESHOLD, _NEVER_TRIM))
    _configured = all(mallopt(param, value) == 1 for param, value in settings)
    return _configured
