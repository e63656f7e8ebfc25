"""The house rules hold: no import cycle among ssdiff_cli's modules (imports inside functions
included), no import uphill, no module over 600 lines (``scripts/check_house.py``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _check_house():
    spec = importlib.util.spec_from_file_location("check_house", ROOT / "scripts" / "check_house.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_import_cycle_no_uphill_import_and_no_module_over_the_limit(capsys):
    assert _check_house().main() == 0, capsys.readouterr().out


def test_the_checker_finds_a_cycle_and_reads_imports_inside_functions(tmp_path):
    house = _check_house()
    pkg = tmp_path / "ssdiff_cli"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from ssdiff_cli import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n")
    (pkg / "c.py").write_text("import ssdiff_cli.a\n")
    files = {house.module_name(f, tmp_path): f for f in pkg.rglob("*.py")}
    graph = {n: house.imports_of(p, n, set(files)) for n, p in files.items()}
    assert graph["ssdiff_cli.b"] == {"ssdiff_cli.a"}
    assert house.cycles(graph) == [["ssdiff_cli.a", "ssdiff_cli.b"]]


def test_tiers_put_the_cli_on_top_and_errors_at_the_bottom():
    tier = _check_house().tier
    assert tier("ssdiff_cli.cli.sharpen") > tier("ssdiff_cli.pipeline") > tier("ssdiff_cli.methods.ssdiff")
    assert tier("ssdiff_cli.methods") > tier("ssdiff_cli.scene.reading") > tier("ssdiff_cli.errors")
    assert tier("ssdiff_cli.training.loop") == tier("ssdiff_cli.evaluate")
