"""Where torch code runs: device choice, the compute settings and the few device switches.

Every device runs the same code: tensors live on the chosen device, and every tensor that
becomes a numpy array goes through `to_numpy` (detach, then copy to the CPU). What differs
between devices is limited to switches: the compute precision (`resolve_precision`, `autocast`)
and TF32 matmuls on CUDA (`configure`).
"""

from __future__ import annotations

import os
import platform
import resource
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from nlp4neuro.config import build
from nlp4neuro.errors import ConfigError


@dataclass(frozen=True)
class ComputeParams:
    """Compute settings of a torch job (the config's ``compute`` section plus the job's threads).

    Attributes:
        device: "auto", "cpu" or "cuda" (see `select_device`).
        precision: "auto", "fp32" or "bf16" (see `resolve_precision`).
        threads: torch intra-op threads of this job (Snakemake's `threads`).
    """

    device: str
    precision: str
    threads: int

    @classmethod
    def from_config(cls, compute: Mapping[str, Any], threads: int) -> ComputeParams:
        """From the validated ``compute`` section and the job's thread count."""
        return build(cls, compute, "compute", threads=int(threads))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def select_device(requested: str) -> torch.device:
    """The torch device of a job.

    Args:
        requested: config key `compute.device`: "cpu"; "cuda" (a visible GPU is required);
            "auto": CUDA when torch sees a visible GPU, else the CPU. A scheduler grants GPUs by
            setting CUDA_VISIBLE_DEVICES, so the visible devices are what this job was given.

    Raises:
        ConfigError: "cuda" where no GPU is visible.
    """
    visible = torch.cuda.is_available() and torch.cuda.device_count() > 0
    if requested == "cpu":
        return torch.device("cpu")
    if requested == "cuda":
        if not visible:
            found = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
            raise ConfigError(
                "compute.device",
                "a visible CUDA GPU",
                f"none visible (CUDA_VISIBLE_DEVICES={found})",
            )
        return torch.device("cuda")
    if requested == "auto":
        return torch.device("cuda" if visible else "cpu")
    raise ConfigError("compute.device", "one of auto, cpu, cuda", requested)


def configure(compute: ComputeParams, device: torch.device) -> None:
    """Process-wide switches: torch threads, and TF32 matmuls for the fp32 parts on CUDA."""
    torch.set_num_threads(compute.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.cuda.reset_peak_memory_stats(device)


def native_bf16(device: torch.device, cpu_flags: str | None = None) -> bool:
    """Whether `device` runs bf16 matmuls in hardware rather than emulating them.

    CUDA: compute capability 8.0 or newer (Ampere on). CPU: the AVX512-BF16 or AMX-BF16
    instructions (x86) or the BF16 extension (Arm), as the kernel reports them in /proc/cpuinfo.
    Where bf16 is emulated (AVX-512 without BF16: 5x slower than fp32 on the machine of
    docs/benchmarks.md), this is False. `cpu_flags` replaces /proc/cpuinfo (for tests).
    """
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    if cpu_flags is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
                cpu_flags = cpuinfo.read()
        except OSError:  # not Linux: no claim of native bf16
            cpu_flags = ""
    words = set(cpu_flags.replace(":", " ").split())
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "bf16" in words
    return bool(words & {"avx512_bf16", "amx_bf16"})


def resolve_precision(requested: str, device: torch.device, finetune: str | None) -> str:
    """The precision a torch decoder computes in: "fp32" or "bf16".

    Args:
        requested: config key `compute.precision`. "fp32" and "bf16" are taken as asked; "auto"
            is bf16 for a frozen backbone (`finetune` "lora" or "head") on a device with native
            bf16 (`native_bf16`), fp32 for everything else: full fine-tuning keeps fp32 compute
            unless asked, and the small baselines gain little.
        device: the job's device.
        finetune: the LLM fine-tuning mode, None for decoders without a backbone.

    In bf16 the matmuls run under bf16 autocast and a frozen backbone's weight matrices are
    stored in bf16 (`models.lean.store_frozen`); trainable weights keep fp32 masters.
    """
    if requested in ("fp32", "bf16"):
        return requested
    if requested != "auto":
        raise ConfigError("compute.precision", "one of auto, fp32, bf16", requested)
    frozen_backbone = finetune in ("lora", "head")
    return "bf16" if frozen_backbone and native_bf16(device) else "fp32"


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """bfloat16 autocast on `device` when `precision` is "bf16", else a no-op."""
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16"
    )


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """The one way a tensor becomes a numpy array, on every device: detach, copy to the CPU."""
    return tensor.detach().to("cpu").numpy()


def device_report(device: torch.device) -> dict[str, Any]:
    """What a job ran on: device, GPU name and peak memory in MiB.

    On CUDA the peak is torch's `max_memory_allocated` since `configure`; on the CPU it is the
    process's peak resident set size (ru_maxrss: KiB on Linux, bytes on macOS).
    """
    if device.type == "cuda":
        return {
            "device": str(device),
            "gpu_name": torch.cuda.get_device_name(device),
            "peak_memory_mib": torch.cuda.max_memory_allocated(device) / 2**20,
            "peak_memory_kind": "cuda max_memory_allocated",
        }
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_bytes = rss if sys.platform == "darwin" else rss * 1024
    return {
        "device": str(device),
        "gpu_name": None,
        "peak_memory_mib": rss_bytes / 2**20,
        "peak_memory_kind": "process peak RSS",
    }


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """The one way a numpy array becomes a tensor on `device` (shares memory on the CPU)."""
    return torch.from_numpy(array).to(device)
