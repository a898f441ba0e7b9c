"""The claims ledger: the convergence criterion on synthetic learning curves, and the ledger on a tiny
grid against hand computations (the statistics themselves: test_stats.py)."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from soundclr.analysis import claims, evidence, ledger, rows as ledger_rows
from soundclr.analysis import convergence as convergence_module
from soundclr.analysis.convergence import convergence, epochs_to_reach, spread_tolerance
from soundclr.book import conclusions, decisive

ROOT = Path(__file__).resolve().parents[1]


# -- convergence ------------------------------------------------------------------------------------
def curve(epochs, loss, acc, stage=1):
    return [{"epoch": e + 1, "stage": stage, "train_loss": loss(e), "test_acc": acc(e)} for e in range(epochs)]


def test_a_plateau_converges():
    rows = curve(40, lambda e: 0.3 + 2.0 * math.exp(-e / 4), lambda e: 0.9 - 0.5 * math.exp(-e / 4) + 0.01 * (e % 2))
    c = convergence(rows, n_test=80)
    assert c.converged and c.loss_change < 0.05 and c.spread <= 0.05, c


def test_a_falling_loss_is_not_converged():
    rows = curve(40, lambda e: 2.0 - 0.04 * e, lambda e: 0.9)
    c = convergence(rows, n_test=80)
    assert not c.converged and "training loss still moves" in c.reasons[0]


def test_jumping_accuracies_are_not_converged():
    rows = curve(40, lambda e: 0.5, lambda e: [0.275, 0.75][e % 2])
    c = convergence(rows, n_test=80)
    assert not c.converged and c.spread == pytest.approx(0.475) and "span 47.5 points (at most 8.4" in c.reasons[0]


def test_two_stages_are_checked_separately_and_too_short_runs_are_not_converged():
    stage1 = [{**r, "test_acc": None} for r in curve(20, lambda e: 3.0 - 0.1 * e, lambda e: None)]   # SupCon still falling
    stage2 = curve(10, lambda e: 0.4, lambda e: 0.8, stage=2)
    c = convergence(stage1 + stage2, n_test=80)
    assert not c.converged and any(r.startswith("stage 1") for r in c.reasons)
    assert not convergence(curve(3, lambda e: 1.0, lambda e: 0.5), n_test=80).converged


def test_epochs_to_reach_95_percent_of_the_final_accuracy():
    rows = curve(10, lambda e: 1.0, lambda e: [0.1, 0.5, 0.8, 0.86, 0.9, 0.88, 0.9, 0.9, 0.9, 0.9][e])
    for r in rows:
        r["seconds"] = 2.0
    assert epochs_to_reach(rows, 0.855) == (4, 8.0)          # 0.86 >= 0.855, after 4 epochs of 2 s
    assert epochs_to_reach(rows, 0.95) is None


def test_the_spread_tolerance_scales_with_the_test_fold():
    """1.5 binomial standard errors at 50 %: 8.4 points on an 80-clip fold, 3.75 on ESC-50's 400."""
    assert 100 * spread_tolerance(80) == pytest.approx(150 * 0.5 / math.sqrt(80))
    assert 100 * spread_tolerance(400) == pytest.approx(3.75)
    wobbly = curve(40, lambda e: 0.5, lambda e: [0.85, 0.80][e % 2])      # 5 points of spread
    assert convergence(wobbly, n_test=80).converged and not convergence(wobbly, n_test=400).converged
    with pytest.raises(ValueError):
        spread_tolerance(0)


# -- the ledger ---------------------------------------------------------------------------------------
def _floor_by_hand(plan) -> float:
    """C1's noise floor (points squared), written out: per fold, the variance over clips of the seed-averaged
    per-clip difference less each side's binomial seed spread (m (1 - m) / (r - 1) per clip), over the clips; plus
    each side's within-fold seed variance of run accuracies, pooled over the folds, over its runs, but at least its
    binomial spread; mean over folds."""
    from soundclr.runs.inference import clip_correctness
    runs = {s: {f: np.stack([clip_correctness(r.directory) for r in plan.main_runs([s]) if r.config.run.test_fold == f])
                for f in (1, 2)} for s in ("hybrid", "ce")}
    seed_var = {s: np.mean([np.var(100 * runs[s][f].mean(axis=1), ddof=1) for f in (1, 2)]) for s in runs}
    out = []
    for f in (1, 2):
        m = {s: runs[s][f].mean(axis=0) for s in runs}
        r = {s: runs[s][f].shape[0] for s in runs}
        n = len(m["ce"])
        binom = {s: 1e4 * np.mean(m[s] * (1 - m[s])) / (r[s] - 1) / n for s in runs}
        clip = 1e4 * np.var(m["hybrid"] - m["ce"], ddof=1) / n - sum(binom.values())
        out.append(clip + sum(max(seed_var[s] / r[s], binom[s]) for s in runs))
    return max(float(np.mean(out)), 0.0)


def test_the_ledger_on_a_tiny_grid(synthetic_root, synthetic_bank, tmp_path, monkeypatch):
    from soundclr.book.plan import make_plan
    from soundclr.runs.grid import run_grid
    plan = make_plan("synthetic", "quick", size="tiny", device="cpu", results=str(tmp_path), data_root=str(synthetic_root),
                     folds=[1, 2], seeds=[0, 1])
    run_grid(plan.all_runs(), progress=False, verbose=False, bank=synthetic_bank)
    led = ledger.ledger(plan, bank=synthetic_bank, device="cpu").set_index("id")
    assert list(led.index) == claims.CLAIM_IDS
    assert set(led.verdict) <= set(claims.VERDICTS)
    # C1 by hand: the fold is the unit. Seeds are averaged within a fold, then a paired t interval over folds.
    acc = {}
    for run in plan.main_runs():
        s = json.loads((run.directory / "summary.json").read_text())
        acc[(run.config.run.scheme, s["test_fold"], s["seed"])] = {"final": 100 * s["final"]["test_acc"],
                                                                    "best": 100 * s["best_on_test"]["test_acc"]}

    def fold_means(scheme, key):
        return [np.mean([acc[(scheme, f, s)][key] for s in (0, 1)]) for f in (1, 2)]
    d = np.subtract(fold_means("hybrid", "final"), fold_means("ce", "final"))
    assert led.loc["C1", "n"] == 2 and led.loc["C1", "runs"] == 8
    assert led.loc["C1", "effect"] == pytest.approx(d.mean())
    floor = _floor_by_hand(plan)
    assert led.loc["C1", "sd_floor"] == pytest.approx(math.sqrt(floor))
    if np.std(d) > 0:
        ref = scipy.stats.ttest_rel(fold_means("hybrid", "final"), fold_means("ce", "final")).confidence_interval()
        assert (led.loc["C1", "low"], led.loc["C1", "high"]) == pytest.approx((ref.low, ref.high))
        # the rule's interval: the SD of the fold differences, never below the noise floor, and (five folds, one
        # tested: n_test / n_train = 1/4) the Nadeau-Bengio factor where the rule names it
        from soundclr.analysis.rule import RULE
        sd = max(np.std(d, ddof=1), math.sqrt(floor)) if RULE.startswith("floor") else np.std(d, ddof=1)
        half = scipy.stats.t.ppf(0.975, 1) * sd * math.sqrt(1 / 2 + (1 / 4 if RULE.endswith("nb") else 0))
        assert (led.loc["C1", "low_nb"], led.loc["C1", "high_nb"]) == pytest.approx((d.mean() - half, d.mean() + half))
    # the paper's protocol beside ours: the best epoch chosen on the test fold
    db = np.subtract(fold_means("hybrid", "best"), fold_means("ce", "best"))
    assert led.loc["C1", "best_test_effect"] == pytest.approx(db.mean())
    assert math.isnan(led.loc["C1", "best_val_effect"])            # the main grid holds no validation fold
    # both sides trained the same schedule (the quick preset stretches no scheme)
    assert led.loc["C1", "same_schedule"] and led.loc["C2", "same_schedule"]
    # Holm's adjustment over the claims that have a p value
    fam = led[led.p.notna()]
    assert (fam.p_holm >= fam.p - 1e-12).all() and fam.p_holm.max() <= 1.0
    # no ImageNet weights for the tiny backbone: C5 is not testable, with the reason; C11 needs the real data
    assert led.loc["C5a", "verdict"] == "not testable" and "offline" in led.loc["C5a", "note"]
    assert led.loc["C11", "verdict"] == "not testable" and "91.52" in led.loc["C11", "note"]
    # C7: two seeds make an ensemble on each of the two folds, for the hybrid (C7a) and against cross-entropy (C7b)
    assert led.loc["C7a", "n"] == 2 and led.loc["C7b", "n"] == 2 and "ensembles of 2 models" in led.loc["C7a", "note"]
    # C9: per fold and per clip, simultaneous over 2 folds x 2 rivals, non-inferiority with the stated margin
    assert led.loc["C9", "design"] == "clips per fold" and "of 2 folds" in led.loc["C9", "note"]
    assert f"margin of {claims.c9_margin(80):g} points" in led.loc["C9", "note"] and claims.c9_margin(80) == 1.25
    assert "non-inferiority power" in led.loc["C9", "note"] and 0 <= led.loc["C9", "power"] <= 1
    # C8a, C8b hold by design: measured, not tested; out of the Holm family and the supported count
    for cid in ("C8a", "C8b"):
        assert led.loc[cid, "verdict"] == claims.BY_DESIGN and math.isnan(led.loc[cid, "p"]), cid
        assert led.loc[cid, "verdict_text"].startswith("holds by design (not a test)") and "measured" in led.loc[cid, "note"]
    assert led.loc["C8c", "verdict"] != claims.BY_DESIGN
    # the power figures are simulated: a rate with its Monte Carlo error, a size, a detectable effect
    assert 0 <= led.loc["C1", "power"] <= 1 and 0 < led.loc["C1", "power_mc"] < 0.05
    assert 0 <= led.loc["C1", "size"] <= 1 and led.loc["C1", "detectable"] > 0
    # the probability of improvement over (fold, seed) pairs, and fold wins
    pairs = [(acc[("hybrid", f, a)]["final"], acc[("ce", f, b)]["final"]) for f in (1, 2) for a in (0, 1) for b in (0, 1)]
    assert led.loc["C1", "prob_improvement"] == pytest.approx(np.mean([(x > y) + 0.5 * (x == y) for x, y in pairs]))
    # every testable row carries the statistics the Claims page shows
    for cid, r in led[led.verdict != "not testable"].iterrows():
        assert r["n"] >= 1 and "detectable" in r and r["verdict_text"].startswith(r["verdict"]), cid
    # an unconverged run stays in the primary analysis; the converged-only check leaves it out and counts it
    monkeypatch.setattr(convergence_module, "convergence", lambda rows, **k: convergence_module.Convergence(False, 1.0, 1.0, ["moving"]))
    led2 = ledger.ledger(plan, bank=synthetic_bank, device="cpu", cache=False).set_index("id")
    assert led2.loc["C1", "effect"] == pytest.approx(led.loc["C1", "effect"]) and led2.loc["C1", "n"] == 2
    assert led2.loc["C1", "unconverged"] == 8 and math.isnan(led2.loc["C1", "conv_effect"])
    # what a decisive test on the real datasets costs: one row per headline claim and dataset
    rows = decisive.decisive_rows(plan, bands=False)
    cost = decisive.decisive_cost(plan, rows=rows)
    assert [(c, d) for c, d in zip(cost.claim, cost.dataset)][::2][:3] == \
        [("C1", "ESC-50"), ("C1", "ESC-10"), ("C1", "UrbanSound8K")]
    assert set(cost.claim) == {"C1", "C2"} and cost["seeds per fold for 80 %"].str.len().min() > 0
    assert {"power, 5 seeds", "size", "seeds per fold for 80 %"} <= set(cost.columns)
    assert {"limited by", "clip-level: power; size", "GPU-hours (runs)"} <= set(decisive.decisive_designs(rows).columns)
    assert any("(half)" in e for e in cost["effect"])
    terms = decisive.decisive_terms(rows)
    assert (terms[["clip", "seed", "train"]] >= 0).all().all() and len(terms) == 6
    assert "Table III" in decisive.table3_check(rows)
    # the ledger is computed once per build: the second call reads the cache, a finished run more invalidates it
    cached = ledger.ledger(plan, bank=synthetic_bank, device="cpu")
    assert cached.equals(led.reset_index()) and list((tmp_path / "synthetic" / ".ledger").glob("*.pkl"))
    summary = plan.main_runs()[0].directory / "summary.json"
    key = ledger._ledger_cache(plan, "cpu")
    summary.touch()
    import os
    os.utime(summary, ns=(summary.stat().st_atime_ns, summary.stat().st_mtime_ns + 10**9))
    assert ledger._ledger_cache(plan, "cpu") != key
    text = conclusions.conclusion(led.reset_index(), ["C1", "C5a"], plan)
    assert f"**C1, the hybrid loss beats cross-entropy**: {led.loc['C1', 'verdict']}" in text and "not testable" in text
    assert "folds" in text and "Likely reason" not in text


def _alpha_rows(acc: dict) -> "pd.DataFrame":
    import pandas as pd

    class R:
        def __init__(self, d):
            self.directory = d
    rows = []
    for v, accs in acc.items():
        for f, a in enumerate(accs, 1):
            rows.append({"scheme": "hybrid", "fold": f, "seed": 0, "variant": v, "acc": float(a), "acc_best_test": float(a),
                         "acc_best_val": math.nan, "n_test": 80, "converged": True, "schedule": (1,), "run": R(None), "rows": []})
    return pd.DataFrame(rows)


def _c3(acc: dict) -> dict:
    from soundclr.config import preset

    class Plan:
        config = preset("quick")
    L = ledger_rows.Evidence(Plan())
    evidence.add_alpha(L, _alpha_rows(acc))
    return L.rows[0]


def test_c3_is_an_intersection_union_test_with_the_interval_that_matches_it():
    """C3: alpha = 0.5 is best only if it beats each other weight. The p value is the largest one-sided p (doubled
    to compare with 5 %), the interval's lower end the smallest of the 95 % lower ends (what that test needs),
    its upper end the smallest Bonferroni upper end; the interval is labelled 95 %."""
    from soundclr.analysis.stats import fold_interval, one_sided_p

    acc = {"alpha0.5": [90, 91, 92, 93, 94], "alpha0.25": [88, 90, 91, 92, 92], "alpha0.75": [89, 91, 91, 93, 95]}
    r = _c3(acc)
    each = {v: fold_interval(np.subtract(acc["alpha0.5"], acc[v]), ratio=0.25) for v in ("alpha0.25", "alpha0.75")}
    joint = {v: fold_interval(np.subtract(acc["alpha0.5"], acc[v]), ratio=0.25, level=1 - 0.05 / 2) for v in each}
    assert r["effect"] == pytest.approx(each["alpha0.75"].effect)            # the closest rival: 0.75
    assert r["low_nb"] == pytest.approx(min(i.low_nb for i in each.values()))
    assert r["high_nb"] == pytest.approx(min(i.high_nb for i in joint.values()))
    assert r["p"] == pytest.approx(min(1.0, 2 * max(one_sided_p(i) for i in each.values())))
    assert r["level"] == 0.95 and (r["p"] < 0.05) == (r["low_nb"] > 0)
    assert "closest other weight here is alpha = 0.75" in r["note"] and "ranks 1 of 3" in r["note"]
    # a rival far better than alpha = 0.5 gives a large p (the maximum of two-sided p values was small here)
    worse = _c3({"alpha0.5": [80, 81, 82, 83, 84], "alpha0.25": [90, 91, 93, 93, 95], "alpha0.75": [70, 71, 72, 72, 74]})
    assert worse["p"] == 1.0 and worse["verdict"] == "contradicted" and "ranks 2 of 3" in worse["note"]


def test_the_quick_preset_is_the_tuning_studys_choice():
    """The offline default's training settings are the ones studies/tune_quick.py chose on the tuning draw, a
    synthetic set the book never tests on; every scheme trains the same schedule."""
    from soundclr.config import preset
    study = json.loads((ROOT / "studies" / "tune_quick.json").read_text())
    chosen = study["chosen_settings"]
    quick = preset("quick")
    for name, value in chosen.items():
        assert quick.get(name) == pytest.approx(value), name
    for name, value in study["base"].items():
        if name not in ("data_root", "device", "checkpoint_seconds", "dataset", "stage2_lr", "synthetic_draw"):
            assert quick.get(name) == value, name
    assert quick.get("stage2_lr") is None        # stage 2 uses the same learning rate, as in the paper
    assert study["base"]["synthetic_draw"] != quick.get("synthetic_draw")   # tuned on another draw
    assert quick.get("contrastive_stretch") == 1.0                           # the same epochs for every scheme


def test_variant_tables_give_each_variant_its_interval_and_folds():
    """report.variant_table against a hand computation: the Wilson interval over the test clips (solved here
    as the score test's acceptance region, by root finding), inside [0, 100] and of non-zero width even when
    two folds agree exactly; variant_display keeps each row's fold count under its label in words (the
    ablation page once lost them to an index misalignment)."""
    import pandas as pd
    from scipy.optimize import brentq

    from soundclr.analysis.tables import variant_display, variant_table
    df = pd.DataFrame({"variant": ["a", "a", "a", "b", "b", "c", "c"], "fold": [1, 2, 3, 1, 2, 1, 2],
                       "final_acc": [0.80, 0.90, 0.85, 0.70, 0.75, 1.0, 1.0], "n_test": [40] * 7})
    t = variant_table(df, ["b", "a", "missing", "c"])
    assert list(t.index) == ["b", "a", "c"]

    def score_region(x: float, n: int) -> tuple[float, float]:
        z, p = scipy.stats.norm.ppf(0.975), x / n
        gap = lambda q: abs(p - q) - z * math.sqrt(q * (1 - q) / n)      # noqa: E731
        low = brentq(gap, 1e-12, p - 1e-9) if p > 0 else 0.0     # the score test is 0 at q = p: search beside it
        high = brentq(gap, p + 1e-9, 1 - 1e-12) if p < 1 else 1.0
        return 100 * low, 100 * high

    assert t.loc["a", "mean"] == pytest.approx(85.0)
    assert (t.loc["a", "low"], t.loc["a", "high"]) == pytest.approx(score_region(102, 120), abs=1e-6)
    assert (t.loc["c", "low"], t.loc["c", "high"]) == pytest.approx(score_region(80, 80), abs=1e-6)
    assert t.loc["c", "low"] < t.loc["c", "high"] == pytest.approx(100.0)          # two perfect folds: not [100, 100]
    assert ((t["low"] >= 0) & (t["high"] <= 100)).all()
    shown = variant_display(t, {"a": "variant A"})
    assert list(shown.index) == ["b", "variant A", "c"]
    assert list(shown["folds"]) == [2, 3, 2] and list(shown["test clips"]) == [80, 120, 80]
    assert list(shown["accuracy, final epoch (%)"]) == ["72.50 ± 3.54", "85.00 ± 5.00", "100.00 ± 0.00"]
    low, high = score_region(102, 120)
    assert shown["95 % interval over the test clips (%)"].iloc[1] == f"[{low:.2f}, {high:.2f}]"
