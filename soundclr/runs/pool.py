"""POOLDOC
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading

from .threads import worker_threads


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
