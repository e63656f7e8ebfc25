"""Compiled inference (:mod:`ssdiff_cli.nn.compiled`): padding to one shape is exact, the
``--compile`` decision, and a real compile against the eager reference on a real scene."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import torch
from conftest import requires_data, scene_paths

from ssdiff_cli.errors import ModelError
from ssdiff_cli.families import family_named
from ssdiff_cli.methods import ssdiff as ssdiff_method
from ssdiff_cli.nn import compiled
from ssdiff_cli.nn.generalist import GeneralistConfig, GeneralistDenoiser

SMALL = GeneralistConfig(base_channels=8, head_dim=8, time_dim=16, embed_dim=32)


def _randomized() -> GeneralistDenoiser:
    torch.manual_seed(5)
    net = GeneralistDenoiser(SMALL)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return net.eval()


def _inputs(bands: int, size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x_t, base, lms, pan_lp = (torch.randn(1, bands, size, size, generator=g) for _ in range(4))
    return x_t, base, lms, torch.randn(1, 1, size, size, generator=g), pan_lp


def _read(path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read().astype(np.float64)


def test_padding_to_the_compiled_side_is_exact_where_a_chunk_keeps_its_output(monkeypatch):
    # torch.compile replaced by the identity: what is checked is the padding and cropping
    monkeypatch.setattr(torch, "compile", lambda module, **kw: module)
    net = _randomized()
    g = net.granularity
    halo = -(-net.receptive_field // g) * g
    runner = compiled.FixedShapeNetwork(net, 6 * g)
    args = _inputs(3, 4 * g)
    with torch.no_grad():
        padded = runner(args[0], 999.0, *args[1:], 4)
        plain = net(args[0], 999.0, *args[1:], 4)
    assert padded.shape == plain.shape
    keep = 4 * g - halo  # a network halo away from the padded edges
    torch.testing.assert_close(padded[..., :keep, :keep], plain[..., :keep, :keep],
                               atol=1e-5, rtol=1e-5)
    assert plain.abs().mean() > 0.1
    assert net.band_group is not None  # the caller's network keeps its eager bounds
    big = _inputs(3, 7 * g)
    with pytest.raises(ValueError, match="exceeds"):
        runner(big[0], 999.0, *big[1:], 4)


def test_compiler_missing_says_why(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CXX", raising=False)
    assert "C++ compiler" in compiled.compiler_missing("cpu")
    monkeypatch.setenv("CXX", "/bin/sh")
    assert compiled.compiler_missing("cpu") is None


def _context(height: int, width: int):
    """The part of a scene context the compile decision reads."""
    grid = SimpleNamespace(height=height, width=width)
    return SimpleNamespace(scene=SimpleNamespace(spec=SimpleNamespace(out=grid)))


def _method(choice: str) -> ssdiff_method.SSDiffMethod:
    method = ssdiff_method.SSDiffMethod(compile=choice)
    method.device, method.tile_size = "cpu", 384
    return method


@pytest.mark.parametrize("choice, side, expect", [
    ("off", 4096, False), ("auto", 384 * 5, False), ("auto", 384 * 6, True),
    ("on", 384, True)])
def test_compile_decision_follows_the_choice_and_the_scene_size(monkeypatch, choice, side,
                                                                 expect):
    monkeypatch.setenv("CXX", "/bin/sh")
    decision = _method(choice)._decide_compile(_context(side, side), family_named("generalist"))
    assert decision["compiled"] is expect, decision
    assert decision["why"]


def test_compile_auto_without_a_compiler_runs_eagerly_and_on_is_an_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CXX", raising=False)
    decision = _method("auto")._decide_compile(_context(8192, 8192), family_named("generalist"))
    assert decision == {"compiled": False, "why": decision["why"]}
    assert "C++ compiler" in decision["why"]
    with pytest.raises(ModelError, match="--compile on: no C\\+\\+ compiler"):
        _method("on")._decide_compile(_context(64, 64), family_named("generalist"))


def test_models_compile_without_a_compiler_exits_6_with_one_line(monkeypatch):
    from typer.testing import CliRunner

    from ssdiff_cli.cli import app
    from ssdiff_cli.errors import EXIT_MODEL

    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CXX", raising=False)
    result = CliRunner().invoke(app, ["models", "compile", "--bands", "4"])
    assert result.exit_code == EXIT_MODEL, result.output
    message = result.stderr.strip()
    assert "Traceback" not in result.output
    assert len(message.splitlines()) == 1, message
    assert message.endswith("cannot compile here: no C++ compiler found (set CXX or install "
                            "g++)"), message


needs_compiler = pytest.mark.skipif(compiled.compiler_missing("cpu") is not None,
                                    reason="torch.compile needs a C++ compiler on this machine")


def _ssdiff(*args: str, cache) -> dict:
    """``ssdiff ARGS --json`` in a child process with Inductor's cache in ``cache``."""
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
    proc = subprocess.run([sys.executable, "-m", "ssdiff_cli", *args, "--json"], env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@requires_data
@needs_compiler
def test_precompiled_model_runs_from_the_cache_matches_eager_and_tiles_agree(tmp_path):
    # A real compile (empty cache, about a minute here) of the shipped generalist by
    # `models compile`, then `sharpen` on a real 8-band scene finds its kernels cached.
    cache = tmp_path / "inductor"
    warm = _ssdiff("models", "compile", "--bands", "8", "--ratio", "4", cache=cache)
    assert warm["compiled"][0]["side"] == 512 and cache.is_dir()
    pan, ms = (str(p) for p in scene_paths("wv3_cristianics"))
    common = [pan, ms, "--method", "ssdiff", "--force", "--overwrite", "-q"]
    eager = _ssdiff("sharpen", *common, "-o", str(tmp_path / "eager.tif"), "--compile", "off",
                    cache=cache)
    report = _ssdiff("sharpen", *common, "-o", str(tmp_path / "compiled.tif"), "--compile",
                     "on", cache=cache)
    _ssdiff("sharpen", *common, "-o", str(tmp_path / "compiled_big.tif"), "--compile", "on",
            "--tile-size", "1024", cache=cache)
    info = report["method"]["compile"]
    assert info["compiled"] is True and info["side"] == 512, info
    assert info["kernels"] == "cached", info  # nothing compiled again
    assert eager["method"]["compile"]["compiled"] is False
    a, b = _read(tmp_path / "eager.tif"), _read(tmp_path / "compiled.tif")
    # fused kernels round differently in bf16: within 1 % of the data range at any pixel, and
    # 0.2 % for 99 % of them (eager bf16 against fp32 differs by about as much)
    span = a.max() - a.min()
    diff = np.abs(a - b)
    assert diff.max() <= 0.01 * span, diff.max()
    assert np.percentile(diff, 99) <= 0.002 * span
    assert diff.mean() > 0  # it did run compiled
    # every chunk runs the same kernels: tiles of any size give the same pixels
    assert np.array_equal(b, _read(tmp_path / "compiled_big.tif"))
