"""Model families (``ssdiff_cli.families``): every shipped card maps to its family (old cards
without ``model.family`` to the per-sensor SSDiff one), each family's network is the class its
entry names, an unknown family is refused, and nothing outside the registry tests a family's
name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ssdiff_cli import families, zoo
from ssdiff_cli.errors import ModelError

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_cards_map_to_their_families_and_build_their_networks():
    from ssdiff_cli.nn import SSDiffDenoiser
    from ssdiff_cli.nn.generalist import GeneralistDenoiser

    cards = {c.name: c for c in zoo.list_models(zoo.shipped_models_dir())}
    assert "family" not in cards["ssdiff-4band"].model  # written before families existed
    assert zoo.family(cards["ssdiff-4band"]).name == families.LEGACY_FAMILY == "ssdiff"
    assert zoo.family(cards["ssdiff-generalist"]).name == "generalist"
    assert isinstance(zoo.build_model(cards["ssdiff-8band"], device="meta"), SSDiffDenoiser)
    assert isinstance(zoo.build_model(cards["ssdiff-generalist"], device="meta"),
                      GeneralistDenoiser)
    # the default model of --method ssdiff is unchanged by the registry
    assert zoo.find_model_for(8, 4, "wv3").name == zoo.DEFAULT_GENERALIST
    assert zoo.find_model_for(4, 4, "ge1", method="ksdiff") is None


def test_every_family_names_importable_classes_and_a_method():
    from ssdiff_cli.methods import get_method

    for fam in families.FAMILIES.values():
        config_cls, network_cls = fam.classes()
        assert hasattr(config_cls, "from_dict") and callable(network_cls)
        assert get_method(fam.method).name == fam.method
        assert callable(families.training_entry(fam))


def test_an_unknown_family_is_refused_naming_the_known_ones():
    card = zoo.read_card(zoo.shipped_models_dir() / "ssdiff-generalist.json")
    bad = zoo.ModelCard(**{**card.to_dict(), "model": {**card.model, "family": "diffusion9"}})
    with pytest.raises(ModelError, match="unknown model family 'diffusion9'.*generalist"):
        zoo.validate_card(bad)
    with pytest.raises(ModelError, match="unknown model family"):
        families.family_of({"family": ["x"]})


def test_nothing_outside_the_registry_branches_on_a_family_name():
    """No comparison in ``ssdiff_cli`` (outside ``families.py`` and the networks' own configs)
    has a family's name as an operand."""
    names = set(families.FAMILIES)
    found = []
    for path in (ROOT / "ssdiff_cli").rglob("*.py"):
        if path.name in ("families.py", "generalist.py", "ksdiff_config.py") and \
                path.parent.name in ("ssdiff_cli", "nn"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                for operand in [node.left, *node.comparators]:
                    if isinstance(operand, ast.Constant) and operand.value in names - {"ssdiff"}:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found
