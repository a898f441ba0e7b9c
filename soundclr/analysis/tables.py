"""The paper's tables, recomputed from the results store, in the form the book's pages show them.

Every accuracy is in %, "mean ± sd" cells are strings (two decimals), rows of schemes are in
the order cross-entropy, two-stage SupCon, hybrid under their display names, and where the
paper has a number for the dataset it stands in a column beside ours. The published numbers
(the paper's Tables II-IV) are copied here once, with their table and row.
"""
from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..schemes import in_order, label_of, names as scheme_names
from ..files import read_json
from ..runs.inference import ensemble_accuracy, noise_accuracy
from .claims import LITERATURE, PAPER_TABLE2, PAPER_TABLE3
from .stats import wilson


def scheme_table(main: pd.DataFrame, metric: str = "final_acc", dataset: str | None = None) -> pd.DataFrame:
    """Table III: per scheme, mean ± sd over seeds of the fold-averaged accuracy, the best seed,
    and the paper's numbers for the dataset."""
    t = scheme_summary(main, metric).set_index("scheme")
    out = pd.DataFrame({"average (%)": [pm(m, s) for m, s in zip(t["mean"], t["std"])], "best seed (%)": t["best"],
                        "seeds": t["seeds"].astype(int), "folds": t["folds"].astype(int)}, index=t.index)
    ref, where = _paper_dataset(dataset)
    paper = PAPER_TABLE3[ref]           # a scheme of your own has no published row: a dash
    out[f"the paper{where}: average (%)"] = [pm(*paper[s][:2]) if s in paper else "—" for s in out.index]
    out[f"the paper{where}: best (%)"] = [paper[s][2] if s in paper else "—" for s in out.index]
    return scheme_index(out)


def _paper_dataset(dataset: str | None) -> tuple[str, str]:
    """The paper's dataset to set beside this build's: the same one, or ESC-50 (named) for the synthetic set."""
    if dataset in PAPER_TABLE3:
        return dataset, ""
    return "esc50", ", ESC-50"


def alpha_table(alpha: pd.DataFrame, dataset: str | None = None) -> pd.DataFrame:
    """Table II: per alpha, mean ± sd over the runs (folds x seeds) at the final epoch and at the
    paper's protocol, and the paper's number for the dataset."""
    g = alpha.groupby("alpha")
    out = pd.DataFrame({
        "final epoch (%)": [pm(100 * d.final_acc.mean(), 100 * d.final_acc.std()) for _, d in g],
        "best epoch on the test fold (%)": [pm(100 * d.best_test_acc.mean(), 100 * d.best_test_acc.std()) for _, d in g],
        "runs": [len(d) for _, d in g]}, index=[f"alpha = {a:g}" for a, _ in g])
    ref, where = _paper_dataset(dataset)
    out[f"the paper{where} (%)"] = [PAPER_TABLE2[ref].get(a) for a, _ in g]
    return out


def fold_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per fold: the final epoch and the paper's protocol, mean ± sd over seeds; then all folds."""
    rows = {}
    for fold, d in df.groupby("fold"):
        rows[f"fold {fold}"] = _two(d)
    per_seed = df.groupby("seed")[["final_acc", "best_test_acc"]].mean().reset_index()
    rows["all folds (mean over folds, then ± over seeds)"] = _two(per_seed)
    return pd.DataFrame(rows).T


def _two(d: pd.DataFrame) -> dict:
    sd = (lambda c: 100 * d[c].std()) if len(d) > 1 else (lambda c: None)
    return {"final epoch (%)": pm(100 * d.final_acc.mean(), sd("final_acc")),
            "best epoch on the test fold: the paper's protocol (%)": pm(100 * d.best_test_acc.mean(), sd("best_test_acc")),
            "runs": str(len(d))}


def table_four(main: pd.DataFrame, plan) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table IV (the literature and our rows) and the ensembles of every scheme. On a dataset the paper did not
    use, the first item is a pair: the published rows (ESC-50's) and ours, to be shown apart, never in one column."""
    dataset = plan.config.data.dataset
    ens = ensemble_table(main, plan.ensemble_k).set_index("scheme")
    backbone = plan.config.model.backbone
    best = scheme_summary(main, "best_test_acc").set_index("scheme")
    ours = pd.DataFrame({"architecture": [backbone, backbone, f"{int(ens.loc['hybrid', 'members'])} x {backbone}"],
                         "accuracy (%)": [ens.loc["hybrid", "single"], best.loc["hybrid", "best"], ens.loc["hybrid", "ensemble"]]},
                        index=["SoundCLR, ours: final epoch, mean of seeds", "SoundCLR, ours: the paper's protocol, best seed",
                               "SoundCLR-Ensemble, ours: final epoch"])
    ref, where = _paper_dataset(dataset)
    col = {"esc50": 2, "esc10": 3, "us8k": 4}[ref]
    lit = pd.DataFrame([(row[0], row[1], row[col]) for row in LITERATURE if row[col] is not None],
                       columns=["model", "architecture", "accuracy (%)"]).set_index("model")
    e = pd.DataFrame({"single model (%)": ens["single"], "ensemble (%)": ens["ensemble"],
                      "members": ens["members"].astype(int), "folds": ens["folds"].astype(int)}, index=ens.index)
    if where:      # the published rows are about ESC-50, ours about another dataset: two tables, never one column
        lit.index = [f"{m} (ESC-50)" for m in lit.index]
        ours.index = [f"{m} ({dataset})" for m in ours.index]
        return (lit, ours), scheme_index(e)
    return pd.concat([lit, ours]), scheme_index(e)


def variant_table(df: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """Per variant (in ``order``): the mean final accuracy over its runs, the sd over its runs, n (runs), and
    the 95 % Wilson interval of the accuracy over its test clips (``low``, ``high``, ``clips``: the clips of its
    folds, each fold's accuracy averaged over its seeds). The Wilson interval stays inside [0, 100] and is never
    of zero width, where a t interval over two folds reaches past 100 % or collapses to a point when they
    agree; it counts clip sampling only, not seed or fold variation (the ledger's paired tests carry those)."""
    rows = {}
    for v in order:
        d = df[df.variant == v]
        acc = 100 * d.final_acc.to_numpy()
        n = len(acc)
        if not n:
            continue
        per_fold = d.groupby("fold").agg(acc=("final_acc", "mean"), clips=("n_test", "first"))
        clips = int(per_fold.clips.sum())
        low, high = wilson(float((per_fold.acc * per_fold.clips).sum()), clips) if clips else (np.nan, np.nan)
        rows[v] = {"mean": acc.mean(), "sd": acc.std(ddof=1) if n > 1 else np.nan, "low": 100 * low,
                   "high": 100 * high, "n": n, "clips": clips, "folds": int(d.fold.nunique())}
    cols = ["mean", "sd", "low", "high", "n", "clips", "folds"]
    return pd.DataFrame(rows).T.astype({"n": int, "clips": int, "folds": int}) if rows else pd.DataFrame(columns=cols)


def variant_display(table: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """A ``variant_table`` for a page: the final accuracy as "mean ± sd" (sd over the runs), its 95 % Wilson
    interval over the test clips (what the page's bar chart draws), the folds and the clips, each row labelled
    in words (``labels``: variant -> words; a variant without one keeps its name)."""
    return pd.DataFrame({"accuracy, final epoch (%)": [pm(m, s) for m, s in zip(table["mean"], table["sd"])],
                         "95 % interval over the test clips (%)": [f"[{fixed(lo)}, {fixed(hi)}]" if np.isfinite(lo)
                                                                   else "n/a" for lo, hi in zip(table["low"], table["high"])],
                         "folds": table["folds"].to_numpy(), "test clips": table["clips"].to_numpy()},
                        index=[labels.get(v, v) for v in table.index])


def masking_table(df: pd.DataFrame) -> pd.DataFrame:
    """Table I: mean ± sd over folds, rows f (frequency masks), columns panel (F, T) and t (time masks)."""
    cells = {}
    for (F, T, f, t), d in df.groupby(["freq_mask_width", "time_mask_width", "freq_masks", "time_masks"]):
        acc = 100 * d.final_acc
        cells.setdefault(f"f = {f}", {})[f"F = {F}, T = {T}: t = {t}"] = pm(acc.mean(), acc.std() if len(acc) > 1 else None)
    return pd.DataFrame(cells).T.sort_index()


def noise_frame(main: pd.DataFrame, stds: Sequence[float], *, bank=None, device: str = "auto") -> pd.DataFrame:
    """Fig. 5: one row per run and noise level (accuracy in %)."""
    rows = []
    for _, r in main.iterrows():
        for std, acc in noise_accuracy(Path(r["run_dir"]), stds, bank=bank, device=device).items():
            rows.append({"scheme": r["scheme"], "fold": r["fold"], "seed": r["seed"], "noise_std": std, "accuracy": 100 * acc})
    return pd.DataFrame(rows)


def scheme_fold_table(df: pd.DataFrame, metric: str = "final_acc") -> pd.DataFrame:
    """Fig. 4's numbers: per scheme (rows) and test fold (columns), mean ± sd over seeds (in %; the
    mean alone where a fold has one run), and the number of seeds; the statistic Fig. 4 draws."""
    cells = {}
    for (scheme, fold), d in df.groupby(["scheme", "fold"]):
        acc = 100 * d[metric]
        cells.setdefault(scheme, {})[f"fold {fold}"] = pm(acc.mean(), acc.std() if len(acc) > 1 else None)
    out = pd.DataFrame(cells).T[[f"fold {f}" for f in sorted(df["fold"].unique())]]
    out["seeds"] = df.groupby("scheme")["seed"].nunique().reindex(out.index).astype(int)
    return scheme_index(out)


def most_confused(matrix, names: Sequence[str], k: int = 5) -> pd.DataFrame:
    """The ``k`` largest off-diagonal cells of a confusion matrix ``(classes, classes)`` (rows: the
    true class), as the share of the true class's clips predicted as the other class: columns
    ``true``, ``predicted``, ``clips`` and ``share (%)``, largest share first (ties: more clips, then
    the matrix order). Cells with no clips are left out, so there may be fewer than ``k`` rows."""
    m = np.asarray(matrix, dtype=float)
    share = m / np.clip(m.sum(1, keepdims=True), 1, None)
    i, j = np.nonzero((m > 0) & ~np.eye(len(m), dtype=bool))
    order = np.lexsort((j, i, -m[i, j], -share[i, j]))[:k]
    return pd.DataFrame({"true": [names[a] for a in i[order]], "predicted": [names[b] for b in j[order]],
                         "clips": m[i[order], j[order]].astype(int), "share (%)": 100 * share[i[order], j[order]]})


def confused_pairs_table(main: pd.DataFrame, k: int = 5) -> pd.DataFrame:
    """For the confusion matrices of a page: per scheme (in the book's order) its ``k`` most confused
    pairs, one row each: the true class, the class it is taken for, and the share of the true class's
    clips, from the final-epoch matrix summed over the runs of ``main`` (a scheme with no confusion has
    one row saying so)."""
    rows = []
    for scheme in in_order(main.scheme):
        cm, names = confusion(main[main.scheme == scheme])
        pairs = most_confused(cm.numpy(), names, k)
        for t, p, sh in zip(pairs["true"], pairs["predicted"], pairs["share (%)"]):
            rows.append({"scheme": label_of(scheme), "true class": t, "taken for": p,
                         "share of the true class (%)": f"{sh:.1f}"})
        if pairs.empty:
            rows.append({"scheme": label_of(scheme), "true class": "(none confused)", "taken for": "",
                         "share of the true class (%)": ""})
    return pd.DataFrame(rows, columns=["scheme", "true class", "taken for", "share of the true class (%)"]).set_index(
        ["scheme", "true class"])






def _ordered(df: pd.DataFrame, column: str = "scheme") -> pd.DataFrame:
    order = {s: i for i, s in enumerate(scheme_names())}
    return df.sort_values(column, key=lambda c: c.map(order)) if column in df else df


# -- Table III and Fig. 4 ---------------------------------------------------------------------
def scheme_summary(df: pd.DataFrame, metric: str = "final_acc", by: str = "scheme") -> pd.DataFrame:
    """Table III: per scheme, the fold-averaged accuracy of each seed, then mean, std
    over seeds and the best seed (in %)."""
    per_seed = df.groupby([by, "seed"])[metric].mean().mul(100).reset_index()
    table = per_seed.groupby(by)[metric].agg(mean="mean", std="std", best="max", seeds="count").reset_index()
    table["std"] = table["std"].fillna(0.0)
    folds = df.groupby(by)["fold"].nunique().rename("folds")
    return _ordered(table.merge(folds, on=by), by).reset_index(drop=True)


def confusion(df: pd.DataFrame) -> tuple[torch.Tensor, list[str]]:
    """The summed final-epoch confusion matrix of the runs in ``df`` (rows: true class)."""
    total, names = None, None
    for run in df["run_dir"]:
        s = read_json(Path(run) / "summary.json")
        m = torch.tensor(s["confusion"])
        total = m if total is None else total + m
        names = s["class_names"]
    return total, names


# -- Table IV: ensembles --------------------------------------------------------------------------
def ensemble_table(df: pd.DataFrame, k: int | None = None) -> pd.DataFrame:
    """Per scheme: the fold-averaged accuracy of an ensemble of ``k`` seeds (mean of their
    final softmax outputs on the test fold), next to the mean single-model accuracy (in %)."""
    rows = []
    for scheme, sdf in df.groupby("scheme"):
        accs, singles, members = [], [], []
        for fold, fdf in sdf.groupby("fold"):
            fdf = fdf.sort_values("seed").head(k) if k else fdf
            accs.append(ensemble_accuracy(fdf["run_dir"]))
            singles.append(fdf["final_acc"].mean())
            members.append(len(fdf))
        rows.append({"scheme": scheme, "single": 100 * sum(singles) / len(singles),
                     "ensemble": 100 * sum(accs) / len(accs), "members": min(members), "folds": len(accs)})
    return _ordered(pd.DataFrame(rows)).reset_index(drop=True)


def fixed(value: float, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals, halves rounded up (away from zero) after rounding away binary noise:
    accuracies on k clips repeat the same decimals (mean of 88.75 and 90.00: 89.375), and plain ``f"{x:.2f}"``
    prints one of them as 89.37 and another as 89.38, as the binary fraction falls."""
    if not math.isfinite(value):
        return f"{value}"
    return str(Decimal(f"{value:.9f}").quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def pm(mean: float, sd: float | None = None, digits: int = 2) -> str:
    """``"92.86 ± 0.46"`` (or just the mean when there is no spread), rounded by :func:`fixed`."""
    if sd is None or (isinstance(sd, float) and math.isnan(sd)):
        return fixed(mean, digits)
    return f"{fixed(mean, digits)} ± {fixed(sd, digits)}"


def scheme_index(df: pd.DataFrame, column: str | None = None) -> pd.DataFrame:
    """Rows in the registry's order (CE, SupCon, hybrid, then any plugin's), labelled with the display names."""
    key = df[column] if column else df.index
    order = {s: i for i, s in enumerate(scheme_names())}
    df = df.iloc[np.argsort([order.get(k, len(order)) for k in key], kind="stable")]
    labels = [label_of(k) for k in (df[column] if column else df.index)]
    df = df.drop(columns=[column]) if column else df
    df.index = labels
    return df
