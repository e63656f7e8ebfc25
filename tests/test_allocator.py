"""The allocator settings the CLI and the engine apply for the model's large tensors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _run(code: str, **env) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, **env}).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_configure_takes_on_glibc_and_asks_for_huge_pages():
    out = _run("import os; from ssdiff_cli import allocator; "
               "print(allocator.configure(), repr(os.environ['THP_MEM_ALLOC_ENABLE']))",
               THP_MEM_ALLOC_ENABLE="0")
    assert out == "True '0'"  # the user's own value is kept
    out = _run("import os; os.environ.pop('THP_MEM_ALLOC_ENABLE', None); "
               "from ssdiff_cli import allocator; "
               "print(allocator.configure(), os.environ['THP_MEM_ALLOC_ENABLE'])")
    assert out == "True 1"


def test_default_leaves_the_allocator_alone():
    # a fresh process: configure() acts once per process
    out = _run("import os; os.environ.pop('THP_MEM_ALLOC_ENABLE', None); "
               "from ssdiff_cli import allocator; "
               "print(allocator.configure(), 'THP_MEM_ALLOC_ENABLE' in os.environ)",
               SSDIFF_ALLOCATOR="default")
    assert out == "False False"


def test_run_plan_applies_the_settings_once():
    out = _run("from ssdiff_cli import allocator, engine; from ssdiff_cli.tiling import plan_tiles; "
               "engine.run_plan(plan_tiles(8, 8, tile_size=8), lambda t: (t, None, None), "
               "lambda *a: None); print(allocator._configured, allocator.configure())")
    assert out == "True True"
