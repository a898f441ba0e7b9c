"""What a decisive test of the headline claims would cost on the real datasets: the power of the
paper's own design, the seeds per fold needed for 80 % power, and the GPU-hours.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from ..analysis.claims import CLAIMS, PAPER_ACCURACY, POWER_TARGET
from ..analysis.convergence import run_table
from ..analysis.stats import cv_ratio, power
from ..config import DATASET_TITLE, PAPER_DATASETS, preset
from . import cost


def measured_noise(plan, rival: str) -> dict:
    """From this build's main grid, hybrid against ``rival`` paired by (fold, seed): the pooled
    within-fold variance over seeds of the difference (points squared), the test-fold size, and the
    share of the two models' errors on which they disagree (discordant clips / (errors of A + errors of
    B)), averaged over the pairs."""
    t = run_table(plan.main_runs())
    h, o = t[t.scheme == "hybrid"].set_index(["fold", "seed"]), t[t.scheme == rival].set_index(["fold", "seed"])
    keys = sorted(set(h.index) & set(o.index))
    if not keys:
        return {}
    d = pd.Series({k: h.loc[k].acc - o.loc[k].acc for k in keys})
    within = [g.var(ddof=1) for _, g in d.groupby(level=0) if len(g) > 1]
    shares = []
    for k in keys:
        a, b = (torch.load(x.loc[k].run.directory / "outputs.pt", weights_only=False) for x in (h, o))
        ca, cb = a["probs"].argmax(-1) == a["labels"], b["probs"].argmax(-1) == b["labels"]
        errors = int((~ca).sum() + (~cb).sum())
        if errors:
            shares.append(float((ca != cb).sum()) / errors)
    return {"seed_var": float(np.mean(within)) if within else math.nan, "n_test": int(t.n_test.iloc[0]),
            "discord": float(np.mean(shares)) if shares else 1.0}


def decisive_cost(plan, *, max_seeds: int = 200, tflops: float = 60.0) -> pd.DataFrame:
    """For C1 and C2 on ESC-50, ESC-10 and UrbanSound8K: the seeds per fold that the paper preset needs
    to detect the paper's effect with 80 % power (corrected fold-level test, the official folds), and the
    GPU-hours that costs at ``tflops`` sustained (``soundclr.cost``). An extrapolation with stated
    assumptions: a fold's difference varies by the clip sampling of its test fold (binomial, with the
    two models disagreeing on the share of their errors measured here) plus the seed-to-seed variance
    measured here, scaled by the fold size (a variance per clip), divided by the seeds."""
    rows = []
    for cid, rival in (("C1", "ce"), ("C2", "supcon")):
        m = measured_noise(plan, rival)
        if not m:
            continue
        for ds in PAPER_DATASETS:
            acc = PAPER_ACCURACY[ds]
            effect = CLAIMS[cid].paper_effect[ds]
            sizes = cost.FOLD_SIZES[ds]
            k, n = len(sizes), float(np.mean(sizes))
            errors = (100 - acc["hybrid"] + 100 - acc[rival]) / 100
            discord = max(m["discord"] * errors, abs(effect) / 100)
            clip_var = 1e4 * (discord - (effect / 100) ** 2) / n           # points squared
            seed_var = m["seed_var"] * m["n_test"] / n
            factor = 1 / k + cv_ratio(k)

            def pw(r: float) -> float:
                return power(effect, math.sqrt(factor * (clip_var + seed_var / r)), k - 1)
            need = next((r for r in range(1, max_seeds + 1) if pw(r) >= POWER_TARGET), None)
            hours = math.nan
            if need:
                per = {}
                for s in ("hybrid", rival):
                    cfg = preset("paper", dataset=ds, scheme=s)
                    speed = cost.estimate(cfg, tflops)
                    counts = pd.DataFrame([cost.run_counts(cfg.override(test_fold=f)) for f in range(1, k + 1)])
                    per[s] = float(cost.hours(counts, speed).sum())
                hours = need * sum(per.values())
            rows.append({"claim": cid, "dataset": f"{DATASET_TITLE[ds]} ({k} x {n:.0f} clips)",
                         "the paper's effect": f"{effect:+.2f}", "power, 5 seeds (the paper's)": f"{100 * pw(5):.0f} %",
                         "seeds per fold for 80 %": str(need) if need else f"none suffice (at most {100 * pw(1e9):.0f} %)",
                         f"GPU-hours ({tflops:g} TFLOP/s)": f"{hours:,.0f} ({need * k * 2} runs)" if need else "n/a"})
    return pd.DataFrame(rows)
