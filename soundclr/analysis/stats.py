"""Statistics for comparing schemes across cross-validation folds.

The unit of analysis is the fold. Two runs that share a test fold share its clips, and every
seed of a fold trains on the same clips, so seeds are averaged within a fold first; the
comparison is then a paired *t* interval over the folds (``folds - 1`` degrees of freedom).
Folds are not independent either: any two training sets of a k-fold cross-validation share
most of their clips, which makes the plain interval too narrow. The Nadeau-Bengio correction
(Nadeau & Bengio 2003, "Inference for the generalization error") widens the variance of the
mean difference from ``s^2 / k`` to ``(1 / k + n_test / n_train) s^2``; the book's verdicts use
the corrected interval.

For each comparison this module also gives the effect that the same design detects with 80 %
power (two-sided, 5 %) and the power at a given effect (the paper's), from the noncentral *t*
distribution, and Holm's step-down adjustment for a family of comparisons.

Everything here is plain numbers in, numbers out (no tensors, no runs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import brentq
from scipy.stats import nct as noncentral_t
from scipy.stats import t as student_t

LEVEL = 0.95
POWER = 0.80


@dataclass
class FoldInterval:
    """A paired comparison over folds: ``effect`` (mean of the fold-level differences), the plain
    paired t interval (``low``, ``high``), the Nadeau-Bengio corrected one (``low_nb``,
    ``high_nb``), the two-sided p value of the corrected test, ``n`` folds, ``sd`` of the fold
    differences, the effect ``detectable`` with 80 % power by the corrected test, and ``power``
    at a reference effect (None without one)."""
    effect: float
    low: float
    high: float
    low_nb: float
    high_nb: float
    p: float
    n: int
    sd: float
    detectable: float
    power: float | None = None
    ratio: float = 0.0          # n_test / n_train of the correction
    level: float = LEVEL

    @property
    def finite(self) -> bool:
        return self.n >= 2 and math.isfinite(self.low_nb) and math.isfinite(self.high_nb)


def _empty(n: int, effect: float = math.nan, ratio: float = 0.0, level: float = LEVEL) -> FoldInterval:
    return FoldInterval(effect, -math.inf, math.inf, -math.inf, math.inf, math.nan, n, math.nan, math.inf, None, ratio, level)


def power(effect: float, se: float, df: int, *, alpha: float = 1 - LEVEL) -> float:
    """Power of a two-sided t test at level ``alpha`` with ``df`` degrees of freedom to detect a
    true mean difference ``effect`` when the estimate's standard error is ``se``."""
    if df < 1 or not se > 0 or not math.isfinite(se):
        return math.nan
    crit = student_t.ppf(1 - alpha / 2, df)
    nc = abs(effect) / se
    # P(T > crit) + P(T < -crit); scipy's far tail of the noncentral t can come back NaN where it is ~0
    upper, lower = float(noncentral_t.sf(crit, df, nc)), float(noncentral_t.sf(crit, df, -nc))
    return (upper if math.isfinite(upper) else 1.0) + (lower if math.isfinite(lower) else 0.0)


def detectable_effect(se: float, df: int, *, target: float = POWER, alpha: float = 1 - LEVEL) -> float:
    """The smallest true effect a two-sided t test (``df`` degrees of freedom, standard error
    ``se``) detects with probability ``target``."""
    if df < 1 or not math.isfinite(se):
        return math.inf
    if se <= 0:
        return 0.0
    hi = se
    while power(hi, se, df, alpha=alpha) < target:
        hi *= 2
    return float(brentq(lambda d: power(d, se, df, alpha=alpha) - target, 0.0, hi, xtol=1e-10 * se))


def fold_interval(differences: Sequence[float], *, ratio: float, reference: float | None = None,
                  level: float = LEVEL) -> FoldInterval:
    """The paired comparison of fold-level differences ``differences`` (one per fold, seeds already
    averaged). ``ratio``: n_test / n_train of one fold's split, for the Nadeau-Bengio correction
    (1/4 for five folds, one of them tested; 0 for no correction). ``reference``: an effect whose
    power is reported (the paper's). ``level``: of both intervals (a simultaneous family passes
    1 - 0.05 / m)."""
    d = np.asarray(differences, dtype=float)
    k = len(d)
    if k == 0:
        return _empty(0, ratio=ratio, level=level)
    mean = float(d.mean())
    if k < 2:
        return _empty(k, mean, ratio, level)
    sd = float(d.std(ddof=1))
    crit = float(student_t.ppf(0.5 + level / 2, k - 1))
    se = sd / math.sqrt(k)
    se_nb = sd * math.sqrt(1 / k + ratio)
    if se_nb > 0:
        p = float(2 * student_t.sf(abs(mean) / se_nb, k - 1))
    else:
        p = 0.0 if mean != 0 else 1.0
    alpha = 1 - level
    return FoldInterval(effect=mean, low=mean - crit * se, high=mean + crit * se, low_nb=mean - crit * se_nb,
                        high_nb=mean + crit * se_nb, p=p, n=k, sd=sd,
                        detectable=detectable_effect(se_nb, k - 1, alpha=alpha),
                        power=None if reference is None else power(reference, se_nb, k - 1, alpha=alpha),
                        ratio=ratio, level=level)


def cv_ratio(n_folds: int, validation: bool = False) -> float:
    """n_test / n_train of one split of an ``n_folds``-fold cross-validation with equal folds (one
    test fold, and one validation fold left out of training when ``validation``)."""
    train = n_folds - 1 - (1 if validation else 0)
    if train < 1:
        raise ValueError(f"{n_folds} folds leave no training fold")
    return 1 / train


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p values (NaN stays NaN and does not count in the family)."""
    p = np.asarray(pvalues, dtype=float)
    idx = [i for i in np.argsort(p, kind="stable") if not math.isnan(p[i])]
    m = len(idx)
    out = [math.nan] * len(p)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def verdict(interval: FoldInterval) -> str:
    """From the corrected interval: supported (above zero), contradicted (below zero), or
    inconclusive (it holds zero, or there is no interval)."""
    if not interval.finite:
        return "inconclusive"
    if interval.low_nb > 0:
        return "supported"
    if interval.high_nb < 0:
        return "contradicted"
    return "inconclusive"


def verdict_words(interval: FoldInterval, verdict_: str, paper: float | None) -> str:
    """The verdict in words a reader cannot misread: an inconclusive interval that holds both zero
    and the paper's effect says this size cannot tell the two apart."""
    if verdict_ != "inconclusive":
        return verdict_
    if not interval.finite:
        return "inconclusive: no interval (fewer than two folds)"
    if paper is not None and math.isfinite(paper) and interval.low_nb <= paper <= interval.high_nb:
        return "inconclusive: cannot tell at this size (the interval holds both zero and the paper's effect)"
    if paper is not None and math.isfinite(paper):
        return "inconclusive: the interval holds zero but not the paper's effect"
    return "inconclusive: the interval holds zero"


def clip_interval(differences: Sequence[float], *, level: float = LEVEL) -> FoldInterval:
    """A paired interval over the clips of one test fold (per-clip differences in correctness,
    in points), for claims made fold by fold: no cross-fold correction applies."""
    return fold_interval(differences, ratio=0.0, level=level)
