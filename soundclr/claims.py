"""The claims ledger: each claim of the paper, tested on this build's runs.

For every claim (C1 the hybrid beats cross-entropy, C2 it beats two-stage SupCon, C3 alpha =
0.5 is the best weight, C4 augmentation helps, C5 three channels and ImageNet weights help,
C6 SupCon-trained models lose least under noise, C7 ensembles help, C8 the hybrid trains
faster, C9 the hybrid is at least as good on every fold, C10 frequency masks help more than
time masks, C11 SoundCLR beats the literature) :func:`ledger` computes, from the results store,
one row: the effect in accuracy points (epochs or seconds for C8) and its statistics
(:mod:`soundclr.stats`):

- the fold is the unit: seeds are averaged within a fold, then a paired t interval over the
  folds (``folds - 1`` degrees of freedom), and beside it the Nadeau-Bengio corrected interval
  (training sets overlap across folds). The verdict uses the corrected one: ``supported``
  (above zero, the paper's direction), ``contradicted`` (below zero), ``inconclusive``, or
  ``not testable`` here (the reason is given);
- the effect this design detects with 80 % power, and its power at the paper's effect;
- Holm's adjustment over the family of claims tested (``p_holm``);
- the same comparison under the paper's protocol (the best epoch chosen on the test fold) and,
  where the runs hold a validation fold, the best epoch chosen on it;
- the primary analysis uses every finished run; the same comparison on converged runs only
  (:func:`convergence`) is a sensitivity check beside it;
- whether both sides trained the same schedule (``same_schedule``): a comparison the paper made
  between schemes trained with the same hyperparameters must be made so here too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

LOSS_TOLERANCE = 0.05     # the training loss's move over the last tenth of epochs, as a share of its whole descent
SPREAD_SES = 1.5          # max - min of the last LAST_EVALS test accuracies, in binomial standard errors of the fold
LAST_EVALS = 5
NEAR_FINAL = 0.95         # C8: the target is 95 % of the lower of the two sides' final accuracies
PAPER_NOISE_LEVELS = (1e-4, 5e-4, 1e-3)   # C6: the paper's noise levels (Fig. 5), the clean clip being 0
NOISE_DRAWS = 3           # C6: noise draws averaged per level

VERDICTS = ("supported", "contradicted", "inconclusive", "not testable")


# -- convergence ---------------------------------------------------------------------------------
@dataclass
class Convergence:
    converged: bool
    loss_change: float            # the largest move over the last tenth, as a share of the descent (0.03 = 3 %)
    spread: float                 # max - min of the last test accuracies (0.05 = 5 points)
    reasons: list[str] = field(default_factory=list)


def spread_tolerance(n_test: int, ses: float = SPREAD_SES) -> float:
    """The widest spread of the last test accuracies a converged run may show: ``ses`` binomial
    standard errors of a test fold of ``n_test`` clips at 50 % accuracy (the largest such error,
    0.5 / sqrt(n)), so that it scales with the fold: 8.4 points on an 80-clip fold, 3.8 on one of
    ESC-50's 400-clip folds, 2.5 on an 873-clip UrbanSound8K fold."""
    if n_test < 1:
        raise ValueError(f"n_test={n_test} is not valid: a test fold holds at least one clip")
    return ses * 0.5 / math.sqrt(n_test)


def convergence(rows: Sequence[dict], *, n_test: int, loss_tolerance: float = LOSS_TOLERANCE,
                spread_ses: float = SPREAD_SES, last: int = LAST_EVALS) -> Convergence:
    """Whether a run reached its plateau, from its ``metrics.jsonl`` rows and its test fold's size.

    Two tests. (1) In each stage, the training loss has stopped descending: the mean over the
    last tenth of the stage's epochs (at least two) differs from the mean over the tenth before
    by at most ``loss_tolerance`` of the stage's whole descent (the first tenth's mean minus the
    last tenth's; the level itself when there was no descent). A share of the descent rather
    than of the level, because a cross-entropy loss keeps shrinking slowly for as long as its
    classifier's weights grow, long after the accuracy has settled. (2) The last ``last``
    test-fold accuracies span at most :func:`spread_tolerance` (``spread_ses`` binomial standard
    errors of an ``n_test``-clip fold): the headline, the final epoch's accuracy, is not a coin
    toss. A plateau reached only because the learning rate decayed to nothing passes both; the
    tuning study checks that doubling the epochs does not move the accuracy either.
    """
    spread_limit = spread_tolerance(n_test, spread_ses)
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
        if spread > spread_limit + 1e-9:
            reasons.append(f"the last {last} test accuracies span {100 * spread:.1f} points (at most "
                           f"{100 * spread_limit:.1f}: {spread_ses:g} binomial standard errors of {n_test} clips)")
    return Convergence(converged=not reasons, loss_change=max(changes) if changes else math.inf, spread=spread,
                       reasons=reasons)


def epochs_to_reach(rows: Sequence[dict], target: float) -> tuple[int, float] | None:
    """C8: the first epoch (1-based, counted over every stage) whose test accuracy reaches
    ``target`` (a share, 0..1), and the training seconds spent up to and including it."""
    seconds = 0.0
    for r in rows:
        seconds += r.get("seconds", 0.0)
        if r.get("test_acc") is not None and r["test_acc"] >= target - 1e-12:
            return r["epoch"], seconds
    return None


# -- the claims ------------------------------------------------------------------------------------
# The paper's own effect for each claim, in its unit, per dataset (from its Tables I-IV and the text
# of Sec. IV-B); none where the paper gives a figure or a sentence, not a number.
PAPER_EFFECTS = {
    "C1": {"esc50": 92.86 - 91.85, "esc10": 99.6 - 99.0, "us8k": 85.78 - 85.28},
    "C2": {"esc50": 92.86 - 91.98, "esc10": 99.6 - 99.25, "us8k": 85.78 - 84.69},
    "C3": {"esc50": 93.2 - 92.8, "esc10": 99.75 - 99.5, "us8k": 85.96 - 85.46},
    "C4a": {"esc50": 1.6},
    "C4b": {"esc50": 1.45},
    "C5a": {"esc50": 4.0},
    "C5b": {"esc50": 84.6 - 74.6},
    "C6a": {}, "C6b": {},
    "C7a": {"esc50": 93.6 - 92.86, "esc10": 99.75 - 99.6, "us8k": 88.01 - 85.78},
    "C7b": {"esc50": 93.6 - 92.64, "us8k": 88.01 - 87.35},
    "C8a": {}, "C8b": {}, "C8c": {},
    "C9": {},
    "C10": {"esc50": 91.6 - 90.35},
    "C11": {"esc50": 93.4 - 91.52, "esc10": 99.75 - 97.0, "us8k": 86.49 - 85.42},
}
PAPER_SOURCE = {
    "C1": "Table III, mean of 5", "C2": "Table III, mean of 5", "C3": "Table II, vs the next best alpha",
    "C4a": "Fig. 3 text", "C4b": "Fig. 3 text", "C5a": "Fig. 3 text: more than 4 points", "C5b": "Fig. 3 text",
    "C6a": "Fig. 5, no number", "C6b": "Fig. 5, no number", "C7a": "Table IV vs Table III",
    "C7b": "Table IV: SoundCLR-Ensemble vs ResNet-Ensemble [23], a ResNet-50 ensemble trained with cross-entropy",
    "C8a": "Sec. IV-D, no number", "C8b": "Sec. IV-D, no number", "C8c": "Sec. III-C, no number",
    "C9": "Fig. 4, no number", "C10": "Table I: f = 2, t = 0 vs f = 0, t = 1 (F = T = 32)",
    "C11": "Table IV: SoundCLR vs the best single model of the literature",
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
    "C7a": "an ensemble of hybrid models beats a single one",
    "C7b": "an ensemble of hybrid models beats an ensemble of cross-entropy models",
    "C8a": "the hybrid trains in fewer epochs than the two-stage scheme",
    "C8b": "the hybrid trains in less time than the two-stage scheme",
    "C8c": "the hybrid converges faster than cross-entropy (the same schedule)",
    "C9": "the hybrid is at least as good as the other two schemes on every fold",
    "C10": "frequency masks help more than time masks",
    "C11": "SoundCLR beats the published state of the art",
}
EVIDENCE = {"C1": "results", "C2": "results", "C3": "results", "C4a": "ablation", "C4b": "ablation",
            "C5a": "ablation", "C5b": "ablation", "C6a": "robustness", "C6b": "robustness", "C7a": "results",
            "C7b": "results", "C8a": "training-hybrid", "C8b": "training-hybrid", "C8c": "training-hybrid",
            "C9": "results", "C10": "ablation", "C11": "results"}
UNIT = {"C8a": "epochs", "C8b": "seconds", "C8c": "epochs"}
_NOISE = ", ".join(f"{s:g}" for s in PAPER_NOISE_LEVELS)
MEASURE = {
    "C1": "hybrid minus cross-entropy, final-epoch accuracy",
    "C2": "hybrid minus two-stage SupCon, final-epoch accuracy",
    "C3": "alpha = 0.5 minus the best other alpha (simultaneous over the other alphas)",
    "C4a": "with minus without wave augmentation (cross-entropy)",
    "C4b": "with minus without spectrogram masks, both with wave augmentation (cross-entropy)",
    "C5a": "3 minus 1 input channels, ImageNet weights",
    "C5b": "ImageNet minus random initialisation, 1 channel",
    "C6a": f"mean accuracy lost at noise std {_NOISE} ({NOISE_DRAWS} noise draws): cross-entropy's minus SupCon's",
    "C6b": f"mean accuracy lost at noise std {_NOISE} ({NOISE_DRAWS} noise draws): the hybrid's minus SupCon's",
    "C7a": "ensemble of the fold's hybrid models minus their mean single accuracy",
    "C7b": "ensemble of the fold's hybrid models minus the ensemble of its cross-entropy models",
    "C8a": f"epochs to {100 * NEAR_FINAL:g} % of the lower final accuracy: the two-stage scheme's (stage 1 + 2) minus the hybrid's",
    "C8b": f"training seconds to {100 * NEAR_FINAL:g} % of the lower final accuracy: the two-stage scheme's minus the hybrid's",
    "C8c": f"epochs to {100 * NEAR_FINAL:g} % of the lower final accuracy: cross-entropy's minus the hybrid's, same schedule",
    "C9": "the worst fold's hybrid minus the other scheme, per-clip interval within the fold, simultaneous over folds",
    "C10": "f = 2, t = 0 minus f = 0, t = 1 (cross-entropy)",
    "C11": "published accuracies",
}
CLAIM_IDS = list(CLAIMS)
PROTOCOLS = {"final": "acc", "best_test": "acc_best_test", "best_val": "acc_best_val"}
PROTOCOL_LABEL = {"final": "final epoch (ours)", "best_test": "best epoch on the test fold (the paper's)",
                  "best_val": "best epoch on a validation fold"}
LITERATURE = ("ESC-50: SoundCLR 93.4 % vs DenseNet [23] 91.52 % (single models), 93.6 % vs DenseNet-Ensemble [23] "
              "92.89 % (ensembles); ESC-10: 99.75 % vs ESResNet-Attention [20] 97.0 %; UrbanSound8K: 86.49 % vs "
              "ESResNet-Attention [20] 85.42 %, 88.01 % vs DenseNet-Ensemble [23] 87.42 %")


def _run_table(runs) -> pd.DataFrame:
    """One row per finished run: its keys, accuracy under each protocol (in %), test-fold size,
    convergence, schedule, and metrics rows."""
    from .store import read_json, read_metrics
    out = []
    for run in runs:
        if not run.finished:
            continue
        rows = read_metrics(run.directory)
        s = read_json(run.directory / "summary.json")
        n_test = int(s.get("n_test") or sum(map(sum, s["confusion"])))
        conv = convergence(rows, n_test=n_test)
        val = s.get("best_on_validation") or {}
        c = run.config
        stage = c.stages()[0]
        out.append({"scheme": c.run.scheme, "fold": c.run.test_fold, "seed": c.run.seed, "variant": run.variant,
                    "acc": 100 * s["final"]["test_acc"], "acc_best_test": 100 * s["best_on_test"]["test_acc"],
                    "acc_best_val": 100 * val["test_acc"] if val else math.nan, "n_test": n_test,
                    "converged": conv.converged, "schedule": (stage["epochs"], stage["warmup"], round(stage["gamma"], 12),
                                                             c.resolved().optim.lr, c.optim.batch_size),
                    "run": run, "rows": rows})
    return pd.DataFrame(out, columns=["scheme", "fold", "seed", "variant", "acc", "acc_best_test", "acc_best_val",
                                      "n_test", "converged", "schedule", "run", "rows"])


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
        from .stats import cv_ratio
        self.plan, self.bank, self.device = plan, bank, device
        self.dataset = plan.config.data.dataset
        self.ratio = cv_ratio(plan.config.n_folds)
        self.rows: list[dict] = []

    def paper(self, cid: str) -> tuple[float | None, str]:
        effects = PAPER_EFFECTS[cid]
        if self.dataset in effects:
            return effects[self.dataset], self.dataset
        if self.dataset not in ("esc50", "esc10", "us8k") and "esc50" in effects:
            return effects["esc50"], "esc50"
        return None, self.dataset

    def base(self, cid: str) -> dict:
        paper, where = self.paper(cid)
        return {"id": cid, "claim": CLAIMS[cid], "measure": MEASURE[cid], "unit": UNIT.get(cid, "points"),
                "paper": paper, "paper_dataset": where, "paper_source": PAPER_SOURCE[cid], "evidence": EVIDENCE[cid]}

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
        from .stats import verdict as stats_verdict
        from .stats import verdict_words
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
        from .stats import fold_interval
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


def ledger(plan, *, bank=None, device: str = "auto", cache: bool = True) -> pd.DataFrame:
    """The claims C1-C11 (with sub-claims) of the paper, tested on ``plan``'s runs: one row per
    claim (columns: see the module docstring and :class:`soundclr.stats.FoldInterval`). Runs that
    are not finished count as missing.

    Every page of a build shows the same ledger, so it is computed once: with ``cache``, it is kept in
    ``<results>/<dataset>/.ledger/`` under a key made of every run's summary (its path and time), the
    device, and the code of this module and :mod:`soundclr.stats`; a finished run more, or a change of
    code, computes it again."""
    import pickle

    from .store import atomic_write_bytes
    path = _ledger_cache(plan, device) if cache else None
    if path is not None and path.is_file():
        try:
            return pickle.loads(path.read_bytes())
        except Exception:           # a damaged cache is only a cache
            pass
    out = _compute_ledger(plan, bank=bank, device=device)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, pickle.dumps(out))
        except OSError:
            pass
    return out


def _ledger_cache(plan, device: str):
    import hashlib
    import inspect

    from . import stats
    h = hashlib.sha256()
    for module in (inspect.getmodule(_ledger_cache), stats):
        h.update(inspect.getsource(module).encode())
    h.update(device.encode())
    for run in [*plan.main_runs(), *plan.alpha_runs(), *plan.ablation_runs(), *plan.masking_runs(), *plan.fill_runs()]:
        summary = run.directory / "summary.json"
        stamp = summary.stat().st_mtime_ns if summary.is_file() else -1
        h.update(f"{run.directory}\0{stamp}\n".encode())
    return Path(plan.results) / plan.config.data.dataset / ".ledger" / f"{h.hexdigest()[:16]}.pkl"


def _compute_ledger(plan, *, bank=None, device: str = "auto") -> pd.DataFrame:
    from .stats import holm
    L = _Claims(plan, bank=bank, device=device)
    main = _run_table(plan.main_runs())
    by = {s: main[main.scheme == s] for s in ("ce", "supcon", "hybrid")}

    # C1, C2: Table III
    L.compare("C1", by["hybrid"], by["ce"])
    L.compare("C2", by["hybrid"], by["supcon"])
    _alpha(L, _run_table(plan.alpha_runs()))
    _ablation(L, plan, _run_table(plan.ablation_runs()))
    _noise(L, main)
    _ensembles(L, main)
    _speed(L, main)
    _per_fold(L, main)
    _masks(L, plan, _run_table(plan.masking_runs()))
    L.untestable("C11", f"not testable offline: it compares with published numbers on the real datasets ({LITERATURE}). "
                        "The paper preset on ESC-50, ESC-10 and UrbanSound8K tests it, on a GPU (the chapter Reproducing, under Using "
                        "the code, gives its cost).")
    out = pd.DataFrame(L.rows).set_index("id").loc[CLAIM_IDS].reset_index()
    out["p_holm"] = holm(out["p"].tolist())
    return out


def _alpha(L: _Claims, alpha: pd.DataFrame) -> None:
    """C3, Table II: alpha = 0.5 against every other alpha, with intervals simultaneous over the
    comparisons (Bonferroni); the claim's effect is against the best other alpha, whichever it is, and
    its interval is the simultaneous bound on min_j (0.5 - alpha_j), so choosing the rival after the
    fact is accounted for. Its p value is the largest of the comparisons' (an intersection-union test:
    alpha = 0.5 is best only if it beats each)."""
    from dataclasses import replace

    from .stats import fold_interval
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
    from .stats import verdict
    note = (f"the best other weight here is alpha = {closest[5:]}; simultaneous over the {len(others)} other weights; "
            f"{int(best.seed.nunique())} seed(s) per fold")
    detail = (f"against each other weight, corrected intervals at {100 * level:.1f} % each: " +
              ", ".join(f"alpha = {v[5:]}: {ints[v].effect:+.2f} [{ints[v].low_nb:+.2f}, {ints[v].high_nb:+.2f}]"
                        for v in others))
    L.add("C3", main, runs=len(alpha), same_schedule=_schedules(alpha), note=note, protocols=protocols, conv=conv,
          unconverged=int((~alpha.converged).sum()), verdict_=verdict(main), detail=detail)


def _ablation(L: _Claims, plan, ab: pd.DataFrame) -> None:
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
    from .experiment import noise_accuracies
    acc = noise_accuracies(run_dir, (0.0, *PAPER_NOISE_LEVELS), range(NOISE_DRAWS), bank=bank, device=device)
    clean = acc[(0.0, 0)]        # no noise: the same clips whatever the draw
    return 100 * (clean - float(np.mean([acc[(s, d)] for s in PAPER_NOISE_LEVELS for d in range(NOISE_DRAWS)])))


def _noise(L: _Claims, main: pd.DataFrame) -> None:
    """C6, Fig. 5: the mean accuracy lost over the paper's noise levels, other scheme's minus SupCon's."""
    if main.empty:
        for cid in ("C6a", "C6b"):
            L.untestable(cid, "no finished runs in the main grid")
        return
    drops = main.copy()
    if L.bank is None:       # one decoded dataset for every run's evaluation
        from .data import load_bank
        L.bank = load_bank(drops.run.iloc[0].config.resolved(), progress=False)
    drops["drop"] = [noise_drop(r.directory, bank=L.bank, device=L.device) for r in drops.run]
    for cid, other in (("C6a", "ce"), ("C6b", "hybrid")):
        L.compare(cid, drops[drops.scheme == other], drops[drops.scheme == "supcon"], value="drop", protocols=False,
                  note="final models only (the noise is added to the final model's test clips)")


def _ensemble_accuracy(runs: pd.DataFrame) -> float:
    """The accuracy (%) of the mean softmax output of ``runs`` (one fold's models) on their test fold."""
    import torch
    outs = [torch.load(r.directory / "outputs.pt", weights_only=False) for r in runs.run]
    probs = torch.stack([o["probs"] for o in outs]).mean(0)
    return 100 * (probs.argmax(-1) == outs[0]["labels"]).float().mean().item()


def _ensembles(L: _Claims, main: pd.DataFrame) -> None:
    """C7, Table IV: per fold, the hybrid models' ensemble against their mean single accuracy (C7a)
    and against the cross-entropy models' ensemble (C7b). Final models only."""
    from .stats import fold_interval
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
            ens = _ensemble_accuracy(fdf)
            a.append(ens - fdf.acc.mean())
            if len(cdf) >= 2:
                b.append(ens - _ensemble_accuracy(cdf))
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


def _speed(L: _Claims, main: pd.DataFrame) -> None:
    """C8: epochs (and seconds) to a common target, 95 % of the lower of the two runs' final
    accuracies (the same fold and seed), other scheme's minus the hybrid's: positive = the hybrid is
    faster. The two-stage scheme counts both stages."""
    from .stats import fold_interval
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
    import torch
    o = torch.load(run.directory / "outputs.pt", weights_only=False)
    return (o["probs"].argmax(-1) == o["labels"]).float().numpy()


def _per_fold(L: _Claims, main: pd.DataFrame) -> None:
    """C9, Fig. 4: on each fold, the hybrid against each other scheme, clip by clip (each clip's
    correctness averaged over the fold's seeds), with intervals simultaneous over every fold and both
    rivals (Bonferroni). Contradicted if on some fold a rival is better beyond the interval;
    supported only if the hybrid is better on every fold; inconclusive otherwise."""
    from dataclasses import replace

    from .stats import clip_interval
    folds = sorted(set(main.fold)) if not main.empty else []
    schemes = {s: main[main.scheme == s] for s in ("ce", "supcon", "hybrid")}
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


def _masks(L: _Claims, plan, masking: pd.DataFrame) -> None:
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


def main_grid_convergence(plan) -> pd.DataFrame:
    """Every main-grid run with its convergence test: scheme, fold, seed, converged, loss change, spread,
    the spread's tolerance, reasons."""
    t = _run_table(plan.main_runs())
    out = []
    for r in t.itertuples():
        c = convergence(r.rows, n_test=r.n_test)
        out.append({"scheme": r.scheme, "fold": r.fold, "seed": r.seed, "converged": c.converged,
                    "loss_change": c.loss_change, "spread": c.spread, "tolerance": spread_tolerance(r.n_test),
                    "reasons": "; ".join(c.reasons), "run": str(r.run.directory)})
    return pd.DataFrame(out, columns=["scheme", "fold", "seed", "converged", "loss_change", "spread", "tolerance",
                                      "reasons", "run"])


# -- words for the pages -------------------------------------------------------------------------
DATASET_TITLE = {"esc50": "ESC-50", "esc10": "ESC-10", "us8k": "UrbanSound8K", "synthetic": "the synthetic set"}


def _num(x: float, unit: str = "points") -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:+.0f}" if unit == "seconds" else f"{x:+.2f}"


def _is_number(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def interval_text(row, *, plain: bool = True) -> str:
    """``+0.88 points [-1.90, +3.66]`` (the corrected interval), the uncorrected fold interval, the folds."""
    r, unit = row, row["unit"]
    if r["verdict"] == "not testable":
        return "not testable"
    if not (math.isfinite(r["low_nb"]) and math.isfinite(r["high_nb"])):
        return f"{_num(r['effect'], unit)} {unit} (n = {r['n']}: no interval)"
    n = f"{r['n']} folds" if r["design"] == "folds" else "clips per fold"
    text = f"{_num(r['effect'], unit)} {unit} [{_num(r['low_nb'], unit)}, {_num(r['high_nb'], unit)}]"
    if plain and r["design"] == "folds":
        text += f"; uncorrected [{_num(r['low'], unit)}, {_num(r['high'], unit)}]"
    return text + f", {n}"


def power_text(row) -> str:
    """The effect this design detects with 80 % power, and its power at the paper's effect."""
    if row["verdict"] == "not testable" or not math.isfinite(row["detectable"]):
        return "n/a"
    unit = row["unit"]
    text = f"{abs(row['detectable']):.0f}" if unit == "seconds" else f"{abs(row['detectable']):.2f}"
    text = f"detects {text} {unit}"
    if _is_number(row["power"]) and _is_number(row["paper"]):
        text += f"; power at the paper's {row['paper']:.2f}: {100 * row['power']:.0f} %"
    return text


def _paper_cell(r) -> str:
    p = r["paper"]
    if not _is_number(p):
        return r["paper_source"]
    where = "" if r["paper_dataset"] == r.get("dataset") else f", {DATASET_TITLE[r['paper_dataset']]}"
    return f"{_num(p, r['unit'])} {r['unit']} ({r['paper_source']}{where})"


SHORT_WORDS = {   # the verdict's words in the ledger table (the page's "How to read" says the rest)
    "inconclusive: cannot tell at this size (the interval holds both zero and the paper's effect)": "cannot tell at this size",
    "inconclusive: the interval holds zero but not the paper's effect": "holds zero, not the paper's effect",
    "inconclusive: the interval holds zero": "holds zero",
    "inconclusive: no interval (fewer than two folds)": "no interval",
}
VERDICT_COLOR = {"supported": "#1a7f37", "contradicted": "#b42318", "inconclusive": "#7a5b00", "not testable": "#555555"}
PAGE_TITLE = {"results": "Results", "ablation": "Ablation", "robustness": "Robustness", "training-hybrid": "Training: hybrid"}


def _code(text: str) -> str:
    """Markdown's `inline code` as HTML, for text that goes into an HTML table."""
    import re
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def ledger_html(led: pd.DataFrame, dataset: str | None = None) -> str:
    """The ledger as an HTML table (the Claims notebook shows it): claim, the paper's effect, this build's effect
    with its corrected and uncorrected intervals, what the design can detect, the verdict, and a link
    to the page holding the evidence."""
    import html
    rows = []
    for _, r in led.iterrows():
        r = {**r, "dataset": dataset}
        testable = r["verdict"] != "not testable"
        mine = html.escape(interval_text(r)) if testable else _code(html.escape(r["note"]))
        if testable and r["note"]:
            mine += f"<br><small>{_code(html.escape(r['note']))}.</small>"
        if testable:
            mine += f"<br><small><i>{html.escape(power_text(r))}</i></small>"
        rest = SHORT_WORDS.get(r["verdict_text"], "")
        rows.append(
            "<tr>"
            f"<td><b>{r['id']}</b> {html.escape(r['claim'])}<br><small>{html.escape(r['measure'])}</small></td>"
            f"<td>{html.escape(_paper_cell(r))}</td>"
            f"<td>{mine}</td>"
            f"<td><b style=\"color:{VERDICT_COLOR[r['verdict']]}\">{r['verdict']}</b>"
            + (f"<br><small>{html.escape(rest)}</small>" if rest else "") + "<br><small>"
            # the notebook (training-hybrid: training.ipynb), which Jupyter Lab opens; the book's build
            # (soundclr.reproduce._for_the_book) links the page named in data-book-page instead
            f"<a href=\"{r['evidence'].split('-')[0]}.ipynb\" data-book-page=\"{r['evidence']}\">"
            f"{PAGE_TITLE.get(r['evidence'], r['evidence'])}</a></small></td>"
            "</tr>")
    head = ("<tr><th>claim</th><th>the paper</th><th>this build: effect [corrected 95 % interval]; uncorrected "
            "interval, folds; 80 % power</th><th>verdict, evidence</th></tr>")
    return f"<table class=\"claims-ledger\">{head}{''.join(rows)}</table>"


def _short(r, prefix: str = "", verdict: bool = True) -> str:
    """``+0.88 [-1.90, +3.66] inconclusive``: an effect, its corrected interval and (``verdict``) verdict."""
    e, lo, hi, v = (r[f"{prefix}effect"], r[f"{prefix}low_nb"], r[f"{prefix}high_nb"], r[f"{prefix}verdict"])
    if not _is_number(e) or not v:
        return "n/a"
    unit = r["unit"]
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{_num(e, unit)} (no interval)"
    return f"{_num(e, unit)} [{_num(lo, unit)}, {_num(hi, unit)}]" + (f" {v}" if verdict else "")


def protocol_table(led: pd.DataFrame) -> pd.DataFrame:
    """Per testable claim, one row per protocol its runs can be scored under: the final epoch (ours),
    the best epoch on the test fold (the paper's) and, where the runs hold one, the best epoch on a
    validation fold; each with its effect, corrected interval and verdict."""
    rows = []
    for _, r in led[led.verdict != "not testable"].iterrows():
        for name, prefix in (("final", ""), ("best_test", "best_test_"), ("best_val", "best_val_")):
            if not _is_number(r[f"{prefix}effect"]) or not r[f"{prefix}verdict" if prefix else "verdict"]:
                continue
            unit = r["unit"]
            lo, hi = r[f"{prefix}low_nb"], r[f"{prefix}high_nb"]
            rows.append({"claim": r["id"], "protocol": PROTOCOL_LABEL[name],
                         "effect [corrected interval]": f"{_num(r[f'{prefix}effect'], unit)} [{_num(lo, unit)}, {_num(hi, unit)}]"
                         if math.isfinite(lo) and math.isfinite(hi) else f"{_num(r[f'{prefix}effect'], unit)} (no interval)",
                         "verdict": r[f"{prefix}verdict" if prefix else "verdict"]})
    return pd.DataFrame(rows, columns=["claim", "protocol", "effect [corrected interval]", "verdict"]).set_index(
        ["claim", "protocol"])


def protocol_text(led: pd.DataFrame) -> str:
    """How much the paper's protocol (best epoch on the test fold) moves the effects, in words."""
    t = led[(led.verdict != "not testable") & led.best_test_effect.notna()]
    if t.empty:
        return "No claim here has runs scored under both protocols."
    moved = t.best_test_effect - t.effect
    changed = [f"{r.id} ({r.verdict} under the final epoch, {r.best_test_verdict} under the paper's protocol)"
               for r in t.itertuples() if r.best_test_verdict != r.verdict]
    text = (f"Choosing the best epoch on the test fold, as the paper did, moves the {len(t)} effects that can be "
            f"scored both ways by {moved.min():+.2f} to {moved.max():+.2f} points (mean {moved.mean():+.2f}). ")
    if changed:
        text += ("It changes the verdict of " + "; ".join(changed) + ": a maximum taken over the test fold's own "
                 "evaluations is a selection on the test data, and it favours whichever side's accuracy fluctuates "
                 "more or is evaluated more often.")
    else:
        text += "No verdict changes."
    return text


def sensitivity_table(led: pd.DataFrame) -> pd.DataFrame:
    """Per testable claim: every finished run (the primary analysis) beside converged runs only."""
    rows = []
    for _, r in led[led.verdict != "not testable"].iterrows():
        both = r["conv_verdict"]
        rows.append({"claim": r["id"], "every run (primary)": _short(r, "", verdict=False),
                     "converged only": _short(r, "conv_", verdict=False),
                     "verdict": r["verdict"] if both in ("", r["verdict"]) else f"{r['verdict']}, then {both}",
                     "not converged": int(r["unconverged"])})
    return pd.DataFrame(rows).set_index("claim")


def nonconvergence_table(conv: pd.DataFrame) -> pd.DataFrame:
    """Per scheme of the main grid: runs, runs not converged, and the rate."""
    t = conv.groupby("scheme").agg(runs=("converged", "size"), converged=("converged", "sum"))
    t["not converged"] = t["runs"] - t["converged"]
    t["rate"] = (100 * t["not converged"] / t["runs"]).map("{:.0f} %".format)
    return t[["runs", "not converged", "rate"]]


def likely_reason(cid: str, plan) -> str:
    """One sentence on why a result here may differ from the paper's, from what this build is."""
    c = plan.config
    if c.model.backbone == "tiny" or c.model.weights != "imagenet" or c.data.dataset == "synthetic":
        parts = []
        if c.model.weights != "imagenet":
            parts.append("no ImageNet pretraining")
        if c.model.backbone == "tiny":
            parts.append("a tiny network instead of ResNet-50")
        if c.data.dataset == "synthetic":
            parts.append("a toy dataset with a few hundred training clips per fold")
        parts.append(f"{c.optim.epochs} epochs instead of 800")
        return f"this build differs from the paper's setting: {', '.join(parts)}."
    return ("the paper reports the best epoch on the test fold and one run per fold, while this build scores the "
            "final epoch and treats the fold as the unit.")


def conclusion(led: pd.DataFrame, ids: Sequence[str], plan, reasons: dict[str, str] | None = None) -> str:
    """Markdown: for each claim in ``ids``, what this build shows, whether it agrees with the paper
    and, only where it does not, the reason (from ``reasons``, computed by the page from its evidence,
    or :func:`likely_reason`)."""
    lines = []
    for _, r in led[led.id.isin(ids)].iterrows():
        paper = (f"the paper: {_num(r['paper'], r['unit'])} {r['unit']}, {r['paper_source']}" if _is_number(r["paper"])
                 else f"the paper: {r['paper_source']}")
        if r["verdict"] == "not testable":
            lines.append(f"- **{r['id']}, {r['claim']}**: not testable here. {r['note']}")
            continue
        text = f"**{r['id']}, {r['claim']}**: {r['verdict_text']}; {interval_text(r, plain=False)} ({paper})."
        if r["verdict"] == "supported":
            text += " This agrees with the paper."
        elif r["verdict"] == "contradicted":
            text += f" This contradicts the paper. Why: {(reasons or {}).get(r['id']) or likely_reason(r['id'], plan)}"
        if r["note"]:
            text += f" ({r['note'][0].upper()}{r['note'][1:]}.)"
        if r.get("detail"):
            text += f" {r['detail'][0].upper()}{r['detail'][1:]}."
        lines.append(f"- {text}")
    return "\n".join(lines)


def convergence_summary(conv: pd.DataFrame) -> str:
    """Markdown: how many runs converged, and why the others did not."""
    if conv.empty:
        return "No finished run to test yet."
    ok = int(conv.converged.sum())
    n_test = sorted({int(round((SPREAD_SES * 0.5 / t) ** 2)) for t in conv.tolerance})
    text = (f"**{ok} of {len(conv)}** runs meet the convergence criterion: over the last tenth of its epochs the "
            f"training loss moves less than {100 * LOSS_TOLERANCE:g} % of its whole descent, and the last {LAST_EVALS} "
            f"test evaluations lie within {SPREAD_SES:g} binomial standard errors of the test fold (at 50 % accuracy, "
            f"the largest error: {', '.join(f'{100 * spread_tolerance(n):.1f} points for {n} clips' for n in n_test)}; "
            f"{100 * spread_tolerance(400):.1f} on an ESC-50 fold). The largest loss move is "
            f"{100 * conv.loss_change.max():.1f} % and the widest spread {100 * conv.spread.max():.1f} points.")
    bad = conv[~conv.converged]
    if len(bad):
        text += (" Not converged (kept in the primary analysis, left out of the converged-only check): "
                 + "; ".join(f"{r.scheme} fold {r.fold} seed {r.seed} ({r.reasons})" for r in bad.itertuples()) + ".")
    return text


def reductions_text(plan) -> str:
    lines = [f"- {r[0].upper()}{r[1:]}." for r in plan.reductions]
    c = plan.config.resolved()
    if c.model.weights != "imagenet" or c.model.backbone != "resnet50":
        lines.append(f"- The network is `{c.model.backbone}` with weights `{c.model.weights}` (the paper: ResNet-50 "
                     "pretrained on ImageNet), so claims about transfer learning cannot be tested here.")
    if c.optim.epochs < 800:
        lines.append(f"- {c.optim.epochs} epochs instead of 800 for every scheme, with the schedule scaled to fit "
                     "([the tuning page](../../tuning.md) shows how they were chosen).")
    a = c.augment
    if (a.freq_masks, a.time_masks) != (2, 1):
        what = "no spectrogram masks" if (a.freq_masks, a.time_masks) == (0, 0) else \
            f"{a.freq_masks} frequency and {a.time_masks} time masks"
        lines.append(f"- The main grid trains with {what} (the paper: f = 2, t = 1), chosen on the tuning draw, "
                     "where the paper's masks cost accuracy ([the tuning page](../../tuning.md)); every scheme trains with "
                     "the same augmentation. [The ablation page](ablation.ipynb) tests the paper's masks.")
    lines.append("- Every other setting that differs from the paper is listed under the Settings line at the top of this "
                 "page (*Every setting of this page*).")
    return "\n".join(lines)


def summary_text(led: pd.DataFrame, plan) -> str:
    """The page's summary: verdict counts, Holm's adjustment over the family, and the power."""
    counts = led.verdict.value_counts()
    parts = [f"{counts.get(v, 0)} {v}" for v in VERDICTS if counts.get(v, 0)]
    text = f"Of the {len(led)} claims: " + ", ".join(parts) + "."
    for v in ("supported", "contradicted"):
        ids = list(led[led.verdict == v].id)
        if ids:
            text += f" {v.capitalize()}: {', '.join(ids)}."
    fam = led[led.p.notna()]
    if len(fam):
        sig = list(fam[fam.p_holm < 0.05].id)
        text += (f" Each verdict is a test at 5 %; taken together as one family of {len(fam)} tests (Holm's "
                 "adjustment, which keeps the chance of any false verdict at 5 %), "
                 + (f"{len(sig)} remain{'s' if len(sig) == 1 else ''} significant: {', '.join(sig)}." if sig
                    else "none remains significant."))
    pw = led[led.power.notna()]
    if len(pw):
        text += (f" At this size the design has {100 * pw.power.min():.0f} to {100 * pw.power.max():.0f} % power at the "
                 "paper's own effects, so an inconclusive verdict is what it would most often show even if the paper "
                 "were right: it means \"cannot tell\", not \"no effect\".")
    return text


def page_conclusion(led: pd.DataFrame | None, ids: Sequence[str], plan, lead: str | None = None,
                    reasons: dict[str, str] | None = None) -> str:
    """The conclusion block of a generated page: the claims it holds evidence for, from the ledger."""
    if led is None:
        return ("The runs this conclusion needs are not all finished yet: train them (`soundclr reproduce`, or run "
                "the other pages) and run this page again.")
    return (lead + "\n\n" if lead else "") + conclusion(led, ids, plan, reasons)


# -- what a decisive test costs ---------------------------------------------------------------------
PAPER_ACCURACY = {   # Table III, mean of 5: (cross-entropy, SupCon, hybrid)
    "esc50": {"ce": 91.85, "supcon": 91.98, "hybrid": 92.86},
    "esc10": {"ce": 99.0, "supcon": 99.25, "hybrid": 99.6},
    "us8k": {"ce": 85.28, "supcon": 84.69, "hybrid": 85.78},
}


def measured_noise(plan, rival: str) -> dict:
    """From this build's main grid, hybrid against ``rival`` paired by (fold, seed): the pooled
    within-fold variance over seeds of the difference (points squared), the test-fold size, and the
    share of the two models' errors on which they disagree (discordant clips / (errors of A + errors of
    B)), averaged over the pairs."""
    import torch
    t = _run_table(plan.main_runs())
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
    from . import cost
    from .config import preset
    from .stats import cv_ratio, power
    rows = []
    for cid, rival in (("C1", "ce"), ("C2", "supcon")):
        m = measured_noise(plan, rival)
        if not m:
            continue
        for ds in ("esc50", "esc10", "us8k"):
            acc = PAPER_ACCURACY[ds]
            effect = PAPER_EFFECTS[cid][ds]
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


POWER_TARGET = 0.80


def silhouette_conclusion(scores: dict) -> str:
    """Markdown from the silhouette scores ``{(scheme, space): score}``: which scheme separates the
    classes best in h and in z, and whether the contrastive schemes beat cross-entropy in h.
    Cross-entropy's projection z is left out of the ranking: no loss trains its projection head, so
    its z is a random linear map of h, not a representation any scheme learnt."""
    from .experiment import SCHEME_LABEL
    untrained = {("ce", "projection")}
    lines = []
    for space, symbol in (("representation", "h"), ("projection", "z")):
        s = {k[0]: v for k, v in scores.items() if k[1] == space and k not in untrained}
        left_out = [k[0] for k in scores if k[1] == space and k in untrained]
        note = "".join(f" {SCHEME_LABEL[k]}'s ${symbol}$ (silhouette {scores[(k, space)]:.2f}) is left out: no loss "
                       f"trains its projection head, so it is an untrained random map of $h$." for k in left_out)
        if not s:
            if note:
                lines.append(note.strip())
            continue
        if len(s) == 1:
            (only, v), = s.items()
            lines.append(f"In the {space} space ${symbol}$ only {SCHEME_LABEL[only]} has a trained map to rank "
                         f"(silhouette {v:.2f})." + note)
            continue
        best = max(s, key=s.get)
        lines.append(f"In the {space} space ${symbol}$ the classes separate best under {SCHEME_LABEL[best]} "
                     f"(silhouette {s[best]:.2f}; " + ", ".join(f"{SCHEME_LABEL[k]} {v:.2f}" for k, v in s.items() if k != best)
                     + ")." + note)
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


def scope_text(plan) -> str:
    """The first screen of the Claims notebook: what this build ran, what it can test and what it cannot, and
    how to test the rest."""
    c = plan.config.resolved()
    runs = plan.all_runs()
    title = DATASET_TITLE[c.data.dataset]
    net = ("ResNet-50 pretrained on ImageNet" if (c.model.backbone, c.model.weights) == ("resnet50", "imagenet")
           else f"the `{c.model.backbone}` network ({'ImageNet weights' if c.model.weights == 'imagenet' else 'random initialisation'})")
    text = (f"**What this build ran**: {len(runs)} training runs on {title} ({c.n_folds} folds, "
            f"{len(plan.seeds)} seed{'s' if len(plan.seeds) != 1 else ''} per fold in the main grid), {net}, "
            f"{c.optim.epochs} epochs per scheme.")
    if c.data.dataset == "synthetic" or c.model.backbone != "resnet50":
        text += (" **What it can test**: whether each of the paper's claims holds *for this network on these data*, "
                 "with statistics that say how large an effect this size can see. **What it cannot test**: any claim "
                 "about ESC-50, ESC-10 or UrbanSound8K, or about ResNet-50 and ImageNet transfer; a verdict here is "
                 "about the toy, not the paper. **To test the paper itself**: `soundclr reproduce --dataset esc50 "
                 "--preset paper --device cuda` on a GPU; the [Reproducing](../../reproduce.md) page gives its cost, and the "
                 "table at the end of this page how many seeds a decisive test needs.")
    return text


def fairness_text(led: pd.DataFrame, plan) -> str:
    """Markdown: the schedule and augmentation every scheme trained with, and the per-run check that
    both sides of each comparison trained the same schedule."""
    c = plan.config.resolved()
    o, a = c.optim, c.augment
    masks = ("no spectrogram masks" if (a.freq_masks, a.time_masks) == (0, 0) else
             f"{a.freq_masks} frequency and {a.time_masks} time masks filled with `{a.mask_fill}`")
    text = (f"Every scheme trains {o.epochs} epochs (warm-up {o.warmup_epochs}, decay {o.gamma:.4f} per epoch, "
            f"learning rate {o.lr:g}, batch {o.batch_size}), and the two-stage scheme's linear classifier "
            f"{o.stage2_epochs} more on top of its {o.epochs} SupCon epochs, as in the paper (800 and 800); every run "
            f"uses the same wave augmentation and {masks}.")
    if o.contrastive_stretch != 1:
        text += (f" **The contrastive stages are stretched {o.contrastive_stretch:g} times** (`contrastive_stretch`): "
                 "the schemes do not train the same schedule, and the comparisons below are not the paper's.")
    t = led[led.verdict != "not testable"]
    unfair = list(t[~t.same_schedule.astype(bool)].id)
    text += (f" Checked run by run: in {len(t) - len(unfair)} of the {len(t)} comparisons tested here both sides "
             "trained the same schedule (epochs, warm-up, decay, learning rate and batch).")
    if unfair:
        text += f" **Not the same schedule**: {', '.join(unfair)}."
    return text


def fill_reason(fill: pd.DataFrame, plan) -> str | None:
    """C4b's reason when the masks hurt, computed from the mask-fill table (``report.variant_table`` of
    the fill runs): when the paper's fill (0 dB, the loudest value) scores well below the best fill on
    the same runs' folds, the fill is the cause; None when the table does not show that."""
    if fill is None or "fill-zero" not in fill.index or len(fill) < 2:
        return None
    best = fill["mean"].idxmax()
    gap = fill.loc[best, "mean"] - fill.loc["fill-zero", "mean"]
    spread = float(np.nanmax([fill.loc["fill-zero", "sd"], fill.loc[best, "sd"], 0.0]))
    if best == "fill-zero" or gap <= spread:     # within the folds' spread: the table cannot name the cause
        return None
    from .plan import FILL_LABELS
    return (f"the masks are filled with 0 dB, the loudest value of each clip (the paper's fill); on the mask-fill "
            f"table's folds that fill scores {fill.loc['fill-zero', 'mean']:.2f} %, and {FILL_LABELS[best[5:]]} "
            f"{fill.loc[best, 'mean']:.2f} % with the same masks, {gap:.1f} points more: the fill, not the masking, "
            "costs the accuracy here.")
