"""The same code on a CUDA GPU (``--device auto``): runs only where one is present."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from tests.conftest import DATA, requires_cuda
from tests.test_ssdiff_method import _checkpoint, _crop_scene, _run

pytestmark = [
    requires_cuda,
    pytest.mark.skipif(not (DATA / "ge1_grip" / "pan.tif").exists(),
                       reason=f"shared real scenes not found at {DATA}"),
]


def test_device_auto_uses_the_gpu_and_agrees_with_the_cpu(tmp_path):
    import torch

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    pan, ms = _crop_scene(tmp_path)
    model = _checkpoint(tmp_path / "tiny")
    gpu = _run(pan, ms, tmp_path / "gpu.tif", model, method_options={"device": "auto"})
    _run(pan, ms, tmp_path / "cpu.tif", model, method_options={"device": "cpu"})
    assert gpu.method["device"] == "cuda"
    with rasterio.open(tmp_path / "gpu.tif") as a, rasterio.open(tmp_path / "cpu.tif") as b:
        diff = np.abs(a.read().astype(int) - b.read().astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.05


def test_bf16_on_the_gpu_stays_close_to_fp32(tmp_path):
    pan, ms = _crop_scene(tmp_path)
    model = _checkpoint(tmp_path / "tiny")
    _run(pan, ms, tmp_path / "fp32.tif", model, method_options={"device": "cuda"})
    _run(pan, ms, tmp_path / "bf16.tif", model,
         method_options={"device": "cuda", "precision": "bf16"})
    with rasterio.open(tmp_path / "fp32.tif") as a, rasterio.open(tmp_path / "bf16.tif") as b:
        diff = np.abs(a.read().astype(int) - b.read().astype(int))
    assert np.mean(diff) < 3
