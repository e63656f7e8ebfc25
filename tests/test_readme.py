"""README's option list agrees with ``ssdiff sharpen --help`` (issue 14: "README's option list
and examples match --help")."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from ssdiff_cli.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _help_options(command: str) -> dict[str, str]:
    """Long option -> its choices (``a|b|c``) or '' from ``--help``."""
    text = runner.invoke(app, [command, "--help"], env={"COLUMNS": "300"}).output
    found = {}
    for line in text.splitlines():
        m = re.match(r"\W*(--[a-z][a-z0-9-]*)\s+(?:-\w+\s+)?(?:--no-[a-z-]+\s+)?<([^>]*)>", line)
        if m:
            found[m.group(1)] = m.group(2) if "|" in m.group(2) else ""
    return found


def _readme_paragraph() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("`sharpen` options:")
    return re.sub(r"\s+", " ", text[start:text.index("\n\n", start)])


def test_readme_lists_every_sharpen_option_with_its_choices():
    para = _readme_paragraph()
    options = _help_options("sharpen")
    assert len(options) > 30
    for option, choices in options.items():
        if option == "--help":
            continue
        assert option in para, f"README's option list lacks {option}"
        if choices:
            assert f"{option} {choices}" in para or f"/{option} {choices}" in para, (option, choices)
    for named in set(re.findall(r"`(--[a-z][a-z0-9-]*)", para)):
        assert named in options, f"README names {named}, which sharpen --help does not list"


def test_readme_examples_use_existing_options():
    text = (ROOT / "README.md").read_text()
    for line in text.splitlines():
        if not line.startswith("ssdiff sharpen "):
            continue
        options = _help_options("sharpen")
        for opt in re.findall(r"(?<=\s)(--[a-z][a-z0-9-]*)", line):
            assert opt in options, (opt, line)
