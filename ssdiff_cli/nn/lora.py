"""Low-rank adapters for branch-wise fine-tuning (the paper's L-BAF).

Each wrapped layer computes ``base(x) + (alpha / rank) * B(A(x))`` with ``A`` random and ``B``
zero, so a freshly added adapter leaves the model's output unchanged. Typical use (alternating
branches, the other one frozen)::

    add_lora(model, "spatial", rank=4); add_lora(model, "spectral", rank=4)
    set_trainable_branch(model, "spatial")   # train some steps
    set_trainable_branch(model, "spectral")  # train some steps, repeat
    merge_lora(model)                        # back to the plain architecture, same state_dict keys

The paper gives no rank or schedule; rank 4, alpha = rank are this module's defaults.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_BRANCHES = ("spatial", "spectral")


class LoRALinear(nn.Module):
    """``nn.Linear`` plus a rank-``rank`` update; the base layer is frozen."""

    def __init__(self, base: nn.Linear, rank: int = 4, alpha: float | None = None) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        self.base = base
        self.rank = rank
        self.scaling = (alpha if alpha is not None else rank) / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        base.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling

    def merged(self) -> nn.Linear:
        """The base layer with the adapter folded into its weight (in place)."""
        with torch.no_grad():
            self.base.weight += (self.lora_B @ self.lora_A) * self.scaling
        return self.base


class LoRAConv2d(nn.Module):
    """``nn.Conv2d`` (groups=1) plus a low-rank update: a conv in->rank (same kernel, stride,
    padding) followed by a 1x1 conv rank->out; the base layer is frozen."""

    def __init__(self, base: nn.Conv2d, rank: int = 4, alpha: float | None = None) -> None:
        super().__init__()
        if base.groups != 1:
            raise ValueError("LoRAConv2d supports groups=1 convolutions only")
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        self.base = base
        self.rank = rank
        self.scaling = (alpha if alpha is not None else rank) / rank
        kh, kw = base.kernel_size
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_channels, kh, kw))
        self.lora_B = nn.Parameter(torch.zeros(base.out_channels, rank, 1, 1))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        base.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.base
        if b.padding_mode != "zeros":
            raise ValueError("LoRAConv2d supports padding_mode='zeros' only")
        h = F.conv2d(x, self.lora_A, None, b.stride, b.padding, b.dilation)
        return b(x) + F.conv2d(h, self.lora_B) * self.scaling

    def merged(self) -> nn.Conv2d:
        """The base layer with the adapter folded into its weight (in place)."""
        with torch.no_grad():
            delta = self.lora_B.flatten(1) @ self.lora_A.flatten(1)
            self.base.weight += delta.reshape(self.base.weight.shape) * self.scaling
        return self.base


def _branch_roots(model: nn.Module, branch: str) -> list[nn.Module]:
    if branch not in _BRANCHES:
        raise ValueError(f"branch must be one of {_BRANCHES}, got {branch!r}")
    if not hasattr(model, "branch_modules"):
        raise TypeError(f"{type(model).__name__} has no branch_modules(); not an SSDiff model")
    return model.branch_modules(branch)


def add_lora(model: nn.Module, branch: str = "spatial", rank: int = 4, alpha: float | None = None) -> int:
    """Wrap every Linear and (groups=1) Conv2d of one branch in a LoRA adapter, in place.

    Layers already wrapped are left alone. Returns the number of layers wrapped.
    """
    count = 0
    for root in _branch_roots(model, branch):
        for parent in list(root.modules()):
            if isinstance(parent, LoRALinear | LoRAConv2d):
                continue
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, LoRALinear(child, rank, alpha))
                elif isinstance(child, nn.Conv2d) and child.groups == 1:
                    setattr(parent, name, LoRAConv2d(child, rank, alpha))
                else:
                    continue
                count += 1
    return count


def set_trainable_branch(model: nn.Module, branch: str) -> int:
    """Freeze the whole model except one branch; returns the number of trainable parameters.

    If the branch carries LoRA adapters only the adapters train; otherwise all of the branch's
    own parameters do.
    """
    roots = _branch_roots(model, branch)
    model.requires_grad_(False)
    adapters = [m for r in roots for m in r.modules() if isinstance(m, LoRALinear | LoRAConv2d)]
    if adapters:
        params = [p for m in adapters for p in (m.lora_A, m.lora_B)]
    else:
        params = [p for r in roots for p in r.parameters()]
    for p in params:
        p.requires_grad_(True)
    return sum(p.numel() for p in params)


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base layer and unwrap it, in place; returns ``model``.

    Afterwards the model has its original structure and ``state_dict`` keys; the merged layers
    keep ``requires_grad=False`` (call ``model.requires_grad_(True)`` to train everything).
    """
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LoRALinear | LoRAConv2d):
                setattr(parent, name, child.merged())
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter weights (keys containing ``lora_``), detached copies."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}
