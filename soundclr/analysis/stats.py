"""Statistics for comparing schemes across cross-validation folds.

The unit of analysis is the fold. Two runs that share a test fold share its clips, and every seed of a fold
trains on the same clips, so seeds are averaged within a fold first; the comparison is then a paired *t*
interval over the folds (``folds - 1`` degrees of freedom), decided by the ledger's rule
(:mod:`soundclr.analysis.rule`: the interval's SD is never below the noise floor that clip sampling and the
seeds guarantee, and it carries the Nadeau-Bengio factor ``1 / k + n_test / n_train`` for overlapping training
sets). :func:`fold_interval` wraps that rule for one comparison and sets the plain t interval and the exact
sign-flip test beside it.

The power figures are not computed here: every power, detectable effect and size the pages print is simulated
from the noise model (:mod:`soundclr.analysis.noise`, :mod:`soundclr.analysis.power`) and decided by the rule
itself. :func:`power` and :func:`detectable_effect` (the noncentral t) remain as an analytic cross-check of the
simulator in the tests. Beside them: Holm's step-down adjustment and Wilson's interval (statsmodels), and the
probability of improvement with its stratified-bootstrap interval (as rliable computes it).

Everything here is plain numbers in, numbers out (no tensors, no runs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
from scipy.optimize import brentq
from scipy.stats import nct as noncentral_t
from scipy.stats import t as student_t
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from . import rule as rules

LEVEL = 0.95
POWER = 0.80


@dataclass
class FoldInterval:
    """A paired comparison over folds: ``effect`` (mean of the fold-level differences), the plain paired t interval
    (``low``, ``high``: s^2 / k, no correction, no floor), the ledger's rule's interval (``low_nb``, ``high_nb``:
    :data:`soundclr.analysis.rule.RULE`, named "corrected" on the pages), its two-sided p value ``p``, ``n`` folds,
    ``sd`` of the fold differences and ``sd_floor``, the noise floor of that SD (clips and seeds; NaN where
    unknown). The power figures are simulated (:mod:`soundclr.analysis.power`): ``power`` at a reference effect
    (the paper's), ``detectable`` (80 %), ``size`` (the rate of a verdict at zero effect), each with its Monte
    Carlo error (``*_mc``) and a band from the components' uncertainty (``*_band``); NaN until filled in."""
    effect: float
    low: float
    high: float
    low_nb: float
    high_nb: float
    p: float
    n: int
    sd: float
    detectable: float = math.nan
    power: float | None = None
    ratio: float = 0.0          # n_test / n_train of the correction
    level: float = LEVEL
    p_plain: float = math.nan
    p_signflip: float = math.nan
    sd_floor: float = math.nan
    power_mc: float = math.nan
    power_band: tuple = (math.nan, math.nan)
    detectable_band: tuple = (math.nan, math.nan)
    size: float = math.nan
    size_mc: float = math.nan
    rule: str = ""

    @property
    def finite(self) -> bool:
        return self.n >= 2 and math.isfinite(self.low_nb) and math.isfinite(self.high_nb)

    def with_figures(self, figures: dict | None) -> "FoldInterval":
        """This interval with the simulated figures of :mod:`soundclr.analysis.power` filled in."""
        if not figures:
            return self
        power = figures.get("power", math.nan)
        return replace(self, power=None if not math.isfinite(power) else power, power_mc=figures.get("power_mc", math.nan),
                       detectable=figures.get("detectable", math.nan), power_band=tuple(figures.get("power_band", (math.nan,) * 2)),
                       detectable_band=tuple(figures.get("detectable_band", (math.nan,) * 2)),
                       size=figures.get("size", math.nan), size_mc=figures.get("size_mc", math.nan))


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
    """Wilson's score interval for a rate of ``successes`` in ``n`` independent trials (statsmodels)."""
    if n == 0:
        return math.nan, math.nan
    lo, hi = proportion_confint(successes, n, alpha=1 - level, method="wilson")
    return max(0.0, float(lo)), min(1.0, float(hi))


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


def improvement_interval(left: Sequence[Sequence[float]], right: Sequence[Sequence[float]], *, reps: int = 2000,
                         level: float = LEVEL, seed: int = 0) -> tuple[float, float]:
    """rliable's stratified-bootstrap interval of :func:`improvement_probability`: each fold is a stratum, and
    each side's runs of a fold are resampled with replacement (``reps`` times); the central ``level`` share of the
    resampled probabilities."""
    rng = np.random.default_rng(seed)
    pairs = [(np.asarray(a, float), np.asarray(b, float)) for a, b in zip(left, right) if len(a) and len(b)]
    if not pairs:
        return math.nan, math.nan
    wins = np.zeros(reps)
    total = 0
    for a, b in pairs:
        ra = a[rng.integers(0, len(a), (reps, len(a)))]
        rb = b[rng.integers(0, len(b), (reps, len(b)))]
        gt = (ra[:, :, None] > rb[:, None, :]).sum(axis=(1, 2))
        eq = (ra[:, :, None] == rb[:, None, :]).sum(axis=(1, 2))
        wins += gt + 0.5 * eq
        total += len(a) * len(b)
    lo, hi = np.quantile(wins / total, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def fold_interval(differences: Sequence[float], *, ratio: float, level: float = LEVEL, floor_var: float = math.nan,
                  rule_name: str | None = None) -> FoldInterval:
    """The ledger's rule (:func:`soundclr.analysis.rule.interval`) on fold-level differences ``differences`` (one per
    fold, seeds already averaged), with the noise floor ``floor_var`` of one fold difference's variance (points
    squared, NaN where unknown), and beside it the plain t interval, its p and the exact sign-flip p. ``ratio``:
    n_test / n_train of one fold's split (1/4 for five folds). ``level``: of both intervals (a simultaneous family
    passes 1 - 0.05 / m). The power figures are left empty (:meth:`FoldInterval.with_figures`)."""
    name = rule_name or rules.RULE
    d = np.asarray(differences, dtype=float)
    k = len(d)
    if k == 0:
        return _empty(0, ratio=ratio, level=level)
    mean = float(d.mean())
    if k < 2:
        return _empty(k, mean, ratio, level)
    res = rules.interval(d[None], None if not math.isfinite(floor_var) else np.array([floor_var]), ratio=ratio,
                         rule=name, level=level)
    plain = rules.interval(d[None], None, ratio=ratio, rule="plain", level=level)
    return FoldInterval(effect=mean, low=float(plain["low"][0]), high=float(plain["high"][0]),
                        low_nb=float(res["low"][0]), high_nb=float(res["high"][0]), p=float(res["p"][0]), n=k,
                        sd=float(res["sd"][0]), ratio=ratio, level=level, p_plain=float(plain["p"][0]),
                        p_signflip=sign_flip_p(d), sd_floor=math.sqrt(floor_var) if math.isfinite(floor_var) else math.nan,
                        rule=name)


def cv_ratio(n_folds: int, validation: bool = False) -> float:
    """n_test / n_train of one split of an ``n_folds``-fold cross-validation with equal folds (one
    test fold, and one validation fold left out of training when ``validation``)."""
    train = n_folds - 1 - (1 if validation else 0)
    if train < 1:
        raise ValueError(f"{n_folds} folds leave no training fold")
    return 1 / train


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p values (statsmodels' ``multipletests``; NaN stays NaN and does not count in the
    family)."""
    p = np.asarray(pvalues, dtype=float)
    out = [math.nan] * len(p)
    idx = [i for i in range(len(p)) if not math.isnan(p[i])]
    if idx:
        adjusted = multipletests(p[idx], method="holm")[1]
        for i, v in zip(idx, adjusted):
            out[i] = float(v)
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
    """The verdict in words a reader cannot misread. An inconclusive interval says whether this size could have
    told: with less than 80 % simulated power at the paper's effect (``paper``), "cannot tell at this size". Where
    the paper's effect lies relative to the interval is a description (:func:`paper_position`), not a second
    verdict."""
    if verdict_ != "inconclusive":
        return verdict_
    if not interval.finite:
        return "inconclusive: no interval (fewer than two folds)"
    pw = interval.power
    if paper is not None and math.isfinite(paper) and pw is not None and math.isfinite(pw) and pw < POWER:
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
