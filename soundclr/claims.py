"""The claims ledger: each claim of the paper, tested on this build's runs.

For every claim (C1 the hybrid beats cross-entropy, C2 it beats two-stage SupCon, C3
alpha = 0.5 is the best weight, C4 wave augmentation and spectrogram masks help, C5 three
channels and ImageNet weights help, C6 SupCon-trained models lose least under noise, C7 an
ensemble beats a single model, C8 the hybrid converges faster) :func:`ledger` computes, from
the results store, the effect in accuracy points, its 95 % interval from a *paired*
comparison over the (fold, seed) runs both sides share, the number of pairs, and a verdict:

- ``supported``: the interval lies above zero (in the direction the paper claims);
- ``contradicted``: it lies below zero;
- ``inconclusive``: it straddles zero: this many runs cannot tell;
- ``not testable``: this build has no runs that can test it (the reason is given).

A comparison is only made between converged runs (:func:`convergence`): a pair with an
unconverged run is left out, and the ledger says how many were.

Intervals: a paired t interval by default (mean difference +- t(0.975, n - 1) * sd / sqrt(n)),
or a percentile bootstrap over the pairs (``method="bootstrap"``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

LOSS_TOLERANCE = 0.05     # the training loss's move over the last tenth of epochs, as a share of its whole descent
SPREAD_TOLERANCE = 0.075  # max - min of the last LAST_EVALS test accuracies (7.5 points)
LAST_EVALS = 5
NEAR_FINAL = 0.95         # C8: the first epoch whose accuracy reaches 95 % of the final one
WORST_NOISE = 1e-3        # C6: the paper's largest noise level

VERDICTS = ("supported", "contradicted", "inconclusive", "not testable")


# -- convergence ---------------------------------------------------------------------------------
@dataclass
class Convergence:
    converged: bool
    loss_change: float            # the largest move over the last tenth, as a share of the descent (0.03 = 3 %)
    spread: float                 # max - min of the last test accuracies (0.05 = 5 points)
    reasons: list[str] = field(default_factory=list)


def convergence(rows: Sequence[dict], *, loss_tolerance: float = LOSS_TOLERANCE,
                spread_tolerance: float = SPREAD_TOLERANCE, last: int = LAST_EVALS) -> Convergence:
    """Whether a run reached its plateau, from its ``metrics.jsonl`` rows.

    Two tests. (1) In each stage, the training loss has stopped descending: the mean over the
    last tenth of the stage's epochs (at least two) differs from the mean over the tenth before
    by at most ``loss_tolerance`` of the stage's whole descent (the first tenth's mean minus the
    last tenth's; the level itself when there was no descent). A share of the descent rather
    than of the level, because a cross-entropy loss keeps shrinking slowly for as long as its
    classifier's weights grow, long after the accuracy has settled. (2) The last ``last``
    test-fold accuracies span at most ``spread_tolerance``: the headline, the final epoch's
    accuracy, is not a coin toss. A plateau reached only because the learning rate decayed to
    nothing passes both; the tuning study checks that doubling the epochs does not move the
    accuracy either.
    """
    reasons = []
    changes = []
    for stage in sorted({r.get("stage", 1) for r in rows}):
        losses = [r["train_loss"] for r in rows if r.get("stage", 1) == stage]
        tenth = max(2, round(len(losses) / 10))
        if len(losses) < 3 * tenth:
            reasons.append(f"stage {stage}: {len(losses)} epochs are too few to tell")
            changes.append(math.inf)
            continue
        first, before, after = (float(np.mean(x)) for x in (losses[:tenth], losses[-2 * tenth:-tenth], losses[-tenth:]))
        scale = first - after if first - after > 1e-12 else max(abs(after), 1e-12)
        change = abs(after - before) / scale
        changes.append(change)
        if not math.isfinite(change) or change > loss_tolerance:
            reasons.append(f"stage {stage}: the training loss still moves over the last tenth of its epochs "
                           f"({100 * change:.1f} % of its descent; at most {100 * loss_tolerance:g} %)")
    accs = [r["test_acc"] for r in rows if r.get("test_acc") is not None]
    if len(accs) < last:
        spread = math.inf
        reasons.append(f"only {len(accs)} test evaluations (at least {last} needed)")
    else:
        spread = float(max(accs[-last:]) - min(accs[-last:]))
        if spread > spread_tolerance + 1e-9:
            reasons.append(f"the last {last} test accuracies span {100 * spread:.1f} points (at most "
                           f"{100 * spread_tolerance:g})")
    return Convergence(converged=not reasons, loss_change=max(changes) if changes else math.inf, spread=spread,
                       reasons=reasons)


def epochs_to_reach(rows: Sequence[dict], fraction: float = NEAR_FINAL) -> int | None:
    """C8: the first epoch (1-based) whose test accuracy reaches ``fraction`` of the final one."""
    evaluated = [(r["epoch"], r["test_acc"]) for r in rows if r.get("test_acc") is not None]
    if not evaluated:
        return None
    final = evaluated[-1][1]
    return next(e for e, a in evaluated if a >= fraction * final)


# -- paired intervals and verdicts --------------------------------------------------------------
@dataclass
class Interval:
    effect: float                 # mean of the paired differences
    low: float
    high: float
    n: int
    method: str = "t"

    @property
    def width(self) -> float:
        return self.high - self.low


def paired_interval(a: Sequence[float], b: Sequence[float], *, method: str = "t", level: float = 0.95,
                    resamples: int = 10_000, seed: int = 0) -> Interval:
    """The mean of ``a - b`` over pairs and its ``level`` interval: a paired t interval, or a
    percentile bootstrap of the mean over the pairs. Fewer than two pairs: an infinite interval."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = len(d)
    if n == 0:
        return Interval(math.nan, -math.inf, math.inf, 0, method)
    mean = float(d.mean())
    if n < 2:
        return Interval(mean, -math.inf, math.inf, n, method)
    if method == "t":
        from scipy.stats import t
        half = float(t.ppf(0.5 + level / 2, n - 1) * d.std(ddof=1) / math.sqrt(n))
        return Interval(mean, mean - half, mean + half, n, "t")
    if method == "bootstrap":
        rng = np.random.default_rng(seed)
        means = d[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
        low, high = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
        return Interval(mean, float(low), float(high), n, "bootstrap")
    raise ValueError(f"method={method!r} is not valid: choose 't' or 'bootstrap'")


def verdict(interval: Interval) -> str:
    """Supported (the interval lies above zero), contradicted (below zero) or inconclusive."""
    if interval.n < 2 or not (math.isfinite(interval.low) and math.isfinite(interval.high)):
        return "inconclusive"
    if interval.low > 0:
        return "supported"
    if interval.high < 0:
        return "contradicted"
    return "inconclusive"


# -- the claims ------------------------------------------------------------------------------------
# The paper's own effect for each claim, in accuracy points, per dataset (from its Tables II-IV and
# the text of Sec. IV-B); None where the paper gives a figure or a sentence, not a number.
PAPER_EFFECTS = {
    "C1": {"esc50": 92.86 - 91.85, "esc10": 99.6 - 99.0, "us8k": 85.78 - 85.28},
    "C2": {"esc50": 92.86 - 91.98, "esc10": 99.6 - 99.25, "us8k": 85.78 - 84.69},
    "C3": {"esc50": 93.2 - 92.8, "esc10": 99.75 - 99.5, "us8k": 85.96 - 85.46},
    "C4a": {"esc50": 1.6},
    "C4b": {"esc50": 1.45},
    "C5a": {"esc50": 4.0},
    "C5b": {"esc50": 84.6 - 74.6},
    "C6a": {}, "C6b": {},
    "C7": {"esc50": 93.6 - 92.86, "esc10": 99.75 - 99.6, "us8k": 88.01 - 85.78},
    "C8": {},
}
PAPER_SOURCE = {
    "C1": "Table III, mean of 5", "C2": "Table III, mean of 5", "C3": "Table II, vs the next best alpha",
    "C4a": "Fig. 3 text", "C4b": "Fig. 3 text", "C5a": "Fig. 3 text: more than 4 points", "C5b": "Fig. 3 text",
    "C6a": "Fig. 5, no number", "C6b": "Fig. 5, no number", "C7": "Table IV vs Table III", "C8": "Sec. III-C, no number",
}
CLAIMS = {
    "C1": "the hybrid loss beats cross-entropy",
    "C2": "the hybrid loss beats two-stage supervised contrastive learning",
    "C3": "alpha = 0.5 is the best weight of the hybrid loss",
    "C4a": "wave augmentation helps",
    "C4b": "spectrogram masks help, on top of wave augmentation",
    "C5a": "three input channels beat one (with ImageNet weights)",
    "C5b": "ImageNet weights beat random initialisation",
    "C6a": "SupCon-trained models lose less accuracy under white noise than cross-entropy ones",
    "C6b": "SupCon-trained models lose less accuracy under white noise than hybrid ones",
    "C7": "an ensemble of the seeds' hybrid models beats a single one",
    "C8": "the hybrid loss converges faster than cross-entropy",
}
EVIDENCE = {"C1": "results", "C2": "results", "C3": "results", "C4a": "ablation", "C4b": "ablation",
            "C5a": "ablation", "C5b": "ablation", "C6a": "robustness", "C6b": "robustness", "C7": "results",
            "C8": "training-hybrid"}
# What each effect measures, in words for the pages.
MEASURE = {
    "C1": "hybrid minus cross-entropy, final-epoch accuracy, paired by (fold, seed)",
    "C2": "hybrid minus two-stage SupCon, final-epoch accuracy, paired by (fold, seed)",
    "C3": "alpha = 0.5 minus the closest other alpha, paired by (fold, seed)",
    "C4a": "with minus without wave augmentation (cross-entropy), paired by fold",
    "C4b": "with minus without spectrogram masks, both with wave augmentation (cross-entropy), paired by fold",
    "C5a": "3 minus 1 input channels, ImageNet weights, paired by fold",
    "C5b": "ImageNet minus random initialisation, 1 channel, paired by fold",
    "C6a": f"accuracy lost at noise std {WORST_NOISE:g}: cross-entropy's minus SupCon's, paired by (fold, seed)",
    "C6b": f"accuracy lost at noise std {WORST_NOISE:g}: the hybrid's minus SupCon's, paired by (fold, seed)",
    "C7": "ensemble minus the mean single hybrid model, per fold",
    "C8": f"epochs to reach {100 * NEAR_FINAL:g} % of the final accuracy: cross-entropy's minus the hybrid's (in epochs)",
}
CLAIM_IDS = list(CLAIMS)


def _run_table(runs) -> pd.DataFrame:
    """One row per finished run: its keys, final accuracy, convergence and metrics rows."""
    from .store import read_json, read_metrics
    out = []
    for run in runs:
        if not run.finished:
            continue
        rows = read_metrics(run.directory)
        conv = convergence(rows)
        s = read_json(run.directory / "summary.json")
        out.append({"scheme": run.config.run.scheme, "fold": run.config.run.test_fold, "seed": run.config.run.seed,
                    "variant": run.variant, "acc": 100 * s["final"]["test_acc"], "converged": conv.converged,
                    "run": run, "rows": rows})
    return pd.DataFrame(out, columns=["scheme", "fold", "seed", "variant", "acc", "converged", "run", "rows"])


def _pair(left: pd.DataFrame, right: pd.DataFrame, value: str = "acc", keys=("fold", "seed")):
    """Values of the runs both sides share, both converged; and how many pairs were left out."""
    m = left.merge(right, on=list(keys), suffixes=("_l", "_r"))
    ok = m["converged_l"] & m["converged_r"]
    return m.loc[ok, f"{value}_l"].to_numpy(), m.loc[ok, f"{value}_r"].to_numpy(), int((~ok).sum())


def _row(cid: str, dataset: str, a=None, b=None, excluded: int = 0, *, interval: Interval | None = None,
         method: str = "t", note: str = "", untestable: str | None = None) -> dict:
    paper = PAPER_EFFECTS[cid].get(dataset)
    reference = dataset
    if paper is None and dataset not in ("esc50", "esc10", "us8k"):
        paper, reference = PAPER_EFFECTS[cid].get("esc50"), "esc50"
    row = {"id": cid, "claim": CLAIMS[cid], "measure": MEASURE[cid], "paper": paper, "paper_dataset": reference,
           "paper_source": PAPER_SOURCE[cid], "evidence": EVIDENCE[cid]}
    if untestable:
        return {**row, "effect": math.nan, "low": math.nan, "high": math.nan, "n": 0, "verdict": "not testable",
                "excluded": 0, "note": untestable}
    if interval is None:
        interval = paired_interval(a, b, method=method)
    if excluded:
        note = (note + " " if note else "") + f"{excluded} pair(s) left out: a run had not converged."
    if interval.n < 2:
        note = (note + " " if note else "") + "Fewer than two converged pairs: no interval."
    return {**row, "effect": interval.effect, "low": interval.low, "high": interval.high, "n": interval.n,
            "verdict": verdict(interval), "excluded": excluded, "note": note.strip()}


def ledger(plan, *, bank=None, device: str = "auto", method: str = "t") -> pd.DataFrame:
    """The claims C1-C8 (sub-claims C4a/b, C5a/b, C6a/b) of the paper, tested on ``plan``'s runs.

    Columns: id, claim, measure, paper (the paper's effect, points), paper_dataset,
    paper_source, evidence (the page), effect, low, high (the 95 % interval), n (pairs),
    verdict, excluded (pairs left out: unconverged), note. Runs that are not finished count
    as missing."""
    dataset = plan.config.data.dataset
    rows = []
    main = _run_table(plan.main_runs())
    by = {s: main[main.scheme == s] for s in ("ce", "supcon", "hybrid")}

    # C1, C2: Table III
    rows.append(_row("C1", dataset, *_pair(by["hybrid"], by["ce"]), method=method))
    rows.append(_row("C2", dataset, *_pair(by["hybrid"], by["supcon"]), method=method))

    # C3: Table II, alpha = 0.5 against each other alpha
    alpha = _run_table(plan.alpha_runs())
    if alpha.empty or "alpha0.5" not in set(alpha.variant):
        rows.append(_row("C3", dataset, untestable="the alpha sweep has no alpha = 0.5 runs in this build"))
    else:
        best = alpha[alpha.variant == "alpha0.5"]
        tests = {}
        for v in sorted(set(alpha.variant) - {"alpha0.5"}):
            a, b, excluded = _pair(best, alpha[alpha.variant == v])
            tests[v] = (paired_interval(a, b, method=method), excluded)
        if not tests:
            rows.append(_row("C3", dataset, untestable="the alpha sweep holds no other alpha"))
        else:
            closest = min(tests, key=lambda v: tests[v][0].effect if tests[v][0].n else math.inf)
            interval, excluded = tests[closest]
            verdicts = {v: verdict(i) for v, (i, _) in tests.items()}
            row = _row("C3", dataset, interval=interval, excluded=excluded,
                       note=f"the closest other weight is alpha = {closest[5:]}; against each other alpha: "
                            + ", ".join(f"{v[5:]}: {verdicts[v]}" for v in sorted(verdicts)) + ".")
            # supported only if alpha = 0.5 beats every other weight; contradicted if any beats it
            row["verdict"] = ("contradicted" if "contradicted" in verdicts.values() else
                              "supported" if all(x == "supported" for x in verdicts.values()) else "inconclusive")
            rows.append(row)

    # C4, C5: Fig. 3
    ab = _run_table(plan.ablation_runs())
    variant = {v: ab[ab.variant == v] for v in set(ab.variant)} if not ab.empty else {}
    imagenet = "imagenet-3ch" in plan.ablation
    ch = plan.config.features.channels
    steps = (("imagenet-3ch", "imagenet-3ch-wave", "imagenet-3ch-wave-spec") if imagenet else
             (f"random-{ch}ch", f"random-{ch}ch-wave", f"random-{ch}ch-wave-spec"))
    for cid, (without, with_) in (("C4a", steps[:2]), ("C4b", steps[1:])):
        if without in variant and with_ in variant:
            rows.append(_row(cid, dataset, *_pair(variant[with_], variant[without]), method=method,
                             note="" if imagenet else f"on a randomly initialised {ch}-channel backbone (no ImageNet weights here)"))
        else:
            rows.append(_row(cid, dataset, untestable=f"the ablation runs {without} and {with_} are missing"))
    if imagenet:
        for cid, (x, y) in (("C5a", ("imagenet-3ch", "imagenet-1ch")), ("C5b", ("imagenet-1ch", "random-1ch"))):
            if x in variant and y in variant:
                rows.append(_row(cid, dataset, *_pair(variant[x], variant[y]), method=method))
            else:
                rows.append(_row(cid, dataset, untestable=f"the ablation runs {x} and {y} are missing"))
    else:
        why = next(iter(plan.ablation_skipped.values()), "no ImageNet weights")
        for cid in ("C5a", "C5b"):
            rows.append(_row(cid, dataset, untestable=f"not testable offline: {why}"))

    # C6: Fig. 5, the accuracy lost at the largest noise
    from .experiment import noise_accuracy
    drops = main.copy()
    if not drops.empty:
        drops["drop"] = [100 * (lambda acc: acc[0.0] - acc[WORST_NOISE])(
            noise_accuracy(r.directory, (0.0, WORST_NOISE), bank=bank, device=device)) for r in drops.run]
    for cid, other in (("C6a", "ce"), ("C6b", "hybrid")):
        if drops.empty:
            rows.append(_row(cid, dataset, untestable="no finished runs in the main grid"))
            continue
        rows.append(_row(cid, dataset, *_pair(drops[drops.scheme == other], drops[drops.scheme == "supcon"], "drop"),
                         method=method))

    # C7: Table IV, the ensemble of the seeds against the mean single model, per fold
    hy = by["hybrid"]
    ens, single, excluded = [], [], 0
    for fold, fdf in hy.groupby("fold"):
        if len(fdf) < 2:
            continue
        if not fdf.converged.all():
            excluded += 1
            continue
        import torch
        outs = [torch.load(r.directory / "outputs.pt", weights_only=False) for r in fdf.run]
        probs = torch.stack([o["probs"] for o in outs]).mean(0)
        ens.append(100 * (probs.argmax(-1) == outs[0]["labels"]).float().mean().item())
        single.append(fdf.acc.mean())
    k = int(hy.groupby("fold").size().min()) if not hy.empty else 0
    if k < 2:
        rows.append(_row("C7", dataset, untestable="the main grid has fewer than two seeds per fold: no ensemble"))
    else:
        rows.append(_row("C7", dataset, ens, single, excluded, method=method,
                         note=f"an ensemble of {k} models (the paper: 5); pairs are folds"))

    # C8: epochs to reach 95 % of the final accuracy
    speed = main.copy()
    if not speed.empty:
        speed["epochs_to"] = [epochs_to_reach(r) for r in speed.rows]
        k = plan.config.optim.contrastive_stretch
        note = (f"here the hybrid trains {k:g} times as many epochs as cross-entropy (its schedule stretched: the tuning "
                "page shows it needs them to converge), so it reaches its final accuracy later partly by construction"
                if k != 1 else "")
        rows.append(_row("C8", dataset, *_pair(speed[speed.scheme == "ce"], speed[speed.scheme == "hybrid"], "epochs_to"),
                         method=method, note=note))
    else:
        rows.append(_row("C8", dataset, untestable="no finished runs in the main grid"))
    return pd.DataFrame(rows)


def main_grid_convergence(plan) -> pd.DataFrame:
    """Every main-grid run with its convergence test: scheme, fold, seed, converged, loss change, spread, reasons."""
    out = []
    for run in plan.main_runs():
        if not run.finished:
            continue
        from .store import read_metrics
        c = convergence(read_metrics(run.directory))
        out.append({"scheme": run.config.run.scheme, "fold": run.config.run.test_fold, "seed": run.config.run.seed,
                    "converged": c.converged, "loss_change": c.loss_change, "spread": c.spread,
                    "reasons": "; ".join(c.reasons), "run": str(run.directory)})
    return pd.DataFrame(out)


# -- words for the pages -------------------------------------------------------------------------
def _points(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:+.2f}"


def interval_text(row: dict | pd.Series, unit: str = "points") -> str:
    if row["verdict"] == "not testable":
        return "not testable"
    if row["n"] < 2:
        return f"{_points(row['effect'])} {unit} (n = {row['n']}: no interval)"
    return f"{_points(row['effect'])} {unit} [{_points(row['low'])}, {_points(row['high'])}], n = {row['n']}"


def likely_reason(cid: str, plan) -> str:
    """One sentence on why a result here may differ from the paper's, from what this build is."""
    c = plan.config
    small = c.model.backbone == "tiny" or c.model.weights != "imagenet"
    if small or c.data.dataset == "synthetic":
        parts = []
        if c.model.weights != "imagenet":
            parts.append("no ImageNet pretraining")
        if c.model.backbone == "tiny":
            parts.append("a tiny network instead of ResNet-50")
        if c.data.dataset == "synthetic":
            parts.append("a toy dataset with a few hundred training clips per fold")
        parts.append(f"{c.optim.epochs} epochs instead of 800")
        base = ", ".join(parts)
        # Only what this build has measured (the tuning page) or is by construction.
        specific = {
            "C1": "the tuning page measures how, in this regime, the contrastive term leaves the hybrid's classifier "
                  "behind the representation it reads",
            "C2": "the tuning page measures how, in this regime, the contrastive term leaves the hybrid's classifier "
                  "behind the representation it reads",
            "C7": f"{len(plan.seeds)} seeds make a small ensemble (the paper: five)",
            "C8": "on this budget the contrastive term needs more training than cross-entropy to converge "
                  "(the tuning page measures it)",
        }.get(cid)
        reason = f"this build differs from the paper's setting: {base}"
        return reason + (f"; {specific}." if specific else ".")
    return ("the paper reports the best epoch on the test fold and one run per fold, while this build scores the "
            "final epoch, pairs runs by fold and seed and leaves out unconverged runs.")


def conclusion(led: pd.DataFrame, ids: Sequence[str], plan) -> str:
    """Markdown: for each claim in ``ids``, what this build shows, whether it agrees with the
    paper and, if it does not, the likely reason in one sentence."""
    lines = []
    for _, r in led[led.id.isin(ids)].iterrows():
        paper = f"the paper: {_points(r['paper'])} points ({r['paper_source']})" if r["paper"] is not None and \
            not (isinstance(r["paper"], float) and math.isnan(r["paper"])) else f"the paper: {r['paper_source']}"
        unit = "epochs" if r["id"] == "C8" else "points"
        text = f"**{r['id']}, {r['claim']}**: {r['verdict']} here, {interval_text(r, unit)} ({paper})."
        if r["verdict"] == "supported":
            text += " This agrees with the paper."
        elif r["verdict"] == "not testable":
            text += f" {r['note']}"
        elif r["verdict"] == "contradicted":
            text += f" This contradicts the paper. Likely reason: {likely_reason(r['id'], plan)}"
        else:
            text += (" This size of study cannot tell; the paper's effect is within the interval."
                     if r["paper"] is not None and isinstance(r["paper"], float) and r["low"] <= r["paper"] <= r["high"]
                     else f" This size of study cannot tell. Likely reason for the difference: {likely_reason(r['id'], plan)}")
        if r["verdict"] != "not testable" and r["note"]:
            text += f" ({r['note']})"
        lines.append(f"- {text}")
    return "\n".join(lines)


VERDICT_COLOR = {"supported": "#1a7f37", "contradicted": "#b42318", "inconclusive": "#7a5b00", "not testable": "#555555"}
PAGE_TITLE = {"results": "Results", "ablation": "Ablation", "robustness": "Robustness", "training-hybrid": "Training: hybrid"}


def _paper_cell(r) -> str:
    p = r["paper"]
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return r["paper_source"]
    where = "" if r["paper_dataset"] in ("esc50", "esc10", "us8k") and r["paper_dataset"] == r.get("dataset") else \
        f", {dict(esc50='ESC-50', esc10='ESC-10', us8k='UrbanSound8K')[r['paper_dataset']]}"
    unit = " epochs" if r["id"] == "C8" else " points"
    return f"{_points(p)}{unit} ({r['paper_source']}{where})"


def ledger_html(led: pd.DataFrame, dataset: str | None = None) -> str:
    """The ledger as an HTML table for the Claims page: claim, the paper's effect, this build's
    effect and interval, the verdict, and a link to the page holding the evidence."""
    import html
    rows = []
    for _, r in led.iterrows():
        r = {**r, "dataset": dataset}
        unit = "epochs" if r["id"] == "C8" else "points"
        mine = interval_text(r, unit) if r["verdict"] != "not testable" else html.escape(r["note"])
        page = r["evidence"]
        rows.append(
            "<tr>"
            f"<td><b>{r['id']}</b> {html.escape(r['claim'])}<br><small>{html.escape(r['measure'])}</small></td>"
            f"<td>{html.escape(_paper_cell(r))}</td>"
            f"<td>{html.escape(mine) if r['verdict'] != 'not testable' else mine}"
            + (f"<br><small>{html.escape(r['note'])}</small>" if r["note"] and r["verdict"] != "not testable" else "")
            + "</td>"
            f"<td><b style=\"color:{VERDICT_COLOR[r['verdict']]}\">{r['verdict']}</b></td>"
            f"<td><a href=\"{page}.html\">{PAGE_TITLE.get(page, page)}</a></td>"
            "</tr>")
    head = "<tr><th>claim</th><th>the paper</th><th>this build: effect [95 % interval], pairs</th><th>verdict</th><th>evidence</th></tr>"
    return f"<table class=\"claims-ledger\">{head}{''.join(rows)}</table>"


def convergence_summary(conv: pd.DataFrame) -> str:
    """Markdown: how many runs converged, and why the others did not."""
    if conv.empty:
        return "No finished run to test yet."
    ok = int(conv.converged.sum())
    text = (f"**{ok} of {len(conv)}** runs meet the convergence criterion (over the last tenth of its epochs the "
            f"training loss moves less than {100 * LOSS_TOLERANCE:g} % of its whole descent, and the last {LAST_EVALS} "
            f"test evaluations lie within {100 * SPREAD_TOLERANCE:g} points); the largest loss move is "
            f"{100 * conv.loss_change.max():.1f} % and the widest spread {100 * conv.spread.max():.1f} points.")
    bad = conv[~conv.converged]
    if len(bad):
        text += " Not converged, and left out of every comparison: " + "; ".join(
            f"{r.scheme} fold {r.fold} seed {r.seed} ({r.reasons})" for r in bad.itertuples()) + "."
    return text


def reductions_text(plan) -> str:
    lines = [f"- {r[0].upper()}{r[1:]}." for r in plan.reductions]
    c = plan.config.resolved()
    if c.model.weights != "imagenet" or c.model.backbone != "resnet50":
        lines.append(f"- The network is `{c.model.backbone}` with weights `{c.model.weights}` (the paper: ResNet-50 "
                     "pretrained on ImageNet), so claims about transfer learning cannot be tested here.")
    if c.optim.epochs < 800:
        lines.append(f"- {c.optim.epochs} epochs instead of 800, with the schedule scaled to fit (see the tuning page "
                     "for how they were chosen)." if plan.size == "quick" else f"- {c.optim.epochs} epochs instead of 800.")
    lines.append("- Every other setting that differs from the paper is named in the Settings line at the top of this page.")
    return "\n".join(lines)


def _widths(led: pd.DataFrame) -> str:
    w = [(r.high - r.low) for r in led.itertuples() if r.verdict != "not testable" and math.isfinite(r.high - r.low)
         and r.id != "C8"]
    if not w:
        return ""
    return (f"The 95 % intervals here are {min(w):.1f} to {max(w):.1f} points wide" if len(w) > 1
            else f"The 95 % interval here is {w[0]:.1f} points wide")


def summary_text(led: pd.DataFrame, plan) -> str:
    counts = led.verdict.value_counts()
    parts = [f"{counts.get(v, 0)} {v}" for v in VERDICTS if counts.get(v, 0)]
    text = f"Of the {len(led)} claims tested: " + ", ".join(parts) + "."
    for v in ("supported", "contradicted"):
        ids = list(led[led.verdict == v].id)
        if ids:
            text += f" {v.capitalize()}: {', '.join(ids)}."
    widths = _widths(led)
    if widths:
        text += f" {widths}: with {int(led.n.max())} pairs at most, an effect smaller than about half that width " \
                "cannot be told from zero."
    return text


def page_conclusion(led: pd.DataFrame | None, ids: Sequence[str], plan, lead: str | None = None) -> str:
    """The conclusion block of a generated page: the claims it holds evidence for, from the ledger."""
    if led is None:
        return ("The runs this conclusion needs are not all finished yet: train them (`soundclr reproduce`, or run "
                "the other pages) and run this page again.")
    sub = led[led.id.isin(ids)]
    text = (lead + "\n\n" if lead else "") + conclusion(led, ids, plan)
    widths = _widths(sub)
    if widths:
        text += f"\n\n{widths} (n is the number of pairs)."
    return text


def silhouette_conclusion(scores: dict) -> str:
    """Markdown from the silhouette scores ``{(scheme, space): score}``: which scheme separates the
    classes best in h and in z, and whether the contrastive schemes beat cross-entropy in h."""
    from .experiment import SCHEME_LABEL
    lines = []
    for space, symbol in (("representation", "h"), ("projection", "z")):
        s = {k[0]: v for k, v in scores.items() if k[1] == space}
        if not s:
            continue
        best = max(s, key=s.get)
        lines.append(f"In the {space} space ${symbol}$ the classes separate best under {SCHEME_LABEL[best]} "
                     f"(silhouette {s[best]:.2f}; " + ", ".join(f"{SCHEME_LABEL[k]} {v:.2f}" for k, v in s.items() if k != best) + ").")
    h = {k[0]: v for k, v in scores.items() if k[1] == "representation"}
    if {"ce", "supcon", "hybrid"} <= set(h):
        better = [k for k in ("supcon", "hybrid") if h[k] > h["ce"]]
        agree = "agrees" if len(better) == 2 else "partly agrees" if better else "does not agree"
        lines.append(f"The paper's argument (the contrastive term separates the classes in the representation space) "
                     f"{agree} with this one run per scheme: "
                     + (f"{' and '.join(SCHEME_LABEL[k] for k in better)} separate{'s' if len(better) == 1 else ''} "
                        f"the classes better than cross-entropy in $h$." if better else
                        "cross-entropy separates the classes at least as well in $h$.")
                     + " One run per scheme is a picture, not a test; Table III and the claims ledger are the test.")
    return "\n\n".join(lines)
