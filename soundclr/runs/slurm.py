"""Run a grid on a SLURM cluster as a job array: one worker per array task, one GPU each.

    soundclr slurm --workers 8 --partition gpu --time 12:00:00 --submit -- \\
        --dataset esc50 --preset paper --schemes ce,supcon,hybrid --folds 1,2,3,4,5 --seeds 0,1,2,3,4

writes an sbatch script (which a user can read and edit) into the results folder and,
with ``--submit``, submits it. Every array task runs the same ``soundclr train`` command
on the same grid and the same results folder; the run leases of :mod:`soundclr.runs.lease`
hand each run to exactly one task, so the number of tasks is only a degree of
parallelism (no shard arithmetic). The script is requeue-friendly: ``--requeue`` lets
SLURM restart a pre-empted task, SLURM's SIGTERM before the time limit or a pre-emption
makes the worker release its lease at once, and the restarted (or any other) task resumes
the run from its last checkpoint.

``--gpus-per-run G > 1`` trains each run on G GPUs of one node with
``srun python -m torch.distributed.run --nproc_per_node G`` (DistributedDataParallel);
each array task is then one such multi-GPU worker.
"""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "8589934592", "MALLOC_TRIM_THRESHOLD_": "8589934592",
              "MALLOC_TOP_PAD_": "1073741824"}


class SlurmError(RuntimeError):
    """sbatch could not be found or refused the script."""


def sbatch_script(train_args: list[str], *, workers: int, time_limit: str = "24:00:00", partition: str | None = None,
                  gpus_per_worker: int = 1, gpus_per_run: int = 1, cpus_per_worker: int = 8, mem: str | None = None,
                  job_name: str = "soundclr", output_dir: Path | str = "results/slurm", workdir: Path | str | None = None,
                  python: str | None = None, extra_sbatch: list[str] | None = None, command: str = "train") -> str:
    """The text of an sbatch script that runs ``soundclr <command> <train_args>`` (``train``: a grid;
    ``reproduce ... --train-only``: every run of the book) as ``workers`` array tasks."""
    if workers < 1:
        raise ValueError(f"--workers {workers} is not valid: at least 1 array task")
    if gpus_per_run > 1 and gpus_per_worker < gpus_per_run:
        gpus_per_worker = gpus_per_run
    python = python or sys.executable
    workdir = Path(workdir or Path.cwd()).resolve()
    output_dir = Path(output_dir).resolve()
    lines = ["#!/bin/bash",
             f"# Written by `soundclr slurm` on {time.strftime('%Y-%m-%d %H:%M')}. Edit freely, then: sbatch {{this file}}",
             "#",
             "# Each array task is one worker: it leases runs of the grid below in the shared results folder,",
             "# trains them (resuming from a checkpoint where there is one) and exits when none is left.",
             "# More tasks = more runs at once; a pre-empted or requeued task resumes its run.",
             "# Progress: soundclr status --results <the results folder of the command below>",
             f"#SBATCH --job-name={job_name}",
             f"#SBATCH --array=0-{workers - 1}",
             f"#SBATCH --time={time_limit}"]
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    if gpus_per_worker > 0:
        lines.append(f"#SBATCH --gres=gpu:{gpus_per_worker}")
    lines += [f"#SBATCH --cpus-per-task={cpus_per_worker}"]
    if mem:
        lines.append(f"#SBATCH --mem={mem}")
    lines += ["#SBATCH --requeue",
              "#SBATCH --signal=B:TERM@120",
              f"#SBATCH --output={output_dir}/%x-%A_%a.out",
              "#SBATCH --open-mode=append"]
    lines += [f"#SBATCH {x}" for x in extra_sbatch or []]
    lines += ["", "set -euo pipefail", f"cd {shlex.quote(str(workdir))}",
              *[f"export {k}={v}" for k, v in MALLOC_ENV.items()],
              "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}",
              'echo "[soundclr] task ${SLURM_ARRAY_TASK_ID:-0} of job ${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-?}} on $(hostname)"']
    args = " ".join(shlex.quote(a) for a in train_args)
    if gpus_per_run > 1:
        lines.append(f"exec srun --kill-on-bad-exit=1 {shlex.quote(python)} -m torch.distributed.run --standalone "
                     f"--nproc_per_node={gpus_per_run} -m soundclr.cli {command} {args}")
    else:
        lines.append(f"exec {shlex.quote(python)} -m soundclr.cli {command} {args}")
    return "\n".join(lines) + "\n"


def write_script(text: str, output_dir: Path | str, job_name: str) -> Path:
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{job_name}-{time.strftime('%Y%m%d-%H%M%S')}.sbatch"
    path.write_text(text.replace("{this file}", str(path)))
    path.chmod(0o755)
    return path


def submit(script: Path | str) -> str:
    """``sbatch script``; returns the job id."""
    try:
        r = subprocess.run(["sbatch", str(script)], capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise SlurmError(f"sbatch is not on this machine's PATH: run `sbatch {script}` on a login node of your cluster") from None
    if r.returncode != 0:
        raise SlurmError(f"sbatch refused {script}: {r.stderr.strip() or r.stdout.strip()}")
    m = re.search(r"Submitted batch job (\d+)", r.stdout)
    if not m:
        raise SlurmError(f"sbatch answered something unexpected for {script}: {r.stdout.strip()}")
    return m.group(1)
