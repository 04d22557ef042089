"""Execution profiles and the paper's grid: they parse and plan the DAG.

What the SLURM profile does on a real cluster is tested in test_slurm.py and
test_paper_miniature.py. Every Snakemake run happens in a temporary working directory, never in
the repository.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from nlp4neuro.models import ModelSpec

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "Snakefile"
DEFAULT_PROFILE = ROOT / "profiles" / "default"
SLURM_PROFILE = ROOT / "profiles" / "slurm"
PAPER_CONFIG = ROOT / "config" / "paper.yaml"
# Runs happen outside the repository, where the Snakefile's relative `config.yaml` is not found.
DEFAULT_CONFIG = ["--configfile", str(ROOT / "config.yaml")]
PLACEHOLDERS = {
    "YOUR_GPU_PARTITION": "gpupart",
    "YOUR_PARTITION": "cpupart",
    "YOUR_ACCOUNT": "lab_acct",
}

# The paper's grid: 5 fish x 4 windows x 10 seeds per model. LLM models: gpt2_full, gpt2_lora,
# bert_full, bert_lora, deepseek_head, deepseek_lora and their 6 untrained twins.
# Baselines: lstm, reservoir, ridge, mean.
PAPER_RUNS_PER_MODEL = 5 * 4 * 10 * 5  # fish x windows x seeds x folds
PAPER_LLM_MODELS = 12
PAPER_BASELINE_MODELS = 4


def snakemake(args: list[str], cwd: Path, *, env: dict | None = None, timeout: float = 120):
    """Run the Snakemake CLI of this interpreter; returns the CompletedProcess."""
    base_env = {k: v for k, v in os.environ.items() if k != "SNAKEMAKE_PROFILE"}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), *args],
        cwd=cwd,
        env={**base_env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def job_counts(output: str) -> dict[str, int]:
    """Rule -> job count from the "Job stats" table Snakemake prints."""
    table = output.split("Job stats:", 1)[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.MULTILINE)}


def read_profile(folder: Path) -> dict:
    return yaml.safe_load((folder / "config.yaml").read_text())


# ----------------------------------------------------------------------------------------------
# The profile files themselves


@pytest.mark.parametrize("folder", [DEFAULT_PROFILE, SLURM_PROFILE], ids=["default", "slurm"])
def test_profile_keys_are_snakemake_options(folder):
    from snakemake.cli import get_argument_parser

    options = {
        opt.removeprefix("--")
        for action in get_argument_parser()._actions
        for opt in action.option_strings
    }
    unknown = sorted(set(read_profile(folder)) - options)
    assert not unknown, f"{folder}/config.yaml: keys that are no snakemake option: {unknown}"


def test_slurm_profile_sizes_every_heavy_rule():
    profile = read_profile(SLURM_PROFILE)
    assert profile["executor"] == "slurm"
    assert profile["retries"] >= 1
    assert {"slurm_account", "mem_mb", "runtime"} <= set(profile["default-resources"])
    sized = profile["set-resources"]
    for rule in (
        "ingest_fish",
        "compute_dff",
        "prepare_backbone",
        "train_decoder",
        "train_baseline",
    ):
        assert {"mem_mb", "runtime"} <= set(sized[rule]), rule
    # the GPU request and the partition follow each job's own `gpu` resource
    assert all("gpu" not in r and "slurm_partition" not in r for r in sized.values())
    partitions = yaml.safe_load((SLURM_PROFILE / "partitions.yaml").read_text())["partitions"]
    assert (
        partitions["YOUR_GPU_PARTITION"]["max_gpu"] > 0 == partitions["YOUR_PARTITION"]["max_gpu"]
    )
    assert profile["slurm-array-jobs"] == "train_decoder,train_baseline"
    # rules named in the profile must exist in the workflow (a typo would be silently ignored)
    rule_names = set()
    for smk in [SNAKEFILE, *(ROOT / "workflow" / "rules").glob("*.smk")]:
        text = smk.read_text()
        rule_names |= set(re.findall(r"^\s*rule (\w+):", text, re.MULTILINE))
        rule_names |= set(re.findall(r"^use rule \w+ as (\w+)", text, re.MULTILINE))
    named = set(sized) | set(profile["set-threads"])
    assert named <= rule_names, f"unknown rules in profiles/slurm: {sorted(named - rule_names)}"


# ----------------------------------------------------------------------------------------------
# Dry runs


def test_slurm_profile_dry_run(tmp_path):
    result = snakemake(
        [
            "-n",
            "--quiet",
            "rules",
            "--workflow-profile",
            str(SLURM_PROFILE),
            *DEFAULT_CONFIG,
            # the profile names it relative to the repository, where users start Snakemake
            "--slurm-partition-config",
            str(SLURM_PROFILE / "partitions.yaml"),
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    log = result.stdout + result.stderr
    assert f"workflow specific profile {SLURM_PROFILE}" in log
    assert job_counts(log)["train_decoder"] >= 1


def test_slurm_as_general_profile_stacks_the_default_profile(tmp_path):
    """`--profile profiles/slurm` works, but profiles/default is then applied on top of it
    (the reason profiles/README.md recommends --workflow-profile on clusters)."""
    result = snakemake(
        [
            "-n",
            "--quiet",
            "rules",
            "--profile",
            str(SLURM_PROFILE),
            *DEFAULT_CONFIG,
            "--slurm-partition-config",
            str(SLURM_PROFILE / "partitions.yaml"),
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    log = result.stdout + result.stderr
    assert f"{SLURM_PROFILE} and workflow specific profile {DEFAULT_PROFILE}" in log


def test_paper_config_models():
    config = yaml.safe_load(PAPER_CONFIG.read_text())
    assert config["fish"] == [9, 10, 11, 12, 13]
    assert config["decoding"]["windows"] == [5, 10, 15, 20]
    assert config["decoding"]["seeds"] == list(range(10))
    for name, entry in config["models"].items():
        ModelSpec.from_workflow(name, entry)  # raises ConfigError on a bad entry
        # every pretrained LLM has its untrained twin, the quantised DeepSeek models too
        assert entry.get("untrained_twin", True), name
    assert config["models"]["deepseek_lora"]["quantization"] == "4bit"
    assert config["models"]["deepseek_head"]["finetune"] == "head"


def test_paper_grid_plans_on_a_fresh_machine(tmp_path):
    """No data, no backbones: the download rule makes the raw folders, so the grid plans."""
    started = time.monotonic()
    result = snakemake(
        ["-n", "--quiet", "rules", "--configfile", str(PAPER_CONFIG)],
        cwd=tmp_path,
        env={"HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    seconds = time.monotonic() - started
    counts = job_counts(result.stdout + result.stderr)
    assert counts["train_decoder"] == PAPER_LLM_MODELS * PAPER_RUNS_PER_MODEL
    assert counts["train_baseline"] == PAPER_BASELINE_MODELS * PAPER_RUNS_PER_MODEL
    assert counts["download_dataverse"] == 1
    assert counts["prepare_backbone"] == 3  # gpt2, bert-base-uncased, deepseek-coder
    for rule in ("ingest_fish", "compute_dff", "assemble_dataset"):
        assert counts[rule] == 5
    assert "simulate_fish" not in counts
    print(f"paper grid planned in {seconds:.1f} s")  # the README quotes this (< 10 s wanted)


def test_paper_grid_without_download_or_data_names_what_is_missing(tmp_path):
    config = yaml.safe_load(PAPER_CONFIG.read_text())
    config["download"]["enabled"] = False
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(["-n", "--configfile", str(tmp_path / "paper.yaml")], cwd=tmp_path)
    assert result.returncode != 0
    log = result.stdout + result.stderr
    assert "config key 'data.raw_dir'" in log and "resources/dataverse/raw_data_f9" in log


def test_slurm_profile_without_sbatch_stops_with_one_clear_message(tmp_path):
    bin_dir = tmp_path / "bin"  # the tools Snakemake needs, and no SLURM
    bin_dir.mkdir()
    for tool in ("bash", "sh", "env", "which", "uname", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    result = snakemake(
        ["results/raw/raw_data_f1", "--workflow-profile", str(SLURM_PROFILE),
         "--slurm-partition-config", str(SLURM_PROFILE / "partitions.yaml"), *DEFAULT_CONFIG],
        cwd=tmp_path,
        env={"PATH": str(bin_dir)},
    )  # fmt: skip
    assert result.returncode != 0
    assert "expected SLURM's sbatch on PATH, found none" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()
