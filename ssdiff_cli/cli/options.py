"""The command line's choices and shared options, declared once so a flag means the same in every
command.

The choice Enums are built from the library's registries (``methods.CLASSICAL``,
``gdal_formats.OUTPUT_DTYPES``, ``COMPRESSION``, ``FORMATS``, ``filters.UPSAMPLING_KERNELS``), so a
method, type or compression added there is offered by ``--help`` without touching the CLI.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer
import typer.core

from ssdiff_cli.filters import UPSAMPLING_KERNELS
from ssdiff_cli.gdal_formats import COMPRESSION, FORMATS, OUTPUT_DTYPES
from ssdiff_cli.methods import CLASSICAL, MODEL_METHODS


def _choices(name: str, values, doc: str) -> type[Enum]:
    """A str Enum whose members are ``values`` (``-`` becomes ``_`` in the member names)."""
    enum = Enum(name, {v.replace("-", "_"): v for v in values}, type=str)
    enum.__doc__ = doc
    return enum


class Extent(str, Enum):
    """Output extent on the PAN grid."""

    intersection = "intersection"
    union = "union"


class Device(str, Enum):
    """Where the model runs."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Precision(str, Enum):
    """Arithmetic precision of the model (auto: bf16 where the hardware computes it natively)."""

    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


class Compile(str, Enum):
    """Whether the model runs compiled (torch.compile): auto where it pays."""

    auto = "auto"
    on = "on"
    off = "off"


class Coregister(str, Enum):
    """Whether the MS is moved to where it was measured on the PAN grid (auto: when confident)."""

    auto = "auto"
    on = "on"
    off = "off"


class AdaptObjective(str, Enum):
    """What ``--adapt`` optimises for a generalist model."""

    full = "full"
    reduced = "reduced"


class Norm(str, Enum):
    """How digital numbers are scaled for the network (``train --norm``)."""

    scene = "scene"
    bitdepth = "bitdepth"


class Variant(str, Enum):
    """Network variant (``train --variant``)."""

    fast = "fast"
    faithful = "faithful"


class TrainPrecision(str, Enum):
    """Training arithmetic (``train --precision``): :class:`Precision`'s choices, listed in the
    order ``train --help`` has always shown them."""

    auto = "auto"
    bf16 = "bf16"
    fp32 = "fp32"


#: ``--method`` names: ``auto`` (pick by sensor), the models, then the classical methods.
METHODS = ("auto", *MODEL_METHODS, *CLASSICAL)
Method = _choices("Method", METHODS, "``sharpen --method`` choices.")
#: ``evaluate -m`` names: the methods themselves (``auto`` picks one, nothing to compare).
EvalMethod = _choices("EvalMethod", [m for m in METHODS if m != "auto"], "``evaluate -m`` choices.")
DType = _choices("DType", OUTPUT_DTYPES, "``--dtype`` choices: GDAL's integer and float types.")
Compress = _choices("Compress", COMPRESSION, "``--compress`` choices.")
Resampling = _choices("Resampling", UPSAMPLING_KERNELS, "``-r/--resampling`` choices.")
OutputFormat = _choices("OutputFormat", FORMATS, "``-of`` choices.")


def json_option(help: str | None = "Print a JSON summary to stdout."):
    """The ``--json`` flag (``help``: the wording each command has always shown)."""
    return typer.Option("--json", help=help)


#: Seeds go to NumPy's and PyTorch's generators and the position-keyed noise: 63 bits at most.
MAX_SEED = 2**63 - 1


def _seed_in_range(value: int) -> int:
    if not 0 <= value <= MAX_SEED:
        raise typer.BadParameter(f"{value} is not a whole number from 0 to 2^63 - 1")
    return value


def seed_option(help: str | None = None):
    """The ``--seed`` option: a whole number from 0 to :data:`MAX_SEED` (a usage error else)."""
    return typer.Option("--seed", callback=_seed_in_range, help=help)


def sensor_option(help: str | None = "Sensor preset; overrides detection."):
    """The ``--sensor`` option: a preset name or alias (``ssdiff info --sensors``)."""
    return typer.Option("--sensor", help=help)


OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or warnings.")]
JsonOpt = Annotated[bool, json_option()]
SensorOpt = Annotated[str | None, sensor_option()]
WorkersOpt = Annotated[int | None, typer.Option(
    "--workers", "-j", min=1,
    help="Worker threads (default: one per CPU core; at most one with a compiled model).")]
TileOpt = Annotated[int | None, typer.Option(
    "--tile-size", min=64, help="Tile core size (PAN px; default: the method's, 1024 classical, "
    "512 ssdiff).")]
DeviceOpt = Annotated[Device, typer.Option("--device", help="Model device.")]
PrecisionOpt = Annotated[Precision, typer.Option("--precision", help="Model precision.")]
CompileOpt = Annotated[Compile, typer.Option(
    "--compile", help="Run the generalist model compiled (torch.compile, 2.5x faster on the "
    "CPU; about a minute the first time, cached): auto on scenes of 32 chunks or more (about "
    "5 MP at 8 bands) where a C++ compiler is installed.")]
# Training takes any torch device name (cuda:1 too) and has no auto: a string, not Device.
TrainDeviceOpt = Annotated[str, typer.Option("--device", help="cpu or cuda.")]
TrainPrecisionOpt = Annotated[TrainPrecision, typer.Option("--precision")]


#: Longest choice list shown inline in ``--help`` (``<auto|cpu|cuda>``); a longer one would be
#: cut mid-word in a narrow help (80 columns: a CI log), so it is listed in the option's help.
INLINE_CHOICES = 16


def list_long_choices(param) -> None:
    """Give a choice option whose choices do not fit :data:`INLINE_CHOICES` a short metavar
    (``<method>``) and end its help with the choices, comma-separated (they wrap between
    words)."""
    desc = getattr(param, "type_descriptor", None)
    if param.metavar is not None or desc is None or not desc.is_choice or not param.opts:
        return
    choices = [str(getattr(c, "value", c)) for c in desc.choices or ()]
    if len("|".join(choices)) + 2 <= INLINE_CHOICES:
        return
    param.metavar = f"<{max(param.opts, key=len).lstrip('-')}>"
    param.help = f"{param.help or ''} One of: {', '.join(choices)}.".strip()


class PairCommand(typer.core.TyperCommand):
    """A command whose usage line shows ``PAN MS...`` as required: they are, except where an
    option (``--batch``, ``--sensors``) replaces them, which click cannot express; long choice
    lists go into the options' help (:func:`list_long_choices`)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            list_long_choices(param)

    def collect_usage_pieces(self, ctx):
        names = {"[PAN]": "PAN", "[MS...]...": "MS..."}
        return [names.get(piece, piece) for piece in super().collect_usage_pieces(ctx)]
