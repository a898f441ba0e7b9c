"""A decisive test, planned from the noise model: power with the paper's five seeds, the seeds per fold for 80 %,
the most power any number of seeds reaches, the size of every design offered, and the GPU-hours.

Every figure is simulated (:mod:`soundclr.analysis.simulate`) and decided by the ledger's rule
(:mod:`soundclr.analysis.rule`). The model comes from a results folder: the build's own runs (the book's claims,
carried to the paper's datasets by :func:`carry`) or a real-data pilot (``soundclr plan --results DIR --dataset
NAME``, e.g. one seed x three schemes x every fold on a GPU). Two designs:

- **fold-level** (the book's rule): the claim as the paper states it, the schemes' expected difference over
  training runs, test clips and training sets;
- **clip-level**: a paired z test over the pooled test clips, seeds averaged. Its standard error counts the
  clips only, so it treats the seeds and training sets as fixed; under the model its size exceeds 5 % wherever
  they vary, and then it is not offered (the table shows its size).

The official folds fix the design: clips of one recording stay in one fold, so neither more folds nor repeated
cross-validation is available on ESC-50, ESC-10 or UrbanSound8K; seeds are what a GPU owner can add.
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from .. import datasets
from ..config import preset
from ..runs.counts import H200, hours, measured_speed, run_counts
from ..runs.inference import clip_correctness
from ..runs.store import load_summaries
from . import rule
from .claims import CLAIMS, PAPER_TABLE3
from .noise import NoiseModel, SideNoise, fit, r_run_from, r_same_from, seed_variance
from .power import pair_decider
from .simulate import POWER, Design, band, clip_experiments, rate, rates, seeds_needed
from .stats import cv_ratio

PAPER_SEEDS = 5
HEADLINE = (("C1", "hybrid", "ce"), ("C2", "hybrid", "supcon"))
SIMS = 1000
SEARCH_SIMS = 300
BAND_REPLICATES = 12
BAND_SIMS = 200
MOST_SEEDS = 20


def pilot(results: str | Path, dataset: str, schemes_: tuple[str, ...] = ("ce", "supcon", "hybrid")) -> dict:
    """The main grid of ``dataset`` in a results folder as per-clip correctness: scheme -> folds -> (runs, clips),
    over the folds every scheme holds. A clear error where the folder holds no such runs."""
    df = load_summaries(results, dataset, "main")
    if df.empty:
        raise ValueError(f"{results}/{dataset}/main holds no finished run: train a pilot first, e.g. soundclr train "
                         f"--dataset {dataset} --preset paper --schemes ce,supcon,hybrid --seeds 0,1 on every fold (two seeds "
                         "measure the seed term; on ESC-50, ESC-10 and UrbanSound8K one is enough: Table III gives it)")
    missing = [s for s in schemes_ if s not in set(df.scheme)]
    if missing:
        raise ValueError(f"{results}/{dataset}/main has no finished {', '.join(missing)} runs: the plan compares "
                         f"the hybrid with cross-entropy and two-stage SupCon, so train every scheme")
    folds = sorted(set.intersection(*(set(df[df.scheme == s].fold) for s in schemes_)))
    if len(folds) < 2:
        raise ValueError(f"{results}/{dataset}/main: the schemes share {len(folds)} fold(s); the noise model needs two "
                         "or more (train every fold)")
    out = {}
    for s in schemes_:
        rows = df[df.scheme == s]
        out[s] = [np.stack([clip_correctness(d) for d in rows[rows.fold == f].run_dir]) for f in folds]
    return {"sides": out, "folds": folds}


def table3_variance(dataset: str, scheme: str) -> float:
    """The seed variance of one run on one fold (points squared) that the paper's Table III implies: its SD is of
    the five-fold mean over five runs, so one fold's is ``k SD^2`` (seed deviations independent across folds)."""
    k = len(datasets.get(dataset).fold_sizes)
    return k * PAPER_TABLE3[dataset][scheme][1] ** 2


def with_seed_variance(side: SideNoise, var: float, clips: float) -> SideNoise:
    """``side`` with the seed variance of one run on ``clips`` clips set to ``var`` (points squared): its run shift
    (r_run) re-solved at its clip correlation, or, where even no run shift gives more, a clip correlation (r_same)
    high enough that the clip-by-clip noise alone gives ``var``."""
    v = var / 1e4
    if seed_variance(side.acc, side.r_same, 0.0, clips) <= v:
        return replace(side, r_run=r_run_from(side.acc, side.r_same, v, clips))
    rs = r_same_from(side.acc, 2 * v * clips)          # (acc - Phi2) / n = v  <=>  discord = 2 n v
    return replace(side, r_same=max(rs, side.a ** 2), r_run=0.0)


def carry(model: NoiseModel, dataset: str, left: str, right: str, *, accuracies: dict | None = None,
          seed_var: dict | None = None) -> NoiseModel:
    """The model of a comparison carried to ``dataset``: the same latent clip structure (r_same, loadings) at the
    dataset's accuracies (the paper's Table III by default), the seed variance of each side set to ``seed_var``
    (points squared, one run on one fold; default: what Table III implies), and the training-set term kept on the
    latent scale (its points at the new accuracy)."""
    clips = float(np.mean(datasets.get(dataset).fold_sizes))
    acc = accuracies or {s: PAPER_TABLE3[dataset][s][0] / 100 for s in (left, right)}
    sides = {}
    for s in (left, right):
        old = model.sides[s]
        new = replace(old, acc=acc[s])
        scale = (norm.pdf(new.c) / max(norm.pdf(old.c), 1e-9)) ** 2
        new = replace(new, train=old.train * scale)
        var = (seed_var or {}).get(s, table3_variance(dataset, s) if dataset in PAPER_TABLE3 else None)
        if var is not None:
            new = with_seed_variance(new, var, clips)
        sides[s] = new
    return replace(model, sides=sides, clips=clips, folds=len(datasets.get(dataset).fold_sizes))


def pooled_clip_decider(left: str, right: str):
    """The clip-level design: a paired z test (5 %, two-sided) over the pooled test clips, seeds averaged."""
    def decide(folds):
        d = np.concatenate([f[left].mean(axis=1) - f[right].mean(axis=1) for f in folds], axis=1)   # (B, clips)
        se = d.std(axis=1, ddof=1) / math.sqrt(d.shape[1])
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(se > 0, d.mean(axis=1) / se, 0.0)
        crit = norm.ppf(0.975)
        return np.where(z > crit, 1, np.where(z < -crit, -1, 0))
    return decide


def grid_hours(dataset: str, schemes_: tuple[str, ...], seeds: int) -> float:
    """GPU-hours of ``seeds`` runs per fold of each scheme on every official fold of ``dataset`` (the paper preset)
    at the H200's measured rates for that dataset's clips (:data:`soundclr.runs.counts.H200`)."""
    k = len(datasets.get(dataset).fold_sizes)
    total = 0.0
    for s in schemes_:
        cfg = preset("paper", dataset=dataset, scheme=s)
        counts = pd.DataFrame([run_counts(cfg.override(test_fold=f)) for f in range(1, k + 1)])
        total += float(hours(counts, measured_speed(dataset, s)).sum())
    return seeds * total


def design_figures(model: NoiseModel, dataset: str, left: str, right: str, effect: float, *, ratio: float,
                   sims: int = SIMS) -> dict:
    """For one planning effect (points, left above right by it, centred on the model's two accuracies): the power
    of the book's rule with five seeds, the seeds per fold for 80 % (or the ceiling), its size, and the clip-level
    design's power and size (the same simulated experiments decided both ways)."""
    sizes = tuple(datasets.get(dataset).fold_sizes)
    mid = (model.sides[left].acc + model.sides[right].acc) / 2
    acc = {left: min(mid + effect / 200, 0.999), right: max(mid - effect / 200, 0.001)}
    null = {left: mid, right: mid}
    fold = pair_decider(left, right, ratio=ratio)
    clip = pooled_clip_decider(left, right)

    def run(m_acc, seeds, deciders, n=sims):
        m = model.with_accuracy(m_acc)
        design = Design(clips=sizes, runs={left: seeds, right: seeds})
        chunk = max(1, min(500, int(2e7 / (sum(sizes) * 2 * (seeds or 1)))))
        return rates(lambda b, rng: clip_experiments(m, design, b, rng), deciders, sims=n, seed=7, chunk=chunk)

    at = run(acc, PAPER_SEEDS, {"fold": (fold, (1,)), "clip": (clip, (1,))})
    zero = run(null, PAPER_SEEDS, {"fold": (fold, (1, -1)), "clip": (clip, (1, -1))})
    need = seeds_needed(lambda r: run(acc, r, {"fold": (fold, (1,))}, n=sims if r is None else SEARCH_SIMS)["fold"]["rate"],
                        most=MOST_SEEDS)
    return {"power": at["fold"]["rate"], "power_mc": at["fold"]["mc"], "size": zero["fold"]["rate"],
            "size_mc": zero["fold"]["mc"], "need": need["need"], "ceiling": need["ceiling"], "at_most": need["at_most"],
            "most": MOST_SEEDS, "clip_power": at["clip"]["rate"], "clip_size": zero["clip"]["rate"],
            "clip_size_mc": zero["clip"]["mc"], "sims": sims}


def limiting_term(model: NoiseModel, left: str, right: str, seeds: int | None) -> str:
    """The variance term of a fold difference that limits the design at ``seeds`` per fold (None: infinitely
    many): the largest of the clips, the seeds and the training sets."""
    t = model.terms(left, right, seeds=seeds or 1e9)
    names = {"clip": "the test clips", "seed": "the seeds", "train": "the training sets"}
    t["train"] = t["train"] + t["shared"]
    return names[max(("clip", "seed", "train"), key=lambda k: t[k])]


def plan_rows(model: NoiseModel, dataset: str, left: str, right: str, claim: str, *, effects: dict[str, float],
              ratio: float, band_of=None) -> list[dict]:
    """One row per planning effect (``effects``: label -> points) for one claim on ``dataset``: the figures of
    :func:`design_figures`, the variance terms, the limiting term, GPU-hours of the grid that reaches 80 % (of five
    seeds where none does), and (with ``band_of``: a function of an effect and its power giving the power band) a band
    at the paper's effect."""
    rows = []
    for label, effect in effects.items():
        f = design_figures(model, dataset, left, right, effect, ratio=ratio)
        seeds = f["need"] or PAPER_SEEDS
        terms = model.terms(left, right)
        rows.append({"claim": claim, "dataset": dataset, "folds": len(datasets.get(dataset).fold_sizes),
                     "clips": float(np.mean(datasets.get(dataset).fold_sizes)), "effect": effect, "effect_label": label,
                     **f, "band": (band_of(effect, f["power"]) if band_of and label.startswith("the paper's") else
                                   (math.nan, math.nan)), **terms,
                     "limit": ("the seeds" if f["need"] is None and f["ceiling"] >= POWER else
                               limiting_term(model, left, right, f["need"])),
                     "gpu_hours": grid_hours(dataset, (left, right), seeds) if dataset in H200 else math.nan,
                     "runs": 2 * seeds * len(datasets.get(dataset).fold_sizes),
                     "rates": H200[dataset]["source"] if dataset in H200 else ""})
    return rows


def power_band(build_sides: dict, left: str, right: str, dataset: str, effect: float, *, ratio: float,
               shared: float, replicates: int = BAND_REPLICATES, point: float | None = None) -> tuple[float, float]:
    """The power band of the five-seed fold-level design on ``dataset``: the build's own runs redrawn from the
    fitted model, refitted, carried and re-simulated (:func:`soundclr.analysis.simulate.band`)."""
    base = fit(build_sides, train_pairs=[(left, right)], shared=shared)
    design = Design(clips=tuple(int(f.shape[1]) for f in build_sides[left]),
                    runs={s: int(min(f.shape[0] for f in build_sides[s])) for s in (left, right)})
    sizes = tuple(datasets.get(dataset).fold_sizes)

    def simulate_build(rng):
        fs = clip_experiments(base, design, 1, rng)
        return {s: [f[s][0] for f in fs] for s in (left, right)}

    def figure(m):
        c = carry(m, dataset, left, right)
        mid = (c.sides[left].acc + c.sides[right].acc) / 2
        c = c.with_accuracy({left: mid + effect / 200, right: mid - effect / 200})
        d = Design(clips=sizes, runs={left: PAPER_SEEDS, right: PAPER_SEEDS})
        return rate(lambda b, rng: clip_experiments(c, d, b, rng), pair_decider(left, right, ratio=ratio),
                    sims=BAND_SIMS, seed=11, chunk=100)["rate"]

    return band(simulate_build, lambda sim: fit(sim, train_pairs=[(left, right)], shared=shared), figure,
                replicates=replicates, point=point, bounds=(0.0, 1.0))


def paper_effects(claim: str, dataset: str) -> dict[str, float]:
    """The planning effects of a claim: the paper's (Table III means, each the best epoch on the test fold), and a
    smaller effect of interest beside it (half of it)."""
    e = CLAIMS[claim].paper_effect[dataset]
    return {"the paper's (Table III; best epoch on the test fold)": e, "half the paper's": e / 2}


def fit_pilot(sides: dict, left: str, right: str, *, shared: float, dataset: str | None = None) -> NoiseModel:
    """The model of ``left - right`` fitted to a pilot's runs; with one run per fold, the seed terms come from the
    paper's Table III on a paper dataset (an error elsewhere)."""
    pair = {s: sides[s] for s in (left, right)}
    borrow = {}
    for s in (left, right):
        if min(f.shape[0] for f in pair[s]) < 2:
            if dataset not in PAPER_TABLE3:
                raise ValueError(f"the pilot has one {s} run per fold: its seed variance cannot be measured; train two "
                                 "seeds per fold (--seeds 0,1), or plan on a paper dataset whose Table III gives it")
            borrow[s] = SideNoise(acc=float(np.mean([f.mean() for f in pair[s]])), r_same=0.9, r_run=0.0, a=0.9,
                                  source="from the paper's Table III SD")
    model = fit(pair, train_pairs=[(left, right)], borrow=borrow, shared=shared)
    if borrow:
        n = float(np.mean([f.shape[1] for f in pair[left]]))
        model = replace(model, sides={s: (with_seed_variance(v, table3_variance(dataset, s), n) if s in borrow else v)
                                      for s, v in model.sides.items()})
    return model


def ratio_of(dataset: str) -> float:
    """The Nadeau-Bengio n_test / n_train of ``dataset``'s official folds."""
    return cv_ratio(len(datasets.get(dataset).fold_sizes))


def decisive_design(rows: list[dict]) -> dict | None:
    """The design a plan recommends from its rows: the paper's effect's row that reaches 80 % with the fewest
    seeds, else the one with the highest ceiling."""
    main = [r for r in rows if r["effect_label"].startswith("the paper's")]
    if not main:
        return None
    reach = [r for r in main if r["need"]]
    return min(reach, key=lambda r: r["need"]) if reach else max(main, key=lambda r: r["ceiling"])


def plan_report(results: str | Path, dataset: str, *, effect: float | None = None) -> dict:
    """``soundclr plan``: fit the noise model to ``results``' main grid of ``dataset`` (a pilot) and plan C1 and C2
    on that dataset's own folds, at the pilot's accuracies: the paper's effect and half of it (or ``effect``).
    Returns the rows and the recommended design."""
    pl = pilot(results, dataset)
    k = len(pl["folds"])
    rows = []
    for claim, left, right in HEADLINE:
        model = fit_pilot(pl["sides"], left, right, shared=cv_ratio(k), dataset=dataset)
        effects = ({"given": float(effect)} if effect is not None else
                   paper_effects(claim, dataset if dataset in PAPER_TABLE3 else "esc50"))
        rows += plan_rows(model, dataset, left, right, claim, effects=effects, ratio=cv_ratio(k))
    return {"rows": rows, "design": decisive_design(rows) if effect is None else max(rows, key=lambda r: -(r["need"] or 99)),
            "folds": pl["folds"], "dataset": dataset}


def report_text(report: dict) -> str:
    """The plan as lines for a terminal."""
    lines = [f"Decisive design for {report['dataset']} (the noise model fitted to the pilot's runs; every figure "
             f"simulated with the ledger's rule, {rule.RULE}):"]
    for r in report["rows"]:
        need = (f"{r['need']} seeds per fold" if r["need"] else
                f"no number of seeds up to {r['most']} reaches {100 * POWER:.0f} % (at most {100 * r['ceiling']:.0f} % "
                "with unlimited seeds)" if r["ceiling"] < POWER else
                f"more than {r['most']} seeds per fold ({100 * r['at_most']:.0f} % at {r['most']})")
        hours = f"; {r['gpu_hours']:,.0f} H200 GPU-hours ({r['runs']} runs)" if math.isfinite(r["gpu_hours"]) else ""
        lines.append(f"  {r['claim']} at {r['effect']:+.2f} points ({r['effect_label']}): power with 5 seeds "
                     f"{100 * r['power']:.0f} % ± {100 * r['power_mc']:.0f}, size {100 * r['size']:.1f} %; {need}{hours}; "
                     f"limited by {r['limit']}; clip-level design: power {100 * r['clip_power']:.0f} %, size "
                     f"{100 * r['clip_size']:.0f} %" + (" (not offered: above 5 %)" if r["clip_size"] > 0.05 + 2 * r["clip_size_mc"]
                                                    else ""))
        lines.append(f"      variance of one fold's difference (points²): clips {r['clip']:.2f}, one run of each side "
                     f"{r['seed']:.2f}, training sets {r['train']:.2f} (+{r['shared']:.2f} shared)")
    d = report["design"]
    if d:
        seeds = d["need"] or PAPER_SEEDS
        lines.append(f"Recommended: {seeds} seed{'s' if seeds > 1 else ''} per fold of every scheme on every fold "
                     f"({d['claim']} is the limiting claim)" + ("" if d["need"] else
                                                               f": no number reaches {100 * POWER:.0f} %, so the paper's five"))
    return "\n".join(lines)
