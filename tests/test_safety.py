"""Nothing lost, nobody in (issue 11): every case found by trying the tool as a careful adversary
and as an unlucky user, on real scenes or files derived from them.

Each test names its item of the issue. Inputs are hashed before and after, so a test fails if
anything replaced them.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from ssdiff_cli.cli import app
from ssdiff_cli.errors import (
    EXIT_BAD_INPUT,
    EXIT_MODEL,
    EXIT_OUTPUT,
    EXIT_RUNTIME,
    EXIT_USAGE,
)
from tests.conftest import requires_data, scene_paths

pytestmark = requires_data
REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def one_line_error(result, code, *words):
    """Exit ``code``, one error line on stderr naming ``words`` (besides warnings), no
    traceback."""
    assert result.exit_code == code, result.output
    message = "\n".join(line for line in result.stderr.strip().splitlines()
                        if not line.startswith("ssdiff: warning:"))
    assert "Traceback" not in result.output
    assert len(message.splitlines()) == 1, message
    for word in words:
        assert word in message, message
    return message


def hidden_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def cli():
    """Start the CLI as a separate process (for signals), run from the repository; whatever a
    failing test leaves running is killed."""
    started = []

    def start(*args) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "ssdiff_cli", *map(str, args)], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.fixture
def landsat(tmp_path):
    """A copy of the small real Landsat-8 pair in tmp_path (so replacing it would show)."""
    pan, ms = scene_paths("landsat8_satellite")
    shutil.copy(pan, tmp_path / "pan.tif")
    shutil.copy(ms, tmp_path / "ms.tif")
    return tmp_path / "pan.tif", tmp_path / "ms.tif"


def split_bands(ms: Path, folder: Path, crs=None) -> list[Path]:
    """The MS as one single-band file per band (``crs`` overrides the last file's CRS)."""
    paths = []
    with rasterio.open(ms) as ds:
        profile = ds.profile
        profile.update(count=1)
        for b in range(1, ds.count + 1):
            path = folder / f"b{b}.tif"
            p = dict(profile)
            if crs is not None and b == ds.count:
                p["crs"] = crs
            with rasterio.open(path, "w", **p) as out:
                out.write(ds.read(b), 1)
            paths.append(path)
    return paths


# ------------------------------------------------------------------------------------------
# 1. An output that resolves to an input is refused (exit 3), with or without --overwrite


@pytest.mark.parametrize("how", ["pan", "ms", "dotdot", "symlink", "hardlink"])
def test_output_resolving_to_an_input_is_refused(landsat, tmp_path, how):
    pan, ms = landsat
    before = digest(pan), digest(ms)
    (tmp_path / "sub").mkdir()
    out = {"pan": pan, "ms": ms, "dotdot": tmp_path / "sub" / ".." / "ms.tif"}.get(how)
    if how == "symlink":
        out = tmp_path / "link.tif"
        out.symlink_to(pan)
    elif how == "hardlink":
        out = tmp_path / "hard.tif"
        os.link(ms, out)
    for extra in ([], ["--overwrite"]):
        result = invoke("sharpen", pan, ms, "-o", out, "-m", "brovey", *extra)
        one_line_error(result, EXIT_BAD_INPUT, "would replace the input")
    assert (digest(pan), digest(ms)) == before
    assert not hidden_files(tmp_path)


def test_output_equal_to_a_per_band_ms_file_is_refused(landsat, tmp_path):
    pan, ms = landsat
    bands = split_bands(ms, tmp_path)
    before = [digest(b) for b in bands]
    result = invoke("sharpen", pan, *bands, "-o", bands[2], "--overwrite", "-m", "brovey")
    one_line_error(result, EXIT_BAD_INPUT, "b3.tif", "would replace the input")
    assert [digest(b) for b in bands] == before


def test_batch_row_whose_output_is_an_input_is_refused(landsat, tmp_path):
    pan, ms = landsat
    before = digest(ms)
    csv = tmp_path / "pairs.csv"
    csv.write_text(f"pan,ms,out\n{pan},{ms},{ms}\n")
    result = invoke("sharpen", "--batch", csv, "--overwrite", "-m", "brovey", "--json", "-q")
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    row = json.loads(result.stdout)["pairs"][0]
    assert row["status"] == "failed" and "would replace the input" in row["error"]
    assert digest(ms) == before


def test_batch_output_that_is_another_rows_input_is_refused(landsat, tmp_path):
    pan, ms = landsat
    (tmp_path / "b").mkdir()
    pan2, ms2 = shutil.copy(pan, tmp_path / "b" / "pan.tif"), shutil.copy(ms, tmp_path / "b" / "ms.tif")
    before = digest(ms2)
    csv = tmp_path / "pairs.csv"
    csv.write_text(f"pan,ms,out\n{pan},{ms},{ms2}\n{pan2},{ms2},{tmp_path / 'b.tif'}\n")
    result = invoke("sharpen", "--batch", csv, "--overwrite", "-m", "brovey", "--json", "-q")
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    rows = json.loads(result.stdout)["pairs"]
    assert [r["status"] for r in rows] == ["failed", "done"]
    assert "would replace the input" in rows[0]["error"]
    assert digest(ms2) == before


# ------------------------------------------------------------------------------------------
# 2. --quicklook follows the rules of -o, checked before any work


def test_quicklook_does_not_replace_an_existing_file(landsat, tmp_path):
    pan, ms = landsat
    png = tmp_path / "q.png"
    png.write_bytes(b"precious")
    out = tmp_path / "out.tif"
    result = invoke("sharpen", pan, ms, "-o", out, "-m", "brovey", "--quicklook", png)
    one_line_error(result, EXIT_OUTPUT, "q.png", "already exists")
    assert png.read_bytes() == b"precious"
    assert not out.exists()  # refused before any work
    result = invoke("sharpen", pan, ms, "-o", out, "-m", "brovey", "--quicklook", png,
                    "--overwrite", "-q")
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not hidden_files(tmp_path)


def test_quicklook_may_not_be_an_input_or_the_output(landsat, tmp_path):
    pan, ms = landsat
    before = digest(ms)
    out = tmp_path / "out.tif"
    result = invoke("sharpen", pan, ms, "-o", out, "-m", "brovey", "--quicklook", ms, "--overwrite")
    one_line_error(result, EXIT_BAD_INPUT, "quicklook", "would replace the input")
    assert digest(ms) == before
    result = invoke("sharpen", pan, ms, "-o", out, "-m", "brovey", "--quicklook", out, "--overwrite")
    one_line_error(result, EXIT_USAGE, "also the output")
    assert not out.exists()


def test_quicklook_in_a_missing_folder_fails_before_any_work(landsat, tmp_path):
    pan, ms = landsat
    out = tmp_path / "out.tif"
    result = invoke("sharpen", pan, ms, "-o", out, "-m", "brovey", "--quicklook",
                    tmp_path / "nodir" / "q.png")
    one_line_error(result, EXIT_OUTPUT, "q.png", "does not exist")
    assert not out.exists()


def test_evaluate_quicklook_does_not_replace_the_reference(landsat, tmp_path):
    _, ms = landsat
    before = digest(ms)
    result = invoke("evaluate", ms, "--reference", ms, "--quicklook", ms)
    one_line_error(result, EXIT_BAD_INPUT, "would replace the input")
    other = tmp_path / "panel.png"
    other.write_bytes(b"precious")
    result = invoke("evaluate", ms, "--reference", ms, "--quicklook", other)
    one_line_error(result, EXIT_OUTPUT, "already exists")
    assert digest(ms) == before and other.read_bytes() == b"precious"


# ------------------------------------------------------------------------------------------
# 3, 4, 7. Training: no pickle, -o obeys --overwrite / --resume, SIGTERM saves


def _train_args(out, *extra):
    pan, ms = scene_paths("ge1_grip")
    return ["train", f"{pan},{ms}", "-o", out, "--max-steps", "2", "--batch-size", "2",
            "--crop", "16", "--eval-every", "0", "-q", *extra]


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def test_planted_pickle_state_cannot_run_code(tmp_path):
    out = tmp_path / "m"
    marker = tmp_path / "marker"
    for name in ("m.state.pt", "m.state.safetensors"):
        (tmp_path / name).write_bytes(pickle.dumps({"model": _Payload(marker)}))
    (tmp_path / "m.safetensors").write_bytes(b"x")
    (tmp_path / "m.json").write_text("{}")
    result = invoke(*_train_args(out, "--resume"))
    one_line_error(result, EXIT_BAD_INPUT, "m.state.safetensors", "training state")
    assert not marker.exists()


def test_train_state_is_safetensors_and_json_and_output_obeys_overwrite(tmp_path):
    from safetensors import safe_open

    out = tmp_path / "m"
    mask = os.umask(0o022)
    try:
        result = invoke(*_train_args(out))
    finally:
        os.umask(mask)
    assert result.exit_code == 0, result.output
    state = tmp_path / "m.state.safetensors"
    with safe_open(str(state), framework="pt") as fh:
        keys = set(fh.keys())
        info = json.loads(fh.metadata()["info"])
    assert {"rng.gen", "rng.torch"} <= keys and any(k.startswith("opt.") for k in keys)
    assert info["step"] == 2 and "param_groups" in info["opt"] and "np_source" in info
    assert not (tmp_path / "m.state.pt").exists()
    # item 15: the umask, not 0600
    assert stat.S_IMODE((tmp_path / "m.safetensors").stat().st_mode) == 0o644
    assert stat.S_IMODE(state.stat().st_mode) == 0o644
    # item 4: a second run does not silently replace the model
    before = digest(tmp_path / "m.safetensors")
    result = invoke(*_train_args(out))
    one_line_error(result, EXIT_OUTPUT, "already exists", "--overwrite")
    assert digest(tmp_path / "m.safetensors") == before
    # --resume continues it (exactly: tested in test_training), --overwrite starts over
    result = invoke(*_train_args(out, "--resume", "--max-steps", "3"))
    assert result.exit_code == 0, result.output
    result = invoke(*_train_args(out, "--overwrite"))
    assert result.exit_code == 0, result.output


def test_train_resume_without_state_is_bad_input(tmp_path):
    result = invoke(*_train_args(tmp_path / "m", "--resume"))
    one_line_error(result, EXIT_BAD_INPUT, "no training state")


def test_train_saves_its_state_on_sigterm(tmp_path, cli):
    pan, ms = scene_paths("ge1_grip")
    out = tmp_path / "m"
    state = tmp_path / "m.state.safetensors"
    proc = cli("train", f"{pan},{ms}", "-o", out, "--max-steps", "100000", "--batch-size", "2",
               "--crop", "16", "--eval-every", "2", "-q")
    deadline = time.time() + 600
    while not state.exists():  # written at the first evaluation: the loop is running
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.1)
    first = state.stat().st_mtime_ns
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    assert "state saved" in err
    from ssdiff_cli.training.loop import load_state_file

    _, info = load_state_file(state)
    assert info["step"] >= 2 and state.stat().st_mtime_ns > first


# ------------------------------------------------------------------------------------------
# 5. Devices, FIFOs and symlinks as outputs


def test_fifo_output_is_written_into_not_replaced(landsat, tmp_path):
    pan, ms = landsat
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = {}

    def drain():
        with open(fifo, "rb") as fh:
            got["data"] = fh.read()

    reader = threading.Thread(target=drain)
    reader.start()
    result = invoke("sharpen", pan, ms, "-o", fifo, "-m", "brovey", "-q")
    reader.join(timeout=60)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert got["data"][:4] in (b"II*\x00", b"II+\x00")
    assert not hidden_files(tmp_path)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_character_device_output_stays_a_device(landsat, tmp_path):
    pan, ms = landsat
    null = tmp_path / "null"  # a /dev/null of our own: if it were replaced, nothing else breaks
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    result = invoke("sharpen", pan, ms, "-o", null, "-m", "brovey", "--overwrite", "-q")
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(null.stat().st_mode)


def test_symlink_output_is_followed(landsat, tmp_path):
    pan, ms = landsat
    target = tmp_path / "real.tif"
    target.write_bytes(b"old")
    link = tmp_path / "link.tif"
    link.symlink_to(target)
    result = invoke("sharpen", pan, ms, "-o", link, "-m", "brovey")
    one_line_error(result, EXIT_OUTPUT, "already exists")
    result = invoke("sharpen", pan, ms, "-o", link, "-m", "brovey", "--overwrite", "-q")
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and link.resolve() == target.resolve()
    with rasterio.open(target) as ds:
        assert ds.count == 4


# ------------------------------------------------------------------------------------------
# 6. Signals during sharpen; stale work files


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sharpen_cleans_up_on_sigterm_and_sighup(tmp_path, cli, sig, code):
    pan, ms = scene_paths("wv2_grip")
    out = tmp_path / "out.tif"
    proc = cli("sharpen", pan, ms, "-o", out, "-m", "mtf-glp", "--tile-size", "64", "-j", "1",
               "-q")
    deadline = time.time() + 120
    while not any(n.endswith(".work.tif") for n in hidden_files(tmp_path)):
        assert proc.poll() is None and time.time() < deadline, "no work file appeared"
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert not out.exists()
    assert hidden_files(tmp_path) == []


def test_stale_work_files_of_dead_runs_are_removed(landsat, tmp_path):
    from ssdiff_cli.output import _HOST

    pan, ms = landsat
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = [tmp_path / f".out.tif.{_HOST}-{dead.pid}-deadbeef.work.tif",
             tmp_path / f".out.tif.{_HOST}-{dead.pid}-deadbeef.cog.tif.ovr.tmp"]
    live = tmp_path / f".out.tif.{_HOST}-{os.getpid()}-0badcafe.work.tif"  # a run still going
    for p in [*stale, live]:
        p.write_bytes(b"\0" * 1000)
    result = invoke("sharpen", pan, ms, "-o", tmp_path / "out.tif", "-m", "brovey", "-q")
    assert result.exit_code == 0, result.output
    assert hidden_files(tmp_path) == [live.name]


# ------------------------------------------------------------------------------------------
# 9, 12. Models validated on load; degenerate results refused


def _model_copy(tmp_path, name="m", card_change=None, tensor_change=None):
    from safetensors.torch import load_file, save_file

    from ssdiff_cli.zoo import shipped_models_dir

    card = json.loads((shipped_models_dir() / "ssdiff-4band.json").read_text())
    if card_change:
        card_change(card)
    (tmp_path / f"{name}.json").write_text(json.dumps(card))
    state = load_file(str(shipped_models_dir() / "ssdiff-4band.safetensors"))
    if tensor_change:
        tensor_change(state)
    save_file(state, str(tmp_path / f"{name}.safetensors"))
    return tmp_path / name


def _sharpen_with_model(tmp_path, model, *extra):
    pan, ms = scene_paths("ge1_grip")
    out = tmp_path / "out.tif"
    result = invoke("sharpen", pan, ms, "-o", out, "-m", "ssdiff", "--model", model, *extra)
    assert not out.exists()
    return result


def test_nan_weights_are_refused(tmp_path):
    def poison(state):
        key = sorted(state)[0]
        state[key] = state[key].clone().fill_(float("nan"))

    model = _model_copy(tmp_path, tensor_change=poison)
    one_line_error(_sharpen_with_model(tmp_path, model), EXIT_MODEL, "NaN")


@pytest.mark.parametrize("change,words", [
    (lambda c: c.update(normalisation={"kind": "fixed", "scale": 0}), "normalisation.scale"),
    (lambda c: c.update(normalisation={"kind": "fixed", "scale": float("nan")}), "normalisation"),
    (lambda c: c["model"].update(base_channels=65536), "base_channels"),
    (lambda c: c["model"].update(window=10**9), "window"),
    (lambda c: c["sampling"].update(steps=10**7), "sampling.steps"),
    (lambda c: c["model"].update(base_channels=64), "do not fit"),
])
def test_bad_cards_are_refused_before_building(tmp_path, change, words):
    model = _model_copy(tmp_path, card_change=change)
    start = time.perf_counter()
    one_line_error(_sharpen_with_model(tmp_path, model), EXIT_MODEL, words)
    assert time.perf_counter() - start < 60  # nothing huge was allocated


def _adapter(tmp_path, name="a"):
    from ssdiff_cli.training.finetune import FinetuneConfig, add_adapters, save_adapter
    from ssdiff_cli.zoo import load_checkpoint

    net, card = load_checkpoint("ssdiff-4band")
    add_adapters(net, 4)
    return save_adapter(net, card, tmp_path / name, FinetuneConfig()).with_suffix("")


def test_bad_adapters_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    good = _adapter(tmp_path)
    weights = good.with_suffix(".safetensors")
    state = load_file(str(weights))
    key = sorted(state)[0]
    # NaN weights
    save_file({**state, key: state[key].clone().fill_(float("nan"))}, str(weights))
    one_line_error(_sharpen_with_model(tmp_path, "ssdiff-4band", "--adapter", good), EXIT_MODEL, "NaN")
    # wrong shape: one line, no traceback
    save_file({**state, key: state[key][..., :1].clone()}, str(weights))
    one_line_error(_sharpen_with_model(tmp_path, "ssdiff-4band", "--adapter", good), EXIT_MODEL,
                   "do not fit")
    # corrupt file
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    one_line_error(_sharpen_with_model(tmp_path, "ssdiff-4band", "--adapter", good), EXIT_MODEL,
                   "a.safetensors")
    # hostile rank
    info = json.loads(good.with_suffix(".json").read_text())
    info["rank"] = 10**6
    good.with_suffix(".json").write_text(json.dumps(info))
    one_line_error(_sharpen_with_model(tmp_path, "ssdiff-4band", "--adapter", good), EXIT_MODEL, "rank")


def test_zero_weights_constant_output_is_not_published(landsat, tmp_path):
    pan, ms = landsat
    out = tmp_path / "out.tif"
    result = invoke("sharpen", pan, ms, "-o", out, "-m", "brovey", *["-w", "0"] * 4)
    one_line_error(result, EXIT_RUNTIME, "constant", "not written")
    assert not out.exists() and not hidden_files(tmp_path)


# ------------------------------------------------------------------------------------------
# 10. MTF-GLP HPM: no spikes


def test_mtf_glp_has_no_spikes_on_wv3_cristianics(tmp_path):
    from ssdiff_cli.methods.classical import HPM_MAX_GAIN

    pan, ms = scene_paths("wv3_cristianics")
    for method in ("mtf-glp", "upsample"):  # upsampled as MTF-GLP's own lms is (interp23tap)
        result = invoke("sharpen", pan, ms, "-o", tmp_path / f"{method}.tif", "-m", method, "-q",
                        "-r", "interp23tap")
        assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "mtf-glp.tif") as ds:
        fused = ds.read().astype(np.float64)
    with rasterio.open(tmp_path / "upsample.tif") as ds:
        lms = ds.read().astype(np.float64)
    with rasterio.open(ms) as ds:
        ms_max = ds.read().reshape(ds.count, -1).max(axis=1)
    # The stated bound: 0 <= F <= HPM_MAX_GAIN x the upsampled MS at every pixel.
    assert np.all(fused <= HPM_MAX_GAIN * np.maximum(lms, 0) + 1e-3)
    # And so no band goes far beyond its MS range (band 1 used to reach 19187 for an MS max of 114).
    assert np.all(fused.reshape(8, -1).max(axis=1) <= 1.25 * ms_max)


# ------------------------------------------------------------------------------------------
# 11, 13, 14. Huge headers, damaged files, complex values


def test_huge_sparse_header_is_refused_quickly_naming_the_file(tmp_path):
    pan_src, ms_src = scene_paths("ge1_grip")
    files = {}
    for name, src, side, block in (("pan", pan_src, 1_000_000, 4096), ("ms", ms_src, 250_000, 1024)):
        with rasterio.open(src) as ds:
            data, profile = ds.read(window=((0, block), (0, block)), boundless=True), ds.profile
        profile.update(width=side, height=side, tiled=True, blockxsize=block, blockysize=block,
                       SPARSE_OK=True, BIGTIFF="YES", compress="deflate")
        files[name] = tmp_path / f"{name}.tif"
        with rasterio.open(files[name], "w", **profile) as out:
            out.write(data, window=((0, block), (0, block)))
    start = time.perf_counter()
    result = invoke("info", files["pan"], files["ms"])
    one_line_error(result, EXIT_BAD_INPUT, "pan.tif", "1000000x1000000", "overviews")
    assert time.perf_counter() - start < 30


def test_truncated_file_error_names_the_file_and_window(landsat, tmp_path):
    pan_src, ms = scene_paths("wv2_grip")
    pan = tmp_path / "pan.tif"
    with rasterio.open(pan_src) as ds:  # strips, data after the header: truncation keeps it
        profile = ds.profile
        profile.update(tiled=False, compress="none", blockysize=16)
        with rasterio.open(pan, "w", **profile) as out:
            out.write(ds.read())
    size = pan.stat().st_size
    with open(pan, "r+b") as fh:
        fh.truncate(size // 2)
    result = invoke("sharpen", pan, ms, "-o", tmp_path / "out.tif", "-m", "brovey")
    one_line_error(result, EXIT_BAD_INPUT, "pan.tif", "window", "truncated")
    assert not (tmp_path / "out.tif").exists()


@pytest.mark.parametrize("which", ["pan", "ms"])
def test_complex_inputs_are_refused(landsat, tmp_path, which):
    pan, ms = landsat
    src = pan if which == "pan" else ms
    with rasterio.open(src) as ds:
        data, profile = ds.read().astype(np.complex64), ds.profile
    profile.update(dtype="complex64", nodata=None)
    path = tmp_path / f"c_{which}.tif"
    with rasterio.open(path, "w", **profile) as out:
        out.write(data)
    args = (path, ms) if which == "pan" else (pan, path)
    result = invoke("sharpen", *args, "-o", tmp_path / "out.tif", "-m", "brovey")
    one_line_error(result, EXIT_BAD_INPUT, path.name, "complex")


# ------------------------------------------------------------------------------------------
# 15. Exit codes of user errors


@pytest.mark.parametrize("args,code,words", [
    (["-w", "1", "-w", "1"], EXIT_USAGE, "weights"),
    (["--refuse-px", "nan"], EXIT_USAGE, "--refuse-px"),
    (["--refuse-px", "-1"], EXIT_USAGE, "--refuse-px"),
    (["--warn-px", "inf"], EXIT_USAGE, "--warn-px"),
])
def test_bad_option_values_are_usage_errors(landsat, tmp_path, args, code, words):
    pan, ms = landsat
    out = tmp_path / "out.tif"
    result = invoke("sharpen", pan, ms, "-o", out, "-m", "brovey", *args)
    one_line_error(result, code, words)
    assert not out.exists()


def test_usage_errors_exit_2(landsat, tmp_path):
    pan, ms = landsat
    assert invoke("sharpen", pan, ms, "-m", "ssdiff", "--steps", "5000", "-o",
                  tmp_path / "o.tif").exit_code == EXIT_USAGE
    # --dtype is a choice: click's own usage message, which names the option
    result = invoke("sharpen", pan, ms, "-o", tmp_path / "o.tif", "-m", "brovey", "--dtype", "foo")
    assert result.exit_code == EXIT_USAGE and "--dtype" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "o.tif").exists()
    one_line_error(invoke("sharpen", pan, ms, "-o", "-", "--json", "-m", "brovey"), EXIT_USAGE,
                   "--json")
    one_line_error(invoke("sharpen", pan, ms, "-m", "brovey"), EXIT_USAGE, "-o")


def test_per_band_ms_files_with_different_crs_are_refused(landsat, tmp_path):
    pan, ms = landsat
    bands = split_bands(ms, tmp_path, crs="EPSG:32633")
    result = invoke("sharpen", pan, *bands, "-o", tmp_path / "out.tif", "-m", "brovey")
    one_line_error(result, EXIT_BAD_INPUT, "b4.tif", "CRS")


def test_very_long_output_name_works(landsat, tmp_path):
    pan, ms = landsat
    out = tmp_path / ("x" * 246 + ".tif")
    result = invoke("sharpen", pan, ms, "-o", out, "-m", "brovey", "-q")
    assert result.exit_code == 0, result.output
    assert out.exists() and not hidden_files(tmp_path)


# ------------------------------------------------------------------------------------------
# 16. Disk full


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs none /mnt"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare and a private tmpfs mount")
# wv2_grip: full before any work; while tiles go into the work file; at the COG
@pytest.mark.parametrize("size", ["2m", "8m", "15m", "22m", "30m", "40m"])
def test_disk_full_is_one_line_naming_the_output(tmp_path, size):
    pan, ms = scene_paths("wv2_grip")
    small = tmp_path / "small"
    small.mkdir()
    out = small / "out.tif"
    script = (f"mount -t tmpfs -o size={size} none {small} && "
              f"{sys.executable} -m ssdiff_cli sharpen {pan} {ms} -o {out} -m brovey -q; "
              f"rc=$?; ls -A {small}; exit $rc")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == EXIT_OUTPUT, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line]
    assert len(lines) == 1, proc.stderr
    assert "out.tif" in lines[0] and "no space left" in lines[0]
    assert proc.stdout.strip() == ""  # nothing left in the full folder



# ------------------------------------------------------------------------------------------
# 8. A pair that cannot be co-registered is not fused silently


def _other_scene_pan(tmp_path, flip=False) -> Path:
    """wv2_solaris_3's PAN (another scene; or wv2_solaris_2's own, flipped south-up) on
    wv2_solaris_2's PAN grid."""
    pan2, _ = scene_paths("wv2_solaris_2")
    pan3, _ = scene_paths("wv2_solaris_3")
    with rasterio.open(pan2) as ds:
        profile, own = ds.profile, ds.read()
    with rasterio.open(pan3) as ds:
        other = ds.read()
    path = tmp_path / ("flipped_pan.tif" if flip else "other_pan.tif")
    with rasterio.open(path, "w", **profile) as out:
        out.write(own[:, ::-1, :] if flip else other)
    return path


def test_pair_of_two_different_scenes_warns_and_refuses_when_asked(tmp_path):
    pan = _other_scene_pan(tmp_path)
    _, ms = scene_paths("wv2_solaris_2")
    out = tmp_path / "out.tif"
    result = invoke("sharpen", pan, ms, "-o", out, "-m", "brovey")
    assert result.exit_code == 0, result.output
    assert "cannot be measured" in result.stderr and "same scene" in result.stderr
    out.unlink()
    result = invoke("sharpen", pan, ms, "-o", out, "-m", "brovey", "--refuse-px", "2")
    one_line_error(result, 4, "ms.tif", "cannot be measured")
    assert not out.exists()
    result = invoke("sharpen", pan, ms, "-o", out, "-m", "brovey", "--refuse-px", "2", "--force", "-q")
    assert result.exit_code == 0, result.output


def test_pan_flipped_south_up_is_refused(tmp_path):
    pan = _other_scene_pan(tmp_path, flip=True)
    _, ms = scene_paths("wv2_solaris_2")
    out = tmp_path / "out.tif"
    result = invoke("sharpen", pan, ms, "-o", out, "-m", "brovey")
    one_line_error(result, 4, "ms.tif")
    assert not out.exists()


def test_scene_sample_uses_overviews_beyond_the_full_resolution_limit(tmp_path, monkeypatch):
    from rasterio.enums import Resampling

    from ssdiff_cli.errors import BadInputError
    from ssdiff_cli.scene import prepare_scene
    from ssdiff_cli.scene import sampling as scene_sampling

    pan_src, ms = scene_paths("ge1_grip")
    pan = tmp_path / "pan.tif"
    shutil.copy(pan_src, pan)
    monkeypatch.setattr(scene_sampling, "SAMPLE_SOURCE_MAX_PIXELS", 200_000)  # ge1's PAN: 1.6 Mpx
    with pytest.raises(BadInputError, match="overviews"):
        prepare_scene(pan, [ms])
    with_overviews = tmp_path / "pan_ovr.tif"  # a new name: open handles are cached by path
    shutil.copy(pan_src, with_overviews)
    with rasterio.open(with_overviews, "r+") as ds:
        ds.build_overviews([2, 4], Resampling.average)
    _, _, sample = prepare_scene(with_overviews, [ms])
    assert sample.valid.any()
