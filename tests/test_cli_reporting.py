"""ssdiff_cli/cli/reporting.py: one error handler gives README's exit codes with one line each,
signals unwind like Ctrl-C, warnings are one line, one progress bar, JSON alone on stdout."""

from __future__ import annotations

import inspect
import io
import json
import os
import re
import signal
import sys
import time
import warnings
from pathlib import Path

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from ssdiff_cli import errors
from ssdiff_cli.cli import app
from ssdiff_cli.cli import reporting as reporting_module
from ssdiff_cli.cli.reporting import (
    EXIT_CODES_HELP,
    print_json,
    progress_bar,
    reporting,
    set_verbose,
)

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _readme_exit_codes() -> set[int]:
    """The codes in README's exit-code table (``| 129 / 143 | ...`` gives both)."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("### Exit codes"):]
    table = table[:table.index("\n\n", table.index("|"))]
    return {int(c) for row in re.findall(r"^\| ([\d /]+) \|", table, re.M) for c in row.split("/")}


def _raising(make_error, quiet: bool = False) -> typer.Typer:
    """A one-command app whose command raises ``make_error()`` inside the error handler."""
    test_app = typer.Typer()

    @test_app.command()
    def boom() -> None:
        with reporting(quiet):
            raise make_error()

    @test_app.callback()
    def main() -> None:
        """test app"""

    return test_app


def _library_errors() -> list[type[errors.SsdiffError]]:
    return [c for _, c in inspect.getmembers(errors, inspect.isclass)
            if issubclass(c, errors.SsdiffError)]


@pytest.mark.parametrize("error", _library_errors(), ids=lambda c: c.__name__)
def test_every_library_error_is_one_line_and_its_tables_exit_code(error):
    result = runner.invoke(_raising(lambda: error("pan.tif: what went wrong")), ["boom"])
    assert result.exit_code == error.exit_code
    assert result.exit_code in _readme_exit_codes()
    assert result.stderr == "ssdiff: error: pan.tif: what went wrong\n"
    assert result.stdout == ""


def test_the_exit_codes_are_the_readme_table_and_the_help():
    codes = {errors.EXIT_OK, errors.EXIT_USAGE, errors.EXIT_BAD_INPUT, errors.EXIT_MISREGISTERED,
             errors.EXIT_OUTPUT, errors.EXIT_MODEL, errors.EXIT_RUNTIME, errors.EXIT_INTERRUPTED,
             errors.EXIT_SIGNAL_BASE + signal.SIGHUP, errors.EXIT_SIGNAL_BASE + signal.SIGTERM}
    assert codes == _readme_exit_codes()
    for code in codes:
        assert re.search(rf"(^|[ /]){code} ", EXIT_CODES_HELP), code
    assert app.info.help.endswith(EXIT_CODES_HELP)


def test_any_other_exception_is_a_runtime_failure_without_traceback():
    result = runner.invoke(_raising(lambda: ZeroDivisionError("division by zero")), ["boom"])
    assert result.exit_code == errors.EXIT_RUNTIME
    assert result.stderr.splitlines() == ["ssdiff: runtime failure: ZeroDivisionError: division by zero",
                                          "(run with -v for the traceback)"]


def test_verbose_adds_the_traceback():
    set_verbose(True)
    try:
        result = runner.invoke(_raising(lambda: errors.ModelError("bad card")), ["boom"])
    finally:
        set_verbose(False)
    assert result.exit_code == errors.EXIT_MODEL
    assert result.stderr.startswith("ssdiff: error: bad card\nTraceback")


def test_a_bad_option_value_stays_clicks_usage_error():
    result = runner.invoke(_raising(lambda: typer.BadParameter("no", param_hint="--x")), ["boom"])
    assert result.exit_code == errors.EXIT_USAGE and "Invalid value for --x: no" in result.stderr


def test_ctrl_c_exits_130():
    result = runner.invoke(_raising(KeyboardInterrupt), ["boom"])
    assert result.exit_code == errors.EXIT_INTERRUPTED and result.stderr == "ssdiff: interrupted\n"


@pytest.mark.parametrize(("signum", "word"), [(signal.SIGTERM, "terminated"), (signal.SIGHUP, "hung up")])
def test_sigterm_and_sighup_unwind_like_ctrl_c_with_128_plus_the_signal(signum, word):
    before = signal.getsignal(signum)
    unwound = []
    test_app = typer.Typer()

    @test_app.command()
    def work() -> None:
        with reporting():
            try:
                os.kill(os.getpid(), signum)
                time.sleep(5)  # the handler interrupts this at once
            finally:
                unwound.append(True)  # cleanup code runs, as after Ctrl-C

    @test_app.callback()
    def main() -> None:
        """test app"""

    result = runner.invoke(test_app, ["work"])
    assert result.exit_code == errors.EXIT_SIGNAL_BASE + signum
    assert result.stderr == f"ssdiff: {word}\n" and unwound == [True]
    assert signal.getsignal(signum) == before  # the handler is the caller's again


def test_warnings_are_one_line_and_quiet_silences_them():
    def warn_and_succeed(quiet):
        test_app = typer.Typer()

        @test_app.command()
        def work() -> None:
            with reporting(quiet):
                warnings.warn("the shift is 0.7 px", errors.MisregistrationWarning, stacklevel=1)

        @test_app.callback()
        def main() -> None:
            """test app"""

        return runner.invoke(test_app, ["work"])

    loud = warn_and_succeed(False)
    assert loud.exit_code == 0 and loud.stderr == "ssdiff: warning: the shift is 0.7 px\n"
    quiet = warn_and_succeed(True)
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_print_json_writes_one_document_and_nothing_else(capsys):
    print_json({"out": Path("a/b.tif"), "tiles": 4, "scores": {"SAM": 1.5}})
    out, err = capsys.readouterr()
    assert json.loads(out) == {"out": "a/b.tif", "tiles": 4, "scores": {"SAM": 1.5}}
    assert out.endswith("}\n") and out.count("\n{") == 0 and err == ""


def test_progress_bar_only_on_a_terminal(monkeypatch):
    with progress_bar(False, "sharpen") as update:
        assert update is None
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    with progress_bar(True, "sharpen") as update:
        assert update is None


def test_one_progress_bar_for_tiles_and_for_training(monkeypatch):
    terminal = io.StringIO()
    monkeypatch.setattr(reporting_module, "stderr", Console(file=terminal, force_terminal=True, width=150))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with progress_bar(True, "sharpen gsa") as update:
        update(3, 4, 3_000_000)
    with progress_bar(True, "training", training=True) as update:
        update(5, 7, 0.1234, 2.5, 65)
        update(6, 7, 9.0, 2.5, 60)  # between redraws: not shown
    shown = terminal.getvalue()
    assert "sharpen gsa" in shown and "3/4" in shown and "MP/s" in shown
    assert "5/7" in shown and "loss 0.1234" in shown and "2.50 steps/s" in shown
    assert "0:01:05 left" in shown and "loss 9.0000" not in shown
