"""Power, size and "seeds needed", simulated: experiments drawn from the noise model, decided by the ledger's rule.

:func:`clip_experiments` draws per-clip correctness for any design (folds, clips per fold, runs per side) from a
:class:`~soundclr.analysis.noise.NoiseModel`; :func:`value_experiments` draws per-run values from a
:class:`ValueModel` (claims measured on something other than per-clip correctness: accuracy lost under noise,
epochs, ensembles). A *decider* turns a batch of simulated experiments into verdict codes with the functions of
:mod:`soundclr.analysis.rule`, the ones the ledger applies to the real runs. Every rate is the share of
simulated experiments with that verdict (:func:`rate`), with its Monte Carlo standard error; :func:`band` adds
the spread that the components' own uncertainty causes (a parametric bootstrap: experiments of the build's own
design drawn from the fitted model, the model refitted to each, the figure recomputed).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping

import numpy as np
from scipy.stats import norm

from .noise import NoiseModel

POWER = 0.80
SIMS = 2000            # experiments per figure
SEARCH_SIMS = 1000     # per step of a search (detectable effect, seeds needed)
NOT_DETECTABLE = 100.0  # points: an effect this design would need beyond this is "not detectable"


@dataclass(frozen=True)
class Design:
    """A design: ``clips`` per fold (one number per fold), and ``runs`` per fold of each side (None: infinitely
    many, the seed-averaged limit)."""
    clips: tuple[int, ...]
    runs: Mapping[str, int | None]

    @property
    def folds(self) -> int:
        return len(self.clips)


@dataclass(frozen=True)
class ValueModel:
    """A two-level Gaussian model of per-run values (points, epochs, ...): per side its mean and its seed
    variance within a fold; per side the variance of its training-set term (fold to fold), and the shared part
    (as :class:`~soundclr.analysis.noise.NoiseModel`). A side of paired differences is one side alone."""
    means: Mapping[str, float]
    seed: Mapping[str, float]
    train: Mapping[str, float]
    shared: float = 0.0
    moments: Mapping[str, float] = field(default_factory=dict)

    def with_means(self, means: Mapping[str, float]) -> "ValueModel":
        return replace(self, means={**self.means, **means})


def _training_shifts(train: float, shared: float, batch: int, folds: int, rng) -> np.ndarray:
    """(B, folds) training-set terms: a fold-to-fold part of variance ``train`` and a part common to the folds of one
    dataset of variance ``train * shared``."""
    if train <= 0:
        return np.zeros((batch, folds))
    own = rng.standard_normal((batch, folds)) * math.sqrt(train)
    common = rng.standard_normal((batch, 1)) * math.sqrt(train * shared)
    return own + common


def clip_experiments(model: NoiseModel, design: Design, batch: int, rng: np.random.Generator) -> list[dict]:
    """``batch`` experiments of ``design`` drawn from ``model``: per fold, a dict side -> (B, runs, clips) per-clip
    correctness (0/1, float32); a side with infinitely many runs gets one row of its per-clip accuracy (the
    seed-averaged limit, which the rule reads as one exact run)."""
    sides = list(design.runs)
    k = design.folds
    shifts = {}
    for s in sides:
        sd = model.sides[s]
        dens = max(float(norm.pdf(sd.c)), 1e-6)            # accuracy per unit of c, to turn points into a shift
        shifts[s] = _training_shifts(sd.train, model.shared, batch, k, rng) / 100 / dens
    out = []
    for f, n in enumerate(design.clips):
        u = rng.standard_normal((batch, n), dtype=np.float32)
        fold = {}
        for s in sides:
            sd = model.sides[s]
            base = (sd.c + shifts[s][:, f:f + 1]).astype(np.float32) + sd.a * u
            if sd.w > 0:
                base = base + math.sqrt(sd.w) * rng.standard_normal((batch, n), dtype=np.float32)
            r = design.runs[s]
            noise = math.sqrt(sd.r_run + sd.e)
            if r is None:
                fold[s] = norm.cdf(base / max(noise, 1e-9)).astype(np.float32)[:, None, :]
                continue
            latent = base[:, None, :] + math.sqrt(sd.e) * rng.standard_normal((batch, r, n), dtype=np.float32)
            if sd.r_run > 0:
                latent += math.sqrt(sd.r_run) * rng.standard_normal((batch, r, 1), dtype=np.float32)
            fold[s] = (latent > 0).astype(np.float32)
        out.append(fold)
    return out


def value_experiments(model: ValueModel, folds: int, runs: Mapping[str, int], batch: int,
                      rng: np.random.Generator) -> list[dict]:
    """``batch`` experiments drawn from a :class:`ValueModel`: per fold, a dict side -> (B, runs) values."""
    shifts = {s: _training_shifts(model.train.get(s, 0.0), model.shared, batch, folds, rng) for s in runs}
    return [{s: model.means[s] + shifts[s][:, f:f + 1] + math.sqrt(max(model.seed.get(s, 0.0), 0.0))
             * rng.standard_normal((batch, r)) for s, r in runs.items()} for f in range(folds)]


Decider = Callable[[list[dict]], np.ndarray]


def rate(draw: Callable[[int, np.random.Generator], list[dict]], decide: Decider, *, verdicts=(1,),
         sims: int = SIMS, seed: int = 0, chunk: int = 500) -> dict:
    """The share of ``sims`` simulated experiments (``draw(batch, rng)``) whose verdict code (``decide``) is in
    ``verdicts``, with its Monte Carlo standard error (:func:`rates` with one decider)."""
    return rates(draw, {"one": (decide, verdicts)}, sims=sims, seed=seed, chunk=chunk)["one"]


def rates(draw: Callable[[int, np.random.Generator], list[dict]], deciders: Mapping[str, tuple[Decider, tuple]], *,
          sims: int = SIMS, seed: int = 0, chunk: int = 500) -> dict[str, dict]:
    """:func:`rate` of several deciders on the same simulated experiments: ``deciders[name] = (decide, verdicts)``."""
    rng = np.random.default_rng(seed)
    hits = {k: 0 for k in deciders}
    done = 0
    while done < sims:
        b = min(chunk, sims - done)
        folds = draw(b, rng)
        for k, (decide, verdicts) in deciders.items():
            hits[k] += int(np.isin(decide(folds), verdicts).sum())
        done += b
    out = {}
    for k, h in hits.items():
        p = h / sims
        out[k] = {"rate": p, "mc": math.sqrt(max(p * (1 - p), 0.25 / sims) / sims), "sims": sims}
    return out


def detectable(power_at: Callable[[float], float], *, target: float = POWER, limit: float = NOT_DETECTABLE,
               tol: float = 0.02) -> float:
    """The smallest effect (points, >= 0) at which ``power_at`` (a simulated rate, with common random numbers so
    that it rises with the effect) reaches ``target``; inf beyond ``limit``."""
    lo, hi = 0.0, 1.0
    while power_at(hi) < target:
        lo, hi = hi, 2 * hi
        if hi > limit:
            return math.inf if power_at(limit) < target else _bisect(power_at, lo, limit, target, tol)
    return _bisect(power_at, lo, hi, target, tol)


def _bisect(f, lo, hi, target, tol):
    while hi - lo > tol * max(1.0, hi):
        mid = (lo + hi) / 2
        if f(mid) >= target:
            hi = mid
        else:
            lo = mid
    return hi


def centred(model_acc: Mapping[str, float], left: str, right: str, effect: float) -> dict[str, float]:
    """Accuracies (fractions) of ``left`` and ``right`` ``effect`` points apart around their fitted mean (clamped
    to [0.5 %, 99.5 %])."""
    mid = (model_acc[left] + model_acc[right]) / 2
    half = effect / 200
    return {left: min(max(mid + half, 0.005), 0.995), right: min(max(mid - half, 0.005), 0.995)}


def band(simulate_build: Callable[[np.random.Generator], object], refit: Callable[[object], object],
         figure: Callable[[object], float], *, replicates: int = 40, seed: int = 1, level: float = 0.90,
         point: float | None = None, bounds: tuple[float, float] = (0.0, math.inf)) -> tuple[float, float]:
    """A parametric-bootstrap band of a figure: ``replicates`` times, runs of the build's design are drawn from the
    fitted model (``simulate_build``), the model is refitted to them (``refit``) and the figure recomputed; the
    central ``level`` share of those figures. With ``point`` (the figure at the fitted model) the band is centred
    on it: the refits' spread below and above their median, laid around the point (a refit's own bias, e.g. a
    variance term truncated at zero, then does not move the band off its figure), within ``bounds``."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(replicates):
        try:
            values.append(figure(refit(simulate_build(rng))))
        except (ValueError, FloatingPointError):
            continue
    if not values:
        return math.nan, math.nan
    values = np.asarray(values, dtype=float)        # inf (not detectable) sorts last
    lo, mid, hi = np.quantile(values, [(1 - level) / 2, 0.5, (1 + level) / 2], method="nearest")
    if point is not None and math.isfinite(point) and math.isfinite(mid):
        lo, hi = point - (mid - lo), point + (hi - mid) if math.isfinite(hi) else math.inf
    return float(max(lo, bounds[0])), float(min(hi, bounds[1]))


def seeds_needed(power_with: Callable[[int | None], float], *, target: float = POWER, most: int = 20) -> dict:
    """The fewest runs per fold and side with ``power_with(r) >= target``, searching from 1 to ``most``; the ceiling,
    ``power_with(None)`` with infinitely many seeds; and the power at ``most``."""
    ceiling = power_with(None)
    out = {"ceiling": ceiling, "need": None, "at_most": math.nan, "most": most}
    if ceiling < target:
        return out
    lo, hi = 0, most
    p_hi = power_with(most)
    out["at_most"] = p_hi
    if p_hi < target:
        return out
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if power_with(mid) >= target:
            hi = mid
        else:
            lo = mid
    out["need"] = hi
    return out
