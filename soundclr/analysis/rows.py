"""The ledger's rows: :class:`Evidence` builds them, one per claim, each with the effect, the fold-level
intervals and power of :mod:`soundclr.analysis.stats`, its verdict, and whether both sides of the
comparison trained the same schedule; :func:`beats` is the measurement of a claim "X beats Y" of
your own (:func:`soundclr.analysis.claims.register`). The paper's claims are measured by
:mod:`soundclr.analysis.evidence`, with the fold-level helpers below.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..datasets import PAPER_DATASETS
from ..runs.inference import clip_correctness
from .claims import BY_DESIGN, CLAIMS, PROTOCOLS
from .convergence import run_table
from . import rule
from .noise import SideNoise, fit
from .power import clip_figures, value_figures
from .stats import cv_ratio, fold_interval, improvement_interval, improvement_probability, paper_position, verdict_words
from .stats import verdict as stats_verdict


def clip_correct(run) -> "np.ndarray":
    return clip_correctness(run.directory)


def side_clips(side: pd.DataFrame, folds) -> list[np.ndarray]:
    """Per fold of ``folds``, the (runs, clips) per-clip correctness of ``side``'s runs of that fold."""
    return [np.stack([clip_correct(r) for r in side[side.fold == f].run]) for f in folds]


def side_values(side: pd.DataFrame, folds, value: str) -> list[np.ndarray]:
    """Per fold of ``folds``, the values ``value`` of ``side``'s runs of that fold."""
    return [side[side.fold == f][value].dropna().to_numpy(dtype=float) for f in folds]


def improvement(left: pd.DataFrame, right: pd.DataFrame, value: str) -> tuple:
    """rliable's probability of improvement over the (fold, seed) pairs of two sides, the folds won, the folds,
    and its stratified-bootstrap 95 % interval."""
    folds = sorted(set(left.fold) & set(right.fold))
    a = [left[left.fold == f][value].dropna().tolist() for f in folds]
    b = [right[right.fold == f][value].dropna().tolist() for f in folds]
    return (*improvement_probability(a, b), *improvement_interval(a, b))


def fold_differences(left: pd.DataFrame, right: pd.DataFrame, value: str) -> list[float]:
    """Per fold both sides hold: the mean over the left side's seeds minus the mean over the right's."""
    lm = left.groupby("fold")[value].mean().dropna()
    rm = right.groupby("fold")[value].mean().dropna()
    return [float(lm[f] - rm[f]) for f in sorted(set(lm.index) & set(rm.index))]


def same_schedule(*sides: pd.DataFrame) -> bool:
    """Whether every run of every side trained (its first stage) the same epochs, warm-up, decay,
    learning rate and batch: the paper's fair comparison."""
    return len({s for side in sides for s in side["schedule"]}) <= 1


# The statistics a tested row carries beside its effect and intervals (NaN on a row not tested).
EXTRA_STATS = ("p_plain", "p_signflip", "sd", "sd_floor", "power_mc", "power_low", "power_high", "detectable_low",
               "detectable_high", "size", "size_mc", "level", "ratio", "prob_improvement", "prob_low", "prob_high",
               "folds_won", "folds")


def _with_position(words: str, verdict: str, interval, paper) -> str:
    """An inconclusive verdict's words, with where the paper's effect lies when the interval excludes it (a
    description beside "cannot tell", not a second verdict)."""
    where = paper_position(interval.low_nb, interval.high_nb, paper)
    if verdict == "inconclusive" and where and "inside" not in where:
        return f"{words}; {where} (a description, not a test)"
    return words


def beats(scheme: str, rival: str = "ce"):
    """The measurement (``compute``) function of a claim "``scheme`` beats ``rival``" (a claim of your own,
    :func:`soundclr.analysis.claims.register`): ``scheme`` minus ``rival`` in final-epoch accuracy on the
    main grid, tested as the paper's C1 is (seeds averaged within a fold, the fold as the unit, the
    Nadeau-Bengio corrected interval, power, the paper's protocol beside it, converged runs only as a
    sensitivity check, and whether both sides trained the same schedule)."""

    def compute(evidence: Evidence, cid: str) -> None:
        missing = [s for s in (scheme, rival) if s not in evidence.plan.schemes]
        if missing:
            evidence.untestable(cid, f"the main grid of this build has no {' or '.join(missing)} runs (train "
                                     f"{'it' if len(missing) == 1 else 'them'} beside the paper's schemes: --schemes "
                                     f"{','.join(missing)} with the plugin that registers {'it' if len(missing) == 1 else 'them'})")
            return
        evidence.compare(cid, evidence.scheme_runs(scheme), evidence.scheme_runs(rival))

    compute.__qualname__ = f"beats({scheme!r}, {rival!r})"
    return compute


class Evidence:
    """Builds the ledger's rows for one plan (one dataset). A claim's measurement function adds its row
    with :meth:`compare` (two sets of runs, fold by fold) or :meth:`untestable`; :meth:`scheme_runs` gives
    the main grid's finished runs of a scheme (:func:`soundclr.analysis.convergence.run_table`)."""

    def __init__(self, plan, *, bank=None, device: str = "auto"):
        self.plan, self.bank, self.device = plan, bank, device
        self.dataset = plan.config.data.dataset
        self.ratio = cv_ratio(plan.config.n_folds)
        self.rows: list[dict] = []
        self._main: pd.DataFrame | None = None
        self._noise: dict = {}
        # the training-set term's part shared by the folds of one dataset, as a multiple of its fold-to-fold part:
        # the Nadeau-Bengio argument's n_test / n_train (soundclr.analysis.noise; the draws study measures it)
        self.shared = self.ratio

    @property
    def main(self) -> pd.DataFrame:
        """The main grid's runs (:func:`~soundclr.analysis.convergence.run_table`), read once."""
        if self._main is None:
            self._main = run_table(self.plan.main_runs())
        return self._main

    def scheme_runs(self, scheme: str) -> pd.DataFrame:
        """The main grid's runs of ``scheme``."""
        return self.main[self.main.scheme == scheme]

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
        self.rows.append({**self.base(cid), **{k: nan for k in EXTRA_STATS}, "paper_position": "", "rule": "", "effect": nan, "low": nan, "high": nan, "low_nb": nan, "high_nb": nan,
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
        prob, won, folds, prob_low, prob_high = (tuple(improvement) + (nan, nan))[:5] if improvement else (nan,) * 5
        row = {**base, "effect": interval.effect, "low": interval.low, "high": interval.high, "low_nb": interval.low_nb,
               "high_nb": interval.high_nb, "p": nan if by_design else interval.p, "n": interval.n, "runs": runs,
               "detectable": interval.detectable, "power": nan if interval.power is None else interval.power,
               "p_plain": nan if by_design else interval.p_plain,
               "p_signflip": nan if by_design else interval.p_signflip, "sd": interval.sd, "sd_floor": interval.sd_floor,
               "power_mc": interval.power_mc, "power_low": interval.power_band[0], "power_high": interval.power_band[1],
               "detectable_low": interval.detectable_band[0], "detectable_high": interval.detectable_band[1],
               "size": interval.size, "size_mc": interval.size_mc, "prob_low": prob_low, "prob_high": prob_high,
               "level": interval.level, "ratio": interval.ratio, "rule": interval.rule, "prob_improvement": prob, "folds_won": won, "folds": folds,
               "paper_position": paper_position(interval.low_nb, interval.high_nb, base["paper"]),
               "verdict": v, "verdict_text": (f"{BY_DESIGN} (not a test): {CLAIMS[cid].by_design}" if by_design else
                                              words or _with_position(verdict_words(interval, v, base["paper"]), v,
                                                                      interval, base["paper"])),
               "same_schedule": same_schedule, "design": design, "note": note, "detail": detail, "unconverged": unconverged}
        for name in ("best_test", "best_val", "conv"):
            other = conv if name == "conv" else (protocols or {}).get(name)
            row[f"{name}_effect"] = other.effect if other is not None else nan
            row[f"{name}_low_nb"] = other.low_nb if other is not None else nan
            row[f"{name}_high_nb"] = other.high_nb if other is not None else nan
            row[f"{name}_verdict"] = "" if other is None else BY_DESIGN if by_design else stats_verdict(other)
        self.rows.append(row)

    # -- a comparison of two sets of runs on a value of each run -----------------------------------
    def scheme_side(self, scheme: str) -> SideNoise | None:
        """The main grid's fitted noise of one scheme (its seed terms lend to a side with one run per fold)."""
        key = ("side", scheme)
        if key not in self._noise:
            runs = self.scheme_runs(scheme)
            folds = sorted(set(runs.fold))
            self._noise[key] = None
            if folds and runs.groupby("fold").size().min() > 1:
                try:
                    self._noise[key] = fit({scheme: side_clips(runs, folds)}).sides[scheme]
                except (OSError, KeyError, RuntimeError, ValueError):
                    pass
        return self._noise[key]

    def measure(self, left: pd.DataFrame, right: pd.DataFrame, *, value: str = "acc", paper: float | None = None,
                figures: bool = True, level: float = rule.LEVEL):
        """The ledger's rule on two sides, fold by fold (:mod:`soundclr.analysis.rule`), with the simulated power
        figures (:mod:`soundclr.analysis.power`) where ``figures``. Per-clip correctness where the value is the
        final accuracy and every run kept its outputs; the runs' values otherwise."""
        folds = sorted(set(left.fold) & set(right.fold))
        if not folds:
            return fold_interval([], ratio=self.ratio, level=level), None
        clips = None
        if value == "acc":
            try:
                clips = side_clips(left, folds), side_clips(right, folds)
            except (OSError, KeyError, RuntimeError, TypeError, AttributeError):     # runs without per-clip outputs
                clips = None
        if clips is not None:
            terms = rule.fold_terms(*clips, clips=True)
        else:
            lv, rv = side_values(left, folds, value), side_values(right, folds, value)
            keep = [i for i in range(len(folds)) if len(lv[i]) and len(rv[i])]      # a value missing on a side: no fold
            if not keep:
                return fold_interval([], ratio=self.ratio, level=level), None
            folds = [folds[i] for i in keep]
            terms = rule.fold_terms([lv[i] for i in keep], [rv[i] for i in keep], clips=False)
        interval = fold_interval(terms["d"][0], ratio=self.ratio, level=level,
                                 floor_var=float(rule.floor_variance(terms)[0]))
        if not figures or interval.n < 2:
            return interval, None
        if clips is not None:
            borrow = {}
            for name, side in (("left", left), ("right", right)):
                if side.groupby("fold").size().min() < 2:
                    lent = self.scheme_side(str(side.scheme.iloc[0]))
                    if lent is not None:
                        borrow[name] = SideNoise(lent.acc, lent.r_same, lent.r_run, lent.a,
                                                 source=f"borrowed from the main grid's {side.scheme.iloc[0]} runs")
            try:
                figs = clip_figures({"left": clips[0], "right": clips[1]}, "left", "right", ratio=self.ratio,
                                    paper=paper, borrow=borrow, shared=self.shared)
            except ValueError:
                figs = None
        else:
            figs = value_figures({"left": [lv[i] for i in keep], "right": [rv[i] for i in keep]},
                                 ratio=self.ratio, paper=paper, shared=self.shared)
        return interval.with_figures(figs), figs

    def paired(self, values: list, *, paper: float | None = None, figures: bool = True):
        """The ledger's rule on one side of paired differences (``values[f]``: fold f's differences, one per seed or
        one per fold), with simulated figures where ``figures``."""
        values = [np.asarray(v, dtype=float) for v in values if len(v)]
        if not values:
            return fold_interval([], ratio=self.ratio)
        terms = rule.fold_terms(values, None, clips=False)
        interval = fold_interval(terms["d"][0], ratio=self.ratio, floor_var=float(rule.floor_variance(terms)[0]))
        if not figures or interval.n < 2:
            return interval
        return interval.with_figures(value_figures({"d": values}, ratio=self.ratio, paper=paper, shared=self.shared))

    def compare(self, cid: str, left: pd.DataFrame, right: pd.DataFrame, *, value: str = "acc", note: str = "",
                protocols: bool = True) -> None:
        paper = self.paper(cid)[0]
        if left.empty or right.empty:
            self.untestable(cid, "this build has no finished runs on one side of the comparison")
            return
        main, _ = self.measure(left, right, value=value, paper=paper)
        others = {}
        if protocols:
            for name in ("best_test", "best_val"):
                d = fold_differences(left, right, PROTOCOLS[name])
                others[name] = self.measure(left, right, value=PROTOCOLS[name], figures=False)[0] if d else None
        lc, rc = left[left.converged], right[right.converged]
        conv = self.measure(lc, rc, value=value, figures=False)[0]
        unconverged = int((~left.converged).sum() + (~right.converged).sum())
        self.add(cid, main, runs=len(left) + len(right), same_schedule=same_schedule(left, right), note=note,
                 protocols=others, conv=conv, unconverged=unconverged, improvement=improvement(left, right, value))
