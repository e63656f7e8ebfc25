"""Training and fine-tuning SSDiff: Wald-protocol crops, the training loop, L-BAF adapters.

Imports torch (through :mod:`.loop`) only when its functions are used.
"""

from __future__ import annotations

__all__ = ["TrainConfig", "train_scenes", "adapt_to_scene", "apply_adapter", "finetune"]


def __getattr__(name):
    if name in ("TrainConfig", "train_scenes", "Trainer"):
        from . import loop

        return getattr(loop, name)
    if name in ("adapt_to_scene", "apply_adapter", "finetune"):
        from . import finetune as _ft

        return getattr(_ft, name)
    raise AttributeError(name)
