"""The model zoo: checkpoints (safetensors) with their model cards (JSON), found, loaded, checked;
L-BAF adapter files (read, written, applied to their base).

A checkpoint is two files side by side: ``NAME.safetensors`` (weights) and ``NAME.json`` (the
card: sensor, bands, ratio, normalisation, architecture, diffusion settings, training data and
its terms, measured metrics). The card alone rebuilds the network, so a checkpoint is usable
without the code that trained it.

Where models are looked for: the folder(s) in ``$SSDIFF_MODELS`` (separated by ``os.pathsep``), then
the models shipped inside the package (``ssdiff_cli/models/``, package data). Any ``NAME.json`` with
a ``NAME.safetensors`` beside it in one of these folders is a model named ``NAME``; where two folders
hold the same name, the earlier folder wins.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from ssdiff_cli.errors import DegenerateOutputError, ModelError, SsdiffWarning
from ssdiff_cli.families import ANY_BANDS, ANY_RATIOS, Family, architecture, family_of
from ssdiff_cli.files import umask_mode
from ssdiff_cli.json_files import read_json_object

CARD_VERSION = 1

#: Bounds on a card's size fields. Far above any model of this architecture; a value outside
#: them is a corrupt or hostile card (``base_channels: 65536`` would ask for hundreds of GB).
SIZE_LIMITS = {"bands": (1, 256), "ratio": (1, 32), "base_channels": (1, 1024),
               "window": (1, 1024), "head_dim": (1, 1024), "time_dim": (2, 8192),
               "embed_dim": (1, 8192)}
#: Largest network a card may describe, and the largest weights file read.
MAX_PARAMETERS = 2**28
MAX_WEIGHTS_BYTES = 4 * 2**30
#: Most DDIM steps a card may ask for (T of the shipped schedule) and the largest T.
MAX_STEPS = 1000
MAX_TIMESTEPS = 100_000


def shipped_models_dir() -> Path:
    """The folder of the models shipped inside the package (``ssdiff_cli/models``)."""
    # pip installs a package as plain files, so the resource is a real folder (safetensors reads
    # weights by path).
    return Path(str(resources.files("ssdiff_cli").joinpath("models")))


def model_dirs() -> list[Path]:
    """Folders searched for models, in order: ``$SSDIFF_MODELS`` (one or more folders separated by
    ``os.pathsep``), then the shipped models."""
    extra = [Path(d) for d in os.environ.get("SSDIFF_MODELS", "").split(os.pathsep) if d]
    return [*extra, shipped_models_dir()]


@dataclass
class ModelCard:
    """What a checkpoint is and how it was made (the JSON beside the weights).

    ``normalisation`` says how digital numbers are scaled into the network's range:
    ``{"kind": "fixed", "scale": 2047.0}`` divides by a constant (the sensor's bit depth);
    ``{"kind": "scene", "percentile": 99.0}`` divides each scene by that percentile of its PAN.
    """

    name: str
    sensor: str
    band_names: list[str]
    bands: int
    ratio: int
    normalisation: dict
    model: dict
    diffusion: dict = field(default_factory=dict)
    sampling: dict = field(default_factory=lambda: {"steps": 1})
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    description: str = ""
    card_version: int = CARD_VERSION

    def to_dict(self) -> dict:
        """JSON-friendly form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "card") -> ModelCard:
        """Rebuild from JSON, with a clear error for missing keys."""
        if not isinstance(data, dict):
            raise ModelError(f"{source}: model card is a JSON {type(data).__name__}, not an object")
        required = ("name", "sensor", "band_names", "bands", "ratio", "normalisation", "model")
        missing = [k for k in required if k not in data]
        if missing:
            raise ModelError(f"{source}: model card lacks {', '.join(missing)}")
        known = {f for f in cls.__dataclass_fields__}
        card = cls(**{k: v for k, v in data.items() if k in known})
        validate_card(card, source)
        return card


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _finite_numbers(value, where: str, source: str) -> None:
    """Every number in ``value`` (nested lists/dicts, at most 64 items a level) is finite."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ModelError(f"{source}: {where} is {value}, not a finite number")
        return
    items = value.values() if isinstance(value, dict) else value
    if isinstance(value, (list, tuple, dict)):
        if len(value) > 64:
            raise ModelError(f"{source}: {where} has {len(value)} entries (at most 64)")
        for item in items:
            _finite_numbers(item, where, source)


#: The JSON type each card field must have.
_FIELD_TYPES = {"name": str, "sensor": str, "description": str, "band_names": list,
                "model": dict, "normalisation": dict, "diffusion": dict, "sampling": dict,
                "training": dict, "metrics": dict}


def _check_field_types(card: ModelCard, source: str) -> None:
    """Every field of a card has its JSON type (a string, a list of strings, an object)."""
    for name, kind in _FIELD_TYPES.items():
        if not isinstance(getattr(card, name), kind):
            word = {str: "a string", list: "a list", dict: "an object"}[kind]
            raise ModelError(f"{source}: '{name}' is {getattr(card, name)!r:.40}; it must be "
                             f"{word}")
    for name, values in (("band_names", card.band_names),
                         ("training.terms", card.training.get("terms", []))):
        if (not isinstance(values, list) or len(values) > SIZE_LIMITS["bands"][1]
                or not all(isinstance(v, str) for v in values)):
            raise ModelError(f"{source}: '{name}' must be a list of at most "
                             f"{SIZE_LIMITS['bands'][1]} strings")
    if not _is_int(card.card_version):
        raise ModelError(f"{source}: card_version is {card.card_version!r}; a whole number")


def _check_schedule(card: ModelCard, source: str) -> None:
    """The card's diffusion schedule builds, and its sampling starts at a timestep it has
    (``sampling.t_start``: from ``steps - 1`` to ``T - 1``, as DDIM needs)."""
    import numpy as np

    from ssdiff_cli.diffusion import DiffusionConfig, cosine_betas

    try:
        config = DiffusionConfig.from_dict(card.diffusion)
        betas = cosine_betas(config.num_train_timesteps, config.cosine_s, config.max_beta)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{source}: bad diffusion section ({exc})") from None
    if not (np.isfinite(betas).all() and ((betas >= 0) & (betas < 1)).all()):
        raise ModelError(f"{source}: its diffusion section gives no valid noise schedule")
    steps, t_start = card.sampling.get("steps", 1), card.sampling.get("t_start")
    big_t = config.num_train_timesteps
    if t_start is not None and (not _is_int(t_start) or not steps - 1 <= t_start <= big_t - 1):
        raise ModelError(f"{source}: sampling.t_start is {t_start!r}; it must be a whole number "
                         f"from {steps - 1} to {big_t - 1}")


def validate_card(card: ModelCard, source: str = "card") -> None:
    """Check a card before anything is built from it (exit 6 on failure): every field has its
    JSON type, ``model.family`` names a known family (:mod:`ssdiff_cli.families`), size fields
    are whole numbers within :data:`SIZE_LIMITS`, numbers are finite, the normalisation is one
    its family takes (a fixed scale positive), sampling steps are within ``1..MAX_STEPS``, the
    diffusion schedule builds and sampling starts at one of its timesteps. A card of a family
    that takes any layout has ``bands`` and ``ratio`` 0, meaning "any"."""
    _check_field_types(card, source)
    family = family_of(card.model, source)
    top = {} if family.any_layout else {"bands": card.bands, "ratio": card.ratio}
    for where, section in (("", top), ("model.", card.model)):
        for key, (lo, hi) in SIZE_LIMITS.items():
            if key not in section:
                continue
            v = section[key]
            if not _is_int(v) or not lo <= v <= hi:
                raise ModelError(f"{source}: {where}{key} is {v!r}; it must be a whole number "
                                 f"from {lo} to {hi}")
    for name in ("model", "diffusion", "sampling", "normalisation"):
        _finite_numbers(getattr(card, name), name, source)
    norm = card.normalisation
    kind = norm.get("kind", "fixed")
    if kind not in family.normalisations:
        raise ModelError(f"{source}: unknown normalisation kind {kind!r} "
                         f"({' or '.join(family.normalisations)})")
    if kind == "fixed":
        scale = norm.get("scale")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise ModelError(f"{source}: normalisation.scale is {scale!r}; it must be a number > 0")
    elif kind == "scene":
        pct = norm.get("percentile", 99.0)
        if isinstance(pct, bool) or not isinstance(pct, (int, float)) or not 0 < pct <= 100:
            raise ModelError(f"{source}: normalisation.percentile is {pct!r}; it must be in (0, 100]")
    steps = card.sampling.get("steps", 1)
    if not _is_int(steps) or not 1 <= steps <= MAX_STEPS:
        raise ModelError(f"{source}: sampling.steps is {steps!r}; it must be from 1 to {MAX_STEPS}")
    big_t = card.diffusion.get("num_train_timesteps", 1000)
    if not _is_int(big_t) or not 1 <= big_t <= MAX_TIMESTEPS:
        raise ModelError(f"{source}: diffusion.num_train_timesteps is {big_t!r}; it must be from 1 "
                         f"to {MAX_TIMESTEPS}")
    _check_schedule(card, source)


def _paths(name_or_path: str | os.PathLike) -> tuple[Path, Path]:
    """(weights, card) paths for a zoo name, a path prefix, or either file."""
    p = Path(name_or_path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    elif not p.parent.name and not p.exists():
        folders = model_dirs()
        # the first folder with the whole pair, else (for the error) the first with the card
        cards = [d for d in folders if (d / p).with_suffix(".json").exists()]
        pairs = [d for d in cards if (d / p).with_suffix(".safetensors").exists()]
        p = (pairs or cards or folders)[0] / p
    return p.with_suffix(".safetensors"), p.with_suffix(".json")


def model_files(name_or_path: str | os.PathLike) -> tuple[Path, Path]:
    """(weights, card): the files a model named by zoo name or path is read from (what a writer
    must never replace)."""
    return _paths(name_or_path)


def read_card(name_or_path: str | os.PathLike) -> ModelCard:
    """The card of a checkpoint (by zoo name or path)."""
    weights, card_path = _paths(name_or_path)
    if not card_path.exists():
        available = ", ".join(c.name for c in list_models()) or "none"
        raise ModelError(f"{card_path}: no such model card (models available: {available})")
    return ModelCard.from_dict(read_json_object(card_path, "model card", ModelError), str(card_path))


def list_models(folder: Path | None = None) -> list[ModelCard]:
    """Cards of every checkpoint in ``folder`` (default: all of ``model_dirs()``, the first folder
    winning a name clash), sorted by name. A card that cannot be read or fails
    :func:`validate_card` is skipped with a warning naming it."""
    by_name: dict[str, ModelCard] = {}
    for where in [folder] if folder else model_dirs():
        for card_path in sorted(where.glob("*.json")):
            if card_path.stem in by_name or not card_path.with_suffix(".safetensors").exists():
                continue
            try:
                by_name[card_path.stem] = read_card(card_path)
            except ModelError as exc:
                warnings.warn(f"{exc}; model skipped", SsdiffWarning, stacklevel=2)
    return [by_name[k] for k in sorted(by_name)]


#: Band counts and PAN/MS ratios a generalist model accepts.
GENERALIST_BANDS = ANY_BANDS
GENERALIST_RATIOS = ANY_RATIOS
#: The default model for any sensor (when no model was made for the sensor itself).
DEFAULT_GENERALIST = "ssdiff-generalist"


def family(card: ModelCard) -> Family:
    """The card's model family (:func:`ssdiff_cli.families.family_of`)."""
    return family_of(card.model, f"model {card.name}")


def accepts(card: ModelCard, bands: int, ratio: int) -> bool:
    """Whether a model can fuse ``bands`` MS bands at ``ratio``."""
    return family(card).accepts(card.bands, card.ratio, bands, ratio)


def terms_summary(card: ModelCard) -> str:
    """What the training data's terms allow, in a word or two: "commercial", "non-profit only",
    "no redistribution" or "unknown"."""
    text = " ".join(card.training.get("terms", []) if isinstance(card.training, dict) else []).lower()
    if "do not redistribute" in text or "not redistribut" in text:
        return "no redistribution"
    if "non-profit" in text:
        return "non-profit only"
    if card.training.get("commercial_use") or (text and "unknown" not in text):
        return "commercial" + (" (attribution, share-alike)" if "share-alike" in text else "")
    return "unknown"


def find_model_for(bands: int, ratio: int, sensor_key: str | None = None,
                   method: str = "ssdiff") -> ModelCard | None:
    """The model ``--method METHOD`` (default ``ssdiff``) uses when none is named, among the
    models of families that ``method`` runs: the default generalist (then any model that takes
    any layout) that accepts the input, else a model made for the sensor with the same band
    layout and ratio, else any model with that layout; None when nothing fits."""
    cards = [c for c in list_models() if family(c).method == method and accepts(c, bands, ratio)]
    general = sorted((c for c in cards if family(c).any_layout),
                     key=lambda c: (c.name != DEFAULT_GENERALIST, c.name))
    same_sensor = [c for c in cards if sensor_key and c.sensor == sensor_key]
    return (general or same_sensor or cards or [None])[0]


def check_fits(card: ModelCard, bands: int, ratio: int, what: str) -> None:
    """Refuse a model whose band count or ratio does not match the input."""
    fam = family(card)
    if fam.any_layout:
        if not accepts(card, bands, ratio):
            b, r = fam.layout(card.bands, card.ratio)
            raise ModelError(
                f"{what}: {bands} MS bands at ratio {ratio} is outside what model {card.name} "
                f"takes ({b} bands, ratio {r})")
        return
    if card.bands != bands:
        raise ModelError(
            f"{what}: has {bands} MS bands but model {card.name} was made for {card.bands}; "
            "pick another --model or fine-tune one (ssdiff finetune)"
        )
    if card.ratio != ratio:
        raise ModelError(
            f"{what}: PAN/MS ratio is {ratio} but model {card.name} was made for {card.ratio}"
        )


def refuse_nonfinite(state: dict, path) -> None:
    """Never write weights holding NaN or infinite values (a diverged training run): a
    :class:`~ssdiff_cli.errors.DegenerateOutputError` naming ``path`` and the first such tensor."""
    import torch

    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise DegenerateOutputError(f"{path}: tensor {key} holds NaN or infinite values (a "
                                        "diverged run?); not written")


def save_checkpoint(model, card: ModelCard, path: str | os.PathLike) -> Path:
    """Write ``path.safetensors`` and ``path.json`` (atomically, each via a temp file); weights
    that are not all finite are refused (:func:`refuse_nonfinite`)."""
    from safetensors.torch import save_file

    weights, card_path = _paths(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    refuse_nonfinite(state, weights)
    weights.parent.mkdir(parents=True, exist_ok=True)
    tmp_w = weights.with_suffix(".safetensors.tmp")
    save_file(state, str(tmp_w), metadata={"name": card.name})
    tmp_c = card_path.with_suffix(".json.tmp")
    tmp_c.write_text(json.dumps(card.to_dict(), indent=2) + "\n")
    for tmp in (tmp_w, tmp_c):
        umask_mode(tmp)
    os.replace(tmp_w, weights)
    os.replace(tmp_c, card_path)
    return weights


def build_model(card: ModelCard, device: str | None = None):
    """A network with the card's architecture (weights not loaded), of the class its family
    names (:mod:`ssdiff_cli.families`: the per-sensor SSDiffDenoiser, the generalist's, KSDiff's).
    It is first built on the ``meta`` device (no memory) to refuse one above
    :data:`MAX_PARAMETERS`; ``device="meta"`` returns that shape-only network."""
    import torch

    validate_card(card, f"model {card.name}")
    fam = family(card)
    Config, Network = fam.classes()
    try:
        config = Config.from_dict(architecture(card.model))
        with torch.device("meta"):
            shapes_only = Network(config)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ModelError(f"model {card.name}: bad architecture in its card ({exc})") from None
    if not fam.any_layout and (config.bands != card.bands or config.ratio != card.ratio):
        raise ModelError(f"model {card.name}: card and architecture disagree on bands or ratio")
    params = sum(p.numel() for p in shapes_only.parameters())
    if params > MAX_PARAMETERS:
        raise ModelError(f"model {card.name}: its card describes {params / 1e6:.0f} M parameters "
                         f"(at most {MAX_PARAMETERS / 1e6:.0f} M); corrupt card?")
    if device == "meta":
        return shapes_only
    return Network(config)


def weight_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a safetensors file, from its header only (bounded size)."""
    from safetensors import SafetensorError, safe_open

    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ModelError(f"{path}: unreadable weights ({exc.strerror or exc})") from None
    if size > MAX_WEIGHTS_BYTES:
        raise ModelError(f"{path}: {size / 2**30:.1f} GiB of weights (at most "
                         f"{MAX_WEIGHTS_BYTES / 2**30:.0f} GiB); not a checkpoint of this tool")
    try:
        with safe_open(str(path), framework="pt") as fh:
            return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable weights ({exc})") from None


def check_dtypes(expected: dict, state: dict, path) -> None:
    """Refuse a tensor stored as integers where the network holds floating-point values (it
    would be cast and used, a corrupt or foreign file)."""
    for key, tensor in state.items():
        want = expected.get(key)
        if want is not None and want.is_floating_point and not tensor.is_floating_point():
            raise ModelError(f"{path}: tensor {key} holds {str(tensor.dtype).removeprefix('torch.')}"
                             " values where the network has floating-point weights; corrupt "
                             "weights")


def check_finite(state: dict, path) -> None:
    """Refuse weights holding NaN or infinite values (they would publish garbage)."""
    import torch

    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelError(f"{path}: tensor {key} holds NaN or infinite values; corrupt weights")


def shape_mismatch(expected: dict, found: dict) -> str:
    """A short description of how two ``{name: shape}`` maps differ ('' when they agree)."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found)
                   if tuple(expected[k]) != tuple(found[k]))
    return "; ".join(
        f"{label}: {', '.join(keys[:3])}{'...' if len(keys) > 3 else ''}"
        for label, keys in (("missing", missing), ("unexpected", extra), ("shape", wrong))
        if keys
    )


def load_checkpoint(name_or_path: str | os.PathLike, device: str = "cpu"):
    """Load ``(model, card)``; the weights must match the card's architecture exactly."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    card = read_card(name_or_path)
    weights, _ = _paths(name_or_path)
    if not weights.exists():
        raise ModelError(f"{weights}: weights file missing for model {card.name}")
    # The card is checked against the weights' shapes before the network is built for real.
    meta = build_model(card, device="meta").state_dict()
    expected = {k: tuple(v.shape) for k, v in meta.items()}
    detail = shape_mismatch(expected, weight_shapes(weights))
    if detail:
        raise ModelError(f"{weights}: weights do not fit the card's architecture ({detail})")
    model = build_model(card)
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"{weights}: unreadable weights ({exc})") from None
    check_dtypes({k: v.dtype for k, v in meta.items()}, state, weights)
    check_finite(state, weights)
    model.load_state_dict(state)
    model.eval()
    return model.to(device), card


# ------------------------------------------------------------------ L-BAF adapters
# An adapter is ``NAME.safetensors`` (only the ``lora_`` weights) + ``NAME.json`` naming its base
# model, the base's architecture, rank, alpha and the schedule it was trained with
# (:mod:`ssdiff_cli.training.finetune` trains them). :func:`apply_adapter` checks the base and
# folds the adapters into the weights (:func:`ssdiff_cli.nn.merge_lora`), so inference costs
# nothing extra.

ADAPTER_KIND = "ssdiff-lbaf-adapter"
#: Largest adapter rank read from a file (the CLI's default is 4).
MAX_RANK = 256


def add_adapters(net, rank: int, alpha: float | None = None, seed: int = 0) -> None:
    """Adapters on both branches (idempotent). Their random initialisation is drawn from
    ``seed``, not the global generator, so a fine-tune or ``--adapt`` run is reproducible."""
    import torch

    from ssdiff_cli.nn import add_lora

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        add_lora(net, "spatial", rank, alpha)
        add_lora(net, "spectral", rank, alpha)


def adapter_paths(path) -> tuple[Path, Path]:
    """(weights, description) paths of an adapter, from a prefix or either file."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_suffix(".safetensors"), p.with_suffix(".json")


def save_adapter(net, card: ModelCard, path, config, extra: dict | None = None) -> Path:
    """Write the adapter weights of ``net`` and their JSON (base model name and architecture,
    schedule), each atomically. ``config`` is the fine-tuning's options, a dataclass with
    ``rank``, ``alpha``, ``first``, ``switch_every`` and ``steps``
    (:class:`ssdiff_cli.training.finetune.FinetuneConfig`); it is recorded whole."""
    from safetensors.torch import save_file

    from ssdiff_cli.nn import lora_state_dict

    weights, meta = adapter_paths(path)
    state = {k: v.contiguous().cpu() for k, v in lora_state_dict(net).items()}
    refuse_nonfinite(state, weights)
    weights.parent.mkdir(parents=True, exist_ok=True)
    info = {
        "kind": ADAPTER_KIND, "name": weights.stem, "base_model": card.name, "base_architecture": card.model,
        "bands": card.bands, "ratio": card.ratio, "rank": config.rank, "alpha": config.alpha,
        "schedule": {"branches": "alternating, one trained while the other is frozen",
                     "first": config.first, "switch_every": config.switch_every, "steps": config.steps},
        "finetune": asdict(config), **(extra or {}),
    }
    tmp = weights.with_suffix(".safetensors.tmp")
    save_file(state, str(tmp), metadata={"base_model": card.name})
    umask_mode(tmp)
    os.replace(tmp, weights)
    tmp_meta = meta.with_suffix(".json.tmp")
    tmp_meta.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp_meta, meta)
    return weights


def read_adapter(path) -> tuple[dict, dict]:
    """``(info, weights)`` of an adapter file (clear errors for missing or foreign files)."""
    from safetensors.torch import load_file

    weights, meta = adapter_paths(path)
    for p in (weights, meta):
        if not p.exists():
            raise ModelError(f"{p}: adapter file missing (an adapter is NAME.safetensors + NAME.json)")
    info = read_json_object(meta, "adapter description", ModelError)
    if info.get("kind") != ADAPTER_KIND:
        raise ModelError(f"{meta}: not an SSDiff L-BAF adapter")
    rank, alpha = info.get("rank"), info.get("alpha")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= MAX_RANK:
        raise ModelError(f"{meta}: rank is {rank!r}; it must be a whole number from 1 to {MAX_RANK}")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, (int, float))
                              or not math.isfinite(alpha)):
        raise ModelError(f"{meta}: alpha is {alpha!r}; it must be a finite number")
    weight_shapes(weights)  # bounded size, readable header
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise ModelError(f"{weights}: unreadable adapter weights ({exc})") from None
    check_finite(state, weights)
    return info, state


def apply_adapter(net, adapter_path, card: ModelCard):
    """Apply an adapter to its base network (checked by name and architecture) and merge it;
    returns the network, in eval mode."""
    from ssdiff_cli.nn import lora_state_dict, merge_lora

    info, state = read_adapter(adapter_path)
    if info.get("base_model") != card.name:
        raise ModelError(f"{adapter_path}: adapter was made for model {info.get('base_model')!r}, "
                         f"not {card.name!r}; pass --model {info.get('base_model')}")
    if info.get("base_architecture") and info["base_architecture"] != card.model:
        raise ModelError(f"{adapter_path}: model {card.name} has another architecture than the "
                         "adapter's base (retrained since?)")
    add_adapters(net, int(info["rank"]), info.get("alpha"))
    own = lora_state_dict(net)
    detail = shape_mismatch({k: tuple(v.shape) for k, v in own.items()},
                            {k: tuple(v.shape) for k, v in state.items()})
    if detail:
        raise ModelError(f"{adapter_path}: adapter weights do not fit model {card.name} ({detail})")
    check_dtypes({k: v.dtype for k, v in own.items()}, state, adapter_path)
    net.load_state_dict(state, strict=False)
    merge_lora(net)
    net.requires_grad_(False)
    return net.eval()
