"""A throw-away single-node SLURM cluster from Debian's packages, for tests/test_slurm.py.

Everything lives in one private directory: a fresh munge key and socket, slurm.conf, gres.conf,
cgroup.conf, state, spool, logs and pid files. Nothing under /etc, /run or /var is written, and the
daemons listen on free ports, so a system SLURM (if any) is left alone. The daemons are started by
hand, without systemd, in the order munged -> slurmctld -> slurmd, and stopped in reverse order by
the PIDs they wrote, never by name. Clients (sbatch, squeue, scontrol, Snakemake's plugin) find the
cluster through the environment variable SLURM_CONF (`LocalSlurmCluster.env`).

The node has the machine's real CPUs and 90 % of its real memory (`slurmd -C`), partitions `cpu`
(default) and `gpu`, and one count-only GPU `gpu:a100:1` backed by /dev/null (a GRES without
`File=` is dropped by slurmd and the node drains). No cgroups, no accounting (slurmdbd): jobs are
queried with squeue, and MinJobAge keeps finished jobs visible to squeue/scontrol for 10 minutes.

A TaskProlog appends one line per job step to `job-env.log` with the job's own view of its
placement (SLURM_JOB_PARTITION, SLURM_JOB_GPUS, CUDA_VISIBLE_DEVICES), so tests can check where a
job ran from inside the job too. Facts: /work/shared/spec/slurm.md.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SBIN = Path("/usr/sbin")
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "scontrol", "sinfo", "scancel", "munge", "unmunge", "mungekey", "runuser")
GPU_TYPE = "a100"


def _which(name: str) -> str | None:
    return shutil.which(name) or (str(SBIN / name) if (SBIN / name).exists() else None)


def unavailable_reason() -> str | None:
    """Why a local SLURM cluster cannot be started here (None if it can)."""
    if not hasattr(os, "geteuid") or os.uname().sysname != "Linux":
        return "SLURM test needs Linux"
    missing = [name for name in (*DAEMONS, *CLIENTS) if _which(name) is None]
    if missing:
        return f"SLURM/munge not installed (missing {', '.join(missing)}); run .ci/install-slurm"
    if os.geteuid() != 0:
        return "starting slurmd/munged needs root (the CI runs as root)"
    try:
        import pwd

        pwd.getpwnam("munge")
    except KeyError:
        return "no 'munge' user (the munge package creates it)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (nobody reaps daemons when PID 1 is not an init) is dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


class ClusterError(RuntimeError):
    pass


class LocalSlurmCluster:
    """Start with `start()`, stop with `stop()` (idempotent, also after a failed start)."""

    def __init__(self, root: Path | None = None):
        # Not under pytest's 0700 tmp dirs: munged runs as user munge and needs to reach its socket.
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="vaetransfer-slurm-"))
        self.root.chmod(0o755)
        self.etc = self.root / "etc"
        self.conf = self.etc / "slurm.conf"
        self.munge_dir = self.root / "munge"
        self.munge_socket = self.munge_dir / "munge.socket"
        self.log_dir = self.root / "log"
        self.job_env_log = self.root / "job-env.log"
        self.node = socket.gethostname().split(".")[0]
        self.pids: dict[str, int] = {}  # daemon -> PID, only for daemons this object started
        # Clients find the private config through SLURM_CONF. Inside a job, the Snakemake jobstep
        # plugin drops every SLURM_* variable (SLURM_CONF too) before its `srun`, which on a real
        # cluster then reads /etc/slurm/slurm.conf; here an `srun` shim first on PATH stands in.
        self.bin = self.root / "bin"
        path = f"{self.bin}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf), "PATH": path}

    # ------------------------------------------------------------------------------ configuration

    def node_hardware(self) -> dict[str, int]:
        """The node as slurmd sees it (`slurmd -C`): CPUs, sockets, cores, threads, RealMemory (MB)."""
        out = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
        fields = dict(re.findall(r"(\w+)=(\d+)", out))
        return {k: int(v) for k, v in fields.items()}

    def write_config(self) -> None:
        for d in (self.etc, self.log_dir, self.root / "state", self.root / "spool"):
            d.mkdir(parents=True, exist_ok=True)
        hw = self.node_hardware()
        sockets = hw.get("SocketsPerBoard", 1) * hw.get("Boards", 1)
        # RealMemory above what slurmd measures makes the node INVAL; 90 % leaves room for the OS.
        self.real_memory = int(hw["RealMemory"] * 0.9)
        self.cpus = hw["CPUs"]
        self.ctld_port = self.slurmd_port = _free_port()
        while self.slurmd_port == self.ctld_port:
            self.slurmd_port = _free_port()
        self.bin.mkdir(exist_ok=True)
        shim = self.bin / "srun"
        shim.write_text(f'#!/bin/sh\nSLURM_CONF={self.conf} exec {_which("srun")} "$@"\n')
        shim.chmod(0o755)
        taskprolog = self.etc / "taskprolog.sh"
        taskprolog.write_text(
            "#!/bin/sh\n"
            "# Runs before every task of every job step; its stdout could set task variables, so it\n"
            "# prints nothing and appends the job's view of its placement to job-env.log.\n"
            'echo "job=$SLURM_JOB_ID step=${SLURM_STEP_ID:-batch} partition=${SLURM_JOB_PARTITION:-}'
            ' job_gpus=${SLURM_JOB_GPUS:-} cuda_visible_devices=${CUDA_VISIBLE_DEVICES:-}"'
            f" >> {self.job_env_log}\n"
        )
        taskprolog.chmod(0o755)
        root = self.root
        self.conf.write_text(
            f"""\
# Single-node test cluster written by tests/slurm_cluster.py (see /work/shared/spec/slurm.md §6).
ClusterName=vaetransfer-test
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
# Everything runs as root in a private directory, so no slurm-owned state directories are needed.
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
MpiDefault=none
# No cgroups: process tracking via /proc, CPU binding via sched_setaffinity.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
TaskProlog={taskprolog}
# No slurmdbd: sacct does not work, so jobs are queried with squeue (profile: slurm-status-command).
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without it a job that asks for no memory gets the whole node.
DefMemPerCPU=1024
ReturnToService=2
# Finished jobs stay in squeue/scontrol this long (the plugin needs >= 3 x its first-poll delay).
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=60
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmdSpoolDir={root}/spool
StateSaveLocation={root}/state
SlurmctldLogFile={self.log_dir}/slurmctld.log
SlurmdLogFile={self.log_dir}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
GresTypes=gpu
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={hw['CPUs']} Sockets={sockets} CoresPerSocket={hw['CoresPerSocket']} ThreadsPerCore={hw['ThreadsPerCore']} RealMemory={self.real_memory} Gres=gpu:{GPU_TYPE}:1 State=UNKNOWN
PartitionName=cpu Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={self.node} MaxTime=INFINITE State=UP
"""
        )
        # A count-only GPU: File= must name a character device or slurmd drops the GRES.
        (self.etc / "gres.conf").write_text(
            f"AutoDetect=off\nNodeName={self.node} Name=gpu Type={GPU_TYPE} File=/dev/null\n"
        )
        # Read only by cgroup plugins, which this cluster does not load; explicit "no" everywhere.
        (self.etc / "cgroup.conf").write_text(
            "CgroupAutomount=no\nConstrainCores=no\nConstrainRAMSpace=no\nConstrainDevices=no\n"
        )

    # ------------------------------------------------------------------------------------- start

    def start(self, timeout: float = 60) -> "LocalSlurmCluster":
        reason = unavailable_reason()
        if reason:
            raise ClusterError(reason)
        # Also stop the daemons if the caller never gets to stop() (stop() is idempotent).
        atexit.register(self.stop)
        try:
            self.write_config()
            self._start_munged()
            self._start_daemon("slurmctld", [_which("slurmctld"), "-c", "-f", str(self.conf)])
            self._wait(lambda: self.run("scontrol", "ping", check=False).returncode == 0, timeout, "slurmctld to answer")
            self._start_daemon("slurmd", [_which("slurmd"), "-f", str(self.conf), "-N", self.node])
            self._wait(self._node_idle, timeout, f"node {self.node} to become idle")
        except BaseException:
            self.stop()
            raise
        return self

    def _start_munged(self) -> None:
        self.munge_dir.mkdir(mode=0o755, exist_ok=True)
        shutil.chown(self.munge_dir, "munge", "munge")
        key = self.munge_dir / "munge.key"
        # A fresh key owned by munge, mode 0600 (munged refuses keys others can read).
        self._check([_which("runuser"), "-u", "munge", "--", _which("mungekey"), "--create", f"--keyfile={key}"])
        pidfile = self.munge_dir / "munged.pid"
        self._check([
            _which("runuser"), "-u", "munge", "--", _which("munged"),
            f"--socket={self.munge_socket}", f"--key-file={key}", f"--pid-file={pidfile}",
            f"--log-file={self.munge_dir / 'munged.log'}", f"--seed-file={self.munge_dir / 'munged.seed'}",
        ])
        self._record_pid("munged", pidfile, str(self.munge_socket))
        probe = subprocess.run(
            f"{_which('munge')} -n -S {self.munge_socket} | {_which('unmunge')} -S {self.munge_socket}",
            shell=True, capture_output=True, text=True,
        )
        if "Success" not in probe.stdout:
            raise ClusterError(f"munge round trip failed: {probe.stdout}{probe.stderr}")

    def _start_daemon(self, name: str, argv: list[str]) -> None:
        # Both daemonize; they write their pid file once they run.
        self._check(argv)
        self._record_pid(name, self.root / f"{name}.pid", str(self.conf))

    def _record_pid(self, name: str, pidfile: Path, marker: str, timeout: float = 20) -> None:
        """Remember the daemon's PID, after checking that it is ours (its command line names our
        private socket or config), so that stop() can never signal anyone else's process."""
        def ready():
            try:
                pid = int(pidfile.read_text().strip())
            except (OSError, ValueError):
                return False
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                return False
            if marker in cmdline and _alive(pid):
                self.pids[name] = pid
                return True
            return False

        self._wait(ready, timeout, f"{name} to write {pidfile}")

    def _node_idle(self) -> bool:
        out = self.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.split()
        if out and all(state == "idle" for state in out):
            return True
        if any(s.startswith(("drain", "inval", "down")) for s in out):
            self.run("scontrol", "update", f"nodename={self.node}", "state=resume", check=False)
        return False

    # ------------------------------------------------------------------------------------- stop

    def stop(self, grace: float = 15) -> None:
        """Cancel our jobs, then stop slurmd, slurmctld, munged by PID (SIGTERM, then SIGKILL)."""
        if "slurmctld" in self.pids and _alive(self.pids["slurmctld"]):
            self.run("scancel", "--full", "--user", "root", check=False, timeout=20)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                running = self.run("squeue", "-h", "-t", "RUNNING,COMPLETING,PENDING", "-o", "%i", check=False, timeout=20)
                if running.returncode != 0 or not running.stdout.strip():
                    break
                time.sleep(1)
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.pop(name, None)
            if pid is None:
                continue
            self._terminate(pid, grace)

    def _terminate(self, pid: int, grace: float) -> None:
        if not _alive(pid):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            while _alive(pid):
                time.sleep(0.1)

    def remove(self) -> None:
        """Delete the private directory (after stop())."""
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------------------------------ helpers

    def run(self, cmd: str, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """A SLURM client command against this cluster."""
        proc = subprocess.run([_which(cmd), *args], capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise ClusterError(f"{cmd} {' '.join(args)} failed: {proc.stderr}")
        return proc

    def jobs(self) -> list[dict[str, str]]:
        """SLURM's record of every job it still remembers (`scontrol -d show job`, one dict per job)."""
        out = self.run("scontrol", "--details", "--oneliner", "show", "job").stdout
        records = []
        for line in out.splitlines():
            if not line.startswith("JobId="):
                continue
            # Values never contain " Key=" sequences except Comment; split on " Key=" boundaries.
            fields = dict(re.findall(r"(?:^|\s)([A-Za-z_/:]+)=(.*?)(?=\s+[A-Za-z_/:]+=|\s*$)", line))
            records.append(fields)
        return records

    def job_env(self) -> dict[str, list[dict[str, str]]]:
        """TaskProlog lines by job id: each job step's own environment."""
        steps: dict[str, list[dict[str, str]]] = {}
        if self.job_env_log.exists():
            for line in self.job_env_log.read_text().splitlines():
                fields = dict(item.split("=", 1) for item in line.split())
                steps.setdefault(fields["job"], []).append(fields)
        return steps

    def logs(self, tail: int = 30) -> str:
        """The last lines of the daemon logs (for failure messages)."""
        parts = []
        for path in sorted(self.log_dir.glob("*.log")) + [self.munge_dir / "munged.log"]:
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()[-tail:]
                parts.append(f"== {path.name}\n" + "\n".join(lines))
        return "\n".join(parts)

    def _check(self, argv: list[str]) -> None:
        proc = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=60)
        if proc.returncode != 0:
            raise ClusterError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr}{proc.stdout}\n{self.logs()}")

    def _wait(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            dead = [name for name, pid in self.pids.items() if not _alive(pid)]
            if dead:
                raise ClusterError(f"{', '.join(dead)} died while waiting for {what}\n{self.logs()}")
            time.sleep(0.5)
        raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}")
