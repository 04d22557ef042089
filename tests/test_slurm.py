"""The shipped SLURM profile against a real single-node SLURM (tests/slurm_cluster.py).

The profile is filled in the way profiles/README.md tells a user to (copy, name the partitions
and the account) and scaled to the 2-CPU test node; every other key is the shipped one. The
tiny workflow's training jobs then run through sbatch, as array jobs, GPU jobs in the GPU
partition with a (fake) GPU allocated, and their outputs must equal those of the local run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from _workflow import snakemake
from slurm_cluster import site_profile

pytestmark = pytest.mark.e2e


def job_logs(workdir: Path) -> dict[Path, str]:
    """The rules' own logs (not SLURM's job output under logs/slurm/)."""
    return {
        log: log.read_text(errors="replace")
        for log in (workdir / "logs").rglob("*.log")
        if "slurm" not in log.relative_to(workdir / "logs").parts[:1]
    }


def allocation(log: str) -> dict[str, str]:
    """The scheduler variables a job logged (workflow/scripts/_runtime.py)."""
    line = re.search(r"scheduler allocation: (.*)", log)
    return dict(item.split("=", 1) for item in line.group(1).split()) if line else {}


TARGETS = [
    f"results/train/{model}/w5/fish1/seed0/h0/fold0/predictions.nc"
    for model in ("tinyllama", "tinyllama_untrained", "gru", "ridge")
]


@pytest.fixture(scope="module")
def slurm_run(slurm, tiny_run, tmp_path_factory) -> Path:
    """The tiny workflow's training targets for fish 1, run through SLURM."""
    workdir = tmp_path_factory.mktemp("slurm_run")
    shutil.copytree(tiny_run / "backbones", workdir / "backbones")
    config = yaml.safe_load((tiny_run / "config.yaml").read_text())
    for spec in config["models"].values():
        if "source" in spec:
            spec["source"] = spec["source"].replace(str(tiny_run), str(workdir))
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    profile = site_profile(workdir / "profile")
    result = snakemake(
        workdir, *TARGETS, "--workflow-profile", str(profile),
        "--configfile", str(workdir / "config.yaml"), timeout=900, env=slurm.env,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    return workdir


def test_every_job_went_through_sbatch(slurm_run):
    logs = job_logs(slurm_run)
    # simulate, ingest, dF/F, assemble, one backbone, four training jobs
    assert len(logs) == 9, sorted(str(p.relative_to(slurm_run)) for p in logs)
    for log, text in logs.items():
        assert "SLURM_JOB_ID" in allocation(text), log


def scheduler_record(job_id: str, env: dict[str, str]) -> dict[str, str]:
    """What SLURM itself recorded for a job (finished jobs stay listed: MinJobAge=600)."""
    shown = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, env=env
    )
    assert shown.returncode == 0, shown.stderr
    return dict(item.split("=", 1) for item in shown.stdout.split() if "=" in item)


def test_gpu_jobs_land_in_the_gpu_partition_with_a_gpu(slurm, slurm_run):
    for log, text in job_logs(slurm_run).items():
        given = allocation(text)
        record = scheduler_record(given["SLURM_JOB_ID"], slurm.env)
        # logs/train/<model>/w5/fish1/seed0/h0/fold0.log: tinyllama and its twin are llm models
        wants_gpu = "train" in log.parts and log.parents[4].name.startswith("tinyllama")
        if wants_gpu:
            assert record["Partition"] == "gpu", log
            assert record.get("TresPerJob") == "gres:gpu:1", (log, record)
            assert given.get("CUDA_VISIBLE_DEVICES") in ("0", "1"), log
        else:
            assert record["Partition"] == "cpu", log
            assert "gpu" not in record.get("TresPerJob", ""), (log, record)
        if "train" in log.parts:
            # the training rules are submitted as array jobs
            assert "SLURM_ARRAY_JOB_ID" in given, log


def test_outputs_equal_those_of_the_local_run(slurm_run, tiny_run):
    for target in TARGETS:
        ours = xr.load_dataset(slurm_run / target)
        local = xr.load_dataset(tiny_run / target)
        np.testing.assert_array_equal(ours["predicted"].values, local["predicted"].values)
        np.testing.assert_array_equal(ours["true"].values, local["true"].values)
