"""What a decisive test of the headline claims would cost on the real datasets: the power of two designs
with the paper's five seeds, the seeds per fold needed for 80 % power, and the GPU-hours.

The variance model keeps its terms apart and corrects each only where it belongs. A fold's difference
between two schemes varies by

- **test clips**: the fold's clips are a sample; two models that disagree on a share q of the clips and
  differ by delta differ by ``(q - delta^2) / n`` (a fraction squared) from clip sampling alone. Test
  folds are disjoint, so this term is independent across folds: no Nadeau-Bengio factor.
- **seeds**: the seed-to-seed variance of a difference, measured in this build's main grid and carried to
  a real fold per clip (times n_build / n); averaging r seeds divides it by r.
- **training sets**: what is left of this build's between-fold variance after the two terms above (never
  below zero). Training sets overlap across folds, so only this term gets the Nadeau-Bengio factor
  ``1 / k + n_test / n_train`` instead of ``1 / k``.

The clip term is computed from the disagreement of single trained models, which holds the part of the seed
variation that is independent from clip to clip; the A/A calibration found that part to be almost all of it
(two seeds of one scheme differ by about their clip-sampling floor). So the seed term partly counts twice: the
variance is, if anything, overstated, and the power understated.

Two designs: the fold-level t test on the official folds (target: the schemes' expected difference over
training runs and clips, the claim as the paper states it), and a clip-level paired test over the pooled
test clips with seeds averaged (target: these trained models on this population of clips; its standard error
holds the clip term only, and the calibration page measures its false-positive rate).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import norm

from ..analysis.claims import CLAIMS, PAPER_ACCURACY, PAPER_TABLE3, POWER_TARGET
from ..analysis.convergence import run_table
from ..analysis.stats import clip_floor, cv_ratio, power
from ..config import preset
from ..datasets import PAPER_DATASETS, title_of
from ..runs.inference import clip_correctness
from . import cost

# Training clips per second of a ResNet-50 step at the paper's input, bf16, batch 128, on one H200, as
# `make gpu-check` measured them (issue 22). Stage 2 and evaluation run forward only: taken at three times
# the training rate (a forward pass is about a third of a training step's FLOPs).
H200_CLIPS_PER_S = {"ce": 3265.0, "supcon": 2967.0, "hybrid": 3228.0}
FORWARD_SPEEDUP = 3.0
PAPER_SEEDS = 5


def measured_noise(plan, rival: str) -> dict:
    """From this build's main grid, hybrid against ``rival`` paired by (fold, seed): the pooled
    within-fold variance over seeds of the difference (``seed_var``, points squared), the between-fold
    variance of the seed-averaged differences (``fold_var``), the clip-sampling variance of a fold's
    seed-averaged difference (``clip_var``), the seeds per fold, the test-fold size, and the share of the
    two models' errors on which they disagree (``discord``: discordant clips / (errors of A + errors of B)),
    averaged over the pairs."""
    t = run_table(plan.main_runs())
    h, o = t[t.scheme == "hybrid"].set_index(["fold", "seed"]), t[t.scheme == rival].set_index(["fold", "seed"])
    keys = sorted(set(h.index) & set(o.index))
    if not keys:
        return {}
    d = pd.Series({k: h.loc[k].acc - o.loc[k].acc for k in keys})
    within = [g.var(ddof=1) for _, g in d.groupby(level=0) if len(g) > 1]
    folds = d.groupby(level=0).mean()
    shares, per_clip = [], []
    for fold in sorted({k[0] for k in keys}):
        fk = [k for k in keys if k[0] == fold]
        per_clip.append(np.mean([clip_correctness(h.loc[k].run.directory) for k in fk], axis=0)
                        - np.mean([clip_correctness(o.loc[k].run.directory) for k in fk], axis=0))
        for k in fk:
            a, b = (clip_correctness(x.loc[k].run.directory) > 0 for x in (h, o))
            errors = int((~a).sum() + (~b).sum())
            if errors:
                shares.append(float((a != b).sum()) / errors)
    return {"seed_var": float(np.mean(within)) if within else math.nan, "n_test": int(t.n_test.iloc[0]),
            "fold_var": float(folds.var(ddof=1)) if len(folds) > 1 else math.nan,
            "clip_var": clip_floor(per_clip) ** 2, "seeds": int(d.groupby(level=0).size().mean()),
            "discord": float(np.mean(shares)) if shares else 1.0}


def variance_terms(m: dict, ds: str, rival: str, effect: float) -> dict:
    """The three variance terms of one fold's difference on dataset ``ds`` (points squared): ``clip`` (one
    fold's test clips), ``seed`` (one seed), ``train`` (training sets), from this build's noise ``m``."""
    acc = PAPER_ACCURACY[ds]
    n = float(np.mean(cost.fold_sizes(ds)))
    errors = (100 - acc["hybrid"] + 100 - acc[rival]) / 100
    discord = max(m["discord"] * errors, abs(effect) / 100)
    train = m["fold_var"] - m["clip_var"] - m["seed_var"] / m["seeds"]
    return {"clip": 1e4 * (discord - (effect / 100) ** 2) / n, "seed": m["seed_var"] * m["n_test"] / n,
            "train": max(0.0, train) if math.isfinite(train) else 0.0, "train_build": train}


def fold_power(terms: dict, effect: float, k: int, seeds: float) -> float:
    """Power of the corrected fold-level t test (k folds, ``seeds`` per fold and side): the clip and seed
    terms average over the folds (1 / k), the training term gets the Nadeau-Bengio factor."""
    var = (terms["clip"] + terms["seed"] / seeds) / k + terms["train"] * (1 / k + cv_ratio(k))
    return power(effect, math.sqrt(var), k - 1)


def clip_power(terms: dict, effect: float, k: int, seeds: float) -> float:
    """Power of a clip-level paired test (normal) over the k folds' pooled clips, seeds averaged: its
    standard error holds only the clip term; the estimate varies by all three."""
    se_test = math.sqrt(terms["clip"] / k)
    sd_true = math.sqrt((terms["clip"] + terms["seed"] / seeds) / k + terms["train"] * (1 / k + cv_ratio(k)))
    if not (sd_true > 0 and se_test > 0):
        return math.nan
    z = norm.ppf(0.975) * se_test
    return float(norm.sf((z - effect) / sd_true) + norm.cdf((-z - effect) / sd_true))


def grid_hours(ds: str, rival: str, seeds: int, speed) -> float:
    """GPU-hours of ``seeds`` runs per fold of the hybrid and ``rival`` on every official fold of ``ds``, the
    paper preset, at ``speed(cfg)`` (a :class:`~soundclr.book.cost.Throughput` per configuration)."""
    total = 0.0
    k = len(cost.fold_sizes(ds))
    for s in ("hybrid", rival):
        cfg = preset("paper", dataset=ds, scheme=s)
        counts = pd.DataFrame([cost.run_counts(cfg.override(test_fold=f)) for f in range(1, k + 1)])
        total += float(cost.hours(counts, speed(cfg)).sum())
    return seeds * total


def measured_speed(cfg) -> cost.Throughput:
    rate = H200_CLIPS_PER_S[cfg.run.scheme]
    return cost.Throughput(rate, FORWARD_SPEEDUP * rate, FORWARD_SPEEDUP * rate, "H200, measured")


def decisive_rows(plan, *, max_seeds: int = 200, tflops: float = 60.0) -> list[dict]:
    """For C1 and C2 on ESC-50, ESC-10 and UrbanSound8K, as numbers: the variance terms, power with the paper's
    five seeds under the fold-level and the clip-level design, the seeds per fold the fold-level test needs for
    80 % power (None where no number does, with ``ceiling``, the most power any number reaches), and the GPU-hours
    of that grid (of five seeds where none suffice) at the H200's measured rate and at ``tflops`` sustained (FLOP
    count). An extrapolation with the assumptions of the module docstring."""
    rows = []
    for cid, rival in (("C1", "ce"), ("C2", "supcon")):
        m = measured_noise(plan, rival)
        if not m or not math.isfinite(m["seed_var"]):
            continue
        for ds in PAPER_DATASETS:
            effect = CLAIMS[cid].paper_effect[ds]
            k, n = len(cost.fold_sizes(ds)), float(np.mean(cost.fold_sizes(ds)))
            terms = variance_terms(m, ds, rival, effect)
            need = next((r for r in range(1, max_seeds + 1) if fold_power(terms, effect, k, r) >= POWER_TARGET), None)
            seeds = need or PAPER_SEEDS
            rows.append({"claim": cid, "dataset": ds, "folds": k, "clips": n, "effect": effect, **terms,
                         "fold_power": fold_power(terms, effect, k, PAPER_SEEDS),
                         "clip_power": clip_power(terms, effect, k, PAPER_SEEDS), "need": need,
                         "ceiling": fold_power(terms, effect, k, 1e9), "runs": seeds * k * 2,
                         "gpu_hours": grid_hours(ds, rival, seeds, measured_speed),
                         "flop_hours": grid_hours(ds, rival, seeds, lambda cfg: cost.estimate(cfg, tflops)),
                         "tflops": tflops})
    return rows


def decisive_cost(plan, *, rows: list[dict] | None = None, **kwargs) -> pd.DataFrame:
    """:func:`decisive_rows` (of ``plan``, or ``rows`` already computed) as a table of short labels."""
    return pd.DataFrame([{
        "claim": r["claim"], "dataset": f"{title_of(r['dataset'])} ({r['folds']} x {r['clips']:.0f})",
        "paper's effect": f"{r['effect']:+.2f}",
        "power, 5 seeds (fold; clip)": f"{_pct(r['fold_power'])}; {_pct(r['clip_power'])}",
        "seeds per fold for 80 %": str(r["need"]) if r["need"] else f"none (at most {_pct(r['ceiling'])})",
        "GPU-hours: H200; FLOPs": f"{r['gpu_hours']:,.0f}; {r['flop_hours']:,.0f} ({r['runs']} runs)"}
        for r in (rows if rows is not None else decisive_rows(plan, **kwargs))])


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %" if math.isfinite(x) else "n/a"


def decisive_meaning(rows: list[dict]) -> str:
    """One sentence: what the table means for the paper's own evidence."""
    rows = [r for r in rows if math.isfinite(r["fold_power"])]
    if not rows:
        return ""
    low, high = min(r["fold_power"] for r in rows), max(r["fold_power"] for r in rows)
    need = [r["need"] for r in rows if r["need"]]
    none = [f"{r['claim']} on {title_of(r['dataset'])}" for r in rows if not r["need"]]
    hours = [r["gpu_hours"] for r in rows if r["need"]]
    text = (f"**What this means for the paper**: with its five seeds, the fold-level test of the paper's own design "
            f"would have had {100 * low:.0f} to {100 * high:.0f} % power to detect the Table III effects it reports")
    if high < 0.5:
        text += ", so even if those effects are real, such a test would more often miss them than find them"
    elif low < POWER_TARGET:
        text += f", below the usual {100 * POWER_TARGET:.0f} % for some of them"
    if need:
        seeds = f"{min(need)}" if min(need) == max(need) else f"{min(need)} to {max(need)}"
        gpu = f"{min(hours):,.0f}" if min(hours) == max(hours) else f"{min(hours):,.0f} to {max(hours):,.0f}"
        text += (f"; where seeds suffice, a decisive test needs {seeds} seed{'s' if max(need) > 1 else ''} per fold "
                 f"({gpu} GPU-hours on one H200)")
    if none:
        text += (f"; for {', '.join(none)} no number of seeds reaches 80 % on the official folds: the terms seeds do "
                 "not average out (the test clips and the training sets) limit it")
    return text + "."


def decisive_terms(rows: list[dict]) -> pd.DataFrame:
    """The variance terms of :func:`decisive_rows` (points squared, one fold, one seed), per claim and dataset."""
    return pd.DataFrame([{"claim": r["claim"], "dataset": title_of(r["dataset"]), "clip": r["clip"],
                          "seed": r["seed"], "train": r["train"], "train_build": r["train_build"]} for r in rows],
                        columns=["claim", "dataset", "clip", "seed", "train", "train_build"])


def table3_check(rows: list[dict]) -> str:
    """Markdown: this build's seed-to-seed variance of each headline difference, carried to an ESC-50 fold (the
    seed term of :func:`decisive_rows`), beside the variance the paper's own Table III SDs imply for it
    (SD_hybrid^2 + SD_rival^2, independent runs): a check of the seed term the decisive table assumes."""
    parts, ratios = [], []
    rival = {"C1": "ce", "C2": "supcon"}
    for r in rows:
        if r["dataset"] != "esc50":
            continue
        row = PAPER_TABLE3["esc50"]
        paper = row["hybrid"][1] ** 2 + row[rival[r["claim"]]][1] ** 2
        ratios.append(r["seed"] / paper)
        parts.append(f"{r['claim']}: {r['seed']:.2f} here against {paper:.2f} from Table III "
                     f"({row['hybrid'][1]:.2f}\u00b2 + {row[rival[r['claim']]][1]:.2f}\u00b2)")
    if not parts:
        return ""
    if min(ratios) <= 0:
        agree = "this build measured no seed-to-seed variation for one of them, so it cannot check the seed term"
    elif all(0.5 <= r <= 2 for r in ratios):
        agree = "they agree within a factor of two, so the seed term carried to the real data is plausible"
    else:
        agree = (f"they differ by a factor of up to {max(max(ratios), 1 / min(ratios)):.1f}, so the seed term carried "
                 "to the real data is uncertain by as much")
    return ("**Cross-check of the seed term** (points squared, one ESC-50 fold, the difference of two single runs; "
            "the paper's SDs are over its 5 runs): " + "; ".join(parts) + f": {agree}.")
