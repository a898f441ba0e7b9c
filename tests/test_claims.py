"""The claims ledger: paired intervals against scipy and a hand computation, verdicts, the
convergence criterion on synthetic learning curves, and the ledger on a tiny grid."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from soundclr import claims
from soundclr.claims import Interval, convergence, epochs_to_reach, paired_interval, verdict

ROOT = Path(__file__).resolve().parents[1]


# -- intervals --------------------------------------------------------------------------------------
def test_paired_t_interval_is_scipys():
    rng = np.random.default_rng(0)
    a = rng.normal(80, 3, 10)
    b = a - rng.normal(1.0, 1.5, 10)
    got = paired_interval(a, b)
    ref = scipy.stats.ttest_rel(a, b).confidence_interval(0.95)
    assert got.n == 10 and got.method == "t"
    assert got.effect == pytest.approx(float(np.mean(a - b)))
    assert (got.low, got.high) == pytest.approx((ref.low, ref.high))


def test_paired_t_interval_by_hand():
    d = [1.0, 2.0, 3.0, 4.0, 5.0]          # mean 3, sd sqrt(2.5), t(0.975, 4) = 2.7764451
    got = paired_interval(d, [0.0] * 5)
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)
    assert (got.effect, got.low, got.high) == pytest.approx((3.0, 3.0 - half, 3.0 + half))


def test_bootstrap_interval_by_hand():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.5, 1, 12), np.zeros(12)
    got = paired_interval(a, b, method="bootstrap", resamples=2000, seed=7)
    # the same percentile bootstrap, written as a loop
    draw = np.random.default_rng(7).integers(0, 12, size=(2000, 12))
    means = sorted(float(np.mean([a[i] for i in row])) for row in draw)
    lo, hi = np.quantile(means, [0.025, 0.975])
    assert (got.low, got.high) == pytest.approx((lo, hi))
    # and, for a larger normal sample, it agrees with the t interval
    big = rng.normal(1, 2, 200)
    t, boot = paired_interval(big, 0 * big), paired_interval(big, 0 * big, method="bootstrap")
    assert boot.low == pytest.approx(t.low, abs=0.1) and boot.high == pytest.approx(t.high, abs=0.1)


def test_verdicts():
    assert verdict(Interval(1.0, 0.2, 1.8, 5)) == "supported"
    assert verdict(Interval(-1.0, -1.8, -0.2, 5)) == "contradicted"
    assert verdict(Interval(0.5, -0.3, 1.3, 5)) == "inconclusive"
    assert verdict(paired_interval([1.0], [0.0])) == "inconclusive"          # one pair: no interval
    assert verdict(paired_interval([1, 1, 1], [1, 1, 1])) == "inconclusive"   # identical: zero effect
    assert verdict(paired_interval([2, 3, 2.5], [1, 1, 1])) == "supported"


# -- convergence ------------------------------------------------------------------------------------
def curve(epochs, loss, acc, stage=1):
    return [{"epoch": e + 1, "stage": stage, "train_loss": loss(e), "test_acc": acc(e)} for e in range(epochs)]


def test_a_plateau_converges():
    rows = curve(40, lambda e: 0.3 + 2.0 * math.exp(-e / 4), lambda e: 0.9 - 0.5 * math.exp(-e / 4) + 0.01 * (e % 2))
    c = convergence(rows)
    assert c.converged and c.loss_change < 0.05 and c.spread <= 0.05, c


def test_a_falling_loss_is_not_converged():
    rows = curve(40, lambda e: 2.0 - 0.04 * e, lambda e: 0.9)
    c = convergence(rows)
    assert not c.converged and "training loss still moves" in c.reasons[0]


def test_jumping_accuracies_are_not_converged():
    rows = curve(40, lambda e: 0.5, lambda e: [0.275, 0.75][e % 2])
    c = convergence(rows)
    assert not c.converged and c.spread == pytest.approx(0.475) and "span 47.5 points" in c.reasons[0]


def test_two_stages_are_checked_separately_and_too_short_runs_are_not_converged():
    stage1 = [{**r, "test_acc": None} for r in curve(20, lambda e: 3.0 - 0.1 * e, lambda e: None)]   # SupCon still falling
    stage2 = curve(10, lambda e: 0.4, lambda e: 0.8, stage=2)
    c = convergence(stage1 + stage2)
    assert not c.converged and any(r.startswith("stage 1") for r in c.reasons)
    assert not convergence(curve(3, lambda e: 1.0, lambda e: 0.5)).converged


def test_epochs_to_reach_95_percent_of_the_final_accuracy():
    rows = curve(10, lambda e: 1.0, lambda e: [0.1, 0.5, 0.8, 0.86, 0.9, 0.88, 0.9, 0.9, 0.9, 0.9][e])
    assert epochs_to_reach(rows) == 4          # 0.86 >= 0.95 * 0.9 = 0.855


# -- the ledger ---------------------------------------------------------------------------------------
def test_the_ledger_on_a_tiny_grid(synthetic_root, synthetic_bank, tmp_path, monkeypatch):
    from soundclr.experiment import run_grid
    from soundclr.plan import make_plan
    plan = make_plan("synthetic", "quick", size="tiny", device="cpu", results=str(tmp_path), data_root=str(synthetic_root),
                     folds=[1, 2], seeds=[0, 1])
    run_grid(plan.all_runs(), progress=False, verbose=False, bank=synthetic_bank)
    # every run "converged", so that every pair counts; the pairing is what this test checks
    monkeypatch.setattr(claims, "convergence", lambda rows, **k: claims.Convergence(True, 0.0, 0.0))
    led = claims.ledger(plan, bank=synthetic_bank, device="cpu").set_index("id")
    assert list(led.index) == claims.CLAIM_IDS
    assert set(led.verdict) <= set(claims.VERDICTS)
    # C1 by hand: hybrid minus cross-entropy, paired by (fold, seed)
    acc = {}
    for run in plan.main_runs():
        s = json.loads((run.directory / "summary.json").read_text())
        acc[(run.config.run.scheme, s["test_fold"], s["seed"])] = 100 * s["final"]["test_acc"]
    d = [acc[("hybrid", f, s)] - acc[("ce", f, s)] for f in (1, 2) for s in (0, 1)]
    assert led.loc["C1", "n"] == 4 and led.loc["C1", "effect"] == pytest.approx(np.mean(d))
    ref = scipy.stats.ttest_rel([acc[("hybrid", f, s)] for f in (1, 2) for s in (0, 1)],
                                [acc[("ce", f, s)] for f in (1, 2) for s in (0, 1)]).confidence_interval()
    if np.std(d) > 0:
        assert (led.loc["C1", "low"], led.loc["C1", "high"]) == pytest.approx((ref.low, ref.high))
    # no ImageNet weights for the tiny backbone: C5 is not testable, with the reason
    assert led.loc["C5a", "verdict"] == "not testable" and "offline" in led.loc["C5a", "note"]
    # C7: two seeds make an ensemble on each of the two folds
    assert led.loc["C7", "n"] == 2
    # an unconverged run leaves its pairs out, and the ledger says so
    monkeypatch.setattr(claims, "convergence", lambda rows, **k: claims.Convergence(False, 1.0, 1.0, ["moving"]))
    led = claims.ledger(plan, bank=synthetic_bank, device="cpu").set_index("id")
    assert led.loc["C1", "n"] == 0 and led.loc["C1", "excluded"] == 4 and led.loc["C1", "verdict"] == "inconclusive"
    assert "had not converged" in led.loc["C1", "note"]
    text = claims.conclusion(led.reset_index(), ["C1", "C5a"], plan)
    assert "**C1, the hybrid loss beats cross-entropy**: inconclusive" in text and "not testable" in text


def test_the_quick_preset_is_the_tuning_studys_choice():
    """The offline default's training settings are the ones studies/tune_quick.py chose on validation folds."""
    from soundclr.config import preset
    study = json.loads((ROOT / "studies" / "tune_quick.json").read_text())
    chosen = study["chosen_settings"]
    quick = preset("quick")
    for name, value in chosen.items():
        assert quick.get(name) == pytest.approx(value), name
    for name, value in study["base"].items():
        if name not in ("data_root", "device", "checkpoint_seconds", "dataset", "stage2_lr"):
            assert quick.get(name) == value, name
    assert quick.get("stage2_lr") is None        # stage 2 uses the same learning rate, as in the paper


def test_variant_tables_give_each_variant_its_interval_and_folds():
    """report.variant_table against a hand computation; variant_display keeps each row's fold count
    under its label in words (the ablation page once lost them to an index misalignment)."""
    import pandas as pd

    from soundclr.report import variant_display, variant_table
    df = pd.DataFrame({"variant": ["a", "a", "a", "b", "b"], "final_acc": [0.80, 0.90, 0.85, 0.70, 0.75]})
    t = variant_table(df, ["b", "a", "missing"])
    assert list(t.index) == ["b", "a"]
    acc = np.array([80.0, 90.0, 85.0])
    half = scipy.stats.t.ppf(0.975, 2) * acc.std(ddof=1) / math.sqrt(3)
    assert t.loc["a", "mean"] == pytest.approx(85.0) and t.loc["a", "low"] == pytest.approx(85.0 - half)
    shown = variant_display(t, {"a": "variant A"})
    assert list(shown.index) == ["b", "variant A"]
    assert list(shown["folds"]) == [2, 3]
    assert list(shown["accuracy, final epoch (%)"]) == ["72.50 ± 3.54", "85.00 ± 5.00"]
