"""GDAL dataset names reach GDAL as typed, and gdal_pansharpen.py's band selection (issue 14,
items 4 and 8). The remote file systems are served from a local HTTP server: no network."""

from __future__ import annotations

import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from ssdiff_cli.cli import app
from ssdiff_cli.errors import BadInputError
from ssdiff_cli.gdal_names import DatasetName, dataset_name, ms_band_selection, split_band_suffix
from tests.conftest import DATA, requires_data, scene_paths

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _sharpen(tmp_path, pan, ms, name, *extra):
    out = tmp_path / name
    result = runner.invoke(app, ["sharpen", str(pan), *map(str, ms), "-o", str(out),
                                 "-m", "gsa", "-q", *extra])
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as ds:
        return ds.read(), ds.profile


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """GSA of landsat8_satellite from plain paths: what every dataset-name form must reproduce."""
    pan, ms = scene_paths("landsat8_satellite")
    return _sharpen(tmp_path_factory.mktemp("ref"), pan, [ms], "ref.tif")


class _RangeHandler(BaseHTTPRequestHandler):
    """Serves the shared data folder with HTTP range requests, as GDAL's /vsicurl/ needs."""

    root: Path = DATA

    def log_message(self, *args):  # quiet
        pass

    def do_HEAD(self):
        self._send(body=False)

    def do_GET(self):
        self._send(body=True)

    def _send(self, body: bool):
        rel = self.path.split("?")[0].lstrip("/")
        # /vsis3/BUCKET/KEY arrives as /BUCKET/KEY (path-style addressing): the bucket is "data"
        rel = rel[len("data/"):] if rel.startswith("data/") else rel
        path = (self.root / rel).resolve()
        if not path.is_file() or self.root.resolve() not in path.parents:
            self.send_error(404)
            return
        data = path.read_bytes()
        spec = self.headers.get("Range")
        if spec:
            a, b = spec.split("=", 1)[1].split("-")
            a, b = int(a), min(int(b) if b else len(data) - 1, len(data) - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {a}-{b}/{len(data)}")
            data = data[a:b + 1]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if body:
            self.wfile.write(data)


@pytest.fixture
def local_http(monkeypatch):
    """A local HTTP server over the shared data; GDAL pointed at it, proxies off."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "20")
    port = server.server_address[1]
    monkeypatch.setenv("AWS_S3_ENDPOINT", f"127.0.0.1:{port}")
    monkeypatch.setenv("AWS_HTTPS", "NO")
    monkeypatch.setenv("AWS_VIRTUAL_HOSTING", "FALSE")
    monkeypatch.setenv("AWS_NO_SIGN_REQUEST", "YES")
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


def test_names_kept_as_typed():
    """What pathlib would rewrite stays as GDAL needs it."""
    for text in ("/vsicurl/https://example/x.tif", "/vsizip//data/a.zip/b.tif", "/vsistdin/",
                 "/vsis3/bucket/key.tif"):
        name = dataset_name(text)
        assert str(name) == text and name.is_virtual and name.exists() and not name.is_dir()
    assert str(Path("/vsicurl/https://example/x.tif")) != "/vsicurl/https://example/x.tif"
    assert dataset_name("/vsicurl/https://example/x.tif").name == "x.tif"
    assert dataset_name("/vsistdin/").name == "vsistdin"
    assert isinstance(dataset_name(Path("a/b.tif")), DatasetName)


@requires_data
def test_vsizip_absolute_path(tmp_path, reference):
    """/vsizip//abs/path.zip/member: pathlib would fold the double slash into a relative path."""
    pan, ms = scene_paths("landsat8_satellite")
    archive = tmp_path / "scene.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(pan, "pan.tif")
        z.write(ms, "ms.tif")
    data, _ = _sharpen(tmp_path, f"/vsizip/{archive}/pan.tif", [f"/vsizip/{archive}/ms.tif"],
                       "zip.tif")
    np.testing.assert_array_equal(data, reference[0])


@requires_data
def test_vsicurl_and_vsis3_from_local_server(tmp_path, reference, local_http):
    """/vsicurl/http://... keeps its '//' and /vsis3/ names pass through; same output."""
    curl = [f"/vsicurl/{local_http}/landsat8_satellite/{n}.tif" for n in ("pan", "ms")]
    data, _ = _sharpen(tmp_path, curl[0], [curl[1]], "curl.tif")
    np.testing.assert_array_equal(data, reference[0])
    s3 = [f"/vsis3/data/landsat8_satellite/{n}.tif" for n in ("pan", "ms")]
    data, _ = _sharpen(tmp_path, s3[0], [s3[1]], "s3.tif")
    np.testing.assert_array_equal(data, reference[0])


@requires_data
def test_vsicurl_error_names_the_dataset_untouched(tmp_path, local_http):
    name = f"/vsicurl/{local_http}/nowhere/pan.tif"
    _, ms = scene_paths("landsat8_satellite")
    result = runner.invoke(app, ["info", name, str(ms)])
    assert result.exit_code == 3
    assert name in result.stderr


@requires_data
def test_vsistdin_pan(tmp_path, reference):
    """cat pan | ssdiff sharpen /vsistdin/ ms.tif: the trailing slash survives."""
    pan, ms = scene_paths("landsat8_satellite")
    stream = tmp_path / "pan_stream.tif"
    with rasterio.open(pan) as src:
        profile = {**src.profile, "STREAMABLE_OUTPUT": "YES", "compress": None, "tiled": False}
        profile.pop("blockxsize", None), profile.pop("blockysize", None)
        with rasterio.open(stream, "w", **profile) as dst:
            dst.write(src.read())
    out = tmp_path / "stdin.tif"
    with open(stream, "rb") as fh:
        result = subprocess.run([sys.executable, "-m", "ssdiff_cli", "sharpen", "/vsistdin/",
                                 str(ms), "-o", str(out), "-m", "gsa", "-q"], stdin=fh,
                                cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with rasterio.open(out) as ds:
        np.testing.assert_array_equal(ds.read(), reference[0])


def test_band_suffix_parsing():
    assert split_band_suffix("ms.tif,band=5,3,2") == ("ms.tif", [5, 3, 2])
    assert split_band_suffix("/vsizip//a.zip/ms.tif") == ("/vsizip//a.zip/ms.tif", None)
    assert ms_band_selection(["ms.tif,band=3", "ms.tif,band=2", "ms.tif,band=1"]) == (
        ["ms.tif"], [3, 2, 1])
    assert ms_band_selection(["ms.tif,band=5,3,2"], bands=[2, 3]) == (["ms.tif"], [3, 2])
    assert ms_band_selection(["ms.tif"], bands=[4, 1]) == (["ms.tif"], [4, 1])
    with pytest.raises(BadInputError):
        split_band_suffix("ms.tif,band=x")
    with pytest.raises(BadInputError):
        ms_band_selection(["a.tif,band=1", "b.tif,band=1"])


@requires_data
def test_band_selection_matches_the_bands(tmp_path):
    """wv2_grip's RGB (bands 5,3,2) by ',band=' and by -b give the same 3-band output, whose
    bands are the full fusion's when the method works band by band (upsample), and the preset
    follows the selection (band names, RGB colour interpretation)."""
    pan, ms = scene_paths("wv2_grip")
    # registration off: it measures on the bands given, so 3 bands and 8 place the MS apart
    off = ("-m", "upsample", "--coregister", "off")
    full, _ = _sharpen(tmp_path, pan, [ms], "full.tif", *off)
    by_suffix, profile = _sharpen(tmp_path, pan, [f"{ms},band=5,3,2"], "suffix.tif", *off)
    by_b, _ = _sharpen(tmp_path, pan, [ms], "b.tif", *off, "-b", "5", "-b", "3", "-b", "2")
    assert by_suffix.shape[0] == 3 and profile["count"] == 3
    np.testing.assert_array_equal(by_suffix, by_b)
    np.testing.assert_array_equal(by_suffix, full[[4, 2, 1]])
    with rasterio.open(tmp_path / "b.tif") as ds:
        assert ds.descriptions == ("red", "green", "blue")
        assert [c.name for c in ds.colorinterp] == ["red", "green", "blue"]
    bad = runner.invoke(app, ["sharpen", str(pan), str(ms), "-o", str(tmp_path / "x.tif"),
                              "-b", "9"])
    assert bad.exit_code == 3 and "band selection" in bad.stderr
