"""Running the real Snakemake workflow from end-to-end tests (imported by test_workflow*.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]


def snakemake(
    workdir: Path, *args: str, timeout: int = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run Snakemake on this repository's workflow with `workdir` as its working directory.

    A run still going after `timeout` seconds is killed (subprocess.TimeoutExpired).
    """
    env = dict(env or os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [*SNAKEMAKE, "--directory", str(workdir), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


# The tiny workflow most end-to-end tests assert on (tests/conftest.py runs it once).
FISH = [1, 2, 3]
MODELS = ["tinyllama", "tinyllama_untrained", "tinybert", "gru", "ridge", "mean"]


def tiny_config(workdir: Path) -> dict:
    return {
        "seed": 3,
        "fish": FISH,
        "simulation": {"n_neurons": 90, "n_planes": 2, "n_frames": 220},
        "decoding": {"windows": [5], "seeds": [0]},
        "training": {"epochs": 2, "batch_size": 16, "learning_rate": 0.001},
        "models": {
            "tinyllama": {
                "kind": "llm",
                "source": str(workdir / "backbones" / "tiny_llama"),
                "finetune": "lora",
                "lora_r": 4,
            },
            "tinybert": {
                "kind": "llm",
                "source": str(workdir / "backbones" / "tiny_bert"),
                "finetune": "head",
                "untrained_twin": False,
            },
            "gru": {"kind": "gru", "hidden_size": 16},
            "ridge": {"kind": "ridge"},
            "mean": {"kind": "mean"},
        },
        "evaluation": {"n_bootstrap": 200},
        "saliency": {
            "n_steps": 4,
            "top_k": 10,
            "n_permutations": 100,
            "deletion_ks": [2, 5],
            "deletion_random_repeats": 3,
        },
    }


def prepare_tiny_workdir(workdir: Path) -> Path:
    """Tiny random-weight Llama and BERT backbones and the tiny config in `workdir`."""
    from nlp4neuro.models import make_tiny_backbone

    make_tiny_backbone(workdir / "backbones" / "tiny_llama", "llama")
    make_tiny_backbone(workdir / "backbones" / "tiny_bert", "bert")
    (workdir / "config.yaml").write_text(yaml.safe_dump(tiny_config(workdir)))
    return workdir / "config.yaml"
