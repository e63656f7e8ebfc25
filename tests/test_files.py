"""The file-system helpers (``ssdiff_cli.files``): the local files a GDAL dataset name reads, on
copies of a shared real scene wrapped in the ways GDAL names them."""

from __future__ import annotations

import gzip
import os
import shutil
import threading
import zipfile

from ssdiff_cli.files import FileSet, dataset_files, input_files, local_names
from tests.conftest import requires_data, scene_paths


@requires_data
def test_dataset_files_resolves_vsi_names_vrt_sources_and_connection_strings(tmp_path, monkeypatch):
    ms = shutil.copy(scene_paths("landsat8_satellite")[1], tmp_path / "ms.tif")
    monkeypatch.chdir(tmp_path)
    with zipfile.ZipFile(tmp_path / "ms.zip", "w") as z:
        z.write(ms, "inner/ms.tif")
    (tmp_path / "ms.tif.gz").write_bytes(gzip.compress((tmp_path / "ms.tif").read_bytes()))
    size = os.path.getsize(ms)
    vrt = tmp_path / "ms.vrt"
    vrt.write_text('<VRTDataset rasterXSize="41" rasterYSize="41"><VRTRasterBand dataType="Int16" '
                   'band="1"><SimpleSource><SourceFilename relativeToVRT="1">/vsisubfile/0_'
                   f"{size},ms.tif</SourceFilename><SourceBand>1</SourceBand></SimpleSource>"
                   "</VRTRasterBand></VRTDataset>")
    local = str(tmp_path / "ms.tif")
    cases = {
        "ms.tif": [local],
        f"/vsisubfile/0_{size},{local}": [local],
        f"/vsisubfile/0_{size},ms.tif": [local],
        "/vsizip/ms.zip/inner/ms.tif": [str(tmp_path / "ms.zip")],
        f"/vsizip/{{{tmp_path / 'ms.zip'}}}/inner/ms.tif": [str(tmp_path / "ms.zip")],
        f"/vsigzip/{tmp_path / 'ms.tif.gz'}": [str(tmp_path / "ms.tif.gz")],
        "vrt://ms.tif?bands=1": [local],
        "ms.vrt": [str(vrt), local],  # its source is a /vsisubfile name of ms.tif
        "/vsicurl/https://example.invalid/ms.tif": [],
        "/vsimem/x.tif": [],
        "-": [],
    }
    for name, expected in cases.items():
        assert dataset_files(name) == expected, name
    files = input_files(["ms.vrt"])
    assert files.find(tmp_path / "sub" / ".." / "ms.tif") == (local, "ms.vrt")
    assert files.find(tmp_path / "other.tif") is None


@requires_data
def test_a_fifo_input_is_never_opened_and_hard_links_match(tmp_path):
    os.mkfifo(tmp_path / "pipe.tif")
    done = threading.Event()

    def resolve():
        dataset_files(str(tmp_path / "pipe.tif"))
        done.set()

    threading.Thread(target=resolve, daemon=True).start()
    assert done.wait(10), "dataset_files blocked opening a FIFO"
    ms = shutil.copy(scene_paths("landsat8_satellite")[1], tmp_path / "ms.tif")
    os.link(ms, tmp_path / "hard.tif")
    files = FileSet()
    files.add(str(ms), "ms")
    assert files.find(tmp_path / "hard.tif") == (str(ms), "ms")
    assert local_names("/vsis3/bucket/key.tif") == []
