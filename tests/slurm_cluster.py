"""A real single-node Slurm for the tests: munged, slurmctld and slurmd on this machine, configured in a temp folder.

Debian's ``slurm-wlm`` and ``munge`` (``.ci/run`` installs them). What the daemons write (state,
logs, pid files, the munge key) stays in the folder, and their sockets and slurmd's spool in a short
folder under /tmp (a Unix socket path holds 108 bytes), removed after; the daemons bind
127.0.0.1 on free ports and are stopped, by their own pids, when the cluster closes. Linux
process tracking and no task plugin: no cgroups are needed.

Use :func:`slurm_cluster` (a context manager) or the ``slurm`` fixture: it skips where Slurm is
not installed, and fails instead when ``CI`` is set (there it must run).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

NODE = "cainode"
PARTITION = "cai"
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")


class SlurmUnavailable(RuntimeError):
    """Slurm is not installed here, or its daemons did not start."""


@dataclass
class Slurm:
    """A running test cluster: its config file and the environment its commands need."""

    folder: Path
    conf: Path
    env: dict
    cpus: int

    def run(self, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        """A Slurm command (``sbatch``, ``squeue`` …) against this cluster."""
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, check=check, timeout=60, **kwargs)

    def sbatch(self, *args: str, cwd: str | os.PathLike | None = None) -> str:
        """Submit; returns the job id."""
        return self.run("sbatch", "--parsable", *args, cwd=cwd).stdout.strip().split(";")[0]

    def states(self, job: str) -> dict[str, str]:
        """``{job or array task id: state}`` of ``job`` from squeue (running and pending only)."""
        out = self.run("squeue", "-h", "-r", "-j", job, "-o", "%i %T", check=False).stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    def wait(self, job: str, timeout: float = 300) -> None:
        """Until ``job`` (every array task) has left the queue."""
        deadline = time.monotonic() + timeout
        while self.states(job):
            if time.monotonic() > deadline:
                raise TimeoutError(f"Slurm job {job} still queued after {timeout} s: {self.states(job)}")
            time.sleep(0.5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(folder: Path, short: Path, cpus: int) -> str:
    host = socket.gethostname()
    return f"""ClusterName=caitest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={short}/munge.socket
StateSaveLocation={folder}/state
SlurmdSpoolDir={short}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
SlurmdTimeout=30
KillWait=2
MinJobAge=300
NodeName={NODE} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=2048 State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
"""


def _start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-1500:] if path.exists() else "(no log)"


@contextlib.contextmanager
def slurm_cluster(folder: Path, cpus: int | None = None, start_timeout: float = 60) -> Iterator[Slurm]:
    """munged + slurmctld + slurmd under ``folder``; yields once the node is idle; stops them all after."""
    missing = [d for d in DAEMONS if shutil.which(d) is None and not Path("/usr/sbin", d).exists()]
    if missing:
        raise SlurmUnavailable(f"not installed: {', '.join(missing)} (apt-get install slurm-wlm munge)")
    if os.geteuid() != 0:
        raise SlurmUnavailable("the test cluster runs its daemons as root")
    cpus = cpus or os.cpu_count() or 1
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ("munge", "state"):
        (folder / sub).mkdir(mode=0o700, exist_ok=True)
    # Unix socket paths hold 108 bytes: slurmd's step sockets and munge's socket go to a short folder of their own
    short = Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp"))
    (short / "spool").mkdir()
    key = folder / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = folder / "slurm.conf"
    conf.write_text(_config(folder, short, cpus))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    for name in [k for k in env if k.startswith("SLURM_") and k != "SLURM_CONF"]:
        env.pop(name)  # an outer job's variables must not leak into the test's jobs
    sbin = "/usr/sbin"
    procs: list[subprocess.Popen] = []
    try:
        procs.append(_start([f"{sbin}/munged", "--foreground", "--force", f"--key-file={key}", f"--socket={short}/munge.socket",
                             f"--pid-file={folder}/munge/munged.pid", f"--log-file={folder}/munge/munged.log",
                             f"--seed-file={folder}/munge/munged.seed"], env, folder / "munged.out"))
        _wait_for(lambda: (short / "munge.socket").exists(), 20, "munged", folder / "munged.out", procs)
        procs.append(_start([f"{sbin}/slurmctld", "-D", "-i", "-f", str(conf)], env, folder / "slurmctld.out"))
        procs.append(_start([f"{sbin}/slurmd", "-D", "-N", NODE, "-f", str(conf)], env, folder / "slurmd.out"))

        def idle() -> bool:
            out = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], env=env, capture_output=True, text=True, timeout=20).stdout
            return out.strip() in ("idle", "mix", "alloc")

        _wait_for(idle, start_timeout, "the Slurm node", folder / "slurmctld.log", procs)
        yield Slurm(folder, conf, env, cpus)
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(["scancel", "-u", "root"], env=env, capture_output=True, timeout=20)
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
        for proc in reversed(procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
        shutil.rmtree(short, ignore_errors=True)


def _wait_for(ready, timeout: float, what: str, log: Path, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        dead = [p.args[0] for p in procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            raise SlurmUnavailable(f"{what} did not start ({'exited: ' + ', '.join(dead) if dead else f'{timeout} s'}); "
                                   f"log {log}:\n{_tail(log)}")
        time.sleep(0.3)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory) -> Iterator[Slurm]:
    """The test cluster; skipped where Slurm is missing, a failure in CI (``CI`` set), where it must run."""
    try:
        with slurm_cluster(tmp_path_factory.mktemp("slurm")) as cluster:
            yield cluster
    except SlurmUnavailable as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI: Slurm must run for the slurm tests: {exc}")
        pytest.skip(f"no Slurm here: {exc}")
