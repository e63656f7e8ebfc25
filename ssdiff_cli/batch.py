"""Sharpening many pairs: ``--batch`` rows over :func:`ssdiff_cli.pipeline.sharpen`.

:func:`read_batch` turns a CSV or a glob into :class:`BatchItem` pairs; :func:`sharpen_batch`
sharpens them one after another (each pair's tiles spread over the executor, see
:mod:`ssdiff_cli.executors`), skips pairs whose output exists, records a one-line error for a
failing pair and goes on with the next, and reports progress as one stream across all pairs.
"""

from __future__ import annotations

import csv
import dataclasses
import glob as globmod
import os
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ssdiff_cli.errors import EXIT_RUNTIME, BadInputError, OutputError, SsdiffError, UsageError
from ssdiff_cli.files import FileSet, dataset_files
from ssdiff_cli.gdal_names import split_band_suffix
from ssdiff_cli.output.destination import input_message
from ssdiff_cli.pipeline import SharpenOptions, sharpen

Progress = Callable[[int, int, int], None]  # (tiles done, tiles total, pixels done)

__all__ = ["BatchItem", "read_batch", "sharpen_batch"]


@dataclass
class BatchItem:
    """One pair to sharpen. ``error`` is set for an entry that could not even be read (a bad
    CSV row): :func:`sharpen_batch` reports it as failed without trying it. ``source`` says
    where it came from (``file.csv:3``, or the glob match)."""

    pan: str
    ms: list[str]
    out: str
    source: str = ""
    error: str | None = None


def _is_virtual(path: str) -> bool:
    return path.startswith("/vsi") or "://" in path


def _resolve(path: str, base: Path) -> str:
    path = path.strip()
    if _is_virtual(path):
        return path
    p = Path(path).expanduser()
    return os.path.abspath(p if p.is_absolute() else base / p)


def read_batch(spec: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> list[BatchItem]:
    """The pairs of a batch, from a CSV file or a glob pattern.

    CSV (``spec`` ends in ``.csv``): a header row ``pan,ms,out`` (any column order, extra columns
    ignored), then one pair per row. ``ms`` may hold several paths separated by ``;`` (one file
    per band, in band order). Relative paths are resolved against the CSV's folder (``out_dir``
    is then ignored); ``/vsi...`` and URL paths are kept as they are. Blank rows and rows whose
    first cell starts with ``#`` are skipped; a row missing a value becomes an item with
    ``error`` set.

    Glob (anything else): each match is either

    - a *folder* holding ``pan.tif`` and ``ms.tif`` -> output ``<out_dir>/<folder name>.tif``; or
    - a *PAN file* whose name contains ``pan`` (any case) -> its MS is the file beside it with
      the last ``pan`` in the name replaced by ``ms`` in the same case (``scene1_pan.tif`` ->
      ``scene1_ms.tif``, ``IMG_PAN.TIF`` -> ``IMG_MS.TIF``) and the output is
      ``<out_dir>/<name with that pan and the separator before it removed>.tif``
      (``scene1.tif``); a file called just ``pan.tif`` is named after its folder, as above.

    ``out_dir`` defaults to the current directory. Matches are sorted. Raises
    :class:`BadInputError` when the CSV cannot be read or has no such header, when a glob matches
    nothing or a match breaks the naming rules, and when two pairs would write the same output;
    a pair whose output is a file some pair reads is marked failed (:func:`check_batch_paths`).
    """
    text = str(spec)
    if text.lower().endswith(".csv"):
        items = _read_csv(Path(text))
    else:
        items = _read_glob(text, Path(out_dir) if out_dir is not None else Path.cwd())
    check_batch_paths(items)
    return items


def quicklook_path(item: BatchItem, folder: str) -> str:
    """A batch row's quicklook with ``--quicklook FOLDER``: ``FOLDER/<output name>.png``."""
    return os.path.join(folder, Path(item.out).stem + ".png")


def quicklook_folder(path: str) -> str:
    """``--quicklook`` with ``--batch`` names a folder (one PNG per row, after its output):
    :class:`UsageError` for a file name, :class:`OutputError` for a folder that is missing."""
    if os.path.isdir(path):
        return path
    hint = ("with --batch, --quicklook names a folder (each pair's PNG is written there, named "
            "after its output)")
    if os.path.exists(path) or path.lower().endswith(".png"):
        raise UsageError(f"{path}: {hint}")
    raise OutputError(f"{path}: folder does not exist ({hint})")


def _written(item: BatchItem, quicklooks: str | None) -> list[tuple[str, str]]:
    """``(role, path)`` of every local file a row writes."""
    paths = [("output", item.out)]
    if quicklooks is not None:
        paths.append(("quicklook", quicklook_path(item, quicklooks)))
    return [(role, p) for role, p in paths if p != "-" and not _is_virtual(p)]


def check_batch_paths(items: list[BatchItem], quicklooks: str | None = None) -> None:
    """Before any work, every path the batch writes (each row's output and, with ``quicklooks``,
    its PNG in that folder) against every other one and against every file any row reads.

    Two rows writing one file (by resolved name, through a symlinked folder, or a hard link) is a
    :class:`BadInputError` for the whole batch; a row that would replace a file some row reads
    (an input, a source of an input VRT, the file behind a ``/vsi`` name) is marked failed, and
    the batch goes on, so no input is ever replaced."""
    written = FileSet()
    for item in items:
        for role, path in ([] if item.error else _written(item, quicklooks)):
            hit = written.find(path)
            if hit is not None:
                raise BadInputError(f"{item.source}: {role} {path} is also the {hit[1]}")
            written.add(path, f"{role} of {item.source}")
    inputs = FileSet()
    for item in items:
        for name in ([] if item.error else [item.pan, *item.ms]):
            name = str(split_band_suffix(name)[0])  # "ms.tif,band=3" reads ms.tif
            for f in dataset_files(name):
                inputs.add(f, name)
    for item in items:
        for role, path in ([] if item.error else _written(item, quicklooks)):
            hit = inputs.find(path)
            if hit is not None:
                item.error = f"{item.source}: {input_message(path, hit, role)}"
                break


def _read_csv(path: Path) -> list[BatchItem]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read the batch file ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BadInputError(f"{path}: not a CSV file ({exc})") from None
    header_at = next((i for i, r in enumerate(rows) if any(c.strip() for c in r)), None)
    if header_at is None:
        raise BadInputError(f"{path}: empty batch file")
    header = [c.strip().lower() for c in rows[header_at]]
    missing = [c for c in ("pan", "ms", "out") if c not in header]
    if missing:
        raise BadInputError(
            f"{path}: the header must name columns pan,ms,out (missing: {', '.join(missing)})"
        )
    col = {name: header.index(name) for name in ("pan", "ms", "out")}
    base = Path(os.path.abspath(path)).parent
    items = []
    for i in range(header_at + 1, len(rows)):
        row = rows[i]
        if not any(c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        source = f"{path}:{i + 1}"
        values = {k: (row[j].strip() if j < len(row) else "") for k, j in col.items()}
        ms = [p.strip() for p in values["ms"].split(";") if p.strip()]
        empty = [k for k in ("pan", "ms", "out") if not (values[k] if k != "ms" else ms)]
        if empty:
            items.append(BatchItem(values["pan"], ms, values["out"], source,
                                   error=f"{source}: no value for {', '.join(empty)}"))
            continue
        items.append(BatchItem(_resolve(values["pan"], base), [_resolve(p, base) for p in ms],
                               _resolve(values["out"], base), source))
    return items


_PAN = re.compile(r"pan", re.IGNORECASE)


def _swap_case(token: str, like: str) -> str:
    if like.isupper():
        return token.upper()
    if like[:1].isupper():
        return token.capitalize()
    return token.lower()


def _read_glob(pattern: str, out_dir: Path) -> list[BatchItem]:
    matches = sorted(globmod.glob(os.path.expanduser(pattern), recursive=True))
    if not matches:
        raise BadInputError(f"{pattern}: matches no file or folder")
    out_dir = Path(os.path.abspath(out_dir.expanduser()))
    items = []
    for match in matches:
        p = Path(os.path.abspath(match))  # symlinks kept: names are what the user sees
        if p.is_dir():
            pan, ms = p / "pan.tif", p / "ms.tif"
            if not pan.exists() or not ms.exists():
                raise BadInputError(f"{p}: a batch folder must hold pan.tif and ms.tif")
            items.append(BatchItem(str(pan), [str(ms)], str(out_dir / f"{p.name}.tif"), str(p)))
            continue
        found = list(_PAN.finditer(p.stem))
        if not found:
            raise BadInputError(f"{p}: a PAN file matched by a batch glob must have 'pan' in its name")
        m = found[-1]
        ms_name = p.stem[:m.start()] + _swap_case("ms", m.group()) + p.stem[m.end():] + p.suffix
        ms = p.with_name(ms_name)
        if not ms.exists():
            raise BadInputError(f"{p}: its MS file {ms.name} is not beside it")
        base = (p.stem[:m.start()].rstrip("_-. ") + p.stem[m.end():]).strip("_-. ")
        items.append(BatchItem(str(p), [str(ms)], str(out_dir / f"{base or p.parent.name}.tif"), str(p)))
    return items


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return line if isinstance(exc, SsdiffError) and line else f"{type(exc).__name__}: {line}".rstrip(": ")


def sharpen_batch(
    items: list[BatchItem],
    options=None,
    executor=None,
    progress: Progress | None = None,
    skip_existing: bool = True,
) -> list[dict]:
    """Sharpen every pair of ``items`` in turn and return one result dict per pair.

    Each result has ``pan``, ``ms``, ``out``, ``source``, ``status`` (``"done"``, ``"skipped"``
    or ``"failed"``), ``error`` (one line, or ``None``), ``exit_code`` (0, or the CLI exit code of
    the error), ``seconds``, ``tiles``, ``warnings`` (their messages) and, when done, ``report``
    (``Report.to_dict()``).

    Before any work, every path the batch writes is checked (:func:`check_batch_paths`); with
    ``options.quicklook``, a folder, each pair's quicklook is ``FOLDER/<output name>.png``
    (:func:`quicklook_folder` refuses a file name or a missing folder). A pair whose output
    exists is skipped when ``skip_existing`` (otherwise ``options.overwrite`` decides, as for
    one pair). A pair that fails is recorded and the batch goes on; Ctrl-C stops
    it. The output's folder is created if needed. ``executor`` is shared by all pairs; with a
    :class:`~ssdiff_cli.executors.DaskExecutor`, ``options.workers`` is raised to the cluster's
    thread count.
    ``progress(done, total, pixels)`` is one stream over the batch: counts of earlier pairs are
    added to the current pair's, so ``total`` grows as each pair's tiles are planned.
    """
    opts = options or SharpenOptions()
    quicklooks = quicklook_folder(opts.quicklook) if opts.quicklook else None
    check_batch_paths(items, quicklooks)
    nthreads = getattr(executor, "nthreads", None)
    if nthreads and opts.workers < nthreads:
        opts = dataclasses.replace(opts, workers=nthreads)
    results: list[dict] = []
    base_done = base_total = base_pixels = 0

    for item in items:
        res = {"pan": item.pan, "ms": list(item.ms), "out": item.out, "source": item.source,
               "status": "failed", "error": None, "exit_code": 0, "seconds": 0.0, "tiles": 0,
               "warnings": []}
        results.append(res)
        if item.error:
            res.update(error=item.error, exit_code=BadInputError.exit_code)
            continue
        if skip_existing and item.out != "-" and Path(item.out).exists():
            res["status"] = "skipped"
            continue
        state = {"done": 0, "total": 0, "pixels": 0}

        def relay(done, total, pixels, state=state, base=(base_done, base_total, base_pixels)):
            state.update(done=done, total=total, pixels=pixels)
            if progress is not None:
                progress(base[0] + done, base[1] + total, base[2] + pixels)

        start = time.perf_counter()
        caught: list = []
        made: list[Path] = []
        try:
            if item.out != "-" and not _is_virtual(item.out):
                made = _make_parents(Path(item.out))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                row_opts = opts if quicklooks is None else dataclasses.replace(
                    opts, quicklook=quicklook_path(item, quicklooks))
                report = sharpen(item.pan, item.ms if len(item.ms) > 1 else item.ms[0], item.out,
                                 row_opts, progress=relay, executor=executor)
            res.update(status="done", tiles=report.tiles, report=report.to_dict())
            state["done"] = state["total"] = report.tiles
        except Exception as exc:  # noqa: BLE001 - one pair's failure must not stop the batch
            res.update(error=_one_line(exc), exit_code=getattr(exc, "exit_code", EXIT_RUNTIME))
            _remove_empty(made)
        res["seconds"] = round(time.perf_counter() - start, 3)
        res["warnings"] = list(dict.fromkeys(str(w.message) for w in caught
                                             if not _is_noise(w)))
        # Tiles of a failed pair that never ran are dropped from the total.
        base_done += state["done"]
        base_total += state["done"] if res["status"] != "done" else state["total"]
        base_pixels += state["pixels"]
    return results


def _make_parents(out: Path) -> list[Path]:
    """Make ``out``'s missing folders; returns those made, innermost first."""
    missing = []
    for folder in [out.parent, *out.parent.parents]:
        if folder.exists():
            break
        missing.append(folder)
    out.parent.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed row made (innermost first) while they are empty: a failed
    run leaves nothing behind."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _is_noise(w: warnings.WarningMessage) -> bool:
    """rasterio's own not-georeferenced warning duplicates ssdiff's."""
    return (type(w.message).__name__ == "NotGeoreferencedWarning"
            and w.category.__module__.startswith("rasterio"))

