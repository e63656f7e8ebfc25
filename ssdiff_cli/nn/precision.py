"""Which arithmetic a network runs in: ``auto``, ``bf16`` or ``fp32`` (shared by inference and
training, so both pick the same precision on the same machine)."""

from __future__ import annotations

from pathlib import Path

import torch

PRECISIONS = ("auto", "bf16", "fp32")

#: CPU flags under which bf16 matmuls and convolutions run natively (oneDNN): AMX tiles, or the
#: AVX-512 BF16 dot-product instructions. Without them bf16 is emulated and slower than fp32.
_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags() -> set[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def amx_available() -> bool:
    """True when the CPU has AMX tiles (bf16 matmuls then run about twice as fast)."""
    return "amx_bf16" in cpu_flags()


def cpu_has_fast_bf16() -> bool:
    """True when the CPU computes bf16 natively (AMX or AVX-512 BF16)."""
    return any(flag in cpu_flags() for flag in _BF16_CPU_FLAGS)


def resolve_precision(precision: str, device: str, training: bool = False) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None means fp32 (no autocast).

    ``auto``: bf16 on a CUDA GPU that supports it; on a CPU, bf16 with AMX, and for inference
    (``training`` false) also with AVX-512 BF16 (there the forward pass is faster in bf16 but
    the backward pass is not: the CPU attention kernel's bf16 backward is slow); else fp32.
    Raises ValueError on an unknown name.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise ValueError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    fast = amx_available() if training else cpu_has_fast_bf16()
    return torch.bfloat16 if fast else None


def precision_name(dtype: torch.dtype | None) -> str:
    """``bf16`` or ``fp32``: the name of what :func:`resolve_precision` returned."""
    return "bf16" if dtype == torch.bfloat16 else "fp32"
