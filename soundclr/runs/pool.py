"""Training workers on one machine: one entry point (:func:`work`) that every worker process runs,
and :func:`train_in_processes`, which decodes the data once and starts N of them.

``soundclr train --workers N``, ``soundclr reproduce`` and ``studies/tune_quick.py`` all start their
workers here; each worker is registered on this host (its threads are its share of the cores,
:mod:`soundclr.runs.threads`) and trains whatever runs of the grid it can lease
(:mod:`soundclr.runs.lease`). SIGTERM (SLURM's warning) stops a worker like Ctrl-C: its lease is
released and the run resumes from its checkpoint in the next worker.
"""
from __future__ import annotations

import subprocess
import sys
import threading

from ..config import Config
from ..data.bank import load_bank
from ..train.runtime import sigterm_raises
from .grid import run_grid
from .store import Run
from .threads import fit_threads, register, thread_env, unregister, worker_threads


def log_line(line: str) -> None:
    """How a worker reports: one indented line per run event, flushed (its parent prefixes ``[worker k]``)."""
    print(f"  {line}", flush=True)


def work(runs: list[Run], *, shard: tuple[int, int] = (0, 1), retry_failed: bool = False, verbose: bool = True,
         progress: bool = False, log=log_line, wait: bool = False) -> list[dict]:
    """The body of every training worker: registered as a worker of this host for its life, its threads
    fitted to the machine, it trains every run of ``runs`` it can lease; returns the summaries of the
    runs it saw finished (with ``wait``, after waiting for the runs other live workers hold). SIGTERM is raised
    as :class:`~soundclr.train.runtime.Terminated` meanwhile."""
    with sigterm_raises():
        register()
        try:
            fit_threads()
            return run_grid(runs, shard=shard, verbose=verbose, progress=progress, retry_failed=retry_failed, log=log,
                            wait=wait)
        finally:
            unregister()


def train_in_processes(cmd: list[str], workers: int, data: Config, *, progress: bool = True) -> None:
    """Decode (or generate) the dataset of ``data`` once, here, then run ``workers`` processes of ``cmd``
    (each of which calls :func:`work`) and wait for them (:func:`run_workers`)."""
    fit_threads()
    load_bank(data, progress=progress)
    run_workers(cmd, workers)


# -- several workers on one machine ------------------------------------------------------------
def run_workers(cmd: list[str], workers: int, *, threads: int | None = None, label: str = "worker",
                echo: bool = True) -> None:
    """Start ``workers`` processes of ``cmd`` (each one a worker of the same grid: the leases share
    the runs out), stream their output prefixed with ``[worker k]``, and wait for all of them.
    Each gets ``threads`` threads (default: ``OMP_NUM_THREADS`` if the user set it, else its share
    of the machine, :func:`worker_threads`), fixed for its life (``OMP_NUM_THREADS`` in its
    environment): a run's float sums do not depend on when other processes come and go.
    Ctrl-C or SIGTERM stops them all (each releases its lease). Raises RuntimeError naming the
    first worker that failed, with its last lines."""
    threads = threads or worker_threads(workers)
    env = thread_env(threads)
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
