"""The evidence for each claim, computed from the runs: one function per family of claims adds its
rows to the ledger being built (:class:`_Claims`), each with the effect, the fold-level intervals
and power of :mod:`soundclr.analysis.stats`, its verdict, and whether both sides of the
comparison trained the same schedule.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd

from ..config import PAPER_DATASETS
from ..schemes import PAPER_SCHEMES
from ..data.bank import load_bank
from ..runs.inference import clip_correctness, ensemble_accuracy, noise_accuracies
from .claims import (
    BY_DESIGN,
    CLAIMS,
    NEAR_FINAL,
    NOISE_DRAWS,
    NONINFERIORITY_MARGIN,
    PAPER_NOISE_LEVELS,
    PROTOCOLS,
)
from .convergence import epochs_to_reach
from .stats import (
    clip_floor,
    clip_interval,
    cv_ratio,
    fold_interval,
    improvement_probability,
    one_sided_p,
    paper_position,
    verdict,
    verdict_words,
)
from .stats import verdict as stats_verdict


def add_alpha(L: _Claims, alpha: pd.DataFrame) -> None:
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
        diffs = {v: _fold_differences(b, rows[rows.variant == v], value) for v in others}
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
    L.add("C3", main, runs=len(alpha), same_schedule=_schedules(alpha), note=note, protocols=protocols, conv=conv,
          unconverged=int((~alpha.converged).sum()), verdict_=verdict(main), detail=detail,
          improvement=_improvement(best, alpha[alpha.variant == closest], "acc"))


def add_ablation(L: _Claims, plan, ab: pd.DataFrame) -> None:
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


def add_noise(L: _Claims, main: pd.DataFrame) -> None:
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


def add_ensembles(L: _Claims, main: pd.DataFrame) -> None:
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
          same_schedule=_schedules(hy), note=note, conv=fold_interval(ac, ratio=L.ratio), unconverged=unconverged)
    if ce.groupby("fold").size().min() < 2:
        L.untestable("C7b", "the main grid has fewer than two cross-entropy seeds per fold")
    else:
        L.add("C7b", fold_interval(b, ratio=L.ratio, reference=L.paper("C7b")[0]), runs=len(hy) + len(ce),
              same_schedule=_schedules(hy, ce), note=note, conv=fold_interval(bc, ratio=L.ratio),
              unconverged=unconverged + int((~ce.converged).sum()))


def add_speed(L: _Claims, main: pd.DataFrame) -> None:
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
        L.add(cid, fold_interval(d, ratio=L.ratio), runs=2 * len(p), same_schedule=_schedules(h_side, o_side),
              note=note, conv=fold_interval(dc, ratio=L.ratio), unconverged=int((~p.converged).sum()))


def _correct(run) -> "np.ndarray":
    return clip_correctness(run.directory)


def _clip_floor(left: pd.DataFrame, right: pd.DataFrame) -> float:
    """:func:`~soundclr.analysis.stats.clip_floor` of two sides (each side's seeds averaged per clip), over the
    folds both hold. NaN without per-clip outputs."""
    try:
        return clip_floor([np.mean([_correct(r) for r in left[left.fold == f].run], axis=0)
                           - np.mean([_correct(r) for r in right[right.fold == f].run], axis=0)
                           for f in sorted(set(left.fold) & set(right.fold))])
    except (OSError, KeyError, RuntimeError):
        return math.nan


def _improvement(left: pd.DataFrame, right: pd.DataFrame, value: str) -> tuple[float, int, int]:
    """rliable's probability of improvement over the (fold, seed) pairs of two sides, and fold wins."""
    folds = sorted(set(left.fold) & set(right.fold))
    return improvement_probability([left[left.fold == f][value].dropna().tolist() for f in folds],
                                   [right[right.fold == f][value].dropna().tolist() for f in folds])


def add_per_fold(L: _Claims, main: pd.DataFrame) -> None:
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
        mean_correct = {s: np.mean([_correct(r) for r in df[df.fold == f].run], axis=0) for s, df in schemes.items()}
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
          runs=len(main), same_schedule=_schedules(main), design="clips per fold", note=note, verdict_=v,
          unconverged=int((~main.converged).sum()), words=words)


def add_masks(L: _Claims, plan, masking: pd.DataFrame) -> None:
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


def _fold_differences(left: pd.DataFrame, right: pd.DataFrame, value: str) -> list[float]:
    """Per fold both sides hold: the mean over the left side's seeds minus the mean over the right's."""
    lm = left.groupby("fold")[value].mean().dropna()
    rm = right.groupby("fold")[value].mean().dropna()
    return [float(lm[f] - rm[f]) for f in sorted(set(lm.index) & set(rm.index))]


def _schedules(*sides: pd.DataFrame) -> bool:
    """Whether every run of every side trained (its first stage) the same epochs, warm-up, decay,
    learning rate and batch: the paper's fair comparison."""
    return len({s for side in sides for s in side["schedule"]}) <= 1


# The statistics a tested row carries beside its effect and intervals (NaN on a row not tested).
EXTRA_STATS = ("p_plain", "p_signflip", "sd", "sd_floor", "sd_upper", "sd_conservative", "detectable_conservative",
               "power_conservative", "level", "ratio", "prob_improvement", "folds_won", "folds")


class _Claims:
    """Builds the ledger's rows for one plan (one dataset)."""

    def __init__(self, plan, *, bank=None, device: str = "auto"):
        self.plan, self.bank, self.device = plan, bank, device
        self.dataset = plan.config.data.dataset
        self.ratio = cv_ratio(plan.config.n_folds)
        self.rows: list[dict] = []

    def paper(self, cid: str) -> tuple[float | None, str]:
        effects = CLAIMS[cid].paper_effect
        if self.dataset in effects:
            return effects[self.dataset], self.dataset
        if self.dataset not in PAPER_DATASETS and "esc50" in effects:
            return effects["esc50"], "esc50"
        return None, self.dataset

    def base(self, cid: str) -> dict:
        paper, where = self.paper(cid)
        c = CLAIMS[cid]
        return {"id": cid, "claim": c.text, "measure": c.measure, "unit": c.unit, "paper": paper, "paper_dataset": where,
                "paper_source": c.source, "evidence": c.evidence}

    def untestable(self, cid: str, why: str) -> None:
        nan = math.nan
        self.rows.append({**self.base(cid), **{k: nan for k in EXTRA_STATS}, "paper_position": "", "effect": nan, "low": nan, "high": nan, "low_nb": nan, "high_nb": nan,
                          "p": nan, "n": 0, "runs": 0, "detectable": nan, "power": nan, "verdict": "not testable",
                          "verdict_text": "not testable", "same_schedule": True, "design": "", "note": why, "detail": "",
                          **{f"{p}_{k}": nan for p in ("best_test", "best_val", "conv")
                             for k in ("effect", "low_nb", "high_nb")},
                          **{f"{p}_verdict": "" for p in ("best_test", "best_val", "conv")}, "unconverged": 0})

    def add(self, cid: str, interval, *, runs: int, same_schedule: bool, design: str = "folds", note: str = "",
            protocols: dict | None = None, conv=None, unconverged: int = 0, verdict_: str | None = None,
            detail: str = "", improvement: tuple[float, int, int] | None = None, words: str | None = None) -> None:
        """A tested (or, for a claim whose record says so, by-design) row. A claim true by construction keeps its
        measurement but gets the verdict "holds by design" and no p value: it leaves the counts and the Holm family."""
        base = self.base(cid)
        by_design = bool(CLAIMS[cid].by_design)
        v = BY_DESIGN if by_design else verdict_ or stats_verdict(interval)
        nan = math.nan
        prob, won, folds = improvement or (nan, nan, nan)
        row = {**base, "effect": interval.effect, "low": interval.low, "high": interval.high, "low_nb": interval.low_nb,
               "high_nb": interval.high_nb, "p": nan if by_design else interval.p, "n": interval.n, "runs": runs,
               "detectable": interval.detectable, "power": nan if interval.power is None else interval.power,
               "p_plain": nan if by_design else interval.p_plain,
               "p_signflip": nan if by_design else interval.p_signflip, "sd": interval.sd, "sd_floor": interval.sd_floor,
               "sd_upper": interval.sd_upper, "sd_conservative": interval.sd_conservative,
               "detectable_conservative": interval.detectable_conservative,
               "power_conservative": nan if interval.power_conservative is None else interval.power_conservative,
               "level": interval.level, "ratio": interval.ratio, "prob_improvement": prob, "folds_won": won, "folds": folds,
               "paper_position": paper_position(interval.low_nb, interval.high_nb, base["paper"]),
               "verdict": v, "verdict_text": (f"{BY_DESIGN} (not a test): {CLAIMS[cid].by_design}" if by_design else
                                              words or verdict_words(interval, v, base["paper"])),
               "same_schedule": same_schedule, "design": design, "note": note, "detail": detail, "unconverged": unconverged}
        for name in ("best_test", "best_val", "conv"):
            other = conv if name == "conv" else (protocols or {}).get(name)
            row[f"{name}_effect"] = other.effect if other is not None else nan
            row[f"{name}_low_nb"] = other.low_nb if other is not None else nan
            row[f"{name}_high_nb"] = other.high_nb if other is not None else nan
            row[f"{name}_verdict"] = "" if other is None else BY_DESIGN if by_design else stats_verdict(other)
        self.rows.append(row)

    # -- a comparison of two sets of runs on a value of each run -----------------------------------
    def compare(self, cid: str, left: pd.DataFrame, right: pd.DataFrame, *, value: str = "acc", note: str = "",
                protocols: bool = True) -> None:
        paper = self.paper(cid)[0]
        if left.empty or right.empty:
            self.untestable(cid, "this build has no finished runs on one side of the comparison")
            return
        floor = _clip_floor(left, right) if value == "acc" else math.nan
        main = fold_interval(_fold_differences(left, right, value), ratio=self.ratio, reference=paper, floor=floor)
        others = {}
        if protocols:
            for name in ("best_test", "best_val"):
                d = _fold_differences(left, right, PROTOCOLS[name])
                others[name] = fold_interval(d, ratio=self.ratio, reference=paper) if d else None
        lc, rc = left[left.converged], right[right.converged]
        conv = fold_interval(_fold_differences(lc, rc, value), ratio=self.ratio, reference=paper)
        unconverged = int((~left.converged).sum() + (~right.converged).sum())
        self.add(cid, main, runs=len(left) + len(right), same_schedule=_schedules(left, right), note=note,
                 protocols=others, conv=conv, unconverged=unconverged, improvement=_improvement(left, right, value))
