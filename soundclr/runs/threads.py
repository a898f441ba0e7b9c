"""Threads that fit the machine: a per-host registry of training processes.

Each process that trains registers here; it takes ``max(1, cores // live workers)`` threads,
looked at again when it leases a run and after each epoch (never per step). Two processes that
each took a thread per core ran 9x slower than two single-thread workers. ``OMP_NUM_THREADS`` set
by the user (or ``SLURM_CPUS_PER_TASK``) wins. Threads are an execution setting: they never enter
a run's identity, but float sums depend on them, so ``--workers`` and ``reproduce`` fix each
worker's count for its life.
"""
from __future__ import annotations

import atexit
import glob
import json
import math
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

import torch

from ..files import atomic_write_json

# -- threads: each process takes its share of the machine ---------------------------------------
# A torch process starts one thread per core; two such processes on one machine fight over the
# cores (two `soundclr train` in two terminals ran 9 times slower than the same runs in one
# `--workers 2`). So a process that trains registers itself in a small per-host registry (one file
# per process, <host>-<pid>.json, in a folder under the system's temporary folder, or
# $SOUNDCLR_REGISTRY): `soundclr train` for its whole life, any process while it holds a run's lease.
# It takes max(1, cores // live workers on this host) threads, looked at again when it leases a run
# and after each epoch (never per step). The entry of a process that is gone (killed, so it could
# not remove its file) is ignored and removed. OMP_NUM_THREADS, set by the user (or
# SLURM_CPUS_PER_TASK, set by SLURM for the task's own cores) wins. Threads are an execution
# setting: they never enter a run's configuration or identity; but float sums depend on them, so a
# run whose thread count changed is not bit-for-bit the run of a fixed count (fix OMP_NUM_THREADS
# for that: `--workers` and `reproduce` fix each worker's count for its life).
REGISTRY_ENV = "SOUNDCLR_REGISTRY"


_registration = {"count": 0, "path": None, "atexit": False}


_registry_lock = threading.Lock()


def registry_dir() -> Path:
    """The folder of the per-host registry of training processes ($SOUNDCLR_REGISTRY, or
    ``soundclr-workers`` in the system's temporary folder, shared by the host's users)."""
    return Path(os.environ.get(REGISTRY_ENV) or Path(tempfile.gettempdir()) / "soundclr-workers")


def machine_cores() -> int:
    """The CPU cores this process may use: its CPU affinity (taskset, cpusets), capped by a cgroup
    CPU quota (a container started with --cpus)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def _positive_int(text: str | None) -> int | None:
    try:
        n = int(str(text).split(",")[0])       # OMP_NUM_THREADS may list nested levels: "4,2"
    except ValueError:
        return None
    return n if n > 0 else None


def threads_from_environment() -> int | None:
    """OMP_NUM_THREADS, else SLURM_CPUS_PER_TASK, when set to a positive number: these win."""
    return _positive_int(os.environ.get("OMP_NUM_THREADS")) or _positive_int(os.environ.get("SLURM_CPUS_PER_TASK"))


def start_time(pid: int) -> str | None:
    """A process's start time (field 22 of /proc/<pid>/stat), to tell it from a later process that
    reuses its pid; None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _entry(pid: int) -> Path:
    return registry_dir() / f"{socket.gethostname()}-{pid}.json"


def register() -> None:
    """Count this process as a training worker of this host until :func:`unregister` (calls nest)
    or its exit. A registry that cannot be written is no error: this process still sizes its own
    threads, it is only invisible to the others."""
    with _registry_lock:
        _registration["count"] += 1
        if _registration["count"] > 1:
            return
        path = _entry(os.getpid())
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.chmod(path.parent, 0o1777)     # every user of the host registers here (sticky, like /tmp)
            except OSError:
                pass
            atomic_write_json(path, {"pid": os.getpid(), "host": socket.gethostname(), "start": start_time(os.getpid()),
                                     "time": time.time()})
            _registration["path"] = path
        except OSError:
            _registration["path"] = None
        if not _registration["atexit"]:
            atexit.register(_unregister_all)
            _registration["atexit"] = True


def unregister() -> None:
    """Undo one :func:`register`; the last one removes this process's entry."""
    with _registry_lock:
        if _registration["count"] == 0:
            return
        _registration["count"] -= 1
        if _registration["count"] == 0:
            _remove_entry()


def _remove_entry() -> None:
    path, _registration["path"] = _registration["path"], None
    if path is not None:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


def _unregister_all() -> None:
    with _registry_lock:
        _registration["count"] = 0
        _remove_entry()


def process_alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` of this host is alive and, where its recorded start time ``start`` is
    given (:func:`start_time`), is still the process that recorded it (pids are reused)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass                                   # another user's process: alive
    except OSError:
        return False
    now = start_time(pid)
    return start is None or now is None or str(start) == now


def _alive(pid: int, path: Path) -> bool:
    try:
        recorded = json.loads(path.read_text()).get("start")
    except (OSError, ValueError, AttributeError):
        recorded = None                        # unreadable entry: count a live pid
    return process_alive(pid, recorded)


def other_workers() -> int:
    """Live training processes registered on this host, not counting this one. Entries of processes
    that are gone are removed."""
    host = socket.gethostname()
    try:
        entries = list(registry_dir().glob(f"{glob.escape(host)}-*.json"))
    except OSError:
        return 0
    n = 0
    for path in entries:
        try:
            pid = int(path.stem[len(host) + 1:])
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        if _alive(pid, path):
            n += 1
        else:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass                           # another user's stale entry in a sticky folder: only ignored
    return n


def thread_share() -> int:
    """The threads this process should use: OMP_NUM_THREADS (or SLURM_CPUS_PER_TASK) when set, else
    max(1, cores // (this process + the other live workers of this host))."""
    return threads_from_environment() or max(1, machine_cores() // (1 + other_workers()))


def worker_threads(workers: int) -> int:
    """Threads for each of ``workers`` new processes started together on this host: OMP_NUM_THREADS
    when set, else this machine's (or SLURM task's) cores shared among them and the live workers
    already registered."""
    omp = _positive_int(os.environ.get("OMP_NUM_THREADS"))
    if omp:
        return omp
    slurm = _positive_int(os.environ.get("SLURM_CPUS_PER_TASK"))
    if slurm:
        return max(1, slurm // max(1, workers))
    return max(1, machine_cores() // (max(1, workers) + other_workers()))


def fit_threads() -> int:
    """Size torch's intra-op thread pool to :func:`thread_share` (cheap: call it once per run and
    per epoch, never per step); returns the number of threads. (Inter-op threads are left alone:
    nothing here runs inter-op parallel work, and torch allows setting them only once.)"""
    n = thread_share()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def thread_env(threads: int) -> dict[str, str]:
    """The environment of a child process that takes ``threads`` threads for its life (``OMP_NUM_THREADS``
    and ``MKL_NUM_THREADS`` on top of this process's environment)."""
    return dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
