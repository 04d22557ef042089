"""A real single-node SLURM on 127.0.0.1 for the tests (shared/reference/slurm-localhost.md).

`single_node_cluster(folder)` installs Debian's slurm-wlm and munge when they are missing, writes
a private slurm.conf with a `cpu` partition and a `gpu` partition (two fake GPUs as gres), starts
munged (unless one already runs), slurmctld and slurmd, waits until the node is idle, and on exit
stops every daemon it started, by the PID in its pid file. Clients and jobs find the cluster
through `SLURM_CONF` in the environment it returns.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged")
MUNGE_PID = Path("/run/munge/munged.pid")
SYSTEM_CONF_DIR = Path("/etc/slurm")
# What the test node offers: the machine's 2 cores, 20 GB and two fake GPUs.
NODE_HARDWARE = "CPUs=2 Sockets=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=20000 Gres=gpu:2"


SLURM_PROFILE = Path(__file__).resolve().parents[1] / "profiles" / "slurm"
# Polling options for this tiny cluster: without slurmdbd, sacct cannot answer (the plugin
# would then wait forever), and the default first status check comes after 40 s.
FAST_POLLING = {
    "slurm-status-command": "squeue",
    "slurm-init-seconds-before-status-checks": 1,
    "seconds-between-status-checks": 2,
    "latency-wait": 5,
}
PARTITIONS = {"YOUR_PARTITION": "cpu", "YOUR_GPU_PARTITION": "gpu"}


def _scale(value: object, limit: int) -> object:
    """A profile resource scaled to the test node: `32000 * attempt` -> `limit * attempt`."""
    if isinstance(value, str) and "attempt" in value:
        return f"{limit} * attempt"
    return min(int(value), limit) if isinstance(value, int) else value


def site_profile(dest: Path) -> Path:
    """profiles/slurm filled in for the test node: partitions named, no account, sizes scaled."""
    shutil.copytree(SLURM_PROFILE, dest)
    partitions = (dest / "partitions.yaml").read_text()
    for placeholder, name in PARTITIONS.items():
        partitions = partitions.replace(placeholder, name)
    (dest / "partitions.yaml").write_text(partitions)
    profile = yaml.safe_load((dest / "config.yaml").read_text())
    assert profile["default-resources"].pop("slurm_account") == "YOUR_ACCOUNT"
    profile["slurm-partition-config"] = str(dest / "partitions.yaml")
    profile["set-threads"] = {rule: 1 for rule in profile["set-threads"]}
    for resources in profile["set-resources"].values():
        resources["mem_mb"] = _scale(resources["mem_mb"], 1500)
    profile["default-resources"]["mem_mb"] = 1500
    profile.update(FAST_POLLING)
    (dest / "config.yaml").write_text(yaml.safe_dump(profile))
    return dest


@dataclass(frozen=True)
class Cluster:
    conf: Path
    env: dict[str, str]
    node: str


def install_if_missing() -> None:
    """apt-get install slurm-wlm and munge unless their daemons are already there."""
    if all(Path(daemon).exists() for daemon in DAEMONS):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
        check=True,
        env=env,
        timeout=900,
    )


def slurm_conf(folder: Path, node: str) -> str:
    """slurm.conf of one node with 2 CPUs, 2 fake GPUs, a cpu and a gpu partition."""
    return f"""ClusterName=nlp4neuro-test
SlurmctldHost={node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=100
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
MinJobAge=600
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName={node} NodeAddr=127.0.0.1 {NODE_HARDWARE} State=UNKNOWN
PartitionName=cpu Nodes={node} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={node} Default=NO MaxTime=INFINITE State=UP
"""


def _gres_conf(node: str) -> str:
    # File= must name existing character devices; any will do for fake GPUs.
    return f"NodeName={node} Name=gpu File=/dev/null\nNodeName={node} Name=gpu File=/dev/zero\n"


def _stop(pid_file: Path) -> None:
    """SIGTERM the daemon whose PID is in `pid_file`, and wait until it is gone."""
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().split()[0])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _munged_running() -> bool:
    if not MUNGE_PID.exists():
        return False
    try:
        os.kill(int(MUNGE_PID.read_text().split()[0]), 0)
    except (ProcessLookupError, ValueError):
        return False
    return True


def _wait_idle(env: dict[str, str], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    state = ""
    while time.monotonic() < deadline:
        result = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, env=env
        )
        state = result.stdout.strip()
        if state.startswith("idle"):
            return
        time.sleep(0.5)
    raise RuntimeError(f"SLURM node not idle after {timeout_s} s (state {state!r})")


@contextlib.contextmanager
def _system_config(files: dict[str, str]) -> Iterator[Path]:
    """Write `files` into /etc/slurm for the session; put back what was there before.

    Jobs must find the configuration at SLURM's default place: the Snakemake job step clears
    every SLURM_* variable (SLURM_CONF too) before its nested srun.
    """
    saved = {}
    for name, text in files.items():
        path = SYSTEM_CONF_DIR / name
        saved[path] = path.read_bytes() if path.exists() else None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    try:
        yield SYSTEM_CONF_DIR / "slurm.conf"
    finally:
        for path, content in saved.items():
            if content is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(content)


@contextlib.contextmanager
def single_node_cluster(folder: Path) -> Iterator[Cluster]:
    """Start a single-node SLURM with its state in `folder`; stop what was started on exit."""
    install_if_missing()
    node = socket.gethostname().split(".")[0]
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool"):
        shutil.rmtree(folder / sub, ignore_errors=True)
        (folder / sub).mkdir()
    files = {"slurm.conf": slurm_conf(folder, node), "gres.conf": _gres_conf(node)}
    with _system_config(files) as conf:
        yield from _run_daemons(folder, conf, node)


def _run_daemons(folder: Path, conf: Path, node: str) -> Iterator[Cluster]:
    env = dict(os.environ, SLURM_CONF=str(conf))
    started: list[Path] = []
    try:
        if not _munged_running():
            Path("/run/munge").mkdir(parents=True, exist_ok=True)
            shutil.chown("/run/munge", "munge", "munge")
            subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
            started.append(MUNGE_PID)
        for daemon, pid in (("slurmctld", "slurmctld.pid"), ("slurmd", "slurmd.pid")):
            subprocess.run([f"/usr/sbin/{daemon}", "-f", str(conf)], check=True, env=env)
            started.insert(0, folder / pid)
        _wait_idle(env)
        yield Cluster(conf=conf, env=env, node=node)
    finally:
        for pid_file in started:  # slurmd, slurmctld, then munged last
            _stop(pid_file)
