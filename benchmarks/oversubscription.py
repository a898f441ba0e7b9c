"""Several `soundclr train` processes on one machine: do they share the cores, or fight over them?

Prints, in one run:

(a) the wall time of two `soundclr train` processes started independently, at the same moment, with
    the same command (the README's "any number of processes can run the same command"), on a grid of
    two cross-entropy runs (quick preset, tiny backbone, synthetic dataset): the claims give one run
    to each. They are started WITHOUT OMP_NUM_THREADS (nor MKL_NUM_THREADS, SLURM_CPUS_PER_TASK) in
    their environment: each must find the other in the per-host registry of workers and take half
    the cores by itself;
(b) the wall time of the same two runs in one `soundclr train --workers 2` process (which starts two
    workers with a fixed share of the cores each), into a fresh results folder;

and the ratio a / b. Target: below 1.3 (before the registry, two processes each took a thread per
core and the ratio was about 9 on a 2-core machine). Both sides include starting Python and torch;
the dataset is generated and decoded once beforehand, outside the timings. It also says whether both
sides trained the very same numbers (each run then ran with the same number of threads).

With ``--baseline`` it also times (a) with each process given a registry of its own, so that
neither sees the other: the behaviour before the registry (each process takes a thread per core).

Usage::

    python benchmarks/oversubscription.py               # 40 epochs per run (the quick preset's)
    python benchmarks/oversubscription.py --epochs 10   # shorter
    python benchmarks/oversubscription.py --baseline    # and the two processes blind to each other
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "SLURM_CPUS_PER_TASK")


def train_command(data_root: Path, results: Path, epochs: int) -> list[str]:
    return [sys.executable, "-m", "soundclr", "train", "--preset", "quick", "--dataset", "synthetic",
            "--data-root", str(data_root), "--backbone", "tiny", "--weights", "none", "--schemes", "ce",
            "--folds", "1,2", "--epochs", str(epochs), "--device", "cpu", "--results", str(results), "--quiet"]


def metrics(results: Path) -> dict:
    """Per run folder, its metrics lines without the timings."""
    out = {}
    for m in sorted(results.glob("synthetic/main/*/metrics.jsonl")):
        out[m.parent.name] = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                              for line in m.read_text().splitlines()]
    return out


def finished(results: Path) -> int:
    return len(list(results.glob("synthetic/main/*/summary.json")))


def two_processes(cmd: list[str], envs: list[dict], results: Path) -> tuple[float, list[int]]:
    """Start ``cmd`` twice at once (one environment each); the wall time until both have ended, and
    how many runs each trained."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for e in envs]
    outputs = [p.communicate() for p in procs]
    seconds = time.perf_counter() - t0
    if any(p.returncode for p in procs) or finished(results) != 2:
        sys.exit("two processes failed:\n" + "\n".join(err[-2000:] for _, err in outputs))
    return seconds, [sum(1 for line in out.splitlines() if line.startswith("[") and "final" in line) for out, _ in outputs]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=40, help="epochs per run (default 40, the quick preset's)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder and print it")
    ap.add_argument("--baseline", action="store_true", help="also time (a) with the two processes blind to each other "
                    "(a registry each): the behaviour before the registry")
    args = ap.parse_args()

    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    assert not any(k in env for k in THREAD_VARIABLES)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    tmp = Path(tempfile.mkdtemp(prefix="soundclr-oversubscription-"))
    data = tmp / "data"
    print(f"{cores} cores; two cross-entropy runs of {args.epochs} epochs (quick preset, tiny backbone, synthetic); "
          f"started without {', '.join(THREAD_VARIABLES)}", flush=True)
    prep = subprocess.run([sys.executable, "-m", "soundclr", "data", "prepare", "synthetic", "--root", str(data),
                           "--sample-rate", "8000"], env=env, capture_output=True, text=True)
    if prep.returncode != 0:
        sys.exit(f"preparing the synthetic dataset failed:\n{prep.stderr[-2000:]}")

    # (a) two independent processes, the same command, the same results folder
    results_a = tmp / "two-processes"
    time_a, shares = two_processes(train_command(data, results_a, args.epochs), [env, env], results_a)

    # (b) one process, --workers 2, a fresh results folder
    results_b = tmp / "one-process-two-workers"
    t0 = time.perf_counter()
    one = subprocess.run(train_command(data, results_b, args.epochs) + ["--workers", "2"], env=env,
                         capture_output=True, text=True)
    time_b = time.perf_counter() - t0
    if one.returncode or finished(results_b) != 2:
        sys.exit(f"(b) failed:\n{one.stdout[-2000:]}\n{one.stderr[-2000:]}")

    same = metrics(results_a) == metrics(results_b)
    print(f"(a) two independent `soundclr train` processes: {time_a:6.1f} s  (runs trained per process: {shares})")
    print(f"(b) one `soundclr train --workers 2` process:    {time_b:6.1f} s")
    print(f"ratio a / b: {time_a / time_b:.2f}  (target < 1.3; about 9 before the processes shared the cores)")
    print(f"the same numbers on both sides: {'yes' if same else 'no'}")
    if args.baseline:
        results_c = tmp / "two-blind-processes"
        blind = [dict(env, SOUNDCLR_REGISTRY=str(tmp / f"registry-{k}")) for k in range(2)]
        time_c, shares = two_processes(train_command(data, results_c, args.epochs), blind, results_c)
        print(f"baseline: the two processes blind to each other: {time_c:6.1f} s  (runs trained per process: {shares}); "
              f"ratio to (b): {time_c / time_b:.2f}")
    if args.keep:
        print(f"kept {tmp}")
    else:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
