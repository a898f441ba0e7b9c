"""What a grid costs: clips pushed through training and evaluation, and the hours that takes.

A run of E epochs pushes ``E x (training clips)`` clips through a training step (forward,
backward, optimiser) and ``E x (test clips)`` through an evaluation (forward only); the
two-stage scheme adds its stage 2, whose steps run the frozen encoder forward only. From the
plan of a preset (:mod:`soundclr.plan`) :func:`grid_counts` counts these clips for every
grid the book shows, and :func:`hours` turns them into hours at a given throughput:

- measured: ``make bench`` (``benchmarks/paper_cost.py``) times the steps on the reader's
  device and prints the table;
- estimated: :func:`flops_per_clip` counts the model's floating-point operations, and
  :func:`estimate` divides them by an assumed sustained rate, labelled as an assumption.

The official fold sizes of the datasets are constants here, so the counts need no data.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from .. import datasets, schemes
from ..config import frames
from ..model import build_model
from .plan import make_plan



def fold_sizes(dataset: str) -> list[int]:
    """Clips per official fold, from the dataset's record (soundclr.datasets)."""
    return list(datasets.get(dataset).fold_sizes)

EXPERIMENTS = {"main": "Table III, Fig. 4, 5, UMAPs", "alpha": "Table II", "ablation": "Fig. 3",
               "masking": "Table I", "mask-fill": "mask fill"}


@dataclass
class Throughput:
    """Clips per second of a training step, a stage-2 step and an evaluation."""
    train: float
    stage2: float
    evaluate: float
    label: str = ""


def run_counts(cfg) -> dict:
    """Clip counts of one run: ``train`` (training steps), ``stage2`` (stage-2 steps), ``evaluate``."""
    sizes = fold_sizes(cfg.data.dataset)
    r = cfg.run
    test = sizes[r.test_fold - 1]
    val = sizes[r.val_fold - 1] if r.val_fold else 0
    train = sum(sizes) - test - val
    train -= train % cfg.optim.batch_size           # the last partial batch is dropped
    stages = cfg.stages()
    e1 = stages[0]["epochs"]
    e2 = stages[1]["epochs"] if len(stages) > 1 else 0
    evaluated = e2 + (0 if schemes.get(r.scheme).two_stage and cfg.optim.stage2_start == "final" else e1)
    return {"train": e1 * train, "stage2": e2 * train, "evaluate": evaluated * (test + val)}


def grid_counts(plan) -> pd.DataFrame:
    """Per experiment of the plan: runs and clip counts, each computation once (as the book trains them)."""
    rows = {}
    for run in plan.all_runs():
        exp = run.directory.parent.name
        c = run_counts(run.config)
        row = rows.setdefault(exp, {"runs": 0, "train": 0, "stage2": 0, "evaluate": 0})
        row["runs"] += 1
        for k in ("train", "stage2", "evaluate"):
            row[k] += c[k]
    out = pd.DataFrame(rows).T
    out.loc["the whole book"] = out.sum()
    return out.astype(int)


def hours(counts: pd.DataFrame, speed: Throughput) -> pd.Series:
    """Device-hours of each row of :func:`grid_counts` at the throughput ``speed``."""
    return (counts["train"] / speed.train + counts["stage2"] / speed.stage2 + counts["evaluate"] / speed.evaluate) / 3600


def flops_per_clip(cfg) -> dict[str, float]:
    """Floating-point operations of the model for one clip of the configuration's input:
    ``forward`` (counted with torch's FlopCounterMode), ``train`` (forward and backward, taken
    as 3 x forward, the usual rule) and ``stage2`` (forward only)."""

    c = cfg.resolved().override(weights="none")
    model = build_model(c, 50).eval()
    x = torch.zeros(1, c.features.channels, c.features.n_mels, frames(c))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    forward = float(counter.get_total_flops())
    return {"forward": forward, "train": 3 * forward, "stage2": forward, "evaluate": forward}


def estimate(cfg, sustained_tflops: float) -> Throughput:
    """Clips per second if the device sustains ``sustained_tflops`` on this model (an assumption)."""
    f = flops_per_clip(cfg)
    rate = sustained_tflops * 1e12
    return Throughput(train=rate / f["train"], stage2=rate / f["stage2"], evaluate=rate / f["evaluate"],
                      label=f"an estimate at {sustained_tflops:g} TFLOP/s sustained")


def cost_table(dataset: str, speed: Throughput, size: str = "paper") -> pd.DataFrame:
    """Runs, clip counts and hours of the ``paper``-size plan for ``dataset`` at ``speed``."""
    plan = make_plan(dataset, "paper", size=size, results="/nonexistent-results", data_root="/nonexistent-data",
                     imagenet=True)
    counts = grid_counts(plan)
    out = counts.copy()
    out["hours"] = hours(counts, speed)
    out.insert(0, "shows", [EXPERIMENTS.get(i, "") for i in out.index])
    return out
