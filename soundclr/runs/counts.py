"""What runs cost: the clips a run pushes through training and evaluation, and the hours that takes at a
throughput, per phase. The rates ``make gpu-check`` measured are kept here, labelled with where they came from.

A run of E epochs pushes ``E x (training clips)`` clips through a training step (forward, backward, optimiser)
and ``E x (test clips)`` through an evaluation (forward only); the two-stage scheme adds its stage 2, whose steps
run the frozen encoder forward only. The official fold sizes come from the dataset records, so the counts need
no data.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .. import datasets, schemes


def fold_sizes(dataset: str) -> list[int]:
    """Clips per official fold, from the dataset's record (soundclr.datasets)."""
    return list(datasets.get(dataset).fold_sizes)


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


def hours(counts: pd.DataFrame, speed: Throughput) -> pd.Series:
    """Device-hours of each row of clip counts (``train``, ``stage2``, ``evaluate``) at the throughput ``speed``."""
    return (counts["train"] / speed.train + counts["stage2"] / speed.stage2 + counts["evaluate"] / speed.evaluate) / 3600


# Clips per second on one H200 (ResNet-50, the paper's input, bf16, batch 128), per phase and per dataset, as
# `make gpu-check` printed them (issue 22's run): the training step of each scheme, a stage-2 step, an evaluation.
# ESC-10 has ESC-50's clips. UrbanSound8K's 4-s clips were not recorded per phase: its rates are ESC-50's times the
# ratio of input frames (431 / 345; a ResNet's cost grows with its input's width), labelled as such.
H200 = {
    "esc50": {"ce": 3265.0, "supcon": 2967.0, "hybrid": 3228.0, "stage2": 8463.0, "evaluate": 9925.0,
              "source": "H200, measured by make gpu-check (issue 22)"},
}
H200["esc10"] = {**H200["esc50"], "source": "H200, measured on ESC-50's clips (ESC-10's are the same)"}
H200["us8k"] = {**{k: v * 431 / 345 for k, v in H200["esc50"].items() if k != "source"},
                "source": "H200, ESC-50's measured rates scaled to 4-s clips (frames 345 of 431), not measured"}


def measured_speed(dataset: str, scheme: str) -> Throughput:
    """The H200's measured throughput of ``scheme`` on ``dataset`` (:data:`H200`)."""
    r = H200[dataset]
    return Throughput(r[scheme], r["stage2"], r["evaluate"], r["source"])
