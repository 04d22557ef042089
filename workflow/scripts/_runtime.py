"""What every workflow script does first: make the package importable and log to the rule's log.

Snakemake puts a local script's folder on `sys.path`, so scripts import this module by name,
before any `nlp4neuro` import: importing it puts the repository's `src/` on the import path (in a
per-rule conda environment the package is not installed).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from pathlib import Path

_SRC = Path(__file__).resolve().parents[2] / "src"
if str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))
# Progress bars of model loading would fill the rule logs with carriage returns.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


# What a cluster scheduler gave the job: logged so that every job's log says where it ran.
SCHEDULER_VARIABLES = (
    "SLURM_JOB_ID",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_JOB_PARTITION",
    "SLURM_CPUS_PER_TASK",
    "SLURM_JOB_GPUS",
    "CUDA_VISIBLE_DEVICES",
)


def start(snakemake) -> logging.Logger:
    """Route logging (and uncaught errors) to the rule's log file; return the script's logger."""
    log_files = list(snakemake.log)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_files:
        Path(log_files[0]).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_files[0], mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logger = logging.getLogger(f"nlp4neuro.rule.{snakemake.rule}")

    def log_uncaught(exc_type, exc, tb):
        logger.error("rule %s failed", snakemake.rule, exc_info=(exc_type, exc, tb))

    sys.excepthook = log_uncaught
    logger.info("rule %s, wildcards %s", snakemake.rule, dict(snakemake.wildcards))
    allocation = {name: os.environ[name] for name in SCHEDULER_VARIABLES if name in os.environ}
    if allocation:
        logger.info("scheduler allocation: %s", " ".join(f"{k}={v}" for k, v in allocation.items()))
    atexit.register(_log_loaded_modules, logger)
    return logger


def _log_loaded_modules(logger: logging.Logger) -> None:
    """Name every package module the job loaded: the tests check the rules' code digests with it."""
    names = sorted(name for name in sys.modules if name.split(".")[0] == "nlp4neuro")
    logger.info("package modules loaded: %s", " ".join(names))
