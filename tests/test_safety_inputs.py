"""Nothing lost, nobody in, round two (issue 25): no written path replaces a file an input
reads, however the input is named (a VRT's source, a ``/vsi`` name, a model read, any batch row's
input), and the MS's alpha band and dataset masks mark invalid pixels as the PAN's do.

Each test names its item of the issue; all run on copies of the shared real scenes (or files
built from them), and inputs are hashed before and after.
"""

from __future__ import annotations

import json
import shutil

import pytest
import rasterio

from ssdiff_cli.errors import EXIT_BAD_INPUT, EXIT_OUTPUT, EXIT_USAGE
from tests.conftest import requires_data, scene_paths
from tests.test_safety import digest, hidden_files, invoke, one_line_error

pytestmark = requires_data
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def landsat(tmp_path):
    """A copy of the small real Landsat-8 pair in tmp_path (so replacing it would show)."""
    pan, ms = scene_paths("landsat8_satellite")
    shutil.copy(pan, tmp_path / "pan.tif")
    shutil.copy(ms, tmp_path / "ms.tif")
    return tmp_path / "pan.tif", tmp_path / "ms.tif"


def _vrt_of(src, path, relative: bool = True):
    """A hand-written VRT at ``path`` whose bands are ``src``'s (named relative to the VRT)."""
    with rasterio.open(src) as ds:
        gt = ", ".join(repr(float(v)) for v in ds.transform.to_gdal())
        name = src.name if relative else str(src)
        dtype = {"int16": "Int16", "uint16": "UInt16", "uint8": "Byte"}[ds.dtypes[0]]
        bands = "".join(
            f'<VRTRasterBand dataType="{dtype}" band="{b}"><NoDataValue>{ds.nodata!r}</NoDataValue>'
            f'<SimpleSource><SourceFilename relativeToVRT="{int(relative)}">{name}'
            f"</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>"
            for b in range(1, ds.count + 1))
        path.write_text(f'<VRTDataset rasterXSize="{ds.width}" rasterYSize="{ds.height}">'
                        f"<SRS>{ds.crs.to_wkt()}</SRS><GeoTransform>{gt}</GeoTransform>{bands}"
                        "</VRTDataset>")
    return path


def _two_rows(landsat, tmp_path):
    """A batch CSV of two real pairs: row 1 the Landsat copy, row 2 another copy in B/ whose MS
    is B/m2.tif; outputs out/one.tif and out/two.tif."""
    pan, ms = landsat
    (tmp_path / "B").mkdir()
    pan2 = shutil.copy(pan, tmp_path / "B" / "pan.tif")
    m2 = shutil.copy(ms, tmp_path / "B" / "m2.tif")
    (tmp_path / "out").mkdir()
    csv = tmp_path / "pairs.csv"
    csv.write_text(f"pan,ms,out\n{pan},{ms},out/one.tif\n{pan2},{m2},out/two.tif\n")
    return csv, tmp_path / "B" / "m2.tif"


# ------------------------------------------------------------------------------------------
# 1. --batch with --quicklook: every written path against every row's inputs, before any work


def test_batch_quicklook_given_as_a_file_is_refused_before_any_work(landsat, tmp_path):
    csv, m2 = _two_rows(landsat, tmp_path)
    before = digest(m2)
    result = invoke("sharpen", "--batch", csv, "--quicklook", m2, "--overwrite", "-m", "brovey")
    one_line_error(result, EXIT_USAGE, "m2.tif", "--quicklook names a folder")
    assert digest(m2) == before
    assert not any((tmp_path / "out").iterdir())


def test_batch_quicklook_resolving_to_another_rows_input_fails_that_row(landsat, tmp_path):
    csv, m2 = _two_rows(landsat, tmp_path)
    before = digest(m2)
    (tmp_path / "Q").mkdir()
    (tmp_path / "Q" / "one.png").symlink_to(m2)  # row 1's quicklook would be written into m2
    result = invoke("sharpen", "--batch", csv, "--quicklook", tmp_path / "Q", "--overwrite",
                    "-m", "brovey", "--json", "-q")
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    rows = json.loads(result.stdout)["pairs"]
    assert [r["status"] for r in rows] == ["failed", "done"]
    assert "quicklook would replace the input" in rows[0]["error"] and "m2.tif" in rows[0]["error"]
    assert digest(m2) == before
    assert not (tmp_path / "out" / "one.tif").exists()  # refused before any work
    assert (tmp_path / "Q" / "two.png").read_bytes()[:8] == PNG


# ------------------------------------------------------------------------------------------
# 12. Batch outputs that are one file; one quicklook per row


def test_batch_outputs_that_are_one_file_through_a_symlinked_folder_are_refused(landsat, tmp_path):
    pan, ms = landsat
    (tmp_path / "A").mkdir()
    (tmp_path / "L").symlink_to(tmp_path / "A", target_is_directory=True)
    csv = tmp_path / "pairs.csv"
    csv.write_text(f"pan,ms,out\n{pan},{ms},A/x.tif\n{pan},{ms},L/x.tif\n")
    result = invoke("sharpen", "--batch", csv, "--overwrite", "-m", "brovey")
    one_line_error(result, EXIT_BAD_INPUT, "L/x.tif", "also the output of")
    assert not (tmp_path / "A" / "x.tif").exists()


def test_batch_quicklook_folder_gets_one_png_per_row_named_after_its_output(landsat, tmp_path):
    csv, _ = _two_rows(landsat, tmp_path)
    (tmp_path / "Q").mkdir()
    result = invoke("sharpen", "--batch", csv, "--quicklook", tmp_path / "Q", "-m", "brovey", "-q")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "Q").iterdir()) == ["one.png", "two.png"]
    for name in ("one.png", "two.png"):
        assert (tmp_path / "Q" / name).read_bytes()[:8] == PNG
    # Outputs in two folders with one name would share a quicklook: refused before any work.
    pan, ms = landsat
    csv.write_text(f"pan,ms,out\n{pan},{ms},a/x.tif\n{pan},{ms},b/x.tif\n")
    result = invoke("sharpen", "--batch", csv, "--quicklook", tmp_path / "Q", "-m", "brovey")
    one_line_error(result, EXIT_BAD_INPUT, "x.png", "also the quicklook of")
    assert not (tmp_path / "a").exists() and not (tmp_path / "Q" / "x.png").exists()
    result = invoke("sharpen", "--batch", csv, "--quicklook", tmp_path / "nodir", "-m", "brovey")
    one_line_error(result, EXIT_OUTPUT, "nodir", "does not exist")


# ------------------------------------------------------------------------------------------
# 3. An output that is a source file of an input VRT


@pytest.mark.parametrize("nested", [False, True])
def test_output_that_an_input_vrt_reads_is_refused(landsat, tmp_path, nested):
    pan, ms = landsat
    before = digest(ms)
    vrt = _vrt_of(ms, tmp_path / "ms.vrt")
    if nested:  # a VRT of the VRT: GDAL lists only the inner VRT, whose source is ms.tif
        vrt = _vrt_of(vrt, tmp_path / "outer.vrt", relative=False)
    for extra in ([], ["--overwrite"]):
        result = invoke("sharpen", pan, vrt, "-o", ms, "-m", "brovey", *extra)
        one_line_error(result, EXIT_BAD_INPUT, "ms.tif", "would replace", vrt.name)
    csv = tmp_path / "pairs.csv"
    csv.write_text(f"pan,ms,out\n{pan},{vrt},{ms}\n")
    result = invoke("sharpen", "--batch", csv, "--overwrite", "-m", "brovey", "--json", "-q")
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "would replace" in json.loads(result.stdout)["pairs"][0]["error"]
    assert digest(ms) == before
    assert not hidden_files(tmp_path)


# ------------------------------------------------------------------------------------------
# 4. /vsi names of local files


@pytest.mark.parametrize("which", ["ms", "pan"])
@pytest.mark.parametrize("relative", [False, True])
def test_output_behind_a_vsi_input_name_is_refused(landsat, tmp_path, monkeypatch, which,
                                                   relative):
    pan, ms = landsat
    monkeypatch.chdir(tmp_path)
    target = ms if which == "ms" else pan
    before = digest(target)
    name = f"/vsisubfile/0_{target.stat().st_size},{target.name if relative else target}"
    args = (pan, name) if which == "ms" else (name, ms)
    result = invoke("sharpen", *args, "-o", target, "--overwrite", "-m", "brovey")
    one_line_error(result, EXIT_BAD_INPUT, target.name, "would replace", "/vsisubfile/")
    assert digest(target) == before
    assert not hidden_files(tmp_path)


# ------------------------------------------------------------------------------------------
# 2. A model read is an input


def _model_in(folder, shipped: str, name: str = "m1"):
    from ssdiff_cli.zoo import shipped_models_dir

    folder.mkdir(exist_ok=True)
    for ext in (".json", ".safetensors"):
        shutil.copy(shipped_models_dir() / f"{shipped}{ext}", folder / f"{name}{ext}")
    return folder / name


@pytest.mark.parametrize("by_name", [False, True])
@pytest.mark.parametrize("merge", [False, True])
def test_finetune_never_replaces_the_model_it_reads(tmp_path, monkeypatch, by_name, merge):
    model = _model_in(tmp_path / "M", "ssdiff-4band")
    before = [digest(model.with_suffix(e)) for e in (".json", ".safetensors")]
    if by_name:
        monkeypatch.setenv("SSDIFF_MODELS", str(tmp_path / "M"))
    pan, ms = scene_paths("ge1_grip")
    result = invoke("finetune", f"{pan},{ms}", "--model", "m1" if by_name else model, "-o", model,
                    "--overwrite", "--steps", "1", *(["--merge"] if merge else []))
    one_line_error(result, EXIT_BAD_INPUT, "m1.safetensors", "would replace the input")
    assert [digest(model.with_suffix(e)) for e in (".json", ".safetensors")] == before


def test_train_generalist_never_replaces_the_model_it_starts_from(tmp_path):
    model = _model_in(tmp_path / "X", "ssdiff-generalist", "x")
    before = [digest(model.with_suffix(e)) for e in (".json", ".safetensors")]
    pan, ms = scene_paths("ge1_grip")
    result = invoke("train", f"{pan},{ms}", "--generalist", "--init", model, "-o", model,
                    "--overwrite", "--max-steps", "1", "-q")
    one_line_error(result, EXIT_BAD_INPUT, "x.safetensors", "would replace the input")
    assert [digest(model.with_suffix(e)) for e in (".json", ".safetensors")] == before
    assert not (tmp_path / "X" / "x.state.safetensors").exists()


# ------------------------------------------------------------------------------------------
# 5, 6. The MS's alpha band and dataset mask mark invalid pixels, as the PAN's do


@pytest.mark.parametrize("how", ["alpha", "internal", "msk"])
def test_ms_alpha_band_and_masks_are_not_published_as_valid(tmp_path, how):
    from tests.test_scene import _masked_ms

    pan, src = scene_paths("ge1_grip")
    ms = _masked_ms(src, tmp_path / "ms.tif", slice(100, 160), slice(50, 120), how)
    before = digest(ms)
    out = tmp_path / "out.tif"
    result = invoke("sharpen", pan, ms, "-o", out, "-m", "brovey", "--json", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sensor"]["name"] == "GeoEye-1"
    with rasterio.open(out) as ds:
        assert ds.count == 4  # the alpha band is no fifth band
        valid = ds.read_masks(1) > 0
    # 60 x 70 MS pixels masked: 240 x 280 PAN pixels (a registration shift may move the edge)
    assert not valid[404:636, 204:476].any() and valid[:380].all()
    assert abs(int((~valid).sum()) - 240 * 280) <= 4 * (240 + 280)
    assert digest(ms) == before
