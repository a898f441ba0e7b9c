"""Statistics for comparing schemes across cross-validation folds.

The unit of analysis is the fold. Two runs that share a test fold share its clips, and every
seed of a fold trains on the same clips, so seeds are averaged within a fold first; the
comparison is then a paired *t* interval over the folds (``folds - 1`` degrees of freedom).
Folds are not independent either: any two training sets of a k-fold cross-validation share
most of their clips, which makes the plain interval too narrow. The Nadeau-Bengio correction
(Nadeau & Bengio 2003, "Inference for the generalization error") widens the variance of the
mean difference from ``s^2 / k`` to ``(1 / k + n_test / n_train) s^2``; the book's verdicts use
the corrected interval. That correction is an approximation, derived for repeated random
train/test splits; its behaviour on a single k-fold design is not a theorem but a measurement:
``studies/calibrate_claims.py`` runs A/A comparisons on this design and reports the false-positive
rate and coverage of each rule here (:mod:`soundclr.analysis.calibration`).

For each comparison this module also gives the effect that the same design detects with 80 %
power (two-sided, 5 %) and the power at a given effect (the paper's), from the noncentral *t*
distribution, at two standard deviations: the one measured (a 4-df estimate for five folds, itself
uncertain) and a conservative one, the larger of its one-sided 95 % upper confidence bound and the
clip-sampling floor of the test folds (two models tested on n clips differ by clip sampling alone by
``sd(per-clip difference) / sqrt(n)``). Beside the t tests: the exact sign-flip test over the folds
(which cannot go below ``2 / 2^k``: 0.0625 for five folds), Holm's step-down adjustment for a family
of comparisons, Wilson's interval for a rate, and the probability of improvement.

Everything here is plain numbers in, numbers out (no tensors, no runs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import brentq
from scipy.stats import chi2
from scipy.stats import nct as noncentral_t
from scipy.stats import norm
from scipy.stats import t as student_t

LEVEL = 0.95
POWER = 0.80
SD_BOUND = 0.95        # the one-sided level of the SD's upper confidence bound in the conservative power


@dataclass
class FoldInterval:
    """A paired comparison over folds: ``effect`` (mean of the fold-level differences), the plain
    paired t interval (``low``, ``high``), the Nadeau-Bengio corrected one (``low_nb``,
    ``high_nb``), the two-sided p value of the corrected test, ``n`` folds, ``sd`` of the fold
    differences, the effect ``detectable`` with 80 % power by the corrected test, and ``power``
    at a reference effect (None without one). The conservative counterparts (``sd_conservative``,
    ``detectable_conservative``, ``power_conservative``) use the larger of the SD's upper confidence
    bound (``sd_upper``) and the clip-sampling floor (``sd_floor``, NaN where unknown). ``p_plain``: the
    plain t test's p; ``p_signflip``: the exact sign-flip test's."""
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
    p_plain: float = math.nan
    p_signflip: float = math.nan
    sd_floor: float = math.nan
    sd_upper: float = math.inf
    detectable_conservative: float = math.inf
    power_conservative: float | None = None

    @property
    def sd_conservative(self) -> float:
        return max(self.sd_upper, self.sd_floor) if math.isfinite(self.sd_floor) else self.sd_upper

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


def sd_upper_bound(sd: float, df: int, *, level: float = SD_BOUND) -> float:
    """The one-sided ``level`` upper confidence bound of a normal SD estimated as ``sd`` with ``df``
    degrees of freedom: ``sd * sqrt(df / chi2_{1 - level}(df))`` (2.37 sd for 4 df at 95 %)."""
    if df < 1 or not math.isfinite(sd):
        return math.inf
    return sd * math.sqrt(df / chi2.ppf(1 - level, df))


def sign_flip_p(differences: Sequence[float]) -> float:
    """The exact two-sided sign-flip (paired permutation) test of a zero mean: the share of the 2^k
    sign patterns whose mean is at least as far from zero as the observed one. Its smallest value is
    ``2 / 2^k``, so with five folds it never reaches 5 %."""
    d = np.asarray(differences, dtype=float)
    k = len(d)
    if k == 0 or k > 20:
        return math.nan
    signs = 1 - 2 * ((np.arange(2 ** k)[:, None] >> np.arange(k)) & 1)     # every pattern of +-1
    means = np.abs(signs @ d) / k
    return float(np.mean(means >= abs(d.mean()) - 1e-12 * max(1.0, np.abs(d).max())))


def wilson(successes: int, n: int, *, level: float = LEVEL) -> tuple[float, float]:
    """Wilson's score interval for a rate of ``successes`` in ``n`` independent trials."""
    if n == 0:
        return math.nan, math.nan
    z = float(norm.ppf(0.5 + level / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def clip_floor(per_clip: Sequence[np.ndarray]) -> float:
    """The clip-sampling floor of the fold differences' SD, in points: ``per_clip[f]`` holds fold f's per-clip
    differences in correctness (fractions, seeds averaged); per fold their variance over the clips divided by the
    clips, pooled over the folds as a root mean square. Two models tested on n clips differ by this much from clip
    sampling alone. NaN without folds."""
    if not len(per_clip):
        return math.nan
    return 100 * math.sqrt(float(np.mean([float(np.var(d, ddof=1)) / len(d) for d in per_clip])))


def improvement_probability(left: Sequence[Sequence[float]], right: Sequence[Sequence[float]]) -> tuple[float, int, int]:
    """rliable's probability of improvement on a fold design: ``left[f]`` and ``right[f]`` are the
    values of fold f's runs on each side; every left run meets every right run of its fold, a win
    counts 1 and a tie 1/2. Returns (that share, folds whose left mean is higher, folds)."""
    wins = pairs = 0.0
    folds_won = 0
    for a, b in zip(left, right):
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        if not len(a) or not len(b):
            continue
        wins += float((a[:, None] > b[None, :]).sum() + 0.5 * (a[:, None] == b[None, :]).sum())
        pairs += len(a) * len(b)
        folds_won += bool(a.mean() > b.mean())
    folds = sum(1 for a, b in zip(left, right) if len(a) and len(b))
    return (wins / pairs if pairs else math.nan), folds_won, folds


def fold_interval(differences: Sequence[float], *, ratio: float, reference: float | None = None,
                  level: float = LEVEL, floor: float = math.nan) -> FoldInterval:
    """The paired comparison of fold-level differences ``differences`` (one per fold, seeds already
    averaged). ``ratio``: n_test / n_train of one fold's split, for the Nadeau-Bengio correction
    (1/4 for five folds, one of them tested; 0 for no correction). ``reference``: an effect whose
    power is reported (the paper's). ``level``: of both intervals (a simultaneous family passes
    1 - 0.05 / m). ``floor``: the clip-sampling floor of the fold differences' SD, where known."""
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
    p, p_plain = (float(2 * student_t.sf(abs(mean) / s, k - 1)) if s > 0 else (0.0 if mean != 0 else 1.0)
                  for s in (se_nb, se))
    alpha = 1 - level
    upper = sd_upper_bound(sd, k - 1)
    sd_cons = max(upper, floor) if math.isfinite(floor) else upper
    se_cons = sd_cons * math.sqrt(1 / k + ratio)
    return FoldInterval(effect=mean, low=mean - crit * se, high=mean + crit * se, low_nb=mean - crit * se_nb,
                        high_nb=mean + crit * se_nb, p=p, n=k, sd=sd,
                        detectable=detectable_effect(se_nb, k - 1, alpha=alpha),
                        power=None if reference is None else power(reference, se_nb, k - 1, alpha=alpha),
                        ratio=ratio, level=level, p_plain=p_plain, p_signflip=sign_flip_p(d), sd_floor=floor,
                        sd_upper=upper, detectable_conservative=detectable_effect(se_cons, k - 1, alpha=alpha),
                        power_conservative=None if reference is None else power(reference, se_cons, k - 1, alpha=alpha))


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
    """The verdict in words a reader cannot misread. An inconclusive interval says whether this size
    could have told: with less than 80 % power at the paper's effect (``paper``) at the conservative SD,
    "cannot tell at this size". Where the paper's effect lies relative to the interval is a description
    (:func:`paper_position`), not a second verdict."""
    if verdict_ != "inconclusive":
        return verdict_
    if not interval.finite:
        return "inconclusive: no interval (fewer than two folds)"
    pc = interval.power_conservative
    if paper is not None and math.isfinite(paper) and pc is not None and math.isfinite(pc) and pc < POWER:
        return "inconclusive: cannot tell at this size (the interval holds zero; low power at the paper's effect)"
    return "inconclusive: the interval holds zero"


def paper_position(low: float, high: float, paper: float | None) -> str:
    """Where the paper's effect lies relative to an interval, in words (a description: this build's
    network and data are not the paper's, so it is no test of equality)."""
    if paper is None or not math.isfinite(paper) or not (math.isfinite(low) and math.isfinite(high)):
        return ""
    where = "inside" if low <= paper <= high else "above" if paper > high else "below"
    return f"the paper's effect lies {where} this interval"


def one_sided_p(interval: FoldInterval, *, plain: bool = False) -> float:
    """The one-sided p value (alternative: the effect is above zero) of the corrected test of
    ``interval`` (of the plain one with ``plain``), from its two-sided one."""
    p = interval.p_plain if plain else interval.p
    if not math.isfinite(p):
        return math.nan
    return p / 2 if interval.effect > 0 else 1 - p / 2


def clip_interval(differences: Sequence[float], *, level: float = LEVEL) -> FoldInterval:
    """A paired interval over the clips of one test fold (per-clip differences in correctness,
    in points), for claims made fold by fold: no cross-fold correction applies."""
    return fold_interval(differences, ratio=0.0, level=level)
