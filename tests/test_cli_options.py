"""ssdiff_cli/cli/options.py: the choices come from the library's registries, and a flag that
several commands share is declared in one place."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ssdiff_cli.cli import app
from ssdiff_cli.cli import options as opts
from ssdiff_cli.filters import UPSAMPLING_KERNELS
from ssdiff_cli.gdal_formats import COMPRESSION, FORMATS, OUTPUT_DTYPES, translate_options
from ssdiff_cli.methods import CLASSICAL, MODEL_METHODS, get_method

CLI = Path(opts.__file__).parent
runner = CliRunner()


def _values(enum) -> list[str]:
    return [member.value for member in enum]


def _help(*command: str) -> str:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    return re.sub(r"\s+", " ", result.stdout)


def test_method_choices_are_the_method_registry_in_order():
    assert _values(opts.Method) == ["auto", "ssdiff", "ksdiff", *CLASSICAL]
    assert _values(opts.EvalMethod) == [*MODEL_METHODS, *CLASSICAL]
    for name in CLASSICAL:  # every offered classical name builds its method
        assert get_method(opts.Method(name).value) is not None


def test_dtype_choices_are_the_output_types():
    assert _values(opts.DType) == list(OUTPUT_DTYPES)
    for dtype in OUTPUT_DTYPES:  # each is a numeric type the writer can lay out
        assert np.dtype(dtype).kind in "uif"
        assert translate_options("COG", "deflate", dtype)[0] == "COG"


def test_compression_format_and_resampling_choices_are_their_registries():
    assert _values(opts.Compress) == list(COMPRESSION)
    assert _values(opts.OutputFormat) == list(FORMATS)
    assert _values(opts.Resampling) == list(UPSAMPLING_KERNELS)


def _offered(enum, text: str) -> bool:
    """Inline (``a|b|c``) or, for a long list, in the option's help (``One of: a, b, c.``)."""
    values = _values(enum)
    return "|".join(values) in text or f"One of: {', '.join(values)}." in text


def test_every_choice_is_offered_by_help():
    text = _help("sharpen")
    for enum in (opts.Method, opts.DType, opts.Compress, opts.OutputFormat, opts.Resampling,
                 opts.Device, opts.Precision, opts.Extent, opts.AdaptObjective):
        assert _offered(enum, text), enum.__name__
    assert "|".join(_values(opts.EvalMethod)) in _help("evaluate")
    train = _help("train")
    for enum in (opts.Norm, opts.Variant, opts.TrainPrecision):
        assert "|".join(_values(enum)) in train, enum.__name__


def test_train_precision_offers_the_model_precisions():
    assert set(_values(opts.TrainPrecision)) == set(_values(opts.Precision))


@pytest.mark.parametrize("flag", ["--json", "--sensor", "--device", "--precision", "--overwrite",
                                  "--quiet", "--workers", "--tile-size", "--seed"])
def test_shared_flags_are_declared_only_in_options(flag):
    declared = [p.name for p in sorted(CLI.glob("*.py"))
                if f'"{flag}"' in p.read_text(encoding="utf-8")]
    assert declared == ["options.py"], declared


@pytest.mark.parametrize("command", [("sharpen",), ("info",), ("evaluate",), ("train",),
                                     ("finetune",), ("models", "list")])
def test_every_command_with_a_summary_takes_json(command):
    assert "--json" in _help(*command)


def test_pair_commands_show_pan_and_ms_as_required():
    assert "Usage: ssdiff sharpen [OPTIONS] PAN MS..." in _help("sharpen")
    assert "Usage: ssdiff info [OPTIONS] PAN MS..." in _help("info")
