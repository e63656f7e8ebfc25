"""The one exception hierarchy: every exception and warning class of ``ssdiff_cli`` lives in
``errors.py``, and each error carries the exit code README's table gives it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from ssdiff_cli import errors

ROOT = Path(__file__).resolve().parents[1]

# README's exit-code table, by the words its rows use.
EXPECTED = {
    errors.UsageError: 2,
    errors.BadInputError: 3,
    errors.GridMismatchError: 3,
    errors.SensorMismatchError: 3,
    errors.MisregistrationError: 4,
    errors.OutputError: 5,
    errors.ModelError: 6,
    errors.DegenerateOutputError: 10,
    errors.ClusterError: 10,
    errors.SsdiffError: 10,
}


def _exception_classes(path: Path) -> list[str]:
    """Classes defined in a module whose bases name an exception or warning."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ClassDef):
            bases = [ast.unparse(b) for b in node.bases]
            if any(re.search(r"(Error|Exception|Warning|Interrupt|Terminated)$", b) for b in bases):
                found.append(node.name)
    return found


def test_every_exception_class_is_defined_in_errors_py():
    elsewhere = {str(p.relative_to(ROOT)): names
                 for p in sorted((ROOT / "ssdiff_cli").rglob("*.py")) if p.name != "errors.py"
                 if (names := _exception_classes(p))}
    assert elsewhere == {}
    assert "ClusterError" in _exception_classes(ROOT / "ssdiff_cli" / "errors.py")


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
def test_exit_codes_match_the_readme_table(cls):
    assert cls.exit_code == EXPECTED[cls]
    table = (ROOT / "README.md").read_text(encoding="utf-8").split("### Exit codes", 1)[1]
    assert re.search(rf"^\| {cls.exit_code} \|", table, re.M), f"exit code {cls.exit_code} not in README"


def test_every_error_class_has_its_code_listed():
    classes = [c for c in vars(errors).values()
               if isinstance(c, type) and issubclass(c, errors.SsdiffError)]
    assert set(classes) == set(EXPECTED)


def test_errors_are_the_builtin_kinds_callers_catch():
    assert issubclass(errors.OutputError, OSError) and issubclass(errors.BadInputError, ValueError)
    assert issubclass(errors.UsageError, ValueError) and issubclass(errors.ModelError, ValueError)
    assert issubclass(errors.ClusterError, errors.SsdiffError)
    assert issubclass(errors.Terminated, KeyboardInterrupt) and errors.Terminated(15).signum == 15
    assert errors.EXIT_SIGNAL_BASE + 15 == 143 and errors.EXIT_INTERRUPTED == 130
    for warning in (errors.NotGeoreferencedWarning, errors.MisregistrationWarning,
                    errors.BitDepthWarning, errors.ClippingWarning):
        assert issubclass(warning, errors.SsdiffWarning) and issubclass(warning, UserWarning)
