"""How often the ledger's verdict rules err on this design, measured on real runs and, with the precision only a
simulator gives, on the noise model those runs validate.

An **A/A comparison** takes runs of one scheme, splits the seeds of every fold into two arms and compares the arms
exactly as the ledger compares two schemes (:mod:`soundclr.analysis.rule`). Both arms are the same training
procedure, so the true effect is zero: a verdict is a false positive, and an interval that misses zero misses the
truth. Comparison j takes seeds ``2mj .. 2mj + 2m - 1`` of every fold (the first m in arm A): no two share a run,
so the rates are binomial and get Wilson intervals. Twenty seeds give ten comparisons of one seed per arm: too few
to tell a 5 % rate from 15 % (that takes about 60). So the same scheme's runs are fitted
(:func:`soundclr.analysis.noise.fit`) and thousands of A/A comparisons of the same design are simulated and decided
by the same rule; the real comparisons validate the simulator (:func:`validate`: their fold SDs and p values
against the simulated distributions, by Kolmogorov-Smirnov tests).

**Planted effects** that add no noise: in arm B of every comparison a fixed set of clips (the same clips in every
run of arm B, and in every comparison) is marked wrong, which lowers arm B by a nearly fixed amount; and one that
varies with the training set (a different share of clips on each fold). The rate at which the rule finds them is
set beside the power the simulator gives the rule at the same effect.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import chi2, kstest

from ..files import read_json
from ..runs.inference import clip_correctness
from . import rule
from .claims import c9_margin
from .noise import NoiseModel, SideNoise, fit
from .simulate import Design, clip_experiments, detectable
from .simulate import rate as sim_rate
from .stats import wilson

ALPHA = 0.05
RULE_NAMES = tuple(rule.RULES)


def correctness_table(runs) -> pd.DataFrame:
    """One row per finished run of ``runs``: scheme, fold, seed, final accuracy (points), training seconds and the
    per-clip correctness of its final model (``correct``, clips in index order)."""
    out = []
    for run in runs:
        if not run.finished:
            continue
        s = read_json(run.directory / "summary.json")
        out.append({"scheme": run.config.run.scheme, "fold": run.config.run.test_fold, "seed": run.config.run.seed,
                    "acc": 100 * s["final"]["test_acc"], "seconds": s.get("seconds", math.nan),
                    "correct": clip_correctness(run.directory)})
    return pd.DataFrame(out, columns=["scheme", "fold", "seed", "acc", "seconds", "correct"])


def arms(seeds: Sequence[int], m: int) -> list[tuple[list[int], list[int]]]:
    """The disjoint A/A splits of ``seeds`` with ``m`` seeds per arm: (arm A, arm B) for each comparison."""
    s = sorted(seeds)
    return [(s[2 * m * j:2 * m * j + m], s[2 * m * j + m:2 * m * (j + 1)]) for j in range(len(s) // (2 * m))]


def rate(hits: int, n: int) -> dict:
    lo, hi = wilson(hits, n)
    return {"hits": int(hits), "n": int(n), "rate": hits / n if n else math.nan, "low": lo, "high": hi}


def decide_all(left: list, right: list, *, ratio: float) -> dict:
    """Every candidate rule on a batch of comparisons (``left[f]``, ``right[f]``: (B, runs, clips)): per rule the
    verdict codes and p values; the fold SDs and the noise floor."""
    terms = rule.fold_terms(left, right, clips=True)
    floor = rule.floor_variance(terms)
    out = {"sd": terms["d"].std(axis=1, ddof=1), "floor": np.sqrt(floor), "effect": terms["d"].mean(axis=1),
           "d": terms["d"]}
    for name in RULE_NAMES:
        res = rule.interval(terms["d"], floor, ratio=ratio, rule=name)
        out[name] = {"verdict": res["verdict"], "p": res["p"], "low": res["low"], "high": res["high"]}
    return out


def _stack(cells: dict, folds: list[int], seeds: list[int]) -> list[np.ndarray]:
    return [np.stack([cells[f][s] for s in seeds])[None] for f in folds]


def aa_model(table: pd.DataFrame) -> NoiseModel:
    """The noise model of one scheme's runs as an A/A comparison: both arms are the scheme (same accuracy, the
    same clip structure: the two sides' clip terms are one), no training-set term between them."""
    folds = sorted(set(table.fold))
    one = fit({"s": [np.stack(list(table[table.fold == f].correct)) for f in folds]}).sides["s"]
    side = SideNoise(one.acc, one.r_same, one.r_run, a=math.sqrt(one.r_same))
    return NoiseModel(sides={"A": side, "B": side}, folds=len(folds),
                      clips=float(np.mean([len(c) for c in table.correct])), shared=0.0)


def plant(correct: np.ndarray, clips: np.ndarray) -> np.ndarray:
    """``correct`` (runs, clips) with the clips ``clips`` (indices) marked wrong in every run."""
    out = correct.copy()
    out[:, clips] = 0.0
    return out


def calibrate(table: pd.DataFrame, *, arm_sizes: Sequence[int] = (1, 2), ratio: float | None = None,
              sims: int = 4000, seed: int = 0, planted_points: float | None = None) -> dict:
    """One scheme's calibration from ``table`` (:func:`correctness_table`, one scheme, every fold holding the same
    seeds): for each arm size, the real A/A rates of every rule with Wilson intervals, the simulated rates of the
    same design with their Monte Carlo errors, the simulator's validation, and the planted effects. Plain numbers
    (a dict, as the study's json stores it)."""
    folds = sorted(set(table.fold))
    k = len(folds)
    ratio = 1 / (k - 1) if ratio is None else ratio
    cells = {f: dict(zip(g.seed, g.correct)) for f, g in table.groupby("fold")}
    seeds = sorted(set.intersection(*(set(c) for c in cells.values())))
    model = aa_model(table[table.seed.isin(seeds)])
    clips = tuple(len(next(iter(cells[f].values()))) for f in folds)
    rng = np.random.default_rng(seed)
    out = {"folds": k, "clips_per_fold": float(np.mean(clips)), "ratio": ratio, "seeds_per_fold": len(seeds),
           "mean_accuracy": float(table.acc.mean()), "rules": dict(rule.RULES), "arms": {},
           "model": {"acc": model.sides["A"].acc, "r_same": model.sides["A"].r_same, "r_run": model.sides["A"].r_run}}
    for m in arm_sizes:
        splits = arms(seeds, m)
        if not splits:
            continue
        left = [np.concatenate([_stack(cells, [f], A)[0] for A, _ in splits]) for f in folds]
        right = [np.concatenate([_stack(cells, [f], B)[0] for _, B in splits]) for f in folds]
        real = decide_all(left, right, ratio=ratio)
        n = len(splits)
        design = Design(clips=clips, runs={"A": m, "B": m})
        sim_folds = clip_experiments(model, design, sims, rng)
        sim = decide_all([f["A"] for f in sim_folds], [f["B"] for f in sim_folds], ratio=ratio)
        entry = {"seeds_per_arm": m, "comparisons": n, "false_positive": {}, "coverage": {}, "simulated": {},
                 "sd": {"real": [float(x) for x in real["sd"]], "floor": [float(x) for x in real["floor"]],
                        "simulated_mean": float(np.mean(sim["sd"])), "real_mean": float(np.mean(real["sd"]))},
                 "fold_differences": [[float(x) for x in row] for row in real["d"]]}
        for name in RULE_NAMES:
            hits = int((real[name]["verdict"] != 0).sum())
            entry["false_positive"][name] = rate(hits, n)
            entry["coverage"][name] = rate(int(((real[name]["low"] <= 0) & (real[name]["high"] >= 0)).sum()), n)
            p = float((sim[name]["verdict"] != 0).mean())
            entry["simulated"][name] = {"rate": p, "mc": math.sqrt(max(p * (1 - p), 0.25 / sims) / sims), "sims": sims}
        entry["validation"] = validate(real, sim)
        entry["c9"] = _c9(left, right, sim_folds, m)
        out["arms"][str(m)] = entry
    out["planted"] = planted(cells, folds, seeds, model, ratio=ratio, points=planted_points, seed=seed)
    return out


def validate(real: dict, sim: dict) -> dict:
    """Whether the real A/A comparisons look like the simulated ones: Kolmogorov-Smirnov tests of the real fold SDs
    and of the real p values of the ledger's rule against their simulated distributions (a p value below 5 % says
    the simulator does not describe these runs)."""
    sd = kstest(real["sd"], lambda x: np.searchsorted(np.sort(sim["sd"]), x, side="right") / len(sim["sd"]))
    p_real, p_sim = real[rule.RULE]["p"], np.sort(sim[rule.RULE]["p"])
    pv = kstest(p_real, lambda x: np.searchsorted(p_sim, x, side="right") / len(p_sim))
    return {"sd_ks_p": float(sd.pvalue), "p_ks_p": float(pv.pvalue),
            "sd_quartiles_real": [float(x) for x in np.quantile(real["sd"], [0.25, 0.5, 0.75])],
            "sd_quartiles_simulated": [float(x) for x in np.quantile(sim["sd"], [0.25, 0.5, 0.75])]}


def _c9(left, right, sim_folds, m: int) -> dict:
    """C9's non-inferiority rule on the A/A comparisons (one rival: arm B): how often it says "supported" (the
    truth: the arms are equal) and "contradicted" (a false alarm), real and simulated."""
    margin = c9_margin(int(left[0].shape[-1]))
    real = rule.noninferior([rule.fold_terms(left, right, clips=True)], margin=margin)["verdict"]
    sim = rule.noninferior([rule.fold_terms([f["A"] for f in sim_folds], [f["B"] for f in sim_folds], clips=True)],
                           margin=margin)["verdict"]
    return {"margin": margin, "supported": rate(int((real == 1).sum()), len(real)),
            "contradicted": rate(int((real == -1).sum()), len(real)),
            "simulated_supported": float((sim == 1).mean()), "simulated_contradicted": float((sim == -1).mean())}


def planted(cells: dict, folds: list[int], seeds: list[int], model: NoiseModel, *, ratio: float,
            points: float | None = None, seed: int = 0, sims: int = 4000) -> dict:
    """Planted effects without added noise, on the real A/A comparisons of one seed per arm: a fixed set of clips
    marked wrong in every run of arm B (``fixed``: the same share on every fold; ``varying``: a share that differs
    from fold to fold, as a training-set term would), of about ``points`` (default: the effect the simulated rule
    finds with 80 % power at this design). Each: the measured effect, the real rejection rate (Wilson) and the
    simulated power of the rule at that effect (for ``varying``, with the planted spread as a training-set term)."""
    rng = np.random.default_rng([seed, 7])
    splits = arms(seeds, 1)
    design = Design(clips=tuple(len(next(iter(cells[f].values()))) for f in folds), runs={"A": 1, "B": 1})

    def power(m: NoiseModel, effect: float, n: int = 1000, rule_name: str = rule.RULE) -> float:
        mid = m.sides["A"].acc
        mm = m.with_accuracy({"A": min(mid + effect / 200, 0.999), "B": max(mid - effect / 200, 0.001)})
        dec = (lambda fs: rule.compare([f["A"] for f in fs], [f["B"] for f in fs], clips=True, ratio=ratio,  # noqa: E731
                                       rule=rule_name)["verdict"])
        return sim_rate(lambda b, r: clip_experiments(mm, design, b, r), dec, sims=n, seed=3)["rate"]

    target = points if points is not None else detectable(lambda e: power(model, e, 500))
    acc = model.sides["A"].acc
    out = {"target": target, "power_by_rule": {name: power(model, target, 1000, name) for name in RULE_NAMES}}
    spread = np.linspace(-0.5, 0.5, len(folds))          # the varying plant: +-50 % of the effect across the folds
    for kind, shares in (("fixed", np.zeros(len(folds))), ("varying", spread)):
        chosen = {}
        for i, f in enumerate(folds):
            n = len(next(iter(cells[f].values())))
            count = int(round(max(0.0, target * (1 + shares[i])) / 100 / max(acc, 1e-6) * n))
            chosen[f] = rng.choice(n, size=min(count, n), replace=False)
        left = [np.stack([cells[f][A[0]] for A, _ in splits])[:, None, :] for f in folds]
        right = [np.stack([plant(cells[f][B[0]][None], chosen[f])[0] for _, B in splits])[:, None, :] for f in folds]
        res = rule.compare(left, right, clips=True, ratio=ratio)
        found_by = {name: rate(int((rule.compare(left, right, clips=True, ratio=ratio, rule=name)["verdict"] == 1).sum()),
                               len(splits)) for name in RULE_NAMES}
        measured = float(np.mean(res["d"]))
        per_fold = np.mean(res["d"], axis=0)
        m = model
        if kind == "varying":
            extra = float(np.var(per_fold - per_fold.mean(), ddof=1)) if len(per_fold) > 1 else 0.0
            m = NoiseModel(sides={"A": model.sides["A"], "B": SideNoise(model.sides["B"].acc, model.sides["B"].r_same,
                                                                         model.sides["B"].r_run, model.sides["B"].a,
                                                                         train=extra)}, folds=model.folds,
                           clips=model.clips, shared=0.0)
        sim_power = power(m, measured, sims)
        out[kind] = {"measured": measured, "per_fold": [float(x) for x in per_fold],
                     "found": rate(int((res["verdict"] == 1).sum()), len(splits)), "found_by": found_by,
                     "simulated_power": sim_power,
                     "simulated_mc": math.sqrt(max(sim_power * (1 - sim_power), 0.25 / sims) / sims)}
    return out


# -- the Nadeau-Bengio correction, checked on independent draws of the data -----------------------------
def draws_check(draws: Sequence[dict], *, ratio: float, level: float = 0.95) -> dict:
    """From independent draws of the dataset (``draws[j]``: the fold differences ``d`` of one full cross-validation
    and its noise floor ``floor``, points squared): the across-draw variance of the CV mean difference against the
    mean of each rule's variance estimate (their ratio, with the chi-square interval of the across-draw variance),
    and each rule's coverage of the population difference (the mean of the other draws' means: leave one out), with
    Wilson intervals. The excess of the across-draw variance over the plain estimate is the part of the variance the
    folds of one dataset share (``shared_variance``)."""
    d = np.array([np.asarray(x["d"], float) for x in draws])             # (draws, k)
    floor = np.array([float(x["floor"]) for x in draws])
    J, k = d.shape
    means = d.mean(axis=1)
    across = float(means.var(ddof=1))
    lo_v, hi_v = across * (J - 1) / chi2.ppf(0.975, J - 1), across * (J - 1) / chi2.ppf(0.025, J - 1)
    s2 = d.var(axis=1, ddof=1)
    estimates = {"plain": s2 / k, "nb": s2 * (1 / k + ratio), "floor-plain": np.maximum(s2, floor) / k,
                 "floor-nb": np.maximum(s2, floor) * (1 / k + ratio)}
    out = {"draws": J, "folds": k, "ratio": ratio, "population": float(means.mean()),
           "population_se": float(means.std(ddof=1) / math.sqrt(J)), "across_variance": across,
           "across_interval": [float(lo_v), float(hi_v)], "rules": {},
           "shared_variance": across - float(np.mean(s2)) / k, "mean_s2": float(np.mean(s2)),
           "shared_interval": [float(lo_v - np.mean(s2) / k), float(hi_v - np.mean(s2) / k)],
           "mean_floor": float(np.mean(floor)),
           # what the simulator assumes (the Nadeau-Bengio argument): the shared part is n_test / n_train times the
           # fold-to-fold training-set term, here the folds' variance beyond the floor
           "shared_assumed": ratio * max(float(np.mean(s2) - np.mean(floor)), 0.0)}
    for name, est in estimates.items():
        res = rule.interval(d, floor, ratio=ratio, rule=name, level=level)
        truth = (means.sum() - means) / (J - 1)                          # leave one out
        covered = int(((res["low"] <= truth) & (truth <= res["high"])).sum())
        mean_est = float(np.mean(est))
        out["rules"][name] = {"mean_estimate": mean_est, "ratio": across / mean_est if mean_est > 0 else math.inf,
                              "ratio_interval": [float(lo_v / mean_est), float(hi_v / mean_est)] if mean_est > 0 else
                              [math.inf, math.inf], "coverage": rate(covered, J)}
    return out


ORDER = ("floor-plain", "floor-nb")     # the candidates, from the more powerful to the more conservative
# The rules without a floor are measured for reference only: an interval may not be narrower than the noise the design
# guarantees (clip sampling and the seeds' own spread), whatever five folds happen to show.


def choose_rule(calibration: dict, draws: dict | None) -> tuple[str, list[str]]:
    """The verdict rule the studies support, and why, in sentences: of the floor-bounded rules (an interval is never
    narrower than the noise the design guarantees), the more powerful one (at the calibration's planted effect)
    whose simulated A/A size at the book's design (two seeds per arm) is at most 5 % beyond its Monte Carlo error for
    every scheme, and whose coverage of the population difference over independent draws is not shown below 95 %
    (the upper end of its Wilson interval reaches 95 %)."""
    why, ok = [], []
    for name in ORDER:
        worst = max(calibration["schemes"][s]["arms"]["2"]["simulated"][name]["rate"] - 2 *
                    calibration["schemes"][s]["arms"]["2"]["simulated"][name]["mc"] for s in calibration["schemes"])
        cov = (draws or {}).get("rules", {}).get(name, {}).get("coverage")
        reasons = []
        if worst > ALPHA:
            reasons.append(f"its simulated A/A size exceeds 5 % ({100 * worst:.1f} % beyond its Monte Carlo error)")
        if cov is not None and cov["high"] < 0.95:
            reasons.append(f"it covered the population difference in only {cov['hits']} of {cov['n']} draws "
                           f"([{100 * cov['low']:.0f}, {100 * cov['high']:.0f}] %)")
        if reasons:
            why.append(f"`{name}` is ruled out: " + " and ".join(reasons))
        else:
            sims = [calibration["schemes"][s]["arms"]["2"]["simulated"][name]["rate"] for s in calibration["schemes"]]
            sizes = ", ".join(f"{100 * x:.1f} %" for x in sims)
            why.append(f"`{name}` passes: simulated A/A size {sizes} "
                       "(the schemes in turn)" + (f"; it covered the population difference in {cov['hits']} of "
                                                   f"{cov['n']} draws" if cov else "; the draws study has not run"))
            ok.append(name)
    if not ok:
        return ORDER[-1], why + ["no candidate passes both checks, so the more conservative one is kept"]
    powers = {n: float(np.mean([calibration["schemes"][s]["planted"]["power_by_rule"][n] for s in calibration["schemes"]]))
              for n in ok}
    best = max(ok, key=lambda n: (powers[n], -ORDER.index(n)))
    why.append(f"of those that pass, `{best}` has the most power at the planted effect (simulated, mean over the "
               "schemes: " + ", ".join(f"`{n}` {100 * powers[n]:.0f} %" for n in ok) + ")")
    return best, why
