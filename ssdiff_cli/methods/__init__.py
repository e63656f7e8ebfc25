"""Fusion methods and their registry (``--method`` names)."""

from __future__ import annotations

import importlib

from ssdiff_cli.errors import BadInputError
from ssdiff_cli.methods.base import FusionMethod, SceneContext
from ssdiff_cli.methods.classical import GSA, MTFGLP, Brovey, Upsample

CLASSICAL = ("brovey", "gsa", "mtf-glp", "mtf-glp-fs", "upsample")
#: The methods that run a trained model (the ``method`` of a model family,
#: :mod:`ssdiff_cli.families`), by ``--method`` name: their module and class. They take the
#: model options (``--model``, ``--seed``...).
_MODEL_CLASSES = {"ssdiff": ("ssdiff_cli.methods.ssdiff", "SSDiffMethod"),
                  "ksdiff": ("ssdiff_cli.methods.ksdiff", "KSDiffMethod")}
MODEL_METHODS = tuple(_MODEL_CLASSES)


def get_method(name: str, **options) -> FusionMethod:
    """A fresh, unprepared method by its ``--method`` name.

    ``options`` go to the method's constructor (``weights`` for Brovey; ``model``, ``steps``,
    ``seed``, ``device``... for ``ssdiff``).
    """
    key = name.strip().lower().replace("_", "-")
    if key == "brovey":
        return Brovey(weights=options.get("weights"))
    if key == "gsa":
        return GSA()
    if key in ("mtf-glp", "mtf-glp-hpm"):  # one method, HPM injection (the toolbox's name too)
        return MTFGLP("hpm", matched=True)
    if key == "mtf-glp-fs":
        return MTFGLP("fs", matched=True)
    if key == "upsample":
        return Upsample()
    if key in _MODEL_CLASSES:  # imported only when asked for (PyTorch)
        module, cls = _MODEL_CLASSES[key]
        method = getattr(importlib.import_module(module), cls)
        return method(**{k: v for k, v in options.items() if k != "weights" and v is not None})
    raise BadInputError(
        f"unknown method {name!r}; choose one of: " + ", ".join((*MODEL_METHODS, *CLASSICAL))
    )


__all__ = ["CLASSICAL", "MODEL_METHODS", "FusionMethod", "SceneContext", "get_method"]
