"""Compiled inference: a local network through ``torch.compile`` (Inductor) on one input shape.

On the 2-core CPU the generalist's eager forward is bound by memory traffic (a third of its time
is tensor copies between the convolutions' and the windowed attention's layouts); Inductor fuses
those into its kernels and runs a 512² chunk of 8 bands 2.5x faster (bf16). Compiling costs
about a minute the first time on a machine (C++ kernels built with the system compiler) and about
26 s afterwards (the C++ kernels are cached on disk, :func:`cache_dir`; Inductor's pickled graph
caches are off).

A compiled graph is specialised to its input shape, so :class:`FixedShapeNetwork` pads every
input to one square side (replicate, at the bottom and right) and crops the output: one compile
per band count and chunk side. For a *local* network this is exact where the caller keeps its
output (the core of a chunk sees only its halo, which the padding never reaches), and because
every chunk runs the same kernels, chunks and tiles still meet exactly.

The eager network stays the reference: the compiled one differs from it by the rounding of
fused kernels (``tests/test_compiled.py`` states the tolerance).
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

#: ``--compile`` choices: ``auto`` compiles where it pays (see the method), ``on`` always,
#: ``off`` never.
COMPILE_CHOICES = ("auto", "on", "off")


def compiler_missing(device: str) -> str | None:
    """Why ``torch.compile`` cannot run here (None when it can): Inductor builds CPU kernels with
    a C++ compiler (``$CXX``, else ``c++``, ``g++`` or ``clang++`` on PATH), and GPU kernels
    with Triton."""
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    if str(device).startswith("cuda"):
        try:
            import triton  # noqa: F401
        except ImportError:
            return "Triton is not installed (it compiles the GPU kernels)"
        return None
    names = [os.environ["CXX"]] if os.environ.get("CXX") else ["c++", "g++", "clang++"]
    if not any(shutil.which(name) for name in names):
        return "no C++ compiler found (set CXX or install g++)"
    return None


def cache_dir() -> Path:
    """Where Inductor keeps compiled kernels between runs: ``$TORCHINDUCTOR_CACHE_DIR`` when set,
    else ``ssdiff/inductor`` under ``$XDG_CACHE_HOME`` (default ``~/.cache``)."""
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ssdiff" / "inductor"


def kernel_files() -> int:
    """How many compiled kernels (shared objects) the cache holds: more after a compile means it
    built kernels, the same means it found them all cached."""
    return sum(1 for _ in cache_dir().rglob("*.so")) if cache_dir().is_dir() else 0


def _no_pickled_caches() -> None:
    # Inductor also caches whole compiled graphs on disk, as pickles (its FX graph and AOT
    # autograd caches). This project loads no pickle, so those are off: only the C++ kernels
    # are cached (shared objects named by the hash of their source, loaded with dlopen). A warm
    # start then takes about 26 s instead of 8 (tracing and code generation run again).
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = False
    functorch_config.enable_autograd_cache = False


class FixedShapeNetwork:
    """``net`` compiled for inputs of ``side`` x ``side`` PAN px; callable like the network.

    Inputs up to ``side`` a side are padded (replicate) to it and the output is cropped back; a
    larger input is an error. The first call compiles (under the caller's network lock: one
    compile, however many threads). The network runs its per-band layers on all bands at once
    and its attention on all windows at once (the intermediates those bounds keep small in eager
    mode live inside fused kernels here); the caller's module is left as it was.
    """

    def __init__(self, net: torch.nn.Module, side: int) -> None:
        self.side = int(side)
        whole = copy.copy(net)  # shares the modules and weights; only the bounds differ
        whole.band_group = None
        whole.image_windows = None
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir()))
        _no_pickled_caches()
        self.compiled = torch.compile(whole, dynamic=False)

    def __call__(self, x_t, t, base, lms, pan, pan_lp, ratio):
        """The network's output on the inputs (see the network's ``forward``)."""
        h, w = x_t.shape[-2:]
        if h > self.side or w > self.side:
            raise ValueError(f"input {h}x{w} exceeds the compiled side {self.side}")
        pad = (0, self.side - w, 0, self.side - h)
        # Fresh contiguous tensors of one kind: the compiled graph's guards check strides (even
        # of size-1 axes) and whether tensors came from inference mode, so every chunk, padded
        # or not, and ``ssdiff models compile``'s zeros all meet the same graph.
        x_t, base, lms, pan, pan_lp = (
            F.pad(a, pad, mode="replicate") if pad[1] or pad[3]
            else a.clone(memory_format=torch.contiguous_format)
            for a in (x_t, base, lms, pan, pan_lp))
        out = self.compiled(x_t, t, base, lms, pan, pan_lp, ratio)
        return out[..., :h, :w]
