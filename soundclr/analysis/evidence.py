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
    NONINFERIORITY_MARGIN,
    PAPER_NOISE_LEVELS,
    PROTOCOLS,
)
from .convergence import epochs_to_reach
from .stats import clip_interval, fold_interval, one_sided_p, verdict
from .rows import Evidence, clip_correct, fold_differences, improvement, same_schedule


def add_alpha(L: Evidence, alpha: pd.DataFrame) -> None:
    """C3, Table II: alpha = 0.5 against every other alpha. The claim is an intersection: alpha = 0.5 is
    best only if it beats each other weight, so its test is the intersection-union test, whose p value is
    the largest of the comparisons' *one-sided* p values (alternative: alpha = 0.5 better), doubled to be
    read against 5 % like the two-sided tests of the other claims. Its interval, for min_j (0.5 - alpha_j)
    whichever rival is closest: the lower end is the smallest of the comparisons' own 95 % lower ends
    (the bound the intersection-union test needs, no multiplicity correction); the upper end the smallest
    of their Bonferroni upper ends (simultaneous over the other weights). So the interval excludes zero
    from below exactly when the test rejects, and "contradicted" needs some weight to beat 0.5 beyond a
    simultaneous bound."""

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

    def intersection(value: str, rows: pd.DataFrame | None = None):
        rows = alpha if rows is None else rows
        b = rows[rows.variant == "alpha0.5"]
        diffs = {v: fold_differences(b, rows[rows.variant == v], value) for v in others}
        each = {v: fold_interval(d, ratio=L.ratio, reference=paper) for v, d in diffs.items()}
        joint = {v: fold_interval(d, ratio=L.ratio, level=simultaneous_level) for v, d in diffs.items()}
        if any(i.n < 2 for i in each.values()):
            return None, each
        closest = min(each, key=lambda v: each[v].effect)
        doubled = lambda ps: min(1.0, 2 * max(ps))                       # noqa: E731
        return replace(each[closest], low=min(i.low for i in each.values()), high=min(i.high for i in joint.values()),
                       low_nb=min(i.low_nb for i in each.values()), high_nb=min(i.high_nb for i in joint.values()),
                       p=doubled([one_sided_p(i) for i in each.values()]), p_plain=doubled([one_sided_p(i, plain=True) for i in each.values()]),
                       p_signflip=math.nan, level=0.95), each

    main, ints = intersection("acc")
    if main is None:
        L.untestable("C3", "the alpha sweep's other weights share fewer than two folds with alpha = 0.5")
        return
    closest = min(ints, key=lambda v: ints[v].effect)
    means = alpha.groupby("variant").acc.mean().sort_values(ascending=False)
    rank = list(means.index).index("alpha0.5") + 1
    protocols = {name: intersection(PROTOCOLS[name])[0] for name in ("best_test", "best_val")}
    conv = intersection("acc", alpha[alpha.converged])[0]
    note = (f"the closest other weight here is alpha = {closest[5:]}; alpha = 0.5 ranks {rank} of {len(means)} by mean "
            f"final accuracy over the folds; {int(best.seed.nunique())} seed{'s' if best.seed.nunique() > 1 else ''} per fold. The p value is the "
            "intersection-union test's (the largest one-sided p, doubled); the interval takes the smallest lower end "
            "of the comparisons with each other weight and the smallest of their simultaneous upper ends (Results lists each)")
    detail = ("against each other weight, corrected 95 % intervals (each on its own): " +
              ", ".join(f"alpha = {v[5:]}: {ints[v].effect:+.2f} [{ints[v].low_nb:+.2f}, {ints[v].high_nb:+.2f}]"
                        for v in others) +
              "; the claim's interval takes the smallest lower end of these and the smallest upper end at the "
              f"simultaneous level ({100 * simultaneous_level:.2f} % each)")
    L.add("C3", main, runs=len(alpha), same_schedule=same_schedule(alpha), note=note, protocols=protocols, conv=conv,
          unconverged=int((~alpha.converged).sum()), verdict_=verdict(main), detail=detail,
          improvement=improvement(best, alpha[alpha.variant == closest], "acc"))


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
    L.add("C7a", fold_interval(a, ratio=L.ratio, reference=L.paper("C7a")[0]), runs=len(hy),
          same_schedule=same_schedule(hy), note=note, conv=fold_interval(ac, ratio=L.ratio), unconverged=unconverged)
    if ce.groupby("fold").size().min() < 2:
        L.untestable("C7b", "the main grid has fewer than two cross-entropy seeds per fold")
    else:
        L.add("C7b", fold_interval(b, ratio=L.ratio, reference=L.paper("C7b")[0]), runs=len(hy) + len(ce),
              same_schedule=same_schedule(hy, ce), note=note, conv=fold_interval(bc, ratio=L.ratio),
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
        d = p.groupby("fold").d.mean().tolist()
        dc = p[p.converged].groupby("fold").d.mean().tolist()
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
        L.add(cid, fold_interval(d, ratio=L.ratio), runs=2 * len(p), same_schedule=same_schedule(h_side, o_side),
              note=note, conv=fold_interval(dc, ratio=L.ratio), unconverged=int((~p.converged).sum()))


def add_per_fold(L: Evidence, main: pd.DataFrame) -> None:
    """C9, Fig. 4: on each fold, the hybrid against each other scheme, clip by clip (each clip's
    correctness averaged over the fold's seeds), with intervals simultaneous over every fold and both
    rivals (Bonferroni). Contradicted if on some fold a rival is better beyond the interval;
    supported only if the hybrid is better on every fold; inconclusive otherwise."""

    folds = sorted(set(main.fold)) if not main.empty else []
    schemes = {s: main[main.scheme == s] for s in PAPER_SCHEMES}
    if not folds or any(df.empty for df in schemes.values()):
        L.untestable("C9", "the main grid lacks a scheme")
        return
    m = 2 * len(folds)
    level = 1 - 0.05 / m
    margin = NONINFERIORITY_MARGIN
    ints, ahead = {}, 0
    for f in folds:
        mean_correct = {s: np.mean([clip_correct(r) for r in df[df.fold == f].run], axis=0) for s, df in schemes.items()}
        for rival in ("ce", "supcon"):
            ints[(f, rival)] = clip_interval(100 * (mean_correct["hybrid"] - mean_correct[rival]), level=level)
        ahead += all(ints[(f, r)].effect >= 0 for r in ("ce", "supcon"))
    worst = min(ints, key=lambda k: (ints[k].low, ints[k].effect))      # the comparison closest to failing
    w = ints[worst]
    tied = sum(1 for k, i in ints.items() if k != worst and abs(i.effect - w.effect) < 1e-9)
    v = ("contradicted" if any(i.high < -margin for i in ints.values()) else
         "supported" if all(i.low > -margin for i in ints.values()) else "inconclusive")
    label = {"ce": "cross-entropy", "supcon": "two-stage SupCon"}
    note = (f"non-inferiority with a margin of {margin:g} point: supported if on every fold the hybrid's lower bound "
            f"against each rival lies above -{margin:g}, contradicted if on some fold a rival is better by more than "
            f"{margin:g} beyond the interval. The hybrid's estimate is at least the rival's on {ahead} of {len(folds)} "
            f"folds; closest to failing: fold {worst[0]} against {label[worst[1]]}"
            + (f" (its estimate is tied with {tied} other comparison{'s' if tied > 1 else ''})" if tied else "")
            + f". Each interval is over the fold's test clips ({int(main.n_test.iloc[0])}, seeds averaged), "
            f"simultaneous over the {m} comparisons; it counts clip sampling, not seed-to-seed variation (the "
            "calibration page measures what that costs). Not in the Holm family. Final models only")
    words = {"supported": "supported", "contradicted": "contradicted",
             "inconclusive": f"inconclusive: on some fold an interval reaches below -{margin:g} (the margin)"}[v]
    L.add("C9", replace(w, low_nb=w.low, high_nb=w.high, p=math.nan, p_plain=math.nan, p_signflip=math.nan),
          runs=len(main), same_schedule=same_schedule(main), design="clips per fold", note=note, verdict_=v,
          unconverged=int((~main.converged).sum()), words=words)


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
