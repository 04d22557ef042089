"""Tests for nlp4neuro.device: device choice, compute settings and the device switches."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nlp4neuro.config import section
from nlp4neuro.device import (
    ComputeParams,
    device_report,
    native_bf16,
    resolve_precision,
    select_device,
    to_device,
    to_numpy,
)
from nlp4neuro.errors import ConfigError


def compute(**changes) -> ComputeParams:
    return ComputeParams.from_config(section("compute", **changes), threads=1)


def test_compute_params_come_from_the_validated_section_and_the_job_threads():
    params = compute()
    assert params.to_dict() == {"device": "auto", "precision": "auto", "threads": 1}
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


# /proc/cpuinfo excerpts: an Ice Lake guest without BF16 (this project's CI machine on
# 2026-12-01), a Sapphire Rapids host with AMX and an AVX512-BF16 Zen 4.
ICE_LAKE = "flags\t\t: fpu sse avx2 avx512f avx512bw avx512_vnni avx512_bitalg"
SAPPHIRE = "flags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile"
ZEN4 = "flags\t\t: fpu avx512f avx512_bf16 avx512_vnni"


def test_native_bf16_reads_the_cpu_flags(monkeypatch):
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    cpu = torch.device("cpu")
    assert not native_bf16(cpu, ICE_LAKE)
    assert native_bf16(cpu, SAPPHIRE) and native_bf16(cpu, ZEN4)
    assert not native_bf16(cpu, "flags : avx512f avx512bf16_like")  # whole words only
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    assert native_bf16(cpu, "Features\t: fp asimd sve bf16 i8mm")
    assert not native_bf16(cpu, "Features\t: fp asimd sve")


def test_native_bf16_on_cuda_needs_ampere(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (7, 0))
    assert not native_bf16(cuda)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (9, 0))
    assert native_bf16(cuda)


def test_auto_precision_is_bf16_only_for_frozen_backbones_on_native_hardware(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr("nlp4neuro.device.native_bf16", lambda device: True)
    assert resolve_precision("auto", cpu, "lora") == "bf16"
    assert resolve_precision("auto", cpu, "head") == "bf16"
    assert resolve_precision("auto", cpu, "full") == "fp32"
    assert resolve_precision("auto", cpu, None) == "fp32"  # baselines
    monkeypatch.setattr("nlp4neuro.device.native_bf16", lambda device: False)
    assert resolve_precision("auto", cpu, "lora") == "fp32"
    # an explicit choice is taken as asked, whatever the hardware
    assert resolve_precision("bf16", cpu, None) == "bf16"
    assert resolve_precision("fp32", cpu, "lora") == "fp32"
    with pytest.raises(ConfigError, match=r"compute\.precision"):
        resolve_precision("fp16", cpu, "lora")
    with pytest.raises(ConfigError, match=r"compute\.precision"):
        section("compute", precision="fp16")


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
