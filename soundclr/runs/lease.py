"""Run leases: any number of workers on one grid and one shared results folder, each run trained once.

A worker leases a run before training it, by creating ``lease.json`` in the run's folder with
``O_CREAT | O_EXCL`` (atomic on a local disk and on NFS v3 and later): the file names the host, the
process, the SLURM job when there is one, the time, and a random token. The worker refreshes the
lease's heartbeat after every epoch (with the epoch and its duration, for ``soundclr status``) and
from a background thread every ``heartbeat_seconds``, so a long epoch does not look dead. Other
workers skip a run whose lease is fresh and take over one whose heartbeat is older than
``stale_seconds`` (the setting ``lease_stale_seconds``, well above the checkpoint interval), or at
once one whose holder ran on this very host and is gone (killed, out of memory: its pid no longer
exists, or now belongs to a process started at another time, :func:`holder_gone`): the
taker renames the stale lease aside (of several workers trying at once, one rename succeeds),
creates its own, and the run resumes from its last checkpoint. A worker whose lease was taken over
notices at its next heartbeat and leaves the run to the taker.

A run that raises an error gets ``failed.json`` (the error's last line and traceback) and its lease
is released; other workers skip it until it is retried (``retry_failed``). A worker stopped by
SIGTERM or Ctrl-C releases its lease, so the next worker resumes the run at once. A SLURM task that
is requeued finds its own old lease (same job and array task) and takes it back without waiting.
(Leases are the workers' locks on runs; the paper's *claims* are :mod:`soundclr.analysis.claims`.)
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..files import atomic_write_json
from .threads import fit_threads, process_alive, register, start_time, unregister

LEASE = "lease.json"


FAILED = "failed.json"


DEFAULT_STALE_SECONDS = 900.0


class LeaseLost(RuntimeError):
    """Another worker took over this worker's run (its heartbeat had gone stale)."""


def _slurm_task() -> str | None:
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{job}_{task}" if task is not None else job


def read_lease(run_dir: Path) -> dict | None:
    """The lease of a run folder, or None. A lease being written (empty or partial) reads as
    fresh, with the file's modification time as its heartbeat."""
    path = Path(run_dir) / LEASE
    try:
        text = path.read_text()
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        lease = json.loads(text)
        if not isinstance(lease, dict) or "heartbeat" not in lease:
            raise ValueError
        return lease
    except ValueError:
        return {"heartbeat": mtime, "host": "?", "pid": None, "token": None, "partial": True}


def holder_gone(lease: dict) -> bool:
    """Whether the lease's holder ran on this host and its process no longer exists (or its pid now
    belongs to another process: the start time differs). A holder on another host is judged by its
    heartbeat alone."""
    pid = lease.get("pid")
    if lease.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    return not process_alive(pid, lease.get("start"))


def age(lease: dict, now: float | None = None) -> float:
    return (time.time() if now is None else now) - float(lease.get("heartbeat", 0.0))


@dataclass
class Lease:
    """A run this worker holds. ``beat(row)`` after each epoch; ``release()`` when done.

    While it holds a lease, the process is registered as a training worker of this host and its
    torch threads are its share of the cores (:func:`fit_threads`), looked at again after each
    epoch (``beat(row)``); ``release()`` unregisters it and gives back the threads it had."""
    run_dir: Path
    token: str
    stale_seconds: float
    info: dict = field(default_factory=dict)
    lost: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _threads_before: int | None = field(default=None, repr=False)   # set while registered as a training worker

    @property
    def path(self) -> Path:
        return self.run_dir / LEASE

    def _still_ours(self) -> bool:
        current = read_lease(self.run_dir)
        return current is not None and current.get("token") == self.token

    def beat(self, row: dict | None = None) -> None:
        """Refresh the heartbeat (with the epoch's metrics row, if given); raise LeaseLost if
        another worker has taken the run over."""
        with self._lock:
            if self.lost or not self._still_ours():
                self.lost = True
                raise LeaseLost(f"{self.run_dir}: another worker took this run over "
                                f"({(read_lease(self.run_dir) or {}).get('host', '?')}); leaving it to that worker")
            if row is not None:
                self.info.update(epoch=row.get("epoch"), epoch_seconds=row.get("seconds"))
            self.info["heartbeat"] = time.time()
            atomic_write_json(self.path, self.info)
        if row is not None and self._threads_before is not None:
            fit_threads()          # after each epoch (the training thread): other workers may have come or gone

    def start_heartbeat(self, every: float | None = None) -> None:
        """Beat from a background thread every ``every`` seconds (default: a quarter of stale_seconds,
        at most a minute) until ``release``."""
        every = every if every is not None else max(0.2, min(60.0, self.stale_seconds / 4))

        def loop():
            while not self._stop.wait(every):
                try:
                    self.beat()
                except LeaseLost:
                    return
                except OSError:
                    continue   # a transient filesystem error: the next beat may get through

        self._thread = threading.Thread(target=loop, name=f"heartbeat {self.run_dir.name}", daemon=True)
        self._thread.start()

    def _stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _start_training(self) -> None:
        self._threads_before = torch.get_num_threads()
        register()
        fit_threads()

    def release(self) -> None:
        """Give the run up (finished, interrupted or failed): remove the lease if it is still ours."""
        self._stop_heartbeat()
        with self._lock:
            if not self.lost and self._still_ours():
                self.path.unlink(missing_ok=True)
        if self._threads_before is not None:
            threads, self._threads_before = self._threads_before, None
            unregister()
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)

    def fail(self, error: BaseException) -> None:
        """Record ``failed.json`` (the error's last line and the traceback), then release."""
        self._stop_heartbeat()
        last = (traceback.format_exception_only(type(error), error)[-1]).strip()
        with self._lock:
            if not self.lost and self._still_ours():
                atomic_write_json(self.run_dir / FAILED, {
                    "error": last, "traceback": "".join(traceback.format_exception(error))[-8000:],
                    "host": self.info.get("host"), "pid": self.info.get("pid"), "slurm": self.info.get("slurm"),
                    "epoch": self.info.get("epoch"), "time": time.time()})
        self.release()


def take_lease(run_dir: Path | str, *, stale_seconds: float = DEFAULT_STALE_SECONDS, retry_failed: bool = False,
          epochs: int | None = None) -> Lease | None:
    """Lease ``run_dir`` for this process, or return None when another worker holds it (a
    fresh lease) or it failed before (unless ``retry_failed``). A stale lease, one whose holder on
    this host is gone, or one left by this very SLURM task before a requeue, is taken over. Until the lease is released this
    process counts as a training worker of this host and takes its share of the cores."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    failed = run_dir / FAILED
    if failed.exists() and not retry_failed:
        return None
    me = _slurm_task()
    for _ in range(3):
        current = read_lease(run_dir)
        if current is not None:
            mine_before = me is not None and current.get("slurm") == me and current.get("host") == socket.gethostname()
            if age(current) < stale_seconds and not mine_before and not holder_gone(current):
                return None
            aside = run_dir / f".{LEASE}.stale-{secrets.token_hex(4)}"
            try:
                os.rename(run_dir / LEASE, aside)        # of several takers, one rename succeeds
            except FileNotFoundError:
                continue                                 # somebody else moved it first: look again
            aside.unlink(missing_ok=True)
        token = secrets.token_hex(8)
        now = time.time()
        info = {"host": socket.gethostname(), "pid": os.getpid(), "start": start_time(os.getpid()), "slurm": me,
                "token": token, "started": now,
                "heartbeat": now, "epoch": 0, "epochs": epochs, "epoch_seconds": None}
        try:
            fd = os.open(run_dir / LEASE, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue                                     # another worker was quicker: look again
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
            f.flush()
            os.fsync(f.fileno())
        failed.unlink(missing_ok=True)
        held = Lease(run_dir, token, stale_seconds, info)
        held._start_training()
        return held
    return None
