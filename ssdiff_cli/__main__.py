"""``python -m ssdiff_cli`` runs the command-line tool."""

from ssdiff_cli.cli import main

main()
