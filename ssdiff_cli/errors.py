"""One exception hierarchy for the whole library.

Every error a user can cause is an :class:`SsdiffError` subclass carrying the process exit code
the CLI uses for it, so the CLI needs one handler and the codes are documented in one place.
"""

from __future__ import annotations

#: Exit codes, documented in ``ssdiff --help`` and README.md.
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3
EXIT_MISREGISTERED = 4
EXIT_OUTPUT = 5
EXIT_MODEL = 6
EXIT_RUNTIME = 10
EXIT_INTERRUPTED = 130
#: Ended by a signal other than SIGINT: 128 + the signal number (SIGHUP 129, SIGTERM 143).
EXIT_SIGNAL_BASE = 128


class SsdiffError(Exception):
    """Base of every error the library raises on purpose; ``exit_code`` is the CLI's exit code."""

    exit_code = EXIT_RUNTIME


class UsageError(SsdiffError, ValueError):
    """Options that contradict each other or the inputs (``-w`` count, ``--co`` syntax, an
    output name the format cannot have): the command line is wrong, exit code 2."""

    exit_code = EXIT_USAGE


class BadInputError(SsdiffError, ValueError):
    """An input file is missing, unreadable, or inconsistent with the other inputs or options."""

    exit_code = EXIT_BAD_INPUT


class GridMismatchError(BadInputError):
    """PAN and MS grids cannot be related: CRS differs, ratio not whole, extents disjoint."""


class SensorMismatchError(BadInputError):
    """The inputs contradict the sensor preset (band count, ratio)."""


class MisregistrationError(SsdiffError):
    """The measured PAN/MS shift is above the refusal threshold (override with ``--force``)."""

    exit_code = EXIT_MISREGISTERED


class OutputError(SsdiffError, OSError):
    """The output cannot be written: it exists without ``--overwrite``, or its folder is not
    writable."""

    exit_code = EXIT_OUTPUT


class ModelError(SsdiffError, ValueError):
    """A checkpoint is missing, corrupt, or does not fit the input (bands, ratio, architecture)."""

    exit_code = EXIT_MODEL


class DegenerateOutputError(SsdiffError):
    """The result is all nodata, NaN or constant where the inputs are not: not published."""

    exit_code = EXIT_RUNTIME


class ClusterError(SsdiffError):
    """The dask cluster cannot be used: scheduler unreachable, no worker, ssdiff missing on a
    worker. Exit code: runtime failure."""

    exit_code = EXIT_RUNTIME


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C (work files removed, state saved), and
    the process exits with 128 + ``signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class SsdiffWarning(UserWarning):
    """Base of the library's warnings."""


class NotGeoreferencedWarning(SsdiffWarning):
    """The pair carries no georeferencing; grids are assumed aligned at the upper-left corner."""


class MisregistrationWarning(SsdiffWarning):
    """The measured PAN/MS shift is above the warning threshold."""


class BitDepthWarning(SsdiffWarning):
    """The data exceed the sensor preset's bit depth; the bit depth is taken from the data."""


class ClippingWarning(SsdiffWarning):
    """The output type cannot hold the result's range; values are clipped (see ``--scale``)."""
