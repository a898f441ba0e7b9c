"""The figures a ledger row prints beside its verdict, simulated: the power at the paper's effect, the effect
detected with 80 % power, the size (the rate of a verdict at zero effect), each with its Monte Carlo error, and
a band from the components' uncertainty.

A comparison's runs are fitted once (:func:`soundclr.analysis.noise.fit` or :func:`fit_values`); experiments of
the build's own design are drawn from the fit (:mod:`soundclr.analysis.simulate`) and decided by the ledger's
rule (:mod:`soundclr.analysis.rule`). The functions here only say which sides, which design and which decider.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np

from . import rule
from .noise import NoiseModel, fit
from .simulate import (
    SEARCH_SIMS,
    SIMS,
    Design,
    ValueModel,
    band,
    centred,
    clip_experiments,
    detectable,
    rate,
    value_experiments,
)

BAND_REPLICATES = 30
BAND_SIMS = 300
CRN = 12345          # one stream of random numbers for every effect of a search: the simulated power rises with it


def _runs(folds: Sequence[np.ndarray]) -> int:
    return int(min(f.shape[0] for f in folds))


def pair_decider(left: str, right: str, *, ratio: float, clips: bool = True, level: float = rule.LEVEL,
                 rule_name: str = rule.RULE) -> Callable[[list[dict]], np.ndarray]:
    """The ledger's verdict on simulated experiments of one comparison ``left - right``."""
    def decide(folds: list[dict]) -> np.ndarray:
        return rule.compare([f[left] for f in folds], [f[right] for f in folds], clips=clips, ratio=ratio,
                            rule=rule_name, level=level)["verdict"]
    return decide


def clip_figures(sides: Mapping[str, Sequence[np.ndarray]], left: str, right: str, *, ratio: float,
                 paper: float | None, borrow: Mapping | None = None, shared: float = 0.0, model: NoiseModel | None = None,
                 with_band: bool = True) -> dict:
    """Simulated figures of the comparison ``left - right`` on per-clip correctness (``sides[name][f]``: fold f's
    (runs, clips)): ``power`` at the paper's effect, ``detectable`` (80 %), ``size`` (any verdict at zero effect),
    their Monte Carlo errors, and ``power_band``/``detectable_band``; the fitted ``model`` beside them."""
    sides = {s: sides[s] for s in (left, right)}
    model = model or fit(sides, train_pairs=[(left, right)], borrow=borrow, shared=shared)
    design = Design(clips=tuple(int(f.shape[1]) for f in sides[left]), runs={left: _runs(sides[left]),
                                                                            right: _runs(sides[right])})
    decide = pair_decider(left, right, ratio=ratio)
    return _figures(model, design, decide, left, right, paper, with_band,
                    refit=lambda sim: fit(sim, train_pairs=[(left, right)], borrow=borrow or _borrow_of(model),
                                          shared=shared))


def _borrow_of(model: NoiseModel) -> dict:
    return {s: v for s, v in model.sides.items() if v.source != "measured"}


def _figures(model: NoiseModel, design: Design, decide, left: str, right: str, paper: float | None, with_band: bool,
             refit) -> dict:
    acc = {s: v.acc for s, v in model.sides.items()}

    def power_at(effect: float, m: NoiseModel = model, sims: int = SIMS, verdicts=(1,)) -> dict:
        mm = m.with_accuracy(centred({s: v.acc for s, v in m.sides.items()}, left, right, effect))
        return rate(lambda b, rng: clip_experiments(mm, design, b, rng), decide, verdicts=verdicts, sims=sims, seed=CRN)

    out = {"model": model, "design": design}
    size = power_at(0.0, verdicts=(1, -1))
    out.update(size=size["rate"], size_mc=size["mc"])
    det = detectable(lambda e: power_at(e, sims=SEARCH_SIMS)["rate"])
    out.update(detectable=det, power=math.nan, power_mc=math.nan)
    if paper is not None and math.isfinite(paper) and paper > 0:
        p = power_at(paper)
        out.update(power=p["rate"], power_mc=p["mc"])
    out["power_band"] = out["detectable_band"] = (math.nan, math.nan)
    if with_band:
        build = Design(clips=design.clips, runs=dict(design.runs))

        def simulate_build(rng):
            folds = clip_experiments(model.with_accuracy(acc), build, 1, rng)
            return {s: [f[s][0] for f in folds] for s in (left, right)}

        add_bands(out, simulate_build, refit, power_at, paper)
    return out


def add_bands(out: dict, simulate_build, refit, power_at, paper: float | None) -> None:
    """The parametric-bootstrap bands of a row's power at the paper's effect and of its detectable effect, each
    centred on its figure (:func:`soundclr.analysis.simulate.band`)."""
    if math.isfinite(out["power"]):
        out["power_band"] = band(simulate_build, refit, lambda m: power_at(paper, m, sims=BAND_SIMS)["rate"],
                                 replicates=BAND_REPLICATES, point=out["power"], bounds=(0.0, 1.0))
    out["detectable_band"] = band(simulate_build, refit, lambda m: detectable(
        lambda e: power_at(e, m, sims=BAND_SIMS // 2)["rate"], tol=0.05), replicates=BAND_REPLICATES // 2,
        point=out["detectable"])


# -- claims measured on per-run values (no per-clip correctness) -----------------------------------------
def fit_values(sides: Mapping[str, Sequence[np.ndarray]], *, shared: float = 0.0) -> ValueModel:
    """A :class:`~soundclr.analysis.simulate.ValueModel` from per-run values (``sides[name][f]``: fold f's runs):
    each side's mean and pooled within-fold seed variance; the training-set term of the difference (one side:
    of its values) by the method of moments with the ledger's floor, split evenly between two sides."""
    names = list(sides)
    k = len(sides[names[0]])
    means = {s: float(np.mean([np.mean(f) for f in sides[s]])) for s in names}
    seed = {}
    for s in names:
        v = [(np.var(f, ddof=1), len(f) - 1) for f in sides[s] if len(f) > 1]
        df = sum(d for _, d in v)
        seed[s] = sum(x * d for x, d in v) / df if df else 0.0
    right = None if len(names) == 1 else [np.asarray(f, float)[None] for f in sides[names[1]]]
    terms = rule.fold_terms([np.asarray(f, float)[None] for f in sides[names[0]]], right, clips=False)
    raw = float(terms["d"][0].var(ddof=1) - rule.floor_variance(terms)[0]) if k > 1 else math.nan
    train = max(raw, 0.0) if math.isfinite(raw) else 0.0
    return ValueModel(means=means, seed=seed, train={s: train / len(names) for s in names}, shared=shared,
                      moments={"train_raw": raw})


def value_figures(sides: Mapping[str, Sequence[np.ndarray]], *, ratio: float, paper: float | None,
                  shared: float = 0.0, with_band: bool = True) -> dict:
    """The simulated figures (as :func:`clip_figures`) of a comparison of per-run values: two sides (left minus
    right) or one side of paired differences."""
    names = list(sides)
    model = fit_values(sides, shared=shared)
    k = len(sides[names[0]])
    runs = {s: int(min(len(f) for f in sides[s])) for s in names}

    def decide(folds):
        return rule.compare([f[names[0]] for f in folds], [f[names[1]] for f in folds] if len(names) > 1 else None,
                            clips=False, ratio=ratio)["verdict"]

    def power_at(effect, m=model, sims=SIMS, verdicts=(1,)):
        if len(names) == 1:
            mm = m.with_means({names[0]: effect})
        else:
            mid = (m.means[names[0]] + m.means[names[1]]) / 2
            mm = m.with_means({names[0]: mid + effect / 2, names[1]: mid - effect / 2})
        return rate(lambda b, rng: value_experiments(mm, k, runs, b, rng), decide, verdicts=verdicts, sims=sims, seed=CRN)

    out = {"model": model}
    size = power_at(0.0, verdicts=(1, -1))
    out.update(size=size["rate"], size_mc=size["mc"], power=math.nan, power_mc=math.nan,
               detectable=detectable(lambda e: power_at(e, sims=SEARCH_SIMS)["rate"]))
    if paper is not None and math.isfinite(paper) and paper > 0:
        p = power_at(paper)
        out.update(power=p["rate"], power_mc=p["mc"])
    out["power_band"] = out["detectable_band"] = (math.nan, math.nan)
    if with_band:
        def simulate_build(rng):
            folds = value_experiments(model, k, runs, 1, rng)
            return {s: [f[s][0] for f in folds] for s in names}

        refit = lambda sim: fit_values(sim, shared=shared)       # noqa: E731
        add_bands(out, simulate_build, refit, power_at, paper)
    return out

