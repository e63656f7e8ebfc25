"""What an installed ssdiff carries: the shipped models as package data (found wherever the package
is), ``$SSDIFF_MODELS`` adding a folder, ``ssdiff --version``, and a wheel that holds the models.

The wheel is installed and run for real (``models list``, ``sharpen --method ssdiff`` on a shared
scene) by ``.ci/run``; here it is built and its contents checked."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ssdiff_cli
from ssdiff_cli import zoo
from ssdiff_cli.errors import ModelError

ROOT = Path(__file__).resolve().parents[1]
# Largest wheel we are willing to publish (PyPI's default per-file limit is 100 MB; the shipped
# models are about 5.5 MB each).
WHEEL_LIMIT_MB = 50


def _shipped_pairs() -> list[str]:
    """Names of the NAME.json + NAME.safetensors pairs in the source tree's models folder."""
    folder = ROOT / "ssdiff_cli" / "models"
    return sorted(p.stem for p in folder.glob("*.json") if p.with_suffix(".safetensors").exists())


def _pyproject_version() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    return re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE).group(1)


def test_shipped_models_are_package_data(monkeypatch):
    monkeypatch.delenv("SSDIFF_MODELS", raising=False)
    folder = zoo.shipped_models_dir()
    assert folder == Path(ssdiff_cli.__file__).parent / "models"
    assert zoo.model_dirs() == [folder]
    names = _shipped_pairs()
    assert {"ssdiff-4band", "ssdiff-8band"} <= set(names)
    assert [c.name for c in zoo.list_models()] == names
    for name in names:  # every shipped pair loads: the card rebuilds the network its weights fit
        model, card = zoo.load_checkpoint(name)
        assert card.name == name and sum(p.numel() for p in model.parameters()) > 0


def test_ssdiff_models_adds_a_folder_searched_first(tmp_path, monkeypatch):
    shipped = zoo.shipped_models_dir()
    # a model under a new name, and one shadowing a shipped name with a different card
    for stem in ("extra-4band", "ssdiff-4band"):
        shutil.copy(shipped / "ssdiff-4band.safetensors", tmp_path / f"{stem}.safetensors")
    card = zoo.read_card(shipped / "ssdiff-4band.json").to_dict()
    (tmp_path / "extra-4band.json").write_text(json.dumps({**card, "name": "extra-4band"}))
    (tmp_path / "ssdiff-4band.json").write_text(json.dumps({**card, "description": "local copy"}))
    # cards without weights: not listed; a shipped name is then still found in the shipped folder
    (tmp_path / "orphan.json").write_text(json.dumps({**card, "name": "orphan"}))
    (tmp_path / "ssdiff-8band.json").write_text(json.dumps({**card, "name": "ssdiff-8band"}))
    monkeypatch.setenv("SSDIFF_MODELS", str(tmp_path))

    assert zoo.model_dirs() == [tmp_path, shipped]
    names = [c.name for c in zoo.list_models()]
    assert names == sorted({"extra-4band", *_shipped_pairs()})
    assert zoo.read_card("extra-4band").name == "extra-4band"
    assert zoo.read_card("ssdiff-4band").description == "local copy"
    assert zoo.read_card("ssdiff-8band").bands == 8  # still found in the shipped folder
    with pytest.raises(ModelError, match="weights file missing"):
        zoo.load_checkpoint("orphan")
    model, loaded = zoo.load_checkpoint("extra-4band")
    assert loaded.name == "extra-4band" and sum(p.numel() for p in model.parameters()) > 1_000_000


def test_version_option_prints_the_package_version():
    from ssdiff_cli.cli import app

    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"ssdiff {ssdiff_cli.__version__}"
    assert ssdiff_cli.__version__.startswith(_pyproject_version())
    # as a program, without a command
    proc = subprocess.run([sys.executable, "-m", "ssdiff_cli", "--version"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"ssdiff {ssdiff_cli.__version__}"


def test_version_falls_back_to_pyproject_in_an_uninstalled_checkout(monkeypatch):
    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    assert ssdiff_cli._version() == f"{_pyproject_version()}+source"


@pytest.mark.slow
def test_wheel_holds_the_models_and_stays_small(tmp_path):
    pytest.importorskip("setuptools", minversion="77")
    # build from a copy, so the checkout gets no build/ or egg-info
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "ssdiff_cli", src / "ssdiff_cli", ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp_path / "dist").glob("ssdiff-*.whl")
    assert wheel.stat().st_size < WHEEL_LIMIT_MB * 1e6
    with zipfile.ZipFile(wheel) as zf:
        files = set(zf.namelist())
    for name in _shipped_pairs():
        assert f"ssdiff_cli/models/{name}.safetensors" in files
        assert f"ssdiff_cli/models/{name}.json" in files
    assert not any(f.startswith("models/") for f in files)
