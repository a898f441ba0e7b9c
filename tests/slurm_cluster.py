"""A real single-node SLURM for the tests: MUNGE, slurmctld and slurmd on this machine.

    with SingleNodeSlurm(tmp_path) as cluster:
        subprocess.run(["sbatch", script], env=cluster.env)

Needs Debian's ``slurm-wlm`` and ``munge`` packages (``tests/setup_slurm.py`` installs
them) and root (the daemons run as root; MUNGE as its own user). The configuration, state,
spool, logs and pid files live in a temporary folder; ``SLURM_CONF`` in ``cluster.env``
points the client commands at it. Every daemon this class starts is stopped by its pid
file when the ``with`` block ends (never by name: a developer's own daemons are left alone).
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MUNGE_RUN = Path("/run/munge")
MUNGE_PID = MUNGE_RUN / "munged.pid"
MUNGE_KEY = Path("/etc/munge/munge.key")


def why_not_available() -> str | None:
    """None when a single-node SLURM can be started here, else the reason in words."""
    missing = [c for c in ("slurmctld", "slurmd", "sbatch", "squeue", "munged") if not shutil.which(c)
               and not Path(f"/usr/sbin/{c}").exists()]
    if missing:
        return f"{', '.join(missing)} not installed: `python tests/setup_slurm.py` (as root) installs Debian's slurm-wlm and munge"
    if os.geteuid() != 0:
        return "the SLURM daemons of this test run as root: run the test as root (CI does)"
    return None


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class SingleNodeSlurm:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.folder / "slurm.conf"
        self.started: list[Path] = []       # pid files of the daemons this object started
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    # -- MUNGE ---------------------------------------------------------------------------------
    def _start_munge(self) -> None:
        if _alive(_pid(MUNGE_PID)):
            return                                          # a MUNGE daemon already runs: use it, leave it
        munge = pwd.getpwnam("munge")
        if not MUNGE_KEY.exists():
            MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
            MUNGE_KEY.write_bytes(os.urandom(1024))
        os.chown(MUNGE_KEY, munge.pw_uid, munge.pw_gid)
        os.chmod(MUNGE_KEY, 0o400)
        for d in (MUNGE_RUN, Path("/var/log/munge"), Path("/var/lib/munge")):
            d.mkdir(parents=True, exist_ok=True)
            os.chown(d, munge.pw_uid, munge.pw_gid)
            os.chmod(d, 0o755 if d == MUNGE_RUN else 0o700)
        subprocess.run(["su", "-s", "/bin/sh", "munge", "-c", "/usr/sbin/munged"], check=True, timeout=30)
        self._wait(lambda: _alive(_pid(MUNGE_PID)), "munged did not start (see /var/log/munge/munged.log)")
        self.started.append(MUNGE_PID)

    # -- SLURM ---------------------------------------------------------------------------------
    def _write_conf(self) -> None:
        for sub in ("state", "spool", "log"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        cpus = os.cpu_count() or 1
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
        f = self.folder
        self.conf.write_text("\n".join([
            "ClusterName=soundclr-test", f"SlurmctldHost={self.host}", "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", f"StateSaveLocation={f / 'state'}", f"SlurmdSpoolDir={f / 'spool'}",
            f"SlurmctldPidFile={f / 'slurmctld.pid'}", f"SlurmdPidFile={f / 'slurmd.pid'}",
            f"SlurmctldLogFile={f / 'log' / 'slurmctld.log'}", f"SlurmdLogFile={f / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "ReturnToService=2", "MpiDefault=none",
            "SlurmctldPort=6917", "SlurmdPort=6918",   # not the defaults: no clash with a real installation
            f"NodeName={self.host} CPUs={cpus} RealMemory={mem} State=UNKNOWN",
            f"PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP", ""]))

    def start(self) -> "SingleNodeSlurm":
        self._start_munge()
        self._write_conf()
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([f"/usr/sbin/{daemon}", "-f", str(self.conf)], check=True, env=self.env, timeout=60)
            self.started.append(self.folder / f"{daemon}.pid")
        self._wait(self._idle, f"the node did not come up idle: see {self.folder / 'log'}", timeout=60)
        return self

    def _idle(self) -> bool:
        r = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
        return r.returncode == 0 and r.stdout.strip().startswith("idle")

    @staticmethod
    def _wait(ready, message: str, timeout: float = 30.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(message)

    def stop(self) -> None:
        for pid_file in reversed(self.started):
            pid = _pid(pid_file)
            if _alive(pid):
                os.kill(pid, signal.SIGTERM)
                deadline = time.time() + 15
                while _alive(pid) and time.time() < deadline:
                    time.sleep(0.1)
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
        self.started.clear()

    def wait_for_job(self, job_id: str, timeout: float = 600.0) -> None:
        """Until no task of the job is pending or running."""
        def done():
            r = subprocess.run(["squeue", "-h", "-j", job_id], env=self.env, capture_output=True, text=True)
            return r.returncode == 0 and not r.stdout.strip()
        self._wait(done, f"job {job_id} did not finish within {timeout:.0f} s", timeout)

    def __enter__(self) -> "SingleNodeSlurm":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
