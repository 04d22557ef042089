"""Execution profiles and the paper's grid: they parse, plan the DAG, and reach sbatch intact.

The SLURM test puts stand-ins for sbatch, sacct, squeue, scontrol, sinfo, sacctmgr and scancel on
PATH. They record their arguments, hand out job ids and report every job as COMPLETED, so Snakemake
submits through snakemake-executor-plugin-slurm exactly as on a cluster, but nothing runs: each
job then fails for its missing outputs and is retried once.
Every Snakemake run happens in a temporary working directory, never in the repository.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
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
# bert_full, bert_lora, their 4 untrained twins, deepseek_head, deepseek_lora (no twins: quantised).
# Baselines: lstm, reservoir, ridge, mean.
PAPER_RUNS_PER_MODEL = 5 * 4 * 10
PAPER_LLM_MODELS = 10
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
    assert {"slurm_partition", "slurm_account", "mem_mb", "runtime"} <= set(
        profile["default-resources"]
    )
    sized = profile["set-resources"]
    for rule in ("ingest_fish", "compute_dff", "prepare_backbone", "train_llm", "train_baseline"):
        assert {"mem_mb", "runtime"} <= set(sized[rule]), rule
    assert sized["train_llm"]["gpu"] == 1
    # rules named in the profile must exist in the workflow (a typo would be silently ignored)
    rule_names = set()
    for smk in [SNAKEFILE, *(ROOT / "workflow" / "rules").glob("*.smk")]:
        rule_names |= set(re.findall(r"^\s*rule (\w+):", smk.read_text(), re.MULTILINE))
    named = set(sized) | set(profile["set-threads"])
    assert named <= rule_names, f"unknown rules in profiles/slurm: {sorted(named - rule_names)}"


# ----------------------------------------------------------------------------------------------
# Dry runs


def test_slurm_profile_dry_run(tmp_path):
    result = snakemake(
        ["-n", "--quiet", "rules", "--workflow-profile", str(SLURM_PROFILE), *DEFAULT_CONFIG],
        cwd=tmp_path,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    log = result.stdout + result.stderr
    assert f"workflow specific profile {SLURM_PROFILE}" in log
    assert job_counts(log)["train_llm"] >= 1


def test_slurm_as_general_profile_stacks_the_default_profile(tmp_path):
    """`--profile profiles/slurm` works, but profiles/default is then applied on top of it
    (the reason profiles/README.md recommends --workflow-profile on clusters)."""
    result = snakemake(
        ["-n", "--quiet", "rules", "--profile", str(SLURM_PROFILE), *DEFAULT_CONFIG], cwd=tmp_path
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
        spec = ModelSpec.from_workflow(name, entry)  # raises ConfigError on a bad entry
        if spec.quantization != "none":
            # an untrained backbone cannot be quantised, so these twins must be switched off
            assert entry.get("untrained_twin") is False, name
    assert config["models"]["deepseek_lora"]["quantization"] == "4bit"
    assert config["models"]["deepseek_head"]["finetune"] == "head"


def test_paper_grid_dry_run(tmp_path):
    # The downloaded raw folders are the DAG's only source files; empty stand-ins suffice to plan.
    for fish in (9, 10, 11, 12, 13):
        (tmp_path / "resources" / "dataverse" / f"raw_data_f{fish}").mkdir(parents=True)
    result = snakemake(
        ["-n", "--quiet", "rules", "--configfile", str(PAPER_CONFIG)],
        cwd=tmp_path,
        env={"HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    counts = job_counts(result.stdout + result.stderr)
    assert counts["train_llm"] == PAPER_LLM_MODELS * PAPER_RUNS_PER_MODEL
    assert counts["train_baseline"] == PAPER_BASELINE_MODELS * PAPER_RUNS_PER_MODEL
    assert counts["prepare_backbone"] == 3  # gpt2, bert-base-uncased, deepseek-coder
    for rule in ("ingest_fish", "compute_dff", "assemble_dataset"):
        assert counts[rule] == 5
    assert "simulate_fish" not in counts


# ----------------------------------------------------------------------------------------------
# The sbatch call the SLURM plugin builds from the profile

_STUB = """\
import json, os, sys
name = os.path.basename(sys.argv[0])
log = os.environ["SLURM_STUB_LOG"]
with open(log, "a") as handle:
    handle.write(json.dumps([name, *sys.argv[1:]]) + "\\n")
submitted = [json.loads(line) for line in open(log) if line.startswith('["sbatch"')]
if name == "sbatch":
    print(1000 + len(submitted))
elif name in ("sacct", "squeue") and "--name" in sys.argv:
    # "COMPLETED" at once (a FAILED state would also be retried, but the plugin then backs off
    # its status polling by 10 s per round)
    for number in range(1, len(submitted) + 1):
        print(f"{1000 + number}|COMPLETED")
elif name == "sacctmgr":
    print(os.environ["SLURM_STUB_ACCOUNTS"])
elif name == "scontrol":
    print("MaxArraySize = 1001")
elif name == "sinfo":
    print("PARTITION\\ncpupart*\\ngpupart")
"""


@pytest.fixture
def fake_slurm(tmp_path):
    """Recording SLURM stand-ins on PATH; returns (env, function returning the sbatch calls)."""
    bin_dir = tmp_path / "fake_slurm"
    bin_dir.mkdir()
    for name in ("sbatch", "sacct", "squeue", "scontrol", "sinfo", "sacctmgr", "scancel"):
        stub = bin_dir / name
        stub.write_text(f"#!{sys.executable}\n{_STUB}")
        stub.chmod(0o755)
    log = tmp_path / "slurm_calls.jsonl"
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SLURM_STUB_LOG": str(log),
        "SLURM_STUB_ACCOUNTS": PLACEHOLDERS["YOUR_ACCOUNT"],
    }

    def sbatch_calls() -> list[list[str]]:
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        return [call[1:] for call in calls if call[0] == "sbatch"]

    return env, sbatch_calls


def option(call: list[str], flag: str) -> str | None:
    """Value of `flag` in an argv list, given as `flag value` or `flag=value`."""
    for i, token in enumerate(call):
        if token == flag:
            return call[i + 1]
        if token.startswith(flag + "="):
            return token.split("=", 1)[1]
    return None


def test_sbatch_calls_carry_the_profile_resources(tmp_path, fake_slurm):
    env, sbatch_calls = fake_slurm
    profile_dir = tmp_path / "site_profile"
    profile_dir.mkdir()
    text = (SLURM_PROFILE / "config.yaml").read_text()
    for placeholder, value in PLACEHOLDERS.items():
        assert placeholder in text
        text = text.replace(placeholder, value)
    (profile_dir / "config.yaml").write_text(text)

    work = tmp_path / "work"
    # train_llm's inputs already exist, so only it and one simulate job are submitted.
    (work / "results" / "datasets").mkdir(parents=True)
    (work / "results" / "datasets" / "fish1.nc").write_bytes(b"")
    (work / "resources" / "backbones" / "bundled-smollm2").mkdir(parents=True)
    result = snakemake(
        [
            "--workflow-profile",
            str(profile_dir),
            *DEFAULT_CONFIG,
            "--retries",
            "1",
            "--latency-wait",
            "1",
            # poll the stand-in sacct quickly (a real cluster wants the defaults)
            "--slurm-init-seconds-before-status-checks",
            "1",
            "--seconds-between-status-checks",
            "1",
            "--slurm-status-command",
            "sacct",
            "results/raw/raw_data_f2",
            "results/train/smollm2/w10/fish1/seed0/predictions.nc",
        ],
        cwd=work,
        env=env,
        timeout=90,
    )
    log = result.stdout + result.stderr
    assert result.returncode != 0, "nothing ran, so outputs are missing and the run must fail"
    assert log.count("MissingOutputException") == 4, log[-3000:]  # 2 jobs x 2 attempts

    calls = sbatch_calls()
    by_rule: dict[str, list[list[str]]] = {}
    for call in calls:
        rule = re.match(r"rule_(\w+?)_wildcards", option(call, "--comment")).group(1)
        by_rule.setdefault(rule, []).append(call)
    assert sorted(by_rule) == ["simulate_fish", "train_llm"]
    # one submission plus one retry each (retries 1)
    assert [len(by_rule[r]) for r in ("simulate_fish", "train_llm")] == [2, 2]

    simulate = by_rule["simulate_fish"][0]
    assert option(simulate, "-p") == "cpupart"
    assert option(simulate, "-A") == "lab_acct"
    assert option(simulate, "--mem") == "8000"  # set-resources simulate_fish
    assert option(simulate, "-t") == "30"
    assert option(simulate, "--cpus-per-task") == "1"
    assert option(simulate, "--gpus") is None

    first, retry = by_rule["train_llm"]
    assert option(first, "-p") == "gpupart"
    assert option(first, "-A") == "lab_acct"
    assert option(first, "--gpus") == "1"
    assert option(first, "--cpus-per-task") == "8"  # set-threads train_llm
    assert option(first, "--mem") == "32000"
    assert option(first, "-t") == "240"
    assert "--attempt 1" in option(first, "--wrap")
    # the retry asks for twice the memory and time (expressions over `attempt`)
    assert option(retry, "--mem") == "64000"
    assert option(retry, "-t") == "480"
    assert "--attempt 2" in option(retry, "--wrap")
