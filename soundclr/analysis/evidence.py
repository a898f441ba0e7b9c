"""The evidence for each claim of the paper, computed from the runs: one function per family of claims
adds its rows to the ledger being built (:class:`soundclr.analysis.rows.Evidence`), each with the
effect, the fold-level intervals and power of :mod:`soundclr.analysis.stats`, its verdict, and
whether both sides of the comparison trained the same schedule.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd

from ..schemes import PAPER_SCHEMES
from ..data.bank import load_bank
from ..runs.inference import ensemble_accuracy, noise_accuracies
from .claims import (
    CLAIMS,
    NEAR_FINAL,
    NOISE_DRAWS,
    c9_margin,
    PAPER_NOISE_LEVELS,
    PROTOCOLS,
)
from .convergence import epochs_to_reach
from . import rule
from .noise import fit
from .power import CRN
from .simulate import SEARCH_SIMS, SIMS, Design, clip_experiments, detectable, rate
from .stats import FoldInterval, one_sided_p, verdict
from .rows import Evidence, improvement, same_schedule, side_clips


def add_alpha(L: Evidence, alpha: pd.DataFrame) -> None:
    """C3, Table II: alpha = 0.5 against every other alpha. The claim is an intersection: alpha = 0.5 is best only
    if it beats each other weight, so its test is the intersection-union test (:func:`soundclr.analysis.rule.intersection`):
    it is supported only where every comparison's own 95 % interval lies above zero (no multiplicity correction:
    each must reject); its p value is the largest one-sided p, doubled; its interval runs from the smallest of the
    comparisons' lower ends to the smallest of their simultaneous upper ends, so "contradicted" needs some weight
    to beat 0.5 beyond a simultaneous bound. Its power is simulated with every other weight the paper's effect
    below alpha = 0.5 (the least favourable case for an intersection)."""

    if alpha.empty or "alpha0.5" not in set(alpha.variant):
        L.untestable("C3", "the alpha sweep has no alpha = 0.5 runs in this build")
        return
    best = alpha[alpha.variant == "alpha0.5"]
    others = sorted(set(alpha.variant) - {"alpha0.5"})
    if not others:
        L.untestable("C3", "the alpha sweep holds no other alpha")
        return
    simultaneous_level = 1 - 0.05 / len(others)
    paper = L.paper("C3")[0]

    def intersection(value: str, rows: pd.DataFrame | None = None, figures: bool = False):
        rows = alpha if rows is None else rows
        b = rows[rows.variant == "alpha0.5"]
        each = {v: L.measure(b, rows[rows.variant == v], value=value, figures=False)[0] for v in others}
        joint = {v: L.measure(b, rows[rows.variant == v], value=value, figures=False, level=simultaneous_level)[0]
                 for v in others}
        if any(i.n < 2 for i in each.values()):
            return None, each
        res = rule.intersection([_arrays(i) for i in each.values()], [_arrays(j) for j in joint.values()])
        closest = list(each)[int(res["closest"][0])]
        doubled = lambda ps: min(1.0, 2 * max(ps))                       # noqa: E731
        main = replace(each[closest], low=min(i.low for i in each.values()), high=min(i.high for i in joint.values()),
                       low_nb=float(res["low"][0]), high_nb=float(res["high"][0]), p=float(res["p"][0]),
                       p_plain=doubled([one_sided_p(i, plain=True) for i in each.values()]), p_signflip=math.nan,
                       level=0.95)
        if figures:
            main = main.with_figures(alpha_figures(L, rows, others, paper, simultaneous_level))
        return main, each

    main, ints = intersection("acc", figures=True)
    if main is None:
        L.untestable("C3", "the alpha sweep's other weights share fewer than two folds with alpha = 0.5")
        return
    closest = min(ints, key=lambda v: ints[v].effect)
    means = alpha.groupby("variant").acc.mean().sort_values(ascending=False)
    rank = list(means.index).index("alpha0.5") + 1
    protocols = {name: intersection(PROTOCOLS[name])[0] for name in ("best_test", "best_val")}
    conv = intersection("acc", alpha[alpha.converged])[0]
    note = (f"the closest other weight here is alpha = {closest[5:]}; alpha = 0.5 ranks {rank} of {len(means)} by mean "
            f"final accuracy over the folds; {int(best.seed.nunique())} seed{'s' if best.seed.nunique() > 1 else ''} per fold. "
            "An intersection-union test: alpha = 0.5 is best only if it beats every other weight, so each comparison "
            "must reject on its own (at 5 %, no multiplicity correction); its p value is the largest one-sided p, "
            "doubled, and the interval takes the smallest lower end of the comparisons and the smallest of their "
            "simultaneous upper ends (Results lists each)")
    detail = ("against each other weight, corrected 95 % intervals (each on its own): " +
              ", ".join(f"alpha = {v[5:]}: {ints[v].effect:+.2f} [{ints[v].low_nb:+.2f}, {ints[v].high_nb:+.2f}]"
                        for v in others) +
              "; the claim's interval takes the smallest lower end of these and the smallest upper end at the "
              f"simultaneous level ({100 * simultaneous_level:.2f} % each)")
    L.add("C3", main, runs=len(alpha), same_schedule=same_schedule(alpha), note=note, protocols=protocols, conv=conv,
          unconverged=int((~alpha.converged).sum()), verdict_=verdict(main), detail=detail,
          improvement=improvement(best, alpha[alpha.variant == closest], "acc"))


def _arrays(i) -> dict:
    """One comparison's interval as the (batch of one) arrays :func:`soundclr.analysis.rule.intersection` reads."""
    return {"effect": np.array([i.effect]), "low": np.array([i.low_nb]), "high": np.array([i.high_nb]),
            "p": np.array([i.p])}


def alpha_figures(L: Evidence, alpha: pd.DataFrame, others: list[str], paper: float | None, level: float) -> dict | None:
    """C3's simulated figures: the intersection-union test on experiments drawn from one model of every weight's
    runs (one seed per fold: their seed terms borrowed from the main grid's hybrid runs)."""
    folds = sorted(set.intersection(*(set(alpha[alpha.variant == v].fold) for v in ["alpha0.5", *others])))
    try:
        sides = {v: side_clips(alpha[alpha.variant == v], folds) for v in ["alpha0.5", *others]}
    except (OSError, KeyError, RuntimeError, TypeError, AttributeError):       # runs without per-clip outputs
        return None
    lent = L.scheme_side("hybrid")
    borrow = {v: lent for v in sides} if lent is not None else {}
    try:
        model = fit(sides, train_pairs=[("alpha0.5", v) for v in others], borrow=borrow, shared=L.shared)
    except ValueError:
        return None
    design = Design(clips=tuple(int(f.shape[1]) for f in sides["alpha0.5"]),
                    runs={v: int(min(f.shape[0] for f in sides[v])) for v in sides})

    def decide(fs):
        each = [rule.compare([f["alpha0.5"] for f in fs], [f[v] for f in fs], clips=True, ratio=L.ratio) for v in others]
        joint = [rule.compare([f["alpha0.5"] for f in fs], [f[v] for f in fs], clips=True, ratio=L.ratio, level=level)
                 for v in others]
        return rule.intersection(each, joint)["verdict"]

    top = float(np.mean([s.acc for s in model.sides.values()]))

    def at(effect, sims=SIMS, verdicts=(1,)):
        acc = {"alpha0.5": min(top + effect / 200, 0.995), **{v: max(top - effect / 200, 0.005) for v in others}}
        m = model.with_accuracy(acc)
        return rate(lambda b, rng: clip_experiments(m, design, b, rng), decide, verdicts=verdicts, sims=sims, seed=CRN)

    size = at(0.0, verdicts=(1, -1))
    out = {"size": size["rate"], "size_mc": size["mc"], "detectable": detectable(lambda e: at(e, SEARCH_SIMS)["rate"])}
    if paper is not None and math.isfinite(paper) and paper > 0:
        p = at(paper)
        out.update(power=p["rate"], power_mc=p["mc"])
    return out


def add_ablation(L: Evidence, plan, ab: pd.DataFrame) -> None:
    """C4, C5: Fig. 3, each step against the one before it (cross-entropy)."""
    variant = {v: ab[ab.variant == v] for v in set(ab.variant)} if not ab.empty else {}
    imagenet = "imagenet-3ch" in plan.ablation
    ch = plan.config.features.channels
    steps = (("imagenet-3ch", "imagenet-3ch-wave", "imagenet-3ch-wave-spec") if imagenet else
             (f"random-{ch}ch", f"random-{ch}ch-wave", f"random-{ch}ch-wave-spec"))
    for cid, (without, with_) in (("C4a", steps[:2]), ("C4b", steps[1:])):
        if without in variant and with_ in variant:
            L.compare(cid, variant[with_], variant[without],
                      note="" if imagenet else f"on a randomly initialised {ch}-channel backbone (no ImageNet weights here)")
        else:
            L.untestable(cid, f"the ablation runs {without} and {with_} are missing")
    if imagenet:
        for cid, (x, y) in (("C5a", ("imagenet-3ch", "imagenet-1ch")), ("C5b", ("imagenet-1ch", "random-1ch"))):
            if x in variant and y in variant:
                L.compare(cid, variant[x], variant[y])
            else:
                L.untestable(cid, f"the ablation runs {x} and {y} are missing")
    else:
        why = next(iter(plan.ablation_skipped.values()), "no ImageNet weights")
        for cid in ("C5a", "C5b"):
            L.untestable(cid, f"{why} (offline build)")


def noise_drop(run_dir, *, bank=None, device: str = "auto") -> float:
    """C6: the accuracy (points) a finished run's final model loses under white noise, averaged over
    the paper's noise levels and NOISE_DRAWS draws of the noise (each draw cached in the run's
    ``noise.json``)."""
    acc = noise_accuracies(run_dir, (0.0, *PAPER_NOISE_LEVELS), range(NOISE_DRAWS), bank=bank, device=device)
    clean = acc[(0.0, 0)]        # no noise: the same clips whatever the draw
    return 100 * (clean - float(np.mean([acc[(s, d)] for s in PAPER_NOISE_LEVELS for d in range(NOISE_DRAWS)])))


def add_noise(L: Evidence, main: pd.DataFrame) -> None:
    """C6, Fig. 5: the mean accuracy lost over the paper's noise levels, other scheme's minus SupCon's."""
    if main.empty:
        for cid in ("C6a", "C6b"):
            L.untestable(cid, "no finished runs in the main grid")
        return
    drops = main.copy()
    if L.bank is None:       # one decoded dataset for every run's evaluation
        L.bank = load_bank(drops.run.iloc[0].config.resolved(), progress=False)
    drops["drop"] = [noise_drop(r.directory, bank=L.bank, device=L.device) for r in drops.run]
    for cid, other in (("C6a", "ce"), ("C6b", "hybrid")):
        L.compare(cid, drops[drops.scheme == other], drops[drops.scheme == "supcon"], value="drop", protocols=False,
                  note="final models only (the noise is added to the final model's test clips)")


def add_ensembles(L: Evidence, main: pd.DataFrame) -> None:
    """C7, Table IV: per fold, the hybrid models' ensemble against their mean single accuracy (C7a)
    and against the cross-entropy models' ensemble (C7b). Final models only."""
    hy, ce = main[main.scheme == "hybrid"], main[main.scheme == "ce"]
    k = int(hy.groupby("fold").size().min()) if not hy.empty else 0
    if k < 2:
        for cid in ("C7a", "C7b"):
            L.untestable(cid, "the main grid has fewer than two seeds per fold: no ensemble")
        return

    def per_fold(converged_only: bool):
        a, b = [], []
        for fold, fdf in hy.groupby("fold"):
            cdf = ce[ce.fold == fold]
            if converged_only:
                fdf, cdf = fdf[fdf.converged], cdf[cdf.converged]
            if len(fdf) < 2:
                continue
            ens = 100 * ensemble_accuracy(r.directory for r in fdf.run)
            a.append(ens - fdf.acc.mean())
            if len(cdf) >= 2:
                b.append(ens - 100 * ensemble_accuracy(r.directory for r in cdf.run))
        return a, b

    (a, b), (ac, bc) = per_fold(False), per_fold(True)
    unconverged = int((~hy.converged).sum())
    note = f"ensembles of {k} models, the seeds of a fold (the paper: 5); final models only"
    L.add("C7a", L.paired([[x] for x in a], paper=L.paper("C7a")[0]), runs=len(hy),
          same_schedule=same_schedule(hy), note=note, conv=L.paired([[x] for x in ac], figures=False), unconverged=unconverged)
    if ce.groupby("fold").size().min() < 2:
        L.untestable("C7b", "the main grid has fewer than two cross-entropy seeds per fold")
    else:
        L.add("C7b", L.paired([[x] for x in b], paper=L.paper("C7b")[0]), runs=len(hy) + len(ce),
              same_schedule=same_schedule(hy, ce), note=note, conv=L.paired([[x] for x in bc], figures=False),
              unconverged=unconverged + int((~ce.converged).sum()))


def add_speed(L: Evidence, main: pd.DataFrame) -> None:
    """C8: epochs (and seconds) to a common target, 95 % of the lower of the two runs' final
    accuracies (the same fold and seed), other scheme's minus the hybrid's: positive = the hybrid is
    faster. The two-stage scheme counts both stages."""
    if main.empty:
        for cid in ("C8a", "C8b", "C8c"):
            L.untestable(cid, "no finished runs in the main grid")
        return
    hy = main[main.scheme == "hybrid"].set_index(["fold", "seed"])
    for cid, other, measure in (("C8a", "supcon", 0), ("C8b", "supcon", 1), ("C8c", "ce", 0)):   # 0 epochs, 1 seconds
        oth = main[main.scheme == other].set_index(["fold", "seed"])
        pairs = []
        for key in sorted(set(hy.index) & set(oth.index)):
            h, o = hy.loc[key], oth.loc[key]
            target = NEAR_FINAL * min(h.acc, o.acc) / 100
            reach_h, reach_o = epochs_to_reach(h.rows, target), epochs_to_reach(o.rows, target)
            if reach_h and reach_o:
                pairs.append({"fold": key[0], "seed": key[1], "d": reach_o[measure] - reach_h[measure],
                              "converged": bool(h.converged and o.converged)})
        if not pairs:
            L.untestable(cid, f"no fold and seed holds both a hybrid and a {other} run")
            continue
        p = pd.DataFrame(pairs)
        d = [g.d.to_numpy() for _, g in p.groupby("fold")]
        dc = [g.d.to_numpy() for _, g in p[p.converged].groupby("fold")]
        h_side, o_side = main[main.scheme == "hybrid"], main[main.scheme == other]
        if CLAIMS[cid].by_design:
            stage2 = [sum(r.get("seconds", 0.0) for r in rows if r.get("stage", 1) == 2) for rows in o_side.rows]
            e2 = int(o_side.run.iloc[0].config.stages()[1]["epochs"])
            extra = (f"{e2} epoch{'s' if e2 != 1 else ''}" if measure == 0 else
                     f"{np.mean(stage2):.0f} s on average")
            note = (f"measured, not tested: the two-stage scheme's stage 2 adds {extra} after a stage 1 as long as the "
                    f"hybrid's whole schedule; the hybrid reached the common target in {len(p)} of "
                    f"{len(set(hy.index) & set(oth.index))} pairs")
        else:
            note = "both schemes train the same schedule, so this is a test, not true by construction"
        L.add(cid, L.paired(d, figures=not CLAIMS[cid].by_design), runs=2 * len(p),
              same_schedule=same_schedule(h_side, o_side), note=note, conv=L.paired(dc, figures=False),
              unconverged=int((~p.converged).sum()))


def add_per_fold(L: Evidence, main: pd.DataFrame) -> None:
    """C9, Fig. 4: on each fold, the hybrid against each other scheme, as a non-inferiority intersection-union test
    (:func:`soundclr.analysis.rule.noninferior`): supported only if on every fold the hybrid's one-sided 95 % lower
    bound against each rival lies above minus the margin; contradicted if on some fold a rival is better by more
    than the margin beyond a simultaneous bound; inconclusive otherwise. Its power is simulated at equal schemes
    (the non-inferiority power), with the margin at which it would reach 80 %."""

    folds = sorted(set(main.fold)) if not main.empty else []
    schemes = {s: main[main.scheme == s] for s in PAPER_SCHEMES}
    if not folds or any(df.empty for df in schemes.values()):
        L.untestable("C9", "the main grid lacks a scheme")
        return
    rivals = ("ce", "supcon")
    sides = {s: side_clips(df, folds) for s, df in schemes.items()}
    n = int(min(f.shape[1] for f in sides["hybrid"]))
    margin = c9_margin(n)

    def decide_on(fs, margin_=margin):
        pairs = [rule.fold_terms([f["hybrid"] for f in fs], [f[r] for f in fs], clips=True) for r in rivals]
        return rule.noninferior(pairs, margin=margin_)

    res = decide_on([{s: sides[s][i] for s in sides} for i in range(len(folds))])
    v = rule.verdict_name(res["verdict"][0])
    keys = [(f, r) for r in rivals for f in folds]
    lows, ds = res["low"][0], res["d"][0]
    worst = int(np.argmin(lows))
    ahead = sum(all(ds[keys.index((f, r))] >= 0 for r in rivals) for f in folds)
    figures = c9_figures(L, sides, rivals, margin, decide_on)
    label = {"ce": "cross-entropy", "supcon": "two-stage SupCon"}
    m = len(keys)
    ni = figures.get("power", math.nan)
    note = (f"non-inferiority with a margin of {margin:g} point{'s' if margin != 1 else ''} (the paper's one point, "
            f"but at least one clip of a {n}-clip fold, the smallest difference a fold can show): supported if on "
            f"every fold the hybrid's one-sided 95 % lower bound against each rival lies above -{margin:g} (an "
            "intersection-union test: each comparison must pass at 5 % on its own, no multiplicity correction), "
            f"contradicted if on some fold a rival is better by more than {margin:g} beyond a bound simultaneous over "
            f"the {m} comparisons. Each fold's standard error holds its clip sampling and its seeds. The hybrid's "
            f"estimate is at least the rival's on {ahead} of {len(folds)} folds; closest to failing: fold "
            f"{keys[worst][0]} against {label[keys[worst][1]]}. At equal schemes this design would pass the test "
            f"(non-inferiority power) in {_pct(ni)} of experiments"
            + (f"; it would need a margin of {figures['margin80']:.1f} points for 80 %" if math.isfinite(
                figures.get("margin80", math.nan)) else "")
            + ". Not in the Holm family (its verdict is not a p value). Final models only")
    words = {"supported": "supported", "contradicted": "contradicted",
             "inconclusive": f"inconclusive: on some fold a lower bound reaches below -{margin:g} (the margin)"}[v]
    d_w = float(ds[worst])
    interval = FoldInterval(effect=d_w, low=float(lows[worst]), high=math.inf, low_nb=float(lows[worst]),
                            high_nb=float(d_w + (d_w - lows[worst])), p=math.nan, n=len(folds), sd=math.nan,
                            level=0.95, rule="non-inferiority, per fold").with_figures(figures)
    L.add("C9", interval, runs=len(main), same_schedule=same_schedule(main), design="clips per fold", note=note,
          verdict_=v, unconverged=int((~main.converged).sum()), words=words)


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %" if math.isfinite(x) else "n/a"


def c9_figures(L: Evidence, sides: dict, rivals, margin: float, decide_on) -> dict:
    """C9's simulated non-inferiority power: experiments of the main grid's design at equal schemes (each at the
    schemes' mean accuracy), drawn from one model of the three; and the margin at which it reaches 80 %."""
    try:
        model = fit(sides, train_pairs=[("hybrid", r) for r in rivals], shared=L.shared)
    except ValueError:
        return {}
    design = Design(clips=tuple(int(f.shape[1]) for f in sides["hybrid"]),
                    runs={s: int(min(f.shape[0] for f in sides[s])) for s in sides})
    mean = float(np.mean([v.acc for v in model.sides.values()]))
    equal = model.with_accuracy({s: mean for s in sides})

    def at(margin_, sims=SIMS):
        return rate(lambda b, rng: clip_experiments(equal, design, b, rng),
                    lambda fs: decide_on(fs, margin_)["verdict"], verdicts=(1,), sims=sims, seed=CRN)

    p = at(margin)
    return {"power": p["rate"], "power_mc": p["mc"], "margin80": detectable(lambda x: at(x, SEARCH_SIMS)["rate"])}


def add_masks(L: Evidence, plan, masking: pd.DataFrame) -> None:
    """C10, Table I: frequency masks alone against time masks alone (cross-entropy)."""
    if masking.empty:
        L.untestable("C10", "this build has no masking runs")
        return
    a = plan.config.augment
    freq = [v for v in set(masking.variant) if v.endswith("t0") and not v.endswith("f0t0")]
    time_ = [v for v in set(masking.variant) if "f0t" in v and not v.endswith("t0")]
    if not freq or not time_:
        L.untestable("C10", "the masking grid lacks a run with frequency masks only or time masks only")
        return
    f, t = max(freq), min(time_)       # the most frequency masks, the fewest time masks the grid holds
    L.compare("C10", masking[masking.variant == f], masking[masking.variant == t],
              note=f"{_masks_words(f)} against {_masks_words(t)} (widths F = {a.freq_mask_width}, T = {a.time_mask_width})")


def _masks_words(variant: str) -> str:
    """A masking run's name (``F8T6f2t0``) as a reader says it: ``f = 2, t = 0``."""
    f, t = variant.rsplit("f", 1)[1].split("t")
    return f"f = {f}, t = {t}"
