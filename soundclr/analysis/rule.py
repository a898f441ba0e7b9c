"""The verdict rule of the ledger, batched: from per-clip correctness (or per-run values) on each fold to an
interval and a verdict, for one comparison or for thousands of simulated ones at once.

The ledger calls these functions on the runs of a build (a batch of one); :mod:`soundclr.analysis.simulate`
calls the very same functions on simulated experiments, so every power, size and "seeds needed" figure is the
behaviour of the code that decides the page's verdicts, not of a formula beside it.

One comparison holds, for each of its ``k`` folds, the runs of two sides: per-clip correctness ``(B, r, n)``
(B experiments, r runs, n test clips of the fold; 0 or 1) or per-run values ``(B, r)`` in points. Per fold:

- ``d``: the mean over the left side's runs minus the mean over the right side's (seeds averaged first: the
  fold is the unit);
- the **noise floor** of that difference, ``phi`` (points squared): what clip sampling and the seeds alone
  must add to it. Its seed part is each side's within-fold variance of run values, pooled over the folds,
  divided by its runs (a side with one run per fold has none to measure). Its clip part is the variance over
  the fold's clips of the seed-averaged per-clip difference, divided by the clips, less the binomial spread of
  each side's seed average that the seed part already holds (``m (1 - m) / (r - 1)`` per clip, an unbiased
  estimate); with one run on a side that spread stays in the clip part, which then holds its seed noise. A side's
  seed part is never below that binomial spread (a run's shift can only add to it).

The rule (:data:`RULE`): the fold-level paired t interval over the ``k`` fold differences, ``k - 1`` degrees of
freedom, its standard error from the larger of the fold differences' SD and the floor (item 7 of issue 32: an
interval is never narrower than the noise the design guarantees), times the Nadeau-Bengio factor
``sqrt(1/k + n_test/n_train)`` where the rule names it. ``studies/nadeau_bengio.py`` measured the candidates on
independent synthetic draws and the calibration study on A/A comparisons; the calibration page says why this
one was chosen.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.stats import norm
from scipy.stats import t as student_t

LEVEL = 0.95
# The candidate rules: the variance of the fold differences' mean, from their SD s and the noise floor phi.
RULES = {
    "plain": "s^2 / k: the paired t test over the folds",
    "nb": "s^2 (1/k + n_test/n_train): Nadeau-Bengio",
    "floor-plain": "max(s^2, phi) / k: the paired t test, its SD bounded below by the noise floor",
    "floor-nb": "max(s^2, phi) (1/k + n_test/n_train): Nadeau-Bengio, its SD bounded below by the noise floor",
}
RULE = "floor-plain"         # the ledger's; chosen from the studies (see the calibration page)


def _as_batch(a: np.ndarray, clips: bool) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    want = 3 if clips else 2
    if a.ndim == want - 1:
        a = a[None]
    if a.ndim != want:
        raise ValueError(f"expected {'(B, runs, clips)' if clips else '(B, runs)'} arrays, got shape {a.shape}")
    return a


def fold_terms(left: Sequence[np.ndarray], right: Sequence[np.ndarray] | None, *, clips: bool) -> dict:
    """Per fold, the difference and the pieces of its noise floor, batched.

    ``left[f]``, ``right[f]``: fold f's runs of each side, ``(B, r, n)`` per-clip correctness (``clips``) or
    ``(B, r)`` run values in points (a leading B may be left out for one experiment). ``right`` None: ``left``
    holds paired differences already (one value per run). Returns ``(B, k)`` arrays ``d`` (points), ``clip``
    (the clip part of the floor, points squared), ``var_left``/``var_right`` (each fold's variance of run
    values over the side's runs, NaN with fewer than two) and ``r_left``/``r_right`` (runs per fold, ``(k,)``)."""
    k = len(left)
    if k == 0:
        raise ValueError("a comparison needs at least one fold")
    if right is not None and len(right) != k:
        raise ValueError(f"the two sides hold {k} and {len(right)} folds")
    out = {"d": [], "clip": [], "var_left": [], "var_right": [], "r_left": [], "r_right": [], "binom_left": [],
           "binom_right": []}
    for f in range(k):
        sides = [_as_batch(left[f], clips)] + ([] if right is None else [_as_batch(right[f], clips)])
        values = [100 * s.mean(axis=2) if clips else s for s in sides]                       # (B, r) points
        means = [v.mean(axis=1) for v in values]
        out["d"].append(means[0] - (means[1] if len(means) > 1 else 0.0))
        variances = [v.var(axis=1, ddof=1) if v.shape[1] > 1 else np.full(v.shape[0], np.nan) for v in values]
        out["var_left"].append(variances[0])
        out["var_right"].append(variances[1] if len(variances) > 1 else np.full_like(variances[0], np.nan))
        out["r_left"].append(sides[0].shape[1])
        out["r_right"].append(sides[1].shape[1] if len(sides) > 1 else 0)
        if clips:
            m = [s.mean(axis=1) for s in sides]                                                 # (B, n) seed means
            diff = m[0] - (m[1] if len(m) > 1 else 0.0)
            n = diff.shape[1]
            spread = diff.var(axis=1, ddof=1) if n > 1 else np.zeros(diff.shape[0])
            binoms = []
            for s, ms in zip(sides, m):        # the seeds' binomial spread, counted by the seed part instead
                r = s.shape[1]
                binom = (ms * (1 - ms)).mean(axis=1) / (r - 1) if r > 1 else np.zeros(diff.shape[0])
                spread = spread - binom
                binoms.append(1e4 * binom / n)
            out["clip"].append(1e4 * spread / n)
            out["binom_left"].append(binoms[0])
            out["binom_right"].append(binoms[1] if len(binoms) > 1 else np.zeros_like(binoms[0]))
        else:
            out["clip"].append(np.zeros_like(out["d"][-1]))
            out["binom_left"].append(np.zeros_like(out["d"][-1]))
            out["binom_right"].append(np.zeros_like(out["d"][-1]))
    res = {key: np.stack(v, axis=1) for key, v in out.items() if key not in ("r_left", "r_right")}
    res["r_left"], res["r_right"] = np.array(out["r_left"]), np.array(out["r_right"])
    return res


def pooled(var: np.ndarray) -> np.ndarray:
    """The within-fold variances ``(B, k)`` pooled over the folds that have one (NaN where none has)."""
    ok = np.isfinite(var)
    count = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.where(ok, var, 0.0).sum(axis=1) / np.maximum(count, 1), np.nan)


def fold_floor(terms: dict) -> np.ndarray:
    """Each fold's noise floor (points squared, ``(B, k)``): its clip part plus each side's seed part, the side's
    pooled within-fold seed variance over its runs but never less than the binomial spread its clip-by-clip
    disagreement implies (a run's shift can only add to that; two runs of equal accuracy must not erase it); a side
    with one run per fold keeps it in the clip part."""
    phi = terms["clip"].copy()
    for side in ("left", "right"):
        r = terms[f"r_{side}"]
        v = pooled(terms[f"var_{side}"])
        if np.all(r > 1):
            seed = np.where(np.isfinite(v), v, 0.0)[:, None] / r[None, :]
            phi = phi + np.maximum(seed, terms.get(f"binom_{side}", np.zeros_like(seed)))
    return phi


def floor_variance(terms: dict) -> np.ndarray:
    """The noise floor of one fold difference's variance (points squared, ``(B,)``), averaged over the folds
    (:func:`fold_floor`)."""
    return np.maximum(fold_floor(terms).mean(axis=1), 0.0)


def interval(d: np.ndarray, floor: np.ndarray | None, *, ratio: float, rule: str = RULE, level: float = LEVEL) -> dict:
    """The rule on fold differences ``d`` ``(B, k)`` with noise floor ``floor`` ``(B,)`` (points squared, or None):
    ``(B,)`` arrays ``effect``, ``sd``, ``se``, ``low``, ``high``, ``p`` (two-sided) and ``verdict`` (+1 supported:
    the interval lies above zero; -1 contradicted: below; 0 inconclusive)."""
    if rule not in RULES:
        raise ValueError(f"rule={rule!r} is not valid: choose one of {', '.join(RULES)}")
    d = np.atleast_2d(np.asarray(d, dtype=np.float64))
    B, k = d.shape
    effect = d.mean(axis=1)
    if k < 2:
        nan = np.full(B, np.nan)
        return {"effect": effect, "sd": nan, "se": nan, "low": np.full(B, -np.inf), "high": np.full(B, np.inf),
                "p": nan, "verdict": np.zeros(B, dtype=int), "sd_used": nan, "floor": nan}
    sd = d.std(axis=1, ddof=1)
    fl = np.full(B, np.nan) if floor is None else np.broadcast_to(np.asarray(floor, dtype=np.float64), (B,))
    var = sd ** 2
    if rule.startswith("floor"):
        var = np.maximum(var, np.where(np.isfinite(fl), fl, 0.0))
    factor = 1 / k + (ratio if rule.endswith("nb") else 0.0)
    se = np.sqrt(var * factor)
    crit = float(student_t.ppf(0.5 + level / 2, k - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        tstat = np.where(se > 0, np.abs(effect) / se, np.where(effect != 0, np.inf, 0.0))
    p = 2 * student_t.sf(tstat, k - 1)
    low, high = effect - crit * se, effect + crit * se
    verdict = np.where(low > 0, 1, np.where(high < 0, -1, 0))
    return {"effect": effect, "sd": sd, "se": se, "low": low, "high": high, "p": p, "verdict": verdict,
            "sd_used": np.sqrt(var), "floor": np.sqrt(fl)}


def compare(left, right, *, clips: bool, ratio: float, rule: str = RULE, level: float = LEVEL) -> dict:
    """:func:`fold_terms` then :func:`interval`: one comparison's (or a batch's) interval and verdict, with the
    fold differences ``d`` beside them."""
    terms = fold_terms(left, right, clips=clips)
    out = interval(terms["d"], floor_variance(terms), ratio=ratio, rule=rule, level=level)
    out["d"] = terms["d"]
    out["terms"] = terms
    return out


def one_sided_p(res: dict) -> np.ndarray:
    """The one-sided p (alternative: the effect is above zero) of :func:`interval`'s two-sided one."""
    return np.where(res["effect"] > 0, res["p"] / 2, 1 - res["p"] / 2)


def intersection(each: Sequence[dict], joint: Sequence[dict]) -> dict:
    """An intersection-union test (C3: one side beats every rival): ``each[j]`` the comparison with rival j at
    5 %, ``joint[j]`` the same at the simultaneous level. It rejects (verdict +1) only where every comparison
    does; its p is the largest one-sided p, doubled; its interval runs from the smallest of the comparisons'
    lower ends to the smallest of their simultaneous upper ends, so it excludes zero from below exactly when
    the test rejects. Contradicted (-1) where some rival beats it beyond a simultaneous bound. The closest
    rival (smallest effect) gives the effect."""
    effects = np.stack([e["effect"] for e in each], axis=1)
    closest = np.argmin(effects, axis=1)
    rows = np.arange(effects.shape[0])
    low = np.min(np.stack([e["low"] for e in each], axis=1), axis=1)
    high = np.min(np.stack([j["high"] for j in joint], axis=1), axis=1)
    p = np.minimum(1.0, 2 * np.max(np.stack([one_sided_p(e) for e in each], axis=1), axis=1))
    return {"effect": effects[rows, closest], "low": low, "high": high, "p": p, "closest": closest,
            "verdict": np.where(low > 0, 1, np.where(high < 0, -1, 0))}


def noninferior(pairs: Sequence[dict], *, margin: float, level: float = LEVEL, worse_level: float | None = None) -> dict:
    """C9, "the left side is at least as good on every fold", as a non-inferiority intersection-union test over the
    folds and rivals: ``pairs`` holds one :func:`fold_terms` per rival (left minus rival). Per fold, the difference's
    standard error is that fold's noise floor (clips and seeds: the fold's clips are a sample, its seeds replicate);
    the one-sided ``level`` lower bound of every fold and rival must lie above ``-margin`` (each at 5 %: an
    intersection needs no multiplicity correction) for the verdict +1. The claim fails (-1) where some fold's upper
    bound at the simultaneous one-sided ``worse_level`` (default: Bonferroni over every fold and rival) lies below
    ``-margin``. Returns ``(B,)`` ``verdict``, and ``(B, rivals * k)`` ``d``, ``low``, ``high``."""
    m = sum(t["d"].shape[1] for t in pairs)
    worse_level = 1 - (1 - level) / m if worse_level is None else worse_level
    ds, lows, highs = [], [], []
    for terms in pairs:
        se = np.sqrt(np.maximum(fold_floor(terms), 0.0))
        ds.append(terms["d"])
        lows.append(terms["d"] - float(norm.ppf(level)) * se)
        highs.append(terms["d"] + float(norm.ppf(worse_level)) * se)
    d, low, high = (np.concatenate(x, axis=1) for x in (ds, lows, highs))
    verdict = np.where((high < -margin).any(axis=1), -1, np.where((low > -margin).all(axis=1), 1, 0))
    return {"verdict": verdict, "d": d, "low": low, "high": high, "level": level, "worse_level": worse_level}


def verdict_name(code: int) -> str:
    return {1: "supported", -1: "contradicted", 0: "inconclusive"}[int(code)]
