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

The counting itself lives in :mod:`soundclr.runs.counts` (the noise model's planning reads it too).
"""
from __future__ import annotations

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from ..runs.counts import Throughput, fold_sizes, hours, run_counts  # noqa: F401 (this module's vocabulary)
from ..config import frames
from ..model import build_model
from .plan import make_plan



EXPERIMENTS = {"main": "Table III, Fig. 4, 5, UMAPs", "alpha": "Table II", "ablation": "Fig. 3",
               "masking": "Table I", "mask-fill": "mask fill"}


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
