"""What a decisive test of the headline claims would cost on the real datasets, as the book shows it: the
noise model fitted to this build's main grid (:mod:`soundclr.analysis.noise`), carried to ESC-50, ESC-10 and
UrbanSound8K (:func:`soundclr.analysis.planning.carry`: the paper's Table III accuracies and seed SDs, this build's
clip structure and training-set term), and every power, size and "seeds needed" figure simulated with the ledger's
own rule (:mod:`soundclr.analysis.planning`). ``soundclr plan`` prints the same rows for any results folder.
"""
from __future__ import annotations

import math

import pandas as pd

from ..analysis import planning
from ..analysis.noise import fit
from ..analysis.planning import HEADLINE
from ..analysis.simulate import POWER
from ..datasets import PAPER_DATASETS, title_of
from ..runs.counts import H200


def decisive_rows(plan, *, bands: bool = True) -> list[dict]:
    """For C1 and C2 on ESC-50, ESC-10 and UrbanSound8K, at the paper's effect and at half of it: the rows of
    :func:`soundclr.analysis.planning.plan_rows` from this build's main grid (empty without two seeds per fold)."""
    try:
        pl = planning.pilot(plan.results, plan.config.data.dataset)
    except ValueError:
        return []
    shared_of = {}
    rows = []
    for claim, left, right in HEADLINE:
        sides = {s: pl["sides"][s] for s in (left, right)}
        if min(min(f.shape[0] for f in sides[s]) for s in sides) < 2:
            continue
        for ds in PAPER_DATASETS:
            ratio = planning.ratio_of(ds)
            shared_of[ds] = ratio                     # the Nadeau-Bengio argument's shared part (see the model)
            model = planning.carry(fit(sides, train_pairs=[(left, right)], shared=ratio), ds, left, right)
            effects = planning.paper_effects(claim, ds)
            band_of = (lambda e, p, ds=ds, ratio=ratio, sides=sides, left=left, right=right: planning.power_band(
                sides, left, right, ds, e, ratio=ratio, shared=ratio, point=p)) if bands else None
            rows += planning.plan_rows(model, ds, left, right, claim, effects=effects, ratio=ratio, band_of=band_of)
    return rows


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %" if isinstance(x, float) and math.isfinite(x) else "n/a"


def _band(b) -> str:
    lo, hi = b
    if not (math.isfinite(lo) and math.isfinite(hi)) or _pct(lo) == _pct(hi):
        return ""
    return f" ({_pct(lo)} to {_pct(hi)})"


def need_text(r: dict) -> str:
    if r["need"]:
        return str(r["need"])
    if r["ceiling"] < POWER:
        return f"none (at most {_pct(r['ceiling'])})"
    return f"over {r['most']} ({_pct(r['at_most'])} at {r['most']})"


def _key(r: dict) -> dict:
    return {"claim": r["claim"], "dataset": title_of(r["dataset"]),
            "effect": f"{r['effect']:+.2f}" + (" (paper)" if r["effect_label"].startswith("the paper") else " (half)")}


def decisive_cost(plan=None, *, rows: list[dict] | None = None) -> pd.DataFrame:
    """:func:`decisive_rows` as the power table: per claim, dataset and planning effect (the paper's, a best epoch on
    the test fold, and half of it), the rule's power with five seeds (its band), its size, and the seeds per fold
    for 80 %."""
    rows = rows if rows is not None else decisive_rows(plan)
    return pd.DataFrame([{**_key(r), "power, 5 seeds": _pct(r["power"]) + (_band(r["band"]) if r["effect_label"].startswith(
        "the paper") else ""), "size": _pct(r["size"]), "seeds per fold for 80 %": need_text(r)} for r in rows])


def decisive_designs(rows: list[dict]) -> pd.DataFrame:
    """:func:`decisive_rows` as the design table: the term that limits, the clip-level design's power
    and size (not offered above 5 %), and the H200 GPU-hours and runs of the grid that reaches 80 % (of five
    seeds where none does)."""
    return pd.DataFrame([{**_key(r), "limited by": r["limit"],
                          "clip-level: power; size": f"{_pct(r['clip_power'])}; {_pct(r['clip_size'])}"
                          + (" (not offered)" if r["clip_size"] > 0.05 + 2 * r["clip_size_mc"] else ""),
                          "GPU-hours (runs)": f"{r['gpu_hours']:,.0f} ({r['runs']})"} for r in rows])


def decisive_meaning(rows: list[dict]) -> str:
    """What the table means for the paper's own evidence, generated from the numbers, naming the term that limits."""
    rows = [r for r in rows if r["effect_label"].startswith("the paper") and math.isfinite(r["power"])]
    if not rows:
        return ""
    low, high = min(r["power"] for r in rows), max(r["power"] for r in rows)
    text = (f"**What this means for the paper**: with its five seeds, the book's rule on the paper's own design would "
            f"have had {100 * low:.0f} to {100 * high:.0f} % power (simulated) to find the Table III effects it reports "
            "(each the best epoch on the test fold, so if anything larger than a final-epoch effect)")
    if high < 0.5:
        text += ": even if those effects are real, such a test would more often miss them than find them"
    reach = [r for r in rows if r["need"]]
    if reach:
        text += "; " + "; ".join(f"{r['claim']} on {title_of(r['dataset'])} needs {r['need']} seed{'s' if r['need'] > 1 else ''} "
                                 f"per fold ({r['gpu_hours']:,.0f} GPU-hours on one H200)" for r in reach)
    stuck = [r for r in rows if not r["need"]]
    by_limit: dict[str, list[str]] = {}
    for r in stuck:
        by_limit.setdefault(r["limit"], []).append(f"{r['claim']} on {title_of(r['dataset'])}")
    for limit, where in by_limit.items():
        text += (f"; for {', '.join(where)} no number of seeds up to {stuck[0]['most']} reaches "
                 f"{100 * POWER:.0f} %: {limit} limit it, a term that "
                 + ("more seeds average out only slowly" if limit == "the seeds" else "seeds do not average out"))
    return text + "."


def decisive_terms(rows: list[dict]) -> pd.DataFrame:
    """The variance terms behind the table (points squared, one fold, one run of each side), per claim and dataset."""
    seen, out = set(), []
    for r in rows:
        key = (r["claim"], r["dataset"])
        if key in seen:
            continue
        seen.add(key)
        out.append({"claim": r["claim"], "dataset": title_of(r["dataset"]), "clip": r["clip"], "seed": r["seed"],
                    "train": r["train"], "shared": r["shared"]})
    return pd.DataFrame(out, columns=["claim", "dataset", "clip", "seed", "train", "shared"])


def table3_check(rows: list[dict]) -> str:
    """Markdown: the seed term of the table is the paper's own (its Table III SDs of five-fold means, times the folds),
    so it is stated, not checked; and where the rates came from."""
    if not rows:
        return ""
    sources = sorted({H200[r["dataset"]]["source"] for r in rows})
    return ("**Where the terms come from**: the seed term of each paper dataset is the paper's own Table III (the SD "
            "of its five-fold means over five runs, so one fold's seed variance is the folds times its square); the "
            "clip and training-set terms are this build's, carried on the model's latent scale to the paper's "
            "accuracies. GPU-hours: the paper preset's schedule for every fold, at " + "; ".join(sources) + ". **Other "
            "designs**: more folds or repeated cross-validation would break the official folds (the clips of one "
            "recording stay in one fold), so the seeds per fold are the one thing a GPU owner can add; the clip-level "
            "design is shown with its size and offered only where that size stays at 5 %.")
