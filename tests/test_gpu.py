"""GPU checks (`make gpu-check`): the CUDA path is the CPU path, run where a GPU is visible.

Skipped on machines without a visible CUDA device (every CPU test machine); on a GPU machine
`make gpu-check` runs them and a tiny workflow with `compute.device: cuda`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
import yaml
from _workflow import prepare_tiny_workdir, snakemake
from test_training import CPU, TinyDecoder, make_dataset, run

from nlp4neuro.config import section
from nlp4neuro.device import ComputeParams, device_report, select_device

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no visible CUDA device"),
]


def cuda(precision: str) -> ComputeParams:
    return ComputeParams.from_config(
        section("compute", device="cuda", precision=precision), threads=1
    )


def test_auto_selects_the_visible_gpu_and_reports_it():
    device = select_device("auto")
    assert device.type == "cuda"
    report = device_report(device)
    assert report["gpu_name"] and report["peak_memory_mib"] >= 0


def test_cuda_training_matches_the_cpu_run(tmp_path):
    """fp32 on CUDA (TF32 off for the comparison would be exact; with TF32 close)."""
    dataset = make_dataset()
    run(tmp_path, "cpu", dataset=dataset, factory=TinyDecoder, compute=CPU)
    run(tmp_path, "gpu", dataset=dataset, factory=TinyDecoder, compute=cuda("fp32"))
    ours = xr.load_dataset(tmp_path / "gpu/out/predictions.nc")["predicted"].values
    cpu = xr.load_dataset(tmp_path / "cpu/out/predictions.nc")["predicted"].values
    np.testing.assert_allclose(ours, cpu, atol=5e-3)


def test_bf16_training_on_cuda_runs_and_stays_finite(tmp_path):
    run(tmp_path, "bf16", factory=TinyDecoder, compute=cuda("bf16"))
    predicted = xr.load_dataset(tmp_path / "bf16/out/predictions.nc")["predicted"].values
    assert np.isfinite(predicted).all()


def test_tiny_workflow_on_cuda(tmp_path):
    config_file = prepare_tiny_workdir(tmp_path)
    config = yaml.safe_load(config_file.read_text())
    config["compute"] = {"device": "cuda"}
    config_file.write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "--cores", "2", "--configfile", str(config_file))
    assert result.returncode == 0, result.stderr[-5000:]
    log = (tmp_path / "logs/train/tinyllama/w5/fish1/seed0/h0/fold0.log").read_text()
    assert "cuda" in log
