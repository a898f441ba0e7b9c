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
import torch

from ..config import PAPER_DATASETS, SCHEMES
from ..data.bank import load_bank
from ..runs.inference import ensemble_accuracy, noise_accuracies
from .claims import CLAIMS, NEAR_FINAL, NOISE_DRAWS, PAPER_NOISE_LEVELS, PROTOCOLS
from .convergence import epochs_to_reach
from .stats import clip_interval, cv_ratio, fold_interval, verdict, verdict_words
from .stats import verdict as stats_verdict


def add_alpha(L: _Claims, alpha: pd.DataFrame) -> None:
    """C3, Table II: alpha = 0.5 against every other alpha, with intervals simultaneous over the
    comparisons (Bonferroni); the claim's effect is against the best other alpha, whichever it is, and
    its interval is the simultaneous bound on min_j (0.5 - alpha_j), so choosing the rival after the
    fact is accounted for. Its p value is the largest of the comparisons' (an intersection-union test:
    alpha = 0.5 is best only if it beats each)."""

    if alpha.empty or "alpha0.5" not in set(alpha.variant):
        L.untestable("C3", "the alpha sweep has no alpha = 0.5 runs in this build")
        return
    best = alpha[alpha.variant == "alpha0.5"]
    others = sorted(set(alpha.variant) - {"alpha0.5"})
    if not others:
        L.untestable("C3", "the alpha sweep holds no other alpha")
        return
    level = 1 - 0.05 / len(others)
    paper = L.paper("C3")[0]

    def simultaneous(value: str, rows: pd.DataFrame | None = None):
        rows = alpha if rows is None else rows
        b = rows[rows.variant == "alpha0.5"]
        ints = {v: fold_interval(_fold_differences(b, rows[rows.variant == v], value), ratio=L.ratio,
                                 reference=paper, level=level) for v in others}
        if any(i.n == 0 for i in ints.values()):
            return None, ints
        closest = min(ints, key=lambda v: ints[v].effect)
        c = ints[closest]
        return replace(c, low=min(i.low for i in ints.values()), high=min(i.high for i in ints.values()),
                       low_nb=min(i.low_nb for i in ints.values()), high_nb=min(i.high_nb for i in ints.values()),
                       p=max(i.p for i in ints.values())), ints

    main, ints = simultaneous("acc")
    if main is None:
        L.untestable("C3", "the alpha sweep's other weights share no fold with alpha = 0.5")
        return
    closest = min(ints, key=lambda v: ints[v].effect)
    protocols = {name: simultaneous(PROTOCOLS[name])[0] for name in ("best_test", "best_val")}
    conv = simultaneous("acc", alpha[alpha.converged])[0]
    note = (f"the best other weight here is alpha = {closest[5:]}; simultaneous over the {len(others)} other weights; "
            f"{int(best.seed.nunique())} seed(s) per fold")
    detail = (f"against each other weight, corrected intervals at {100 * level:.1f} % each: " +
              ", ".join(f"alpha = {v[5:]}: {ints[v].effect:+.2f} [{ints[v].low_nb:+.2f}, {ints[v].high_nb:+.2f}]"
                        for v in others))
    L.add("C3", main, runs=len(alpha), same_schedule=_schedules(alpha), note=note, protocols=protocols, conv=conv,
          unconverged=int((~alpha.converged).sum()), verdict_=verdict(main), detail=detail)


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
            L.untestable(cid, f"not testable offline: {why}")


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
        h_side = main[main.scheme == "hybrid"]
        note = ("stage 1 and stage 2 of the two-stage scheme both count; the two-stage scheme's stage-1 epochs have no "
                "classifier to score, so it cannot reach the target before stage 2" if other == "supcon" else
                "both schemes train the same schedule, so this is a test, not true by construction")
        L.add(cid, fold_interval(d, ratio=L.ratio), runs=2 * len(p), same_schedule=_schedules(h_side, main[main.scheme == other]),
              note=note, conv=fold_interval(dc, ratio=L.ratio), unconverged=int((~p.converged).sum()))


def _correct(run) -> "np.ndarray":
    o = torch.load(run.directory / "outputs.pt", weights_only=False)
    return (o["probs"].argmax(-1) == o["labels"]).float().numpy()


def add_per_fold(L: _Claims, main: pd.DataFrame) -> None:
    """C9, Fig. 4: on each fold, the hybrid against each other scheme, clip by clip (each clip's
    correctness averaged over the fold's seeds), with intervals simultaneous over every fold and both
    rivals (Bonferroni). Contradicted if on some fold a rival is better beyond the interval;
    supported only if the hybrid is better on every fold; inconclusive otherwise."""

    folds = sorted(set(main.fold)) if not main.empty else []
    schemes = {s: main[main.scheme == s] for s in SCHEMES}
    if not folds or any(df.empty for df in schemes.values()):
        L.untestable("C9", "the main grid lacks a scheme")
        return
    m = 2 * len(folds)
    level = 1 - 0.05 / m
    ints, ahead = {}, 0
    for f in folds:
        mean_correct = {s: np.mean([_correct(r) for r in df[df.fold == f].run], axis=0) for s, df in schemes.items()}
        for rival in ("ce", "supcon"):
            ints[(f, rival)] = clip_interval(100 * (mean_correct["hybrid"] - mean_correct[rival]), level=level)
        ahead += all(ints[(f, r)].effect >= 0 for r in ("ce", "supcon"))
    worst = min(ints, key=lambda k: ints[k].effect)
    w = ints[worst]
    v = ("contradicted" if any(i.high < 0 for i in ints.values()) else
         "supported" if all(i.low > 0 for i in ints.values()) else "inconclusive")
    label = {"ce": "cross-entropy", "supcon": "two-stage SupCon"}
    note = (f"the hybrid is at least as good as both others on {ahead} of {len(folds)} folds (point estimates); the "
            f"worst is fold {worst[0]} against {label[worst[1]]}. Each fold's interval is over its test clips (the "
            f"fold's {int(main.n_test.iloc[0])} clips, seeds averaged), simultaneous over the {m} comparisons; no "
            "cross-fold correction applies to a claim made fold by fold. Not in the Holm family (its own simultaneous "
            "family). Final models only")
    L.add("C9", replace(w, low_nb=w.low, high_nb=w.high, p=math.nan), runs=len(main), same_schedule=_schedules(main),
          design="clips per fold", note=note, verdict_=v, unconverged=int((~main.converged).sum()))


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
              note=f"{f} against {t} (F = {a.freq_mask_width}, T = {a.time_mask_width})")


def _fold_differences(left: pd.DataFrame, right: pd.DataFrame, value: str) -> list[float]:
    """Per fold both sides hold: the mean over the left side's seeds minus the mean over the right's."""
    lm = left.groupby("fold")[value].mean().dropna()
    rm = right.groupby("fold")[value].mean().dropna()
    return [float(lm[f] - rm[f]) for f in sorted(set(lm.index) & set(rm.index))]


def _schedules(*sides: pd.DataFrame) -> bool:
    """Whether every run of every side trained (its first stage) the same epochs, warm-up, decay,
    learning rate and batch: the paper's fair comparison."""
    return len({s for side in sides for s in side["schedule"]}) <= 1


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
        self.rows.append({**self.base(cid), "effect": nan, "low": nan, "high": nan, "low_nb": nan, "high_nb": nan,
                          "p": nan, "n": 0, "runs": 0, "detectable": nan, "power": nan, "verdict": "not testable",
                          "verdict_text": "not testable", "same_schedule": True, "design": "", "note": why, "detail": "",
                          **{f"{p}_{k}": nan for p in ("best_test", "best_val", "conv")
                             for k in ("effect", "low_nb", "high_nb")},
                          **{f"{p}_verdict": "" for p in ("best_test", "best_val", "conv")}, "unconverged": 0})

    def add(self, cid: str, interval, *, runs: int, same_schedule: bool, design: str = "folds", note: str = "",
            protocols: dict | None = None, conv=None, unconverged: int = 0, verdict_: str | None = None,
            detail: str = "") -> None:
        base = self.base(cid)
        v = verdict_ or stats_verdict(interval)
        row = {**base, "effect": interval.effect, "low": interval.low, "high": interval.high, "low_nb": interval.low_nb,
               "high_nb": interval.high_nb, "p": interval.p, "n": interval.n, "runs": runs,
               "detectable": interval.detectable, "power": math.nan if interval.power is None else interval.power,
               "verdict": v, "verdict_text": verdict_words(interval, v, base["paper"]), "same_schedule": same_schedule,
               "design": design, "note": note, "detail": detail, "unconverged": unconverged}
        for name in ("best_test", "best_val", "conv"):
            other = conv if name == "conv" else (protocols or {}).get(name)
            row[f"{name}_effect"] = other.effect if other is not None else math.nan
            row[f"{name}_low_nb"] = other.low_nb if other is not None else math.nan
            row[f"{name}_high_nb"] = other.high_nb if other is not None else math.nan
            row[f"{name}_verdict"] = stats_verdict(other) if other is not None else ""
        self.rows.append(row)

    # -- a comparison of two sets of runs on a value of each run -----------------------------------
    def compare(self, cid: str, left: pd.DataFrame, right: pd.DataFrame, *, value: str = "acc", note: str = "",
                protocols: bool = True) -> None:
        paper = self.paper(cid)[0]
        if left.empty or right.empty:
            self.untestable(cid, "this build has no finished runs on one side of the comparison")
            return
        main = fold_interval(_fold_differences(left, right, value), ratio=self.ratio, reference=paper)
        others = {}
        if protocols:
            for name in ("best_test", "best_val"):
                d = _fold_differences(left, right, PROTOCOLS[name])
                others[name] = fold_interval(d, ratio=self.ratio, reference=paper) if d else None
        lc, rc = left[left.converged], right[right.converged]
        conv = fold_interval(_fold_differences(lc, rc, value), ratio=self.ratio, reference=paper)
        unconverged = int((~left.converged).sum() + (~right.converged).sum())
        self.add(cid, main, runs=len(left) + len(right), same_schedule=_schedules(left, right), note=note,
                 protocols=others, conv=conv, unconverged=unconverged)
