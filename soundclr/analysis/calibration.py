"""How often the ledger's verdict rules err on this design, measured: A/A comparisons and a planted effect.

An **A/A comparison** takes runs of one scheme, splits the seeds of every fold into two arms and
compares the arms exactly as the ledger compares two schemes. The two arms are the same training
procedure, so the true effect is zero: a rejection is a false positive, and an interval that misses
zero misses the truth. Comparison j takes the seeds ``2mj .. 2mj + 2m - 1`` of every fold (the first m
in arm A), so no two comparisons share a run: they are independent, and a rate over them has a
binomial (Wilson) interval.

The **planted effect**: in arm B of each comparison, a share of the correct test clips of every run
is marked wrong (drawn at random, independently per run). That lowers arm B by a known amount, the
share times its accuracy; the share is set so that the effect is the one the corrected test detects
with 80 % power at the SD the A/A comparisons measured. The rejection rate is the power the design
really has, beside the power the page would state from each comparison's own SD.

Rules measured, each at 5 % as the ledger applies it: the corrected fold-level t test (Nadeau-Bengio,
the verdicts), the plain fold-level t test, the exact sign-flip test over the folds, a clip-level
paired test over the pooled test clips (seeds averaged per arm; the decisive-test table's second
design) and C9's per-fold non-inferiority rule. Plain numbers in, numbers out; the runs are read by
:func:`correctness_table`.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import nct as noncentral_t
from scipy.stats import t as student_t

from ..files import read_json
from ..runs.inference import clip_correctness
from .claims import NONINFERIORITY_MARGIN
from .stats import POWER, clip_floor, clip_interval, detectable_effect, fold_interval, power, wilson

ALPHA = 0.05
RULES = {"corrected": "corrected fold-level t (the verdicts)", "plain": "plain fold-level t",
         "signflip": "exact sign-flip over the folds", "clips": "clip-level paired test, pooled clips",
         "c9": "C9's per-fold rule (contradicted)"}


def correctness_table(runs) -> pd.DataFrame:
    """One row per finished run of ``runs``: fold, seed, final accuracy (points), training seconds and
    the per-clip correctness of its final model (``correct``, clips in index order)."""
    out = []
    for run in runs:
        if not run.finished:
            continue
        s = read_json(run.directory / "summary.json")
        out.append({"fold": run.config.run.test_fold, "seed": run.config.run.seed, "acc": 100 * s["final"]["test_acc"],
                    "seconds": s.get("seconds", math.nan), "correct": clip_correctness(run.directory)})
    return pd.DataFrame(out, columns=["fold", "seed", "acc", "seconds", "correct"])


def arms(seeds: Sequence[int], m: int) -> list[tuple[list[int], list[int]]]:
    """The disjoint A/A splits of ``seeds`` with ``m`` seeds per arm: (arm A, arm B) for each comparison."""
    s = sorted(seeds)
    return [(s[2 * m * j:2 * m * j + m], s[2 * m * j + m:2 * m * (j + 1)]) for j in range(len(s) // (2 * m))]


def plant(correct: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """``correct`` with each correct clip marked wrong with probability ``share``: the accuracy drops by
    ``share`` times itself in expectation."""
    return np.where((correct > 0) & (rng.random(correct.shape) < share), 0.0, correct)


def _arm(cell: dict, seeds: list[int], share: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Per clip, the correctness of an arm's runs on one fold, seeds averaged (planted where ``share``)."""
    rows = [cell[s] for s in seeds]
    if share:
        rows = [plant(r, share, rng) for r in rows]
    return np.mean(rows, axis=0)


def compare_arms(a: dict[int, np.ndarray], b: dict[int, np.ndarray], *, ratio: float,
                 margin: float = NONINFERIORITY_MARGIN) -> dict:
    """Every rule on one comparison: ``a[f]``, ``b[f]`` are fold f's per-clip correctness of each arm (seeds
    averaged). Returns the corrected interval, each rule's rejection, and the clip-sampling floor."""
    folds = sorted(a)
    k = len(folds)
    d = [100 * float(a[f].mean() - b[f].mean()) for f in folds]
    floor = clip_floor([a[f] - b[f] for f in folds])
    nb = fold_interval(d, ratio=ratio, floor=floor)
    clips = clip_interval(100 * np.concatenate([a[f] - b[f] for f in folds]))
    per_fold = [clip_interval(100 * (a[f] - b[f]), level=1 - ALPHA / (2 * k)) for f in folds]
    return {"interval": nb, "d": d, "floor": floor,
            "reject": {"corrected": nb.p < ALPHA, "plain": nb.p_plain < ALPHA, "signflip": nb.p_signflip < ALPHA,
                       "clips": clips.p < ALPHA, "c9": any(i.high < -margin for i in per_fold)},
            "c9_supported": all(i.low > -margin for i in per_fold)}


def independent_power(effect: float, sd: float, k: int, ratio: float, *, alpha: float = ALPHA) -> float:
    """The power of the corrected test when the k fold differences are in fact independent (SD ``sd``): its
    statistic is then the plain t statistic divided by sqrt((1/k + ratio) / (1/k)), so it rejects when the plain
    one passes that many times the critical value."""
    if not sd > 0:
        return math.nan
    crit = float(student_t.ppf(1 - alpha / 2, k - 1)) * math.sqrt((1 / k + ratio) * k)
    nc = effect / (sd / math.sqrt(k))
    return float(noncentral_t.sf(crit, k - 1, nc) + noncentral_t.cdf(-crit, k - 1, nc))


def _rate(hits: int, n: int) -> dict:
    lo, hi = wilson(hits, n)
    return {"hits": int(hits), "n": int(n), "rate": hits / n if n else math.nan, "low": lo, "high": hi}


def calibrate(table: pd.DataFrame, *, arm_sizes: Sequence[int] = (1, 2), ratio: float | None = None,
              seed: int = 0) -> dict:
    """The A/A false-positive rates, coverage and planted-effect power of every rule, for each number of
    seeds per arm in ``arm_sizes``, from ``table`` (:func:`correctness_table`: every fold holds the same
    seeds). ``ratio``: the Nadeau-Bengio n_test / n_train (default: 1 / (folds - 1)). Returns plain
    numbers (a dict, as the study's json stores it)."""
    folds = sorted(set(table.fold))
    k = len(folds)
    ratio = 1 / (k - 1) if ratio is None else ratio
    cells = {f: dict(zip(g.seed, g.correct)) for f, g in table.groupby("fold")}
    seeds = sorted(set.intersection(*(set(c) for c in cells.values())))
    mean_acc = float(table.acc.mean())
    out = {"folds": k, "clips_per_fold": int(np.mean([len(next(iter(c.values()))) for c in cells.values()])),
           "ratio": ratio, "seeds_per_fold": len(seeds), "mean_accuracy": mean_acc, "rules": RULES, "arms": {}}
    for m in arm_sizes:
        splits = arms(seeds, m)
        if not splits:
            continue
        results = [compare_arms({f: _arm(cells[f], A) for f in folds}, {f: _arm(cells[f], B) for f in folds}, ratio=ratio)
                   for A, B in splits]
        n = len(results)
        sds = [r["interval"].sd for r in results]
        pooled_sd = math.sqrt(float(np.mean(np.square(sds))))
        factor = math.sqrt(1 / k + ratio)
        delta = detectable_effect(pooled_sd * factor, k - 1)           # the 80 % effect at the measured SD
        share = delta / mean_acc
        rng = np.random.default_rng([seed, m])
        planted = [compare_arms({f: _arm(cells[f], A) for f in folds},
                                {f: _arm(cells[f], B, share, rng) for f in folds}, ratio=ratio) for A, B in splits]
        stated = [power(delta, r["interval"].sd * factor, k - 1) for r in planted]
        conservative = [power(delta, r["interval"].sd_conservative * factor, k - 1) for r in planted]
        out["arms"][str(m)] = {
            "seeds_per_arm": m, "comparisons": n,
            "false_positive": {rule: _rate(sum(r["reject"][rule] for r in results), n) for rule in RULES},
            "coverage": _rate(sum(r["interval"].low_nb <= 0 <= r["interval"].high_nb for r in results), n),
            "coverage_plain": _rate(sum(r["interval"].low <= 0 <= r["interval"].high for r in results), n),
            "c9_supported": _rate(sum(r["c9_supported"] for r in results), n),
            "sd": {"pooled": pooled_sd, "min": float(np.min(sds)), "max": float(np.max(sds)),
                   "floor": float(np.sqrt(np.mean(np.square([r["floor"] for r in results]))))},
            "fold_differences": [r["d"] for r in results],
            "planted": {"effect": delta, "share": share,
                        "rejections": {rule: _rate(sum(r["reject"][rule] for r in planted), n)
                                       for rule in ("corrected", "plain", "signflip", "clips")},
                        "coverage": _rate(sum(r["interval"].low_nb <= delta <= r["interval"].high_nb for r in planted), n),
                        "model_power": POWER, "independent_power": independent_power(delta, pooled_sd, k, ratio),
                        "stated_power": float(np.mean(stated)),
                        "conservative_power": float(np.mean(conservative)),
                        "measured_effect": float(np.mean([np.mean(r["d"]) for r in planted]))},
        }
    return out
