"""Session-wide fixtures: the tiny workflow run and a real single-node SLURM cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
from _workflow import prepare_tiny_workdir, snakemake
from fixtures_dataverse import serve  # noqa: F401  (the loopback Dataverse fixture)
from slurm_cluster import Cluster, single_node_cluster


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """Run the whole workflow once on the tiny configuration; return its working directory."""
    workdir = tmp_path_factory.mktemp("workflow")
    config = prepare_tiny_workdir(workdir)
    result = snakemake(workdir, "--cores", "2", "--configfile", str(config))
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


@pytest.fixture(scope="session")
def slurm(tmp_path_factory) -> Cluster:
    """A real SLURM on 127.0.0.1 (installed when missing), stopped after the session."""
    with single_node_cluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster
