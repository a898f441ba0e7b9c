"""Run claims: any number of workers on one grid and one shared results folder, each run trained once.

A worker claims a run before training it, by creating ``claim.json`` in the run's folder
with ``O_CREAT | O_EXCL`` (atomic on a local disk and on NFS v3 and later): the file names
the host, the process, the SLURM job when there is one, the time, and a random token. The
worker refreshes the claim's heartbeat after every epoch (with the epoch and its duration,
for ``soundclr status``) and from a background thread every ``heartbeat_seconds``, so a
long epoch does not look dead. Other workers skip a run whose claim is fresh and take over
one whose heartbeat is older than ``stale_seconds`` (the setting ``claim_stale_seconds``,
well above the checkpoint interval): the taker renames the stale claim aside (of several
workers trying at once, one rename succeeds), creates its own, and the run resumes from its
last checkpoint. A worker whose claim was taken over (it was suspended, or its heartbeat
could not reach the disk) notices at its next heartbeat and leaves the run to the taker.

A run that raises an error gets ``failed.json`` (the error's last line and traceback) and
its claim is released; other workers skip it until it is retried (``retry_failed``). A
worker stopped by SIGTERM or Ctrl-C (SLURM sends SIGTERM before pre-empting a job) releases
its claim, so the next worker resumes the run at once. A SLURM task that is requeued finds
its own old claim (same job and array task) and takes it back without waiting.

Clocks: the heartbeat is the writer's wall clock, compared with the reader's; hosts of one
cluster agree within seconds, far below ``stale_seconds``.
"""
from __future__ import annotations

import atexit
import glob
import json
import math
import os
import secrets
import socket
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from .store import atomic_write_json

CLAIM = "claim.json"
FAILED = "failed.json"
DEFAULT_STALE_SECONDS = 900.0


class ClaimLost(RuntimeError):
    """Another worker took over this worker's run (its heartbeat had gone stale)."""


def _slurm_task() -> str | None:
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{job}_{task}" if task is not None else job


def read_claim(run_dir: Path) -> dict | None:
    """The claim of a run folder, or None. A claim being written (empty or partial) reads as
    fresh, with the file's modification time as its heartbeat."""
    path = Path(run_dir) / CLAIM
    try:
        text = path.read_text()
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        claim = json.loads(text)
        if not isinstance(claim, dict) or "heartbeat" not in claim:
            raise ValueError
        return claim
    except ValueError:
        return {"heartbeat": mtime, "host": "?", "pid": None, "token": None, "partial": True}


def age(claim: dict, now: float | None = None) -> float:
    return (time.time() if now is None else now) - float(claim.get("heartbeat", 0.0))


@dataclass
class Claim:
    """A run this worker holds. ``beat(row)`` after each epoch; ``release()`` when done.

    While it holds a claim, the process is registered as a training worker of this host and its
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
        return self.run_dir / CLAIM

    def _still_ours(self) -> bool:
        current = read_claim(self.run_dir)
        return current is not None and current.get("token") == self.token

    def beat(self, row: dict | None = None) -> None:
        """Refresh the heartbeat (with the epoch's metrics row, if given); raise ClaimLost if
        another worker has taken the run over."""
        with self._lock:
            if self.lost or not self._still_ours():
                self.lost = True
                raise ClaimLost(f"{self.run_dir}: another worker took this run over "
                                f"({(read_claim(self.run_dir) or {}).get('host', '?')}); leaving it to that worker")
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
                except ClaimLost:
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
        import torch
        self._threads_before = torch.get_num_threads()
        register()
        fit_threads()

    def release(self) -> None:
        """Give the run up (finished, interrupted or failed): remove the claim if it is still ours."""
        self._stop_heartbeat()
        with self._lock:
            if not self.lost and self._still_ours():
                self.path.unlink(missing_ok=True)
        if self._threads_before is not None:
            threads, self._threads_before = self._threads_before, None
            unregister()
            import torch
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


def claim(run_dir: Path | str, *, stale_seconds: float = DEFAULT_STALE_SECONDS, retry_failed: bool = False,
          epochs: int | None = None) -> Claim | None:
    """Claim ``run_dir`` for this process, or return None when another worker holds it (a
    fresh claim) or it failed before (unless ``retry_failed``). A stale claim, or one left
    by this very SLURM task before a requeue, is taken over. Until the claim is released this
    process counts as a training worker of this host and takes its share of the cores."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    failed = run_dir / FAILED
    if failed.exists() and not retry_failed:
        return None
    me = _slurm_task()
    for _ in range(3):
        current = read_claim(run_dir)
        if current is not None:
            mine_before = me is not None and current.get("slurm") == me and current.get("host") == socket.gethostname()
            if age(current) < stale_seconds and not mine_before:
                return None
            aside = run_dir / f".{CLAIM}.stale-{secrets.token_hex(4)}"
            try:
                os.rename(run_dir / CLAIM, aside)        # of several takers, one rename succeeds
            except FileNotFoundError:
                continue                                 # somebody else moved it first: look again
            aside.unlink(missing_ok=True)
        token = secrets.token_hex(8)
        now = time.time()
        info = {"host": socket.gethostname(), "pid": os.getpid(), "slurm": me, "token": token, "started": now,
                "heartbeat": now, "epoch": 0, "epochs": epochs, "epoch_seconds": None}
        try:
            fd = os.open(run_dir / CLAIM, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue                                     # another worker was quicker: look again
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
            f.flush()
            os.fsync(f.fileno())
        failed.unlink(missing_ok=True)
        held = Claim(run_dir, token, stale_seconds, info)
        held._start_training()
        return held
    return None


# -- status of a results folder --------------------------------------------------------------
def status(results: Path | str = "results", dataset: str | None = None, experiment: str | None = None) -> list[dict]:
    """Per experiment folder ``results/<dataset>/<experiment>``: the runs finished, running
    (host, pid, epoch, heartbeat age), stale, failed (the error's last line), to do (with the
    epoch a checkpoint reached, if any), the mean epoch time and an ETA."""
    from .store import read_json, read_metrics
    out = []
    root = Path(results)
    for exp_dir in sorted(root.glob(f"{dataset or '*'}/{experiment or '*'}")):
        if not exp_dir.is_dir() or exp_dir.name.startswith("."):
            continue
        manifest_path = exp_dir / "grid.json"
        try:
            manifest = read_json(manifest_path).get("runs", {}) if manifest_path.exists() else {}
        except ValueError:
            manifest = {}
        names = set(manifest) | {p.name for p in exp_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
        entry = {"dataset": exp_dir.parent.name, "experiment": exp_dir.name, "folder": str(exp_dir), "runs": len(names),
                 "finished": 0, "running": [], "stale": [], "failed": [], "todo": []}
        epoch_seconds, remaining = [], 0
        for name in sorted(names):
            run_dir = exp_dir / name
            epochs = (manifest.get(name) or {}).get("epochs")
            rows = []
            if run_dir.is_dir():
                try:
                    rows = read_metrics(run_dir)
                except ValueError:
                    rows = []
                epoch_seconds += [r["seconds"] for r in rows if isinstance(r.get("seconds"), (int, float))]
            if (run_dir / "summary.json").is_file():
                entry["finished"] += 1
                continue
            done = len(rows)
            current = read_claim(run_dir) if run_dir.is_dir() else None
            if current is not None:
                item = {"run": name, "host": current.get("host"), "pid": current.get("pid"), "slurm": current.get("slurm"),
                        "epoch": current.get("epoch", done), "epochs": current.get("epochs") or epochs,
                        "heartbeat_age": round(age(current), 1)}
                stale = age(current) >= _stale_seconds(run_dir)
                entry["stale" if stale else "running"].append(item)
            elif (run_dir / FAILED).exists():
                try:
                    failed = read_json(run_dir / FAILED)
                except ValueError:
                    failed = {"error": "failed.json cannot be read"}
                entry["failed"].append({"run": name, "error": failed.get("error"), "host": failed.get("host"),
                                        "epoch": failed.get("epoch")})
            else:
                entry["todo"].append({"run": name, "epochs_done": done, "epochs": epochs})
            if epochs:
                remaining += max(0, epochs - done)
        mean = sum(epoch_seconds) / len(epoch_seconds) if epoch_seconds else None
        workers = len(entry["running"])
        entry["epoch_seconds"] = round(mean, 2) if mean is not None else None
        entry["remaining_epochs"] = remaining
        entry["eta_seconds"] = round(remaining * mean / workers) if mean is not None and workers else None
        out.append(entry)
    return out


def _stale_seconds(run_dir: Path) -> float:
    from .store import read_json
    try:
        return float(read_json(run_dir / "config.json")["config"]["run"]["claim_stale_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_STALE_SECONDS


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_status(entries: list[dict], *, details: bool = True) -> str:
    """``status()`` for a terminal: one line per experiment, then its running, stale and failed runs."""
    if not entries:
        return "no experiments found (nothing has been trained into this results folder yet)"
    lines = []
    for e in entries:
        eta = (f"ETA {_duration(e['eta_seconds'])} at {len(e['running'])} worker(s)" if e["eta_seconds"] is not None
               else ("done" if e["finished"] == e["runs"] else "no worker running"))
        per_epoch = f", {e['epoch_seconds']:.1f} s per epoch" if e["epoch_seconds"] else ""
        lines.append(f"{e['dataset']}/{e['experiment']}: {e['runs']} runs: {e['finished']} finished, {len(e['running'])} running, "
                     f"{len(e['stale'])} stale, {len(e['failed'])} failed, {len(e['todo'])} to do; {eta}{per_epoch}")
        if not details:
            continue
        for r in e["running"]:
            lines.append(f"  running  {r['run']}  on {r['host']} (pid {r['pid']}{', SLURM ' + r['slurm'] if r.get('slurm') else ''}), "
                         f"epoch {r['epoch']}/{r['epochs'] or '?'}, heartbeat {_duration(r['heartbeat_age'])} ago")
        for r in e["stale"]:
            lines.append(f"  stale    {r['run']}  last seen on {r['host']} (pid {r['pid']}) {_duration(r['heartbeat_age'])} ago "
                         f"at epoch {r['epoch']}: the next worker takes it over")
        for r in e["failed"]:
            lines.append(f"  failed   {r['run']}  {r['error']}")
    return "\n".join(lines)


# -- several workers on one machine ------------------------------------------------------------
def run_workers(cmd: list[str], workers: int, *, threads: int | None = None, label: str = "worker",
                echo: bool = True) -> None:
    """Start ``workers`` processes of ``cmd`` (each one a worker of the same grid: the claims share
    the runs out), stream their output prefixed with ``[worker k]``, and wait for all of them.
    Each gets ``threads`` threads (default: ``OMP_NUM_THREADS`` if the user set it, else its share
    of the machine, :func:`worker_threads`), fixed for its life (``OMP_NUM_THREADS`` in its
    environment): a run's float sums do not depend on when other processes come and go.
    Ctrl-C or SIGTERM stops them all (each releases its claim). Raises RuntimeError naming the
    first worker that failed, with its last lines."""
    import subprocess
    import sys
    threads = threads or worker_threads(workers)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
             for _ in range(workers)]
    tails: list[list[str]] = [[] for _ in procs]

    def relay(proc, prefix: str, tail: list) -> None:
        for line in proc.stdout:
            tail.append(line)
            del tail[:-50]
            if echo:
                sys.stdout.write(prefix + line)
                sys.stdout.flush()

    readers = [threading.Thread(target=relay, args=(p, f"[{label} {k + 1}] ", tails[k]), daemon=True)
               for k, p in enumerate(procs)]
    for t in readers:
        t.start()
    try:
        codes = [p.wait() for p in procs]
    except BaseException:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        raise
    for t in readers:
        t.join()
    failed = [k for k, c in enumerate(codes) if c != 0]
    if failed:
        k = failed[0]
        raise RuntimeError(f"{label} {k + 1} of {workers} failed (exit {codes[k]}):\n" + "".join(tails[k][-15:]))


# -- threads: each process takes its share of the machine ---------------------------------------
# A torch process starts one thread per core; two such processes on one machine fight over the
# cores (two `soundclr train` in two terminals ran 9 times slower than the same runs in one
# `--workers 2`). So a process that trains registers itself in a small per-host registry (one file
# per process, <host>-<pid>.json, in a folder under the system's temporary folder, or
# $SOUNDCLR_REGISTRY): `soundclr train` for its whole life, any process while it holds a run's claim.
# It takes max(1, cores // live workers on this host) threads, looked at again when it claims a run
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


def _start_time(pid: int) -> str | None:
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
            atomic_write_json(path, {"pid": os.getpid(), "host": socket.gethostname(), "start": _start_time(os.getpid()),
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


def _alive(pid: int, path: Path) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass                                   # another user's process: alive
    except OSError:
        return False
    try:
        recorded = json.loads(path.read_text()).get("start")
    except (OSError, ValueError, AttributeError):
        return True                            # unreadable entry of a live pid: count it
    now = _start_time(pid)
    return recorded is None or now is None or str(recorded) == now


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
    import torch
    n = thread_share()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
