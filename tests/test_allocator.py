"""The allocator settings the CLI applies for the model's large tensors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ssdiff_cli import allocator


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


def test_default_leaves_the_allocator_alone(monkeypatch):
    monkeypatch.setenv("SSDIFF_ALLOCATOR", "default")
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    assert allocator.configure() is False
    assert "THP_MEM_ALLOC_ENABLE" not in os.environ
