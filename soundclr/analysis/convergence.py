"""Whether a run has converged, from its metrics rows: the training loss has stopped moving and the
test accuracy has stopped moving by more than the test fold's own noise; and the table of runs
(:func:`run_table`) every claim is computed from.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from ..files import read_json
from ..train.record import read_metrics

LOSS_TOLERANCE = 0.05     # the training loss's move over the last tenth of epochs, as a share of its whole descent


SPREAD_SES = 1.5          # max - min of the last LAST_EVALS test accuracies, in binomial standard errors of the fold


LAST_EVALS = 5


# -- convergence ---------------------------------------------------------------------------------
@dataclass
class Convergence:
    converged: bool
    loss_change: float            # the largest move over the last tenth, as a share of the descent (0.03 = 3 %)
    spread: float                 # max - min of the last test accuracies (0.05 = 5 points)
    reasons: list[str] = field(default_factory=list)


def spread_tolerance(n_test: int, ses: float = SPREAD_SES) -> float:
    """The widest spread of the last test accuracies a converged run may show: ``ses`` binomial
    standard errors of a test fold of ``n_test`` clips at 50 % accuracy (the largest such error,
    0.5 / sqrt(n)), so that it scales with the fold: 8.4 points on an 80-clip fold, 3.8 on one of
    ESC-50's 400-clip folds, 2.5 on an 873-clip UrbanSound8K fold."""
    if n_test < 1:
        raise ValueError(f"n_test={n_test} is not valid: a test fold holds at least one clip")
    return ses * 0.5 / math.sqrt(n_test)


def convergence(rows: Sequence[dict], *, n_test: int, loss_tolerance: float = LOSS_TOLERANCE,
                spread_ses: float = SPREAD_SES, last: int = LAST_EVALS) -> Convergence:
    """Whether a run reached its plateau, from its ``metrics.jsonl`` rows and its test fold's size.

    Two tests. (1) In each stage, the training loss has stopped descending: the mean over the
    last tenth of the stage's epochs (at least two) differs from the mean over the tenth before
    by at most ``loss_tolerance`` of the stage's whole descent (the first tenth's mean minus the
    last tenth's; the level itself when there was no descent). A share of the descent rather
    than of the level, because a cross-entropy loss keeps shrinking slowly for as long as its
    classifier's weights grow, long after the accuracy has settled. (2) The last ``last``
    test-fold accuracies span at most :func:`spread_tolerance` (``spread_ses`` binomial standard
    errors of an ``n_test``-clip fold): the headline, the final epoch's accuracy, is not a coin
    toss. A plateau reached only because the learning rate decayed to nothing passes both; the
    tuning study checks that doubling the epochs does not move the accuracy either.
    """
    spread_limit = spread_tolerance(n_test, spread_ses)
    reasons = []
    changes = []
    for stage in sorted({r.get("stage", 1) for r in rows}):
        losses = [r["train_loss"] for r in rows if r.get("stage", 1) == stage]
        tenth = max(2, round(len(losses) / 10))
        if len(losses) < 3 * tenth:
            reasons.append(f"stage {stage}: {len(losses)} epochs are too few to tell")
            changes.append(math.inf)
            continue
        first, before, after = (float(np.mean(x)) for x in (losses[:tenth], losses[-2 * tenth:-tenth], losses[-tenth:]))
        scale = first - after if first - after > 1e-12 else max(abs(after), 1e-12)
        change = abs(after - before) / scale
        changes.append(change)
        if not math.isfinite(change) or change > loss_tolerance:
            reasons.append(f"stage {stage}: the training loss still moves over the last tenth of its epochs "
                           f"({100 * change:.1f} % of its descent; at most {100 * loss_tolerance:g} %)")
    accs = [r["test_acc"] for r in rows if r.get("test_acc") is not None]
    if len(accs) < last:
        spread = math.inf
        reasons.append(f"only {len(accs)} test evaluations (at least {last} needed)")
    else:
        spread = float(max(accs[-last:]) - min(accs[-last:]))
        if spread > spread_limit + 1e-9:
            reasons.append(f"the last {last} test accuracies span {100 * spread:.1f} points (at most "
                           f"{100 * spread_limit:.1f}: {spread_ses:g} binomial standard errors of {n_test} clips)")
    return Convergence(converged=not reasons, loss_change=max(changes) if changes else math.inf, spread=spread,
                       reasons=reasons)


def epochs_to_reach(rows: Sequence[dict], target: float) -> tuple[int, float] | None:
    """C8: the first epoch (1-based, counted over every stage) whose test accuracy reaches
    ``target`` (a share, 0..1), and the training seconds spent up to and including it."""
    seconds = 0.0
    for r in rows:
        seconds += r.get("seconds", 0.0)
        if r.get("test_acc") is not None and r["test_acc"] >= target - 1e-12:
            return r["epoch"], seconds
    return None


def main_grid_convergence(plan, schemes=None) -> pd.DataFrame:
    """Every main-grid run (of ``schemes``, default all) with its convergence test: scheme, fold, seed,
    converged, loss change, spread, the spread's tolerance, reasons."""
    t = run_table(plan.main_runs() if schemes is None else plan.main_runs(schemes))
    out = []
    for r in t.itertuples():
        c = r.convergence
        out.append({"scheme": r.scheme, "fold": r.fold, "seed": r.seed, "converged": c.converged,
                    "loss_change": c.loss_change, "spread": c.spread, "tolerance": spread_tolerance(r.n_test),
                    "reasons": "; ".join(c.reasons), "run": str(r.run.directory)})
    return pd.DataFrame(out, columns=["scheme", "fold", "seed", "converged", "loss_change", "spread", "tolerance",
                                      "reasons", "run"])


def run_table(runs) -> pd.DataFrame:
    """One row per finished run: its keys, accuracy under each protocol (in %), test-fold size,
    convergence, schedule, and metrics rows."""
    out = []
    for run in runs:
        if not run.finished:
            continue
        rows = read_metrics(run.directory)
        s = read_json(run.directory / "summary.json")
        n_test = int(s.get("n_test") or sum(map(sum, s["confusion"])))
        conv = convergence(rows, n_test=n_test)
        val = s.get("best_on_validation") or {}
        c = run.config
        stage = c.stages()[0]
        out.append({"scheme": c.run.scheme, "fold": c.run.test_fold, "seed": c.run.seed, "variant": run.variant,
                    "acc": 100 * s["final"]["test_acc"], "acc_best_test": 100 * s["best_on_test"]["test_acc"],
                    "acc_best_val": 100 * val["test_acc"] if val else math.nan, "n_test": n_test,
                    "converged": conv.converged, "convergence": conv, "schedule": (stage["epochs"], stage["warmup"], round(stage["gamma"], 12),
                                                             c.resolved().optim.lr, c.optim.batch_size),
                    "run": run, "rows": rows})
    return pd.DataFrame(out, columns=["scheme", "fold", "seed", "variant", "acc", "acc_best_test", "acc_best_val",
                                      "n_test", "converged", "convergence", "schedule", "run", "rows"])
