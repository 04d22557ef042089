"""Tests for nlp4neuro.device: device choice, compute settings and the device switches."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nlp4neuro.config import section
from nlp4neuro.device import (
    ComputeParams,
    device_report,
    select_device,
    to_device,
    to_numpy,
    use_bf16,
)
from nlp4neuro.errors import ConfigError


def compute(**changes) -> ComputeParams:
    return ComputeParams.from_config(section("compute", **changes), threads=1)


def test_compute_params_come_from_the_validated_section_and_the_job_threads():
    params = compute()
    assert params.to_dict() == {"device": "auto", "bf16": True, "bf16_cpu": False, "threads": 1}
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(ComputeParams))
    with pytest.raises(ConfigError, match=r"compute\.device"):
        ComputeParams.from_config({}, threads=1)
    with pytest.raises(ConfigError, match=r"compute\.device"):
        section("compute", device="tpu")


def test_select_device_takes_what_is_visible(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert select_device("auto") == torch.device("cpu")
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"compute\.device.*visible CUDA GPU.*none visible"):
        select_device("cuda")
    with pytest.raises(ConfigError, match=r"compute\.device"):
        select_device("tpu")
    # A GPU the scheduler granted is a visible one.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert select_device("auto") == torch.device("cuda")
    assert select_device("cuda") == torch.device("cuda")
    assert select_device("cpu") == torch.device("cpu")


def test_bf16_autocast_only_on_cuda_unless_asked_for_on_cpu():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert use_bf16(compute(), cuda)
    assert not use_bf16(compute(), cpu)
    assert use_bf16(compute(bf16_cpu=True), cpu)
    assert not use_bf16(compute(bf16=False, bf16_cpu=True), cpu)
    assert not use_bf16(compute(bf16=False), cuda)


def test_tensors_cross_between_numpy_and_the_device_in_one_place():
    import numpy as np

    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    tensor = to_device(array, torch.device("cpu"))
    assert tensor.dtype == torch.float32 and tensor.device.type == "cpu"
    back = to_numpy(tensor.requires_grad_(True) * 2)  # detached, no grad error
    np.testing.assert_array_equal(back, array * 2)


def test_device_report_on_the_cpu():
    report = device_report(torch.device("cpu"))
    assert report["device"] == "cpu" and report["gpu_name"] is None
    assert report["peak_memory_mib"] > 1 and report["peak_memory_kind"] == "process peak RSS"
