"""The SSDiff network only: denoiser, APFM, FMIM and LoRA adapters (imports torch, nothing else).

It knows nothing of files, tiling or noise schedules (see :mod:`ssdiff_cli.diffusion`).
"""

from .apfm import APFM
from .config import ModelConfig
from .denoiser import BRANCHES, SSDiffDenoiser, fast_receptive_field
from .lora import (
    LoRAConv2d,
    LoRALinear,
    add_lora,
    lora_state_dict,
    merge_lora,
    set_trainable_branch,
)

__all__ = [
    "APFM",
    "BRANCHES",
    "LoRAConv2d",
    "LoRALinear",
    "ModelConfig",
    "SSDiffDenoiser",
    "add_lora",
    "fast_receptive_field",
    "lora_state_dict",
    "merge_lora",
    "set_trainable_branch",
]
