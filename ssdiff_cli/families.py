"""Model families: what a card's ``model.family`` names, one registry entry each.

A family says how a card becomes a network (its config and network classes, imported only when
a network is built), which ``--method`` runs it, what inputs it takes (the card's own band count
and ratio, or a range), the normalisations its cards may declare, what classical base it
corrects, how large a window its network runs on at once and whether it may run compiled, and
where its training lives. Everything that differs between families is read from here, so
adding a family is one entry plus its modules (network in ``nn``, fusion in ``methods``,
training in ``training``), and no code branches on a family's name.

Cards written before families existed have no ``model.family``: they are per-sensor SSDiff
models (``ssdiff``), which is what :func:`family_of` maps them to.

This module is a room (below ``methods``): the method and the training entry are *names*
(``--method`` names, dotted module paths), resolved by the layers that own them
(:func:`ssdiff_cli.methods.get_method`; :func:`training_entry`, for orchestration only, since
inference never imports training code).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ssdiff_cli.errors import ModelError

#: ``model.family`` of a card that has none (cards made before families existed).
LEGACY_FAMILY = "ssdiff"


@dataclass(frozen=True)
class Family:
    """One model family (see the module docstring).

    Attributes
    ----------
    name : str
        ``model.family`` in its cards.
    method : str
        The ``--method`` that runs its models.
    config, network : str
        ``module:Class`` of its architecture config (``from_dict`` over the card's ``model``) and
        of its network (built from the config).
    bands, ratios : (int, int) or None
        Inclusive ranges it takes; None: exactly the card's ``bands`` and ``ratio`` (then its
        config must agree with them).
    normalisations : tuple of str
        ``normalisation.kind`` values its cards may declare.
    base : str or None
        The classical method whose result the network corrects (``mtf-glp-fs``); None: the
        network's output is a residual on the upsampled MS.
    chunk : int
        The largest window side (PAN px, halo included) its network runs on at once by default.
    scale_chunk_by_bands : bool
        Whether the chunk shrinks as bands grow (bands folded into the network's batch).
    compiles : bool
        Whether ``--compile`` may run it compiled.
    precision : str
        What ``--precision auto`` means for it: ``auto`` (bf16 where native) or ``fp32``.
    adapts : bool
        Whether ``--adapt`` applies to it.
    training : str or None
        ``module:function`` of its training entry in :mod:`ssdiff_cli.training`.
    training_config : str or None
        ``module:Class`` of the options its training entry takes (a dataclass).
    """

    name: str
    method: str
    config: str
    network: str
    bands: tuple[int, int] | None
    ratios: tuple[int, int] | None
    normalisations: tuple[str, ...]
    base: str | None
    chunk: int
    scale_chunk_by_bands: bool
    compiles: bool
    precision: str
    adapts: bool
    training: str | None
    training_config: str | None = None

    @property
    def any_layout(self) -> bool:
        """Whether it takes a range of band counts and ratios (not one sensor's layout)."""
        return self.bands is not None

    def accepts(self, card_bands: int, card_ratio: int, bands: int, ratio: int) -> bool:
        """Whether a model of this family (a card saying ``card_bands``, ``card_ratio``) can
        fuse ``bands`` MS bands at ``ratio``."""
        if self.bands is None or self.ratios is None:
            return card_bands == bands and card_ratio == ratio
        return self.bands[0] <= bands <= self.bands[1] and self.ratios[0] <= ratio <= self.ratios[1]

    def layout(self, card_bands: int, card_ratio: int) -> tuple[str, str]:
        """(bands, ratio) as a table shows them: ``1-16`` for a range."""
        if self.bands is None or self.ratios is None:
            return str(card_bands), str(card_ratio)
        return "-".join(map(str, self.bands)), "-".join(map(str, self.ratios))

    def classes(self) -> tuple[type, type]:
        """(config class, network class), imported now."""
        return _resolve(self.config), _resolve(self.network)


def _resolve(dotted: str):
    module, _, name = dotted.partition(":")
    return getattr(importlib.import_module(module), name)


#: The generalists' band and ratio ranges.
ANY_BANDS = (1, 16)
ANY_RATIOS = (2, 8)

FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family(name="ssdiff", method="ssdiff", config="ssdiff_cli.nn:ModelConfig",
           network="ssdiff_cli.nn:SSDiffDenoiser", bands=None, ratios=None,
           normalisations=("fixed", "scene"), base=None, chunk=768, scale_chunk_by_bands=False,
           compiles=False, precision="auto", adapts=True,
           training="ssdiff_cli.training.loop:train_scenes",
           training_config="ssdiff_cli.training.loop:TrainConfig"),
    Family(name="generalist", method="ssdiff", config="ssdiff_cli.nn.generalist:GeneralistConfig",
           network="ssdiff_cli.nn.generalist:GeneralistDenoiser", bands=ANY_BANDS,
           ratios=ANY_RATIOS, normalisations=("band-standardised",), base="mtf-glp-fs",
           chunk=768, scale_chunk_by_bands=True, compiles=True, precision="auto", adapts=True,
           training="ssdiff_cli.training.generalist:train_generalist",
           training_config="ssdiff_cli.training.generalist:GeneralistTrainConfig"),
    # KSDiff: one plain CNN pass a tile given the scene's prior; fp32 (bf16 measured slower on
    # this CPU, nn/ksdiff.py); its per-band tensors are thin, so the chunk does not shrink
    # with the band count.
    Family(name="ksdiff", method="ksdiff", config="ssdiff_cli.nn.ksdiff_config:KSDiffConfig",
           network="ssdiff_cli.nn.ksdiff:KSDiffNetwork", bands=ANY_BANDS, ratios=ANY_RATIOS,
           normalisations=("band-standardised",), base="mtf-glp-fs", chunk=768,
           scale_chunk_by_bands=False, compiles=False, precision="fp32", adapts=True,
           training="ssdiff_cli.training.ksdiff:train_ksdiff",
           training_config="ssdiff_cli.training.ksdiff:KSDiffTrainConfig"),
)}


def family_named(name, source: str = "model card") -> Family:
    """The family called ``name`` (a :class:`~ssdiff_cli.errors.ModelError` naming ``source``
    and the known families otherwise)."""
    if isinstance(name, str) and name in FAMILIES:
        return FAMILIES[name]
    raise ModelError(f"{source}: unknown model family {name!r:.40} (known: "
                     f"{', '.join(FAMILIES)})")


def family_of(model: dict, source: str = "model card") -> Family:
    """The family of a card's ``model`` section: ``model.family``, or :data:`LEGACY_FAMILY`
    where a card has none."""
    name = model.get("family", LEGACY_FAMILY) if isinstance(model, dict) else LEGACY_FAMILY
    return family_named(name, source)


def architecture(model: dict) -> dict:
    """The card's ``model`` section as its config class takes it (a legacy family's cards never
    wrote the family into it, so it is left out again for that config)."""
    if model.get("family") == LEGACY_FAMILY:
        return {k: v for k, v in model.items() if k != "family"}
    return model


def training_entry(family: Family):
    """The family's training function (imported now; orchestration only: inference never
    imports training code)."""
    if family.training is None:
        raise ModelError(f"model family {family.name} has no training entry")
    return _resolve(family.training)


def training_config(family: Family):
    """The class of the options the family's training entry takes (imported now;
    orchestration only)."""
    if family.training_config is None:
        raise ModelError(f"model family {family.name} has no training entry")
    return _resolve(family.training_config)
