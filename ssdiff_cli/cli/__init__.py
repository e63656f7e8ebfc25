"""The ``ssdiff`` command line: parses options, reports progress, maps errors to exit codes.

Every command calls one library function; nothing here computes anything. The package is laid
out like rasterio's ``rio/``: :mod:`.options` (choices and shared options), :mod:`.reporting`
(the error handler, the progress bar, JSON), and one module per command, assembled here.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ssdiff_cli import __version__, allocator
from ssdiff_cli.cli import evaluate, finetune, info, models, sharpen, train
from ssdiff_cli.cli.options import METHODS, PairCommand
from ssdiff_cli.cli.reporting import EXIT_CODES_HELP, set_verbose

__all__ = ["METHODS", "app", "main", "register_commands"]


def _print_version(value: bool) -> None:
    """``--version``: eager, so it works without a command."""
    if value:
        typer.echo(f"ssdiff {__version__}")
        raise typer.Exit()


def main_callback(
    version: Annotated[bool, typer.Option("--version", help="Print the version.",
                                          callback=_print_version, is_eager=True)] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Tracebacks on errors.")] = False,
) -> None:
    """Pansharpen whole satellite scenes."""
    set_verbose(verbose)
    allocator.configure()


def register_commands(target: typer.Typer) -> None:
    """Add every command to ``target``, in ``--help`` order (tests build bare apps with it)."""
    target.command(cls=PairCommand)(sharpen.sharpen)
    target.command(cls=PairCommand)(info.info)
    target.command()(evaluate.evaluate)
    target.command()(train.train)
    target.command()(finetune.finetune)
    target.add_typer(models.app, name="models")


app = typer.Typer(
    name="ssdiff",
    help="Pansharpen whole satellite scenes with SSDiff or classical fusion.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.callback()(main_callback)
register_commands(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    app(args=argv, prog_name="ssdiff")
