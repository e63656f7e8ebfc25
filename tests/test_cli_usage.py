"""The command line's manners (issue 14, item 11): choices in --help, --version, usage errors
exit 2 (missing -o, -w with the wrong count, conflicting options)."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from ssdiff_cli import __version__
from ssdiff_cli.cli import METHODS, app
from ssdiff_cli.errors import EXIT_USAGE
from ssdiff_cli.filters import UPSAMPLING_KERNELS
from ssdiff_cli.gdal_formats import COMPRESSION, FORMATS
from ssdiff_cli.methods import CLASSICAL
from tests.conftest import requires_data, scene_paths

runner = CliRunner()


def _help(*command: str) -> str:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    return re.sub(r"\s+", " ", result.output)


def offered(choices, text: str) -> bool:
    """Whether ``--help`` offers ``choices``: inline (``a|b|c``) or, for a long list, in the
    option's help (``One of: a, b, c.``)."""
    return "|".join(choices) in text or f"One of: {', '.join(choices)}." in text


def test_help_lists_the_choices_of_every_enumerated_option():
    text = _help("sharpen")
    for choices in (METHODS, ["auto", "cpu", "cuda"], ["auto", "fp32", "bf16"], COMPRESSION,
                    ["uint8", "uint16", "int16", "uint32", "int32", "float32", "float64"], FORMATS,
                    UPSAMPLING_KERNELS, ["intersection", "union"]):
        assert offered(choices, text), choices
    assert "Usage: ssdiff sharpen [OPTIONS] PAN MS..." in text
    assert "Usage: ssdiff info [OPTIONS] PAN MS..." in _help("info")


def test_help_at_80_columns_breaks_no_choice_mid_word():
    """Issue 25, item 17: ``<auto|ssdiff|bro`` / ``vey|gsa|...`` in a CI log or narrow terminal."""
    result = runner.invoke(app, ["sharpen", "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    words = set(re.findall(r"[\w-]+", result.output))
    for name in (*METHODS, *COMPRESSION, *UPSAMPLING_KERNELS, "intersection", "float64"):
        assert name in words, name
    text = re.sub(r"[\s│]+", " ", result.output)
    assert f"One of: {', '.join(METHODS)}." in text
    # auto falls back to MTF-GLP-FS, as README says (not "else mtf-glp")
    assert "else mtf-glp" not in text and "MTF-GLP-FS" in text


def test_method_choices_are_the_registry():
    assert set(METHODS) == {"auto", "ssdiff", "ksdiff", *CLASSICAL}


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"ssdiff {__version__}"


def test_missing_output_is_a_usage_error():
    result = runner.invoke(app, ["sharpen", "pan.tif", "ms.tif"])
    assert result.exit_code == EXIT_USAGE
    assert "-o OUTPUT" in result.output


def test_unknown_choice_is_a_usage_error():
    for args in (["-m", "pca"], ["--compress", "jpeg"], ["-r", "average"], ["-of", "PNG"]):
        result = runner.invoke(app, ["sharpen", "pan.tif", "ms.tif", "-o", "x.tif", *args])
        assert result.exit_code == EXIT_USAGE, args


@requires_data
def test_weight_count_is_a_usage_error(tmp_path):
    pan, ms = scene_paths("landsat8_satellite")
    out = tmp_path / "out.tif"
    result = runner.invoke(app, ["sharpen", str(pan), str(ms), "-o", str(out), "-m", "brovey",
                                 "-w", "0.5", "-w", "0.5"])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "2 Brovey weights given for 4 MS bands" in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


@requires_data
def test_json_with_stdout_is_a_usage_error(tmp_path):
    pan, ms = scene_paths("landsat8_satellite")
    result = runner.invoke(app, ["sharpen", str(pan), str(ms), "-o", "-", "--json"])
    assert result.exit_code == EXIT_USAGE, result.output


@requires_data
def test_bad_creation_option_is_a_usage_error(tmp_path):
    pan, ms = scene_paths("landsat8_satellite")
    result = runner.invoke(app, ["sharpen", str(pan), str(ms), "-o", str(tmp_path / "o.tif"),
                                 "--co", "BLOCKSIZE"])
    assert result.exit_code == EXIT_USAGE and "KEY=VALUE" in result.stderr


def test_evaluate_lists_its_method_choices():
    text = _help("evaluate")
    assert "|".join(m for m in METHODS if m != "auto") in text
    result = runner.invoke(app, ["evaluate", "--reduced", "p.tif", "m.tif", "-m", "pca"])
    assert result.exit_code == EXIT_USAGE
