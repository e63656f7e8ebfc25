"""What the command line tells the user: the one error handler (library errors to README's
exit-code table, one line each), warnings as one line, signals as interrupts, the progress bar,
and JSON on stdout.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
import warnings
from contextlib import contextmanager

import typer
from rich.console import Console

from ssdiff_cli.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_MISREGISTERED,
    EXIT_MODEL,
    EXIT_OUTPUT,
    EXIT_RUNTIME,
    EXIT_SIGNAL_BASE,
    OutputError,
    SsdiffError,
    Terminated,
)

#: README's exit-code table in one paragraph (``ssdiff --help``).
EXIT_CODES_HELP = (
    "Exit codes: 0 success; 2 usage error; "
    f"{EXIT_BAD_INPUT} bad input (missing/unreadable file, CRS or grid mismatch, sensor mismatch); "
    f"{EXIT_MISREGISTERED} misregistration refused (see --force); "
    f"{EXIT_OUTPUT} output not writable or exists (see --overwrite); "
    f"{EXIT_MODEL} model does not fit the input; "
    f"{EXIT_RUNTIME} runtime failure (or a degenerate result, not written); "
    f"{EXIT_INTERRUPTED} interrupted; 129 / 143 hung up / terminated."
)

# soft_wrap: a line is one line whatever the width (not a terminal: rich assumes 80 columns)
stderr = Console(stderr=True, soft_wrap=True)
# -v (set by the app's callback), -q of the running command, and the signal that ended it.
_state: dict = {"verbose": False, "quiet": False, "signal": None}


def set_verbose(verbose: bool) -> None:
    """``-v``: errors also print their traceback, GDAL's log messages are shown."""
    _state["verbose"] = verbose


def warn(message: str) -> None:
    """One yellow warning line on stderr, unless the command runs with ``-q``."""
    if not _state["quiet"]:
        stderr.print(f"[yellow]ssdiff: warning:[/] {message}", highlight=False, soft_wrap=True)


def require_stdout(what: str) -> None:
    """Refuse (exit 5) before any work when standard output is closed (``>&-``) and ``what``
    (``--json``, ``-o -``, the report) would be written there."""
    stream = sys.stdout
    try:
        if stream is not None:
            os.fstat(stream.fileno())
    except io.UnsupportedOperation:  # a stream with no descriptor (a test's capture) is open
        pass
    except (OSError, ValueError):  # a closed descriptor
        stream = None
    if stream is None:
        raise OutputError(f"standard output is closed, so {what} cannot be written; give it "
                          "somewhere to go (> FILE, | COMMAND)")


def interrupt_exit_code() -> int:
    """Exit code after an interruption: 130 for Ctrl-C, 128 + N after signal N (SIGTERM 143)."""
    signum = _state.get("signal")
    return EXIT_SIGNAL_BASE + signum if signum else EXIT_INTERRUPTED


@contextmanager
def termination_as_interrupt():
    """SIGTERM and SIGHUP unwind like Ctrl-C (a :class:`Terminated` KeyboardInterrupt), so work
    files are removed and training state is saved; later signals are ignored while unwinding."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = [s for s in ("SIGTERM", "SIGHUP") if hasattr(signal, s)]
    old = {name: signal.getsignal(getattr(signal, name)) for name in names}

    def handler(signum, frame):
        for name in names:
            signal.signal(getattr(signal, name), signal.SIG_IGN)
        _state["signal"] = signum
        raise Terminated(signum)

    for name in names:
        signal.signal(getattr(signal, name), handler)
    try:
        yield
    finally:
        for name, h in old.items():
            signal.signal(getattr(signal, name), h)


@contextmanager
def reporting(quiet: bool = False):
    """The error handler every command runs in: a library error becomes one line on stderr and
    its exit code (:class:`SsdiffError.exit_code`), an interruption 130 or 128 + the signal, any
    other exception a one-line runtime failure (exit 10); warnings become one line each."""
    _state["quiet"] = quiet
    _state["signal"] = None
    # GDAL's messages reach Python's logging; unhandled, they would be printed as noise around
    # the one-line error (the error itself carries what matters). -v shows them.
    if not _state["verbose"] and not logging.getLogger("rasterio").handlers:
        logging.getLogger("rasterio").addHandler(logging.NullHandler())

    def show(message, category, filename, lineno, file=None, line=None):
        warn(str(message))

    old = warnings.showwarning
    warnings.showwarning = show
    try:
        with termination_as_interrupt(), warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.filterwarnings("ignore", module="rasterio")
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*matmul.*")
            # A nodata value beyond float32 (1e40, -DBL_MAX of float64 files) compared with data
            # read as float32: both are infinity there, which is what the readers rely on.
            warnings.filterwarnings("ignore", "overflow encountered in cast", RuntimeWarning,
                                    r"ssdiff_cli\.scene\.")
            yield
    except SsdiffError as exc:
        stderr.print(f"[red]ssdiff: error:[/] {exc}", highlight=False, soft_wrap=True)
        if _state["verbose"]:
            traceback.print_exc()
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        how = "terminated" if _state.get("signal") == getattr(signal, "SIGTERM", None) else (
            "hung up" if _state.get("signal") else "interrupted")
        stderr.print(f"[red]ssdiff: {how}[/]")
        raise typer.Exit(interrupt_exit_code()) from None
    except (typer.Exit, typer.Abort, typer.TyperException):  # click's own: usage errors
        raise
    except Exception as exc:  # a bug or an environment failure: say so, one line
        stderr.print(
            f"[red]ssdiff: runtime failure:[/] {type(exc).__name__}: {exc}",
            highlight=False, soft_wrap=True,
        )
        if _state["verbose"]:
            traceback.print_exc()
        else:
            stderr.print("(run with -v for the traceback)")
        raise typer.Exit(EXIT_RUNTIME) from None
    finally:
        warnings.showwarning = old


#: What the bar shows after its count: tiles and throughput, or training loss, speed, time left.
_TILE_FIELDS = "tiles  {task.fields[mps]:.2f} MP/s"
_STEP_FIELDS = "loss {task.fields[loss]:.4f}  {task.fields[rate]:.2f} steps/s  {task.fields[left]} left"


@contextmanager
def progress_bar(enabled: bool, label: str, training: bool = False):
    """The rich progress bar on stderr, shown only when stderr is a terminal; yields its update
    callback, or None when no bar is shown.

    Tiles: ``update(done, total, pixels)`` (count, MP/s, elapsed and remaining time). Training
    (``training=True``): ``update(step, total, loss, steps_per_s, seconds_left)``, drawn every
    5 steps and at the last."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    columns += ([TextColumn(_STEP_FIELDS)] if training
                else [TextColumn(_TILE_FIELDS), TimeElapsedColumn(), TimeRemainingColumn()])
    with Progress(*columns, console=stderr, transient=True) as bar:
        task = bar.add_task(label, total=None, mps=0.0, loss=float("nan"), rate=0.0, left="?")
        yield _step_update(bar, task) if training else _tile_update(bar, task)


def _tile_update(bar, task):
    start = time.perf_counter()

    def update(done: int, total: int, pixels: int) -> None:
        rate = pixels / 1e6 / max(time.perf_counter() - start, 1e-6)
        bar.update(task, completed=done, total=total, mps=rate)

    return update


def _step_update(bar, task):
    def update(step: int, total: int, loss: float, rate: float, left: float) -> None:
        if step % 5 == 0 or step == total:
            m, s = divmod(int(left), 60)
            bar.update(task, completed=step, total=total if total < 10**8 else None, loss=loss,
                       rate=rate, left=f"{m // 60}:{m % 60:02d}:{s:02d}")

    return update


def print_json(data: dict) -> None:
    """``--json``: ``data`` as indented JSON, one document on stdout (paths and other objects as
    their ``str``)."""
    require_stdout("the JSON summary")
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()
