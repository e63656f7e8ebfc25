"""Nothing lost, nobody in, round two (issue 25, items 7-11 and 13-18): hostile model cards and
adapter descriptions, training states and diverged runs, a signal during the COG step, exit
codes and messages, on the shared scenes or files made from them.

Each test names its item of the issue.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from ssdiff_cli.cli import app
from ssdiff_cli.errors import EXIT_BAD_INPUT, EXIT_MODEL, EXIT_OUTPUT, EXIT_RUNTIME, EXIT_USAGE
from tests.conftest import requires_data, scene_paths

pytestmark = requires_data
REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def one_line_error(stderr: str, *words) -> str:
    """The one error line of ``stderr`` (warnings aside), naming ``words``; no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("ssdiff: warning:")]
    assert len(lines) == 1, stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def run_cli(*args, env=None, timeout=300, cwd=None, **kw) -> subprocess.CompletedProcess:
    """The CLI as its own process (hangs and memory are bounded by ``timeout`` and the caller)."""
    return subprocess.run([sys.executable, "-m", "ssdiff_cli", *map(str, args)], cwd=cwd or REPO,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, **kw)


def landsat():
    return scene_paths("landsat8_satellite")


# ------------------------------------------------------------------------------------------
# 7, 8, 13. Model cards and adapter descriptions: bounded reads, malformed ones skipped


def _shipped(name="ssdiff-4band") -> dict:
    from ssdiff_cli.zoo import shipped_models_dir

    return json.loads((shipped_models_dir() / f"{name}.json").read_text())


def _model_folder(tmp_path: Path, cards: dict) -> Path:
    """A models folder: one ``NAME.json`` per entry (a dict, or raw text) beside a copy of the
    shipped 4-band weights."""
    from ssdiff_cli.zoo import shipped_models_dir

    folder = tmp_path / "models"
    folder.mkdir(exist_ok=True)
    for name, card in cards.items():
        shutil.copy(shipped_models_dir() / "ssdiff-4band.safetensors", folder / f"{name}.safetensors")
        text = card if isinstance(card, str) else json.dumps(card)
        (folder / f"{name}.json").write_text(text)
    return folder


def _card(**changes) -> dict:
    card = _shipped()
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            card[section][field] = value
        else:
            card[section] = value
    return card


MALFORMED = {
    "deep": '{"a":' * 100_000 + "1" + "}" * 100_000,
    "nested": json.dumps(_card(metrics={"x": json.loads("[" * 60 + "]" * 60)})),
    "listcard": json.dumps(["name", "sensor", "band_names", "bands", "ratio", "normalisation",
                            "model"]),
    "training": _card(training="x"),
    "terms": _card(training__terms="all rights"),
    "tstart_neg": _card(sampling__t_start=-5),
    "tstart_big": _card(sampling__t_start=10**6),
    "tstart_str": _card(sampling__t_start="abc"),
    "maxbeta": _card(diffusion__max_beta=7),
    "bandnames": _card(band_names="blue"),
}


def test_malformed_cards_are_skipped_with_a_warning_and_refused_by_name(tmp_path):
    """Items 8 and 13: models list and the default sharpen run past them; --model is exit 6."""
    folder = _model_folder(tmp_path, MALFORMED)
    env = {"SSDIFF_MODELS": str(folder)}
    listed = run_cli("models", "list", "--json", env=env, timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr
    names = {m["name"] for m in json.loads(listed.stdout)["models"]}
    assert "ssdiff-4band" in names and not names & set(MALFORMED)
    for name in MALFORMED:
        warned = [line for line in listed.stderr.splitlines() if f"{name}.json" in line]
        assert len(warned) == 1 and warned[0].startswith("ssdiff: warning:"), (name, listed.stderr)
    pan, ms = landsat()
    out = tmp_path / "out.tif"
    result = run_cli("sharpen", pan, ms, "-o", out, "-q", env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert out.exists()
    gp, gm = scene_paths("ge1_grip")
    for name, words in (("deep", "nests"), ("listcard", "list"), ("training", "'training'"),
                        ("terms", "training.terms"), ("tstart_neg", "t_start"),
                        ("tstart_big", "t_start"), ("tstart_str", "t_start"),
                        ("maxbeta", "max_beta"), ("bandnames", "band_names")):
        bad = invoke("sharpen", gp, gm, "-o", tmp_path / "x.tif", "-m", "ssdiff", "--model",
                     folder / name, "-q")
        assert bad.exit_code == EXIT_MODEL, (name, bad.output)
        one_line_error(bad.stderr, f"{name}.json", words)
    assert not (tmp_path / "x.tif").exists()


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (8 * 2**30, 8 * 2**30))


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "huge"])
def test_a_card_that_is_no_regular_file_or_too_big_is_not_read(tmp_path, kind):
    """Item 7: a FIFO hung `models list`, a link to /dev/zero grew memory without bound."""
    folder = _model_folder(tmp_path, {})
    from ssdiff_cli.zoo import shipped_models_dir

    shutil.copy(shipped_models_dir() / "ssdiff-4band.safetensors", folder / "x.safetensors")
    card = folder / "x.json"
    if kind == "fifo":
        os.mkfifo(card)
    elif kind == "dev-zero":
        card.symlink_to("/dev/zero")
    else:  # a valid card padded past the cap
        card.write_text(json.dumps(_card(description=" " * (2**20 + 10))))
    start = time.perf_counter()
    result = run_cli("models", "list", env={"SSDIFF_MODELS": str(folder)}, timeout=240,
                     preexec_fn=_limit_memory)
    assert result.returncode == 0, result.stderr
    assert time.perf_counter() - start < 200
    assert any("x.json" in line and "skipped" in line for line in result.stderr.splitlines()), \
        result.stderr


def test_an_adapter_description_that_is_a_fifo_is_refused_promptly(tmp_path):
    """Item 7: the adapter's JSON is read with the same bounds (exit 6, not a hang)."""
    from ssdiff_cli.zoo import shipped_models_dir

    adapter = tmp_path / "ad"
    shutil.copy(shipped_models_dir() / "ssdiff-4band.safetensors", tmp_path / "ad.safetensors")
    os.mkfifo(tmp_path / "ad.json")
    pan, ms = scene_paths("ge1_grip")
    result = run_cli("sharpen", pan, ms, "-o", tmp_path / "out.tif", "-m", "ssdiff", "--model",
                     "ssdiff-4band", "--adapter", adapter, "-q", timeout=240)
    assert result.returncode == EXIT_MODEL, result.stderr
    one_line_error(result.stderr, "ad.json", "not a regular file")
    assert not (tmp_path / "out.tif").exists()


def test_integer_weights_of_the_right_shapes_are_refused(tmp_path):
    """Item 15: int weights were cast to float and used."""
    from safetensors.torch import load_file, save_file

    from ssdiff_cli.zoo import shipped_models_dir

    folder = _model_folder(tmp_path, {"ints": _card()})
    state = load_file(str(shipped_models_dir() / "ssdiff-4band.safetensors"))
    save_file({k: (v * 100).round().int() for k, v in state.items()}, str(folder / "ints.safetensors"))
    pan, ms = scene_paths("ge1_grip")
    result = invoke("sharpen", pan, ms, "-o", tmp_path / "out.tif", "-m", "ssdiff", "--model",
                    folder / "ints", "-q")
    assert result.exit_code == EXIT_MODEL, result.output
    one_line_error(result.stderr, "ints.safetensors", "int32", "floating-point")
    assert not (tmp_path / "out.tif").exists()


# ------------------------------------------------------------------------------------------
# 9. SIGTERM during the COG translation


def _mirror_tiled(src: Path, dst: Path, n: int) -> None:
    with rasterio.open(src) as ds:
        data, profile, tags = ds.read(), ds.profile, ds.tags()
    row = np.concatenate([data if i % 2 == 0 else data[:, :, ::-1] for i in range(n)], axis=2)
    big = np.concatenate([row if j % 2 == 0 else row[:, ::-1, :] for j in range(n)], axis=1)
    profile.update(width=big.shape[2], height=big.shape[1], tiled=True, blockxsize=512,
                   blockysize=512, compress="deflate")
    with rasterio.open(dst, "w", **profile) as out:
        out.write(big)
        out.update_tags(**tags)


def test_sigterm_during_the_cog_translation_stops_it_promptly(tmp_path):
    """Item 9: the signal waited for GDAL to finish the COG (129 s on a 60000² scene)."""
    pan, ms = scene_paths("wv2_grip")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for src in (pan, ms):  # 2560² PAN px, 8 bands
        _mirror_tiled(src, inputs / src.name, 2)
    folder = tmp_path / "out"
    folder.mkdir()
    # the slowest deflate level: the translation takes far longer than the tiles
    proc = subprocess.Popen([sys.executable, "-m", "ssdiff_cli", "sharpen", inputs / "pan.tif",
                             inputs / "ms.tif", "-o", folder / "out.tif", "-m", "upsample",
                             "--co", "LEVEL=12", "-q"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while not any(p.name.endswith(".cog.tif") for p in folder.iterdir()):
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
            time.sleep(0.05)
        time.sleep(1.0)  # well inside GDAL's CreateCopy
        assert proc.poll() is None, "the COG step ended before the signal: too small a scene"
        sent = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
        took = time.perf_counter() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, err
    assert took < 10, f"{took:.1f} s from SIGTERM to exit"
    assert list(folder.iterdir()) == []


# ------------------------------------------------------------------------------------------
# 10, 11. Diverged runs and tampered training states


def _train(out: Path, *extra, timeout=300) -> subprocess.CompletedProcess:
    pan, ms = scene_paths("ge1_grip")
    return run_cli("train", f"{pan},{ms}", "-o", out, "--batch-size", "2", "--crop", "16",
                   "--eval-every", "0", "--threads", "1", "-q", *extra, timeout=timeout)


def test_a_diverged_run_writes_no_checkpoint_and_names_its_step(tmp_path):
    """Item 10: --lr 1e8 wrote a NaN checkpoint and exited 0."""
    result = _train(tmp_path / "m", "--max-steps", "6", "--lr", "1e8")
    assert result.returncode == EXIT_RUNTIME, result.stderr
    line = one_line_error(result.stderr, "diverged at step", "--lr")
    assert re.search(r"step \d+", line)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 2-step run (checkpoint, state, log) to copy and tamper with."""
    folder = tmp_path_factory.mktemp("run")
    result = _train(folder / "m", "--max-steps", "2")
    assert result.returncode == 0, result.stderr
    return folder


def _tamper(trained: Path, tmp_path: Path, info_change=None, tensor_change=None, raw_info=None):
    from safetensors.torch import save_file

    from ssdiff_cli.training.loop import load_state_file, save_state_file

    for p in trained.iterdir():
        shutil.copy(p, tmp_path / p.name)
    state = tmp_path / "m.state.safetensors"
    tensors, info = load_state_file(state)
    if info_change:
        info_change(info)
    if tensor_change:
        tensor_change(tensors)
    if raw_info is not None:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(state),
                  metadata={"format": "ssdiff-train-state", "info": raw_info})
    else:
        save_state_file(state, tensors, info)
    return tmp_path / "m"


def _nan_model(tensors):
    key = next(k for k in sorted(tensors) if k.startswith("model.") and tensors[k].is_floating_point())
    tensors[key] = tensors[key].clone().fill_(float("nan"))


def _bad_moment(tensors):
    key = next(k for k in sorted(tensors) if k.startswith("opt.") and k.endswith("exp_avg"))
    tensors[key] = tensors[key].reshape(-1)[:1].clone()


def _set(*path_value):
    *path, value = path_value

    def change(info):
        target = info
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


@pytest.mark.parametrize("change,words", [
    (dict(tensor_change=_nan_model), "NaN"),
    (dict(info_change=_set("step", -1e9)), "step"),
    (dict(info_change=_set("step", -1_000_000_000)), "step"),
    (dict(info_change=_set("rows", "abc")), "rows"),
    (dict(info_change=lambda i: i["opt"]["param_groups"][0].update(lr="abc")), "lr"),
    (dict(info_change=lambda i: i["opt"]["param_groups"][0].update(lr=1e308)), "lr"),
    (dict(info_change=_set("elapsed", "soon")), "elapsed"),
    (dict(info_change=_set("best", {"mean": "x"})), "best"),
    (dict(raw_info='{"step":' + "[" * 5000 + "]" * 5000 + "}"), "nests"),
    (dict(tensor_change=_bad_moment), "does not fit"),
], ids=["nan-weights", "step-float", "step-negative", "rows-string", "lr-string", "lr-huge",
        "elapsed", "best", "deep-info", "moment-shape"])
def test_a_tampered_state_is_refused_before_the_first_step(trained, tmp_path, change, words):
    """Items 10, 11 and 13: each field is checked before training replaces anything (exit 3)."""
    out = _tamper(trained, tmp_path, **change)
    before = {p.name: digest(p) for p in tmp_path.iterdir()}
    result = _train(out, "--max-steps", "4", "--resume", timeout=120)
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    one_line_error(result.stderr, "m.state.safetensors", words)
    assert {p.name: digest(p) for p in tmp_path.iterdir()} == before  # nothing replaced or left


# ------------------------------------------------------------------------------------------
# 13. Exit codes


def test_a_creation_option_gdal_refuses_is_a_usage_error(tmp_path):
    pan, ms = landsat()
    result = invoke("sharpen", pan, ms, "-o", tmp_path / "o.tif", "-m", "brovey", "--co",
                    "BLOCKSIZE=7", "-q")
    assert result.exit_code == EXIT_USAGE, result.output
    one_line_error(result.stderr, "o.tif", "BLOCKSIZE=7")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["sharpen", "train"])
def test_a_seed_beyond_64_bits_is_a_usage_error(tmp_path, command):
    pan, ms = landsat()
    args = ([pan, ms, "-o", tmp_path / "o.tif"] if command == "sharpen"
            else [f"{pan},{ms}", "-o", tmp_path / "m"])
    result = invoke(command, *args, "--seed", 2**70, "-q")
    assert result.exit_code == EXIT_USAGE, result.output
    assert "--seed" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_train_into_a_folder_that_cannot_be_made_is_an_output_error():
    pan, ms = scene_paths("ge1_grip")
    # /proc refuses new folders even to root, as a read-only folder does to a user
    result = invoke("train", f"{pan},{ms}", "-o", "/proc/ssdiff-new/m", "--max-steps", "1", "-q")
    assert result.exit_code == EXIT_OUTPUT, result.output
    one_line_error(result.stderr, "/proc/ssdiff-new", "cannot be made")


def test_an_output_name_too_long_for_the_file_system_is_an_output_error(tmp_path):
    pan, ms = landsat()
    out = tmp_path / ("x" * 252 + ".tif")  # 256 bytes: one more than a name may have
    result = invoke("sharpen", pan, ms, "-o", out, "-m", "brovey", "-q")
    assert result.exit_code == EXIT_OUTPUT, result.output
    one_line_error(result.stderr, "too long")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [["info"], ["sharpen", "-m", "brovey", "--json", "-o", "OUT"],
                                  ["sharpen", "-m", "brovey", "-o", "-"]],
                         ids=["info", "sharpen-json", "sharpen-stdout"])
def test_a_closed_stdout_is_refused_before_any_work(tmp_path, args):
    pan, ms = landsat()
    args = [str(tmp_path / "out.tif") if a == "OUT" else a for a in args]
    result = run_cli(args[0], pan, ms, *args[1:], timeout=120, preexec_fn=lambda: os.close(1))
    assert result.returncode == EXIT_OUTPUT, result.stderr
    one_line_error(result.stderr, "standard output is closed")
    assert list(tmp_path.iterdir()) == []  # nothing published


# ------------------------------------------------------------------------------------------
# 14. Messages


def _rewrite(src: Path, dst: Path, change) -> Path:
    with rasterio.open(src) as ds:
        data, profile = ds.read(), ds.profile
        transform, crs = ds.transform, ds.crs
    extra = change(data, profile, transform, crs) or {}
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
        if "gcps" in extra:
            out.gcps = extra["gcps"]
    return dst


def _gcps_only(data, profile, t, crs):
    from rasterio.control import GroundControlPoint as GCP

    h, w = data.shape[1:]
    profile.pop("transform")
    profile.pop("crs")
    return {"gcps": ([GCP(0, 0, t.c, t.f), GCP(0, w, t.c + w * t.a, t.f),
                      GCP(h, 0, t.c, t.f + h * t.e)], crs)}


def test_a_gcp_only_pair_is_said_to_have_only_gcps(tmp_path):
    pan, ms = landsat()
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning):
        gp = _rewrite(pan, tmp_path / "pan.tif", _gcps_only)
        gm = _rewrite(ms, tmp_path / "ms.tif", _gcps_only)
    result = invoke("sharpen", gp, gm, "-o", tmp_path / "o.tif", "-m", "brovey", "-q")
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    line = one_line_error(result.stderr, "ms.tif", "ground control points", "gdalwarp")
    assert "geotransform but no CRS" not in line


def test_a_virtual_output_is_said_to_be_unsupported(tmp_path):
    pan, ms = landsat()
    result = invoke("sharpen", pan, ms, "-o", f"/vsizip/{tmp_path}/x.zip/o.tif", "-m", "brovey")
    assert result.exit_code == EXIT_OUTPUT, result.output
    line = one_line_error(result.stderr, "/vsizip/", "not supported")
    assert "does not exist" not in line


def test_an_all_nodata_ms_band_is_blamed_on_the_ms(tmp_path):
    pan, ms = landsat()

    def band3_nodata(data, profile, t, crs):
        data[2] = profile["nodata"]

    bad = _rewrite(ms, tmp_path / "ms.tif", band3_nodata)
    result = invoke("sharpen", pan, bad, "-o", tmp_path / "o.tif", "-m", "brovey", "-q")
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    line = one_line_error(result.stderr, str(bad), "band 3")
    assert "pan.tif" not in line


def test_an_output_type_that_clips_every_value_says_so(tmp_path):
    pan, ms = landsat()  # int16 values in the thousands: all above uint8's 255
    result = invoke("sharpen", pan, ms, "-o", tmp_path / "o.tif", "-m", "brovey", "--dtype",
                    "uint8")
    assert result.exit_code == EXIT_RUNTIME, result.output
    line = one_line_error(result.stderr, "clipped", "--scale", "not written")
    assert "broken model" not in line
    assert list(tmp_path.iterdir()) == []


def test_no_numpy_overflow_warning_for_float64_data_and_a_huge_nodata(tmp_path):
    pan, ms = landsat()
    for src in (pan, ms):
        with rasterio.open(src) as ds:
            data, profile = ds.read().astype("float64"), ds.profile
        profile.update(dtype="float64", nodata=None)
        with rasterio.open(tmp_path / src.name, "w", **profile) as out:
            out.write(data)
    for extra in ([], ["--nodata", "1e40"]):
        result = invoke("sharpen", tmp_path / "pan.tif", tmp_path / "ms.tif", "-o",
                        tmp_path / "o.tif", "-m", "brovey", "--overwrite", *extra)
        assert result.exit_code == 0, result.output
        assert "overflow encountered" not in result.stderr, result.stderr
        assert "ssdiff: warning" not in result.stderr, result.stderr


def test_a_training_scene_too_small_is_named_by_its_files_and_leaves_no_folder(tmp_path):
    """Items 14 and 16: the message named the scene's folder; -o new/dir/m was made first."""
    pan, ms = landsat()  # 82x82 PAN px: no 32x32 crop left of the hold-out
    out = tmp_path / "new" / "dir" / "m"
    result = invoke("train", f"{pan},{ms}", "-o", out, "--max-steps", "1", "-q")
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    one_line_error(result.stderr, str(pan), "crop")
    assert not (tmp_path / "new").exists()
    missing = invoke("train", f"{pan},{tmp_path / 'none.tif'}", "-o", out, "-q")
    assert missing.exit_code == EXIT_BAD_INPUT
    assert not (tmp_path / "new").exists()


def test_summary_lines_are_not_wrapped_when_stderr_is_no_terminal(tmp_path):
    pan, ms = landsat()
    out = tmp_path / ("a-rather-long-output-name-" * 3 + ".tif")
    result = run_cli("sharpen", pan, ms, "-o", out, "-m", "brovey", timeout=120,
                     env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    wrote = [line for line in result.stderr.splitlines() if line.startswith("wrote ")]
    assert len(wrote) == 1 and wrote[0].endswith("MP/s)"), result.stderr


# ------------------------------------------------------------------------------------------
# 15. Silently accepted inputs


def test_the_pan_given_as_the_ms_is_refused(tmp_path):
    pan, _ = landsat()
    result = invoke("sharpen", pan, pan, "-o", tmp_path / "o.tif", "-m", "brovey", "-q")
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    one_line_error(result.stderr, "ratio 1")
    assert list(tmp_path.iterdir()) == []


def test_a_complex_reference_is_refused_by_evaluate(tmp_path):
    _, ms = landsat()
    with rasterio.open(ms) as ds:
        data, profile = ds.read(), ds.profile
    profile.update(dtype="complex64", nodata=None)
    with rasterio.open(tmp_path / "ref.tif", "w", **profile) as out:
        out.write(data.astype("complex64"))
    result = invoke("evaluate", ms, "--reference", tmp_path / "ref.tif")
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    one_line_error(result.stderr, "ref.tif", "complex")


# ------------------------------------------------------------------------------------------
# 18. scripts/docker_smoke.sh on deb822-only apt sources


@pytest.mark.parametrize("layout", ["deb822", "one-line", "both"])
def test_docker_smoke_finds_the_mirror_whatever_the_apt_sources_format(tmp_path, layout):
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    if layout in ("deb822", "both"):
        (etc / "sources.list.d" / "debian.sources").write_text(
            "Types: deb\nURIs: http://deb.example.org/debian\nSuites: bookworm bookworm-updates\n"
            "Components: main\n\nTypes: deb\nURIs: http://security.example.org/debian-security\n"
            "Suites: bookworm-security\n")
    if layout in ("one-line", "both"):
        (etc / "sources.list").write_text("deb http://old.example.org/debian bookworm main\n")
    # the script's own function and the line that uses it, under the script's shell options
    script = (REPO / "scripts" / "docker_smoke.sh").read_text()
    function = re.search(r"^apt_mirror\(\) \{\n.*?^\}\n", script, re.M | re.S).group(0)
    use = re.search(r"^ +MIRROR=\$\(apt_mirror.*?(?=\n +\[ -n \"\$MIRROR\" \])", script,
                    re.M | re.S).group(0)
    proc = subprocess.run(["bash", "-c", f"set -euo pipefail\n{function}\n{use}\n"
                           'echo "mirror=$MIRROR"'], env={**os.environ, "APT_ETC": str(etc)},
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    first = "http://old.example.org/debian" if layout == "one-line" else "http://deb.example.org/debian"
    assert proc.stdout.strip() == f"mirror={first}"
