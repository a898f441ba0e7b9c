"""bf16 autocast trains as well as fp32: the short version of studies/bf16_training.py for `make test`.

The study itself (ResNet-50, five folds, two seeds, both precisions; its table is on the reproducing
page) takes about 45 minutes on two cores. This short version runs the same comparison code on the
quick preset's `tiny` network, on two folds of the tuning draw, two seeds, 12 epochs: the same
library path (torch's CPU autocast does real bf16 arithmetic on a CPU with AMX, and emulates it
elsewhere), so a change that makes bf16 training worse than fp32 fails here first.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "studies"))

import bf16_training as study  # noqa: E402

EPOCHS = 12


@pytest.mark.slow
def test_bf16_trains_as_well_as_fp32_on_the_tiny_network(tmp_path):
    spec = study.Study(results=tmp_path, preset="quick", settings=tuple(study.schedule(EPOCHS).items()), folds=(1, 2))
    c = study.measure(spec)
    final = c["final"]
    assert final["fp32"] > 50 and final["bf16"] > 50, final            # both learn (chance: 10 %)
    # bf16 minus fp32, mean over the (fold, seed) pairs: within the study's stated tolerance
    assert abs(final["bf16"] - final["fp32"]) <= study.TOLERANCE, final
    assert abs(c["best"]["bf16"] - c["best"]["fp32"]) <= study.TOLERANCE, c["best"]
    # the two precisions' runs are different computations (the check is not comparing a run with itself)
    assert final["sd_same_seed"] > 0 or c["train_loss"]["sd_same_seed"] > 0
