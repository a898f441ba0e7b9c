"""The noise model, the simulator and the batched rule (soundclr.analysis.noise, simulate, rule, power, planning):
known answers, recovery of known components, the analytic power as a cross-check, and the book's promise that
every printed power figure is the simulated rejection rate of the rule it names (the old formula must fail that)."""
import json
import math
import re

import numpy as np
import pytest
import scipy.stats
import torch

from soundclr.analysis import rule
from soundclr.analysis.noise import NoiseModel, SideNoise, clip_variance, fit, phi2, seed_variance
from soundclr.analysis.power import clip_figures, pair_decider
from soundclr.analysis.simulate import Design, centred, clip_experiments, rate, seeds_needed
from soundclr.analysis.stats import power as analytic_power


def model(train=0.0, acc=(0.88, 0.85), r_run=(0.02, 0.0), shared=0.0):
    return NoiseModel(sides={"a": SideNoise(acc=acc[0], r_same=0.85, r_run=r_run[0], a=0.8, train=train),
                             "b": SideNoise(acc=acc[1], r_same=0.80, r_run=r_run[1], a=0.75, train=train)},
                      folds=5, clips=200, shared=shared)


def sides_of(folds, names=("a", "b")):
    return {s: [f[s][0] for f in folds] for s in names}


def test_phi2_known_answers():
    for r in (-0.5, 0.1, 0.5, 0.9):
        assert phi2(0.0, 0.0, r) == pytest.approx(0.25 + math.asin(r) / (2 * math.pi), abs=1e-9)
    mvn = scipy.stats.multivariate_normal(mean=[0, 0], cov=[[1, 0.3], [0.3, 1]])
    assert phi2(0.7, 0.7, 0.3) == pytest.approx(mvn.cdf([0.7, 0.7]), abs=1e-6)
    assert phi2(1.2, -0.4, 0.0) == pytest.approx(scipy.stats.norm.cdf(1.2) * scipy.stats.norm.cdf(-0.4), abs=1e-6)


def test_the_fit_recovers_known_components():
    """Runs simulated from a model with known latent correlations, run shift and training-set term (many folds, so
    the moments are precise): the fit recovers them, and the variance terms of a fold difference with them."""
    true = model(train=1.5)
    design = Design(clips=(200,) * 60, runs={"a": 4, "b": 4})
    folds = clip_experiments(true, design, 1, np.random.default_rng(1))
    got = fit(sides_of(folds), train_pairs=[("a", "b")])
    for s in ("a", "b"):
        assert got.sides[s].acc == pytest.approx(true.sides[s].acc, abs=0.01)
        assert got.sides[s].r_same == pytest.approx(true.sides[s].r_same, abs=0.03)
        assert got.sides[s].r_run == pytest.approx(true.sides[s].r_run, abs=0.01)
    assert got.sides["a"].a * got.sides["b"].a == pytest.approx(0.8 * 0.75, abs=0.04)
    t_true, t_got = true.terms("a", "b"), got.terms("a", "b")
    assert t_got["seed"] == pytest.approx(t_true["seed"], rel=0.1)
    assert t_got["clip"] == pytest.approx(t_true["clip"], rel=0.25)
    assert t_got["train"] == pytest.approx(t_true["train"], abs=1.5)      # 60 folds: a 59-df estimate


def test_the_model_moments_match_simulated_runs():
    """The closed forms the fit inverts, against the simulator: the seed variance of a run's accuracy and the
    variance over clips of the per-clip accuracy difference."""
    m = model()
    design = Design(clips=(200,) * 200, runs={"a": 3, "b": None})
    folds = clip_experiments(m, design, 1, np.random.default_rng(2))
    runs = np.stack([f["a"][0].mean(axis=1) for f in folds])          # (folds, runs)
    assert runs.var(axis=1, ddof=1).mean() == pytest.approx(seed_variance(0.88, 0.85, 0.02, 200), rel=0.15)
    exact = clip_experiments(m, Design(clips=(4000,), runs={"a": None, "b": None}), 1, np.random.default_rng(3))[0]
    assert np.var(exact["a"][0, 0] - exact["b"][0, 0]) == pytest.approx(clip_variance(m.sides["a"], m.sides["b"]),
                                                                        rel=0.1)


def test_the_batched_rule_equals_one_experiment_at_a_time():
    folds = clip_experiments(model(train=1.0), Design(clips=(80, 70, 90), runs={"a": 2, "b": 3}), 6,
                             np.random.default_rng(4))
    batch = rule.compare([f["a"] for f in folds], [f["b"] for f in folds], clips=True, ratio=0.5)
    for i in range(6):
        one = rule.compare([f["a"][i] for f in folds], [f["b"][i] for f in folds], clips=True, ratio=0.5)
        for key in ("effect", "low", "high", "p", "verdict"):
            assert one[key][0] == pytest.approx(batch[key][i])


def test_the_noise_floor_holds_the_clip_and_seed_terms():
    """Without a training-set term the fold differences vary by clips and seeds only: the floor's mean is their
    variance, erring high only by its guard (a side's seed part never below its binomial spread), so the
    floor-bounded rule raises an SD that fell below the noise by chance and no more."""
    m = model()
    folds = clip_experiments(m, Design(clips=(200,) * 5, runs={"a": 2, "b": 2}), 3000, np.random.default_rng(5))
    terms = rule.fold_terms([f["a"] for f in folds], [f["b"] for f in folds], clips=True)
    floor = rule.floor_variance(terms)
    variance = terms["d"].var(axis=1, ddof=1).mean()
    assert 0.97 * variance <= floor.mean() <= 1.10 * variance
    t = m.terms("a", "b", seeds=2)
    assert 0.95 * (t["clip"] + t["seed"]) <= floor.mean() <= 1.12 * (t["clip"] + t["seed"])
    # without the guard (each side's seed part its measured variance alone) the floor is unbiased
    unguarded = {**terms, "binom_left": np.zeros_like(terms["clip"]), "binom_right": np.zeros_like(terms["clip"])}
    assert rule.floor_variance(unguarded).mean() == pytest.approx(variance, rel=0.05)


def test_the_simulated_power_of_the_plain_rule_matches_the_noncentral_t():
    """The analytic cross-check: fold differences are nearly normal with the model's variance, so the plain t
    test's simulated power is the noncentral t's at that variance."""
    m = model(train=1.0)
    k, seeds, effect = 5, 2, 3.0
    t = m.terms("a", "b", seeds=seeds)
    se = math.sqrt((t["clip"] + t["seed"] + t["train"]) / k)
    mm = m.with_accuracy(centred({s: v.acc for s, v in m.sides.items()}, "a", "b", effect))
    design = Design(clips=(200,) * k, runs={"a": seeds, "b": seeds})
    got = rate(lambda b, rng: clip_experiments(mm, design, b, rng), pair_decider("a", "b", ratio=0.25, rule_name="plain"),
               sims=6000, seed=1)
    assert got["rate"] == pytest.approx(analytic_power(effect, se, k - 1), abs=4 * got["mc"] + 0.02)


def test_seeds_needed_searches_a_rising_power():
    assert seeds_needed(lambda r: 1.0 if r is None else min(1.0, 0.1 * r), most=20)["need"] == 8
    out = seeds_needed(lambda r: 0.5 if r is None else 0.4, most=20)
    assert out["need"] is None and out["ceiling"] == 0.5


def _printed_power(row_text: str) -> float:
    import html
    return float(re.search(r"power at the paper's [\d.]+: (\d+) %", html.unescape(row_text)).group(1)) / 100


def test_each_printed_power_is_the_simulated_rejection_rate_of_its_rule():
    """The ledger row's printed power, recomputed independently: the model refitted to the same runs, fresh random
    numbers, the rule the row names. They agree within Monte Carlo error; the noncentral-t formula of the old page
    (the Nadeau-Bengio SE from the measured SD) does not, so the check would catch a formula that drifted."""
    import pandas as pd

    from soundclr.analysis.rows import Evidence
    from soundclr.book.prose import ledger_html
    from soundclr.config import preset

    truth = model(train=0.5)
    folds = clip_experiments(truth, Design(clips=(80,) * 5, runs={"a": 2, "b": 2}), 1, np.random.default_rng(8))
    sides = sides_of(folds)
    paper = 6.0
    figs = clip_figures(sides, "a", "b", ratio=0.25, paper=paper, with_band=False)
    terms = rule.fold_terms(sides["a"], sides["b"], clips=True)
    from soundclr.analysis.stats import fold_interval
    interval = fold_interval(terms["d"][0], ratio=0.25, floor_var=float(rule.floor_variance(terms)[0])).with_figures(figs)

    class Plan:
        config = preset("quick")
    L = Evidence(Plan())
    L.add("C1", interval, runs=20, same_schedule=True)
    row = pd.DataFrame(L.rows).iloc[0].to_dict()
    row["paper"] = paper
    printed = _printed_power(ledger_html(pd.DataFrame([row]), "synthetic"))
    refit = fit(sides, train_pairs=[("a", "b")], shared=0.0)
    mm = refit.with_accuracy(centred({s: v.acc for s, v in refit.sides.items()}, "a", "b", paper))
    design = Design(clips=(80,) * 5, runs={"a": 2, "b": 2})
    rerun = rate(lambda b, rng: clip_experiments(mm, design, b, rng), pair_decider("a", "b", ratio=0.25,
                                                                                  rule_name=interval.rule),
                 sims=4000, seed=99)

    def matches(figure: float) -> bool:
        return abs(figure - rerun["rate"]) <= 4 * math.hypot(rerun["mc"], figs["power_mc"]) + 0.01    # printed: whole %

    assert matches(printed)
    old = analytic_power(paper, interval.sd * math.sqrt(1 / 5 + 0.25), 4)        # the page's formula before
    assert not matches(old)


def _write_run(results, scheme, fold, seed, correct):
    from soundclr.config import preset
    from soundclr.runs.store import run_dir
    cfg = preset("quick", dataset="synthetic", scheme=scheme, test_fold=fold, seed=seed)
    d = run_dir(results, "main", cfg)
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"identity": cfg.identity(), "config": cfg.to_dict()}))
    n = len(correct)
    labels = torch.arange(n) % 10
    pred = torch.where(torch.as_tensor(correct) > 0, labels, (labels + 1) % 10)
    probs = torch.nn.functional.one_hot(pred, 10).float()
    torch.save({"probs": probs, "labels": labels, "indices": torch.arange(n)}, d / "outputs.pt")
    acc = float(np.mean(correct))
    (d / "summary.json").write_text(json.dumps({
        "dataset": "synthetic", "scheme": scheme, "test_fold": fold, "seed": seed, "epochs": 80,
        "final": {"test_acc": acc}, "best_on_test": {"test_acc": acc, "epoch": 80}, "best_on_validation": None,
        "seconds": 1.0, "n_test": n}))


def test_plan_fits_a_simulated_results_folder_with_known_components(tmp_path, capsys):
    """``soundclr plan`` on a results folder whose runs were drawn from a known model: its printed variance terms
    are the model's, its power is the rule's simulated power under the known model, and --slurm writes the array
    job for the design it recommends."""
    from soundclr.analysis.planning import plan_report
    from soundclr.cli import main
    sides = {"hybrid": SideNoise(0.9, 0.85, 0.0, 0.85), "ce": SideNoise(0.86, 0.85, 0.0, 0.85),
             "supcon": SideNoise(0.88, 0.85, 0.0, 0.85)}
    truth = NoiseModel(sides=sides, folds=5, clips=80, shared=0.25)
    design = Design(clips=(80,) * 5, runs={s: 6 for s in sides})
    folds = clip_experiments(truth, design, 1, np.random.default_rng(11))
    for f, fold in enumerate(folds, start=1):
        for s in sides:
            for j in range(6):
                _write_run(tmp_path, s, f, j, fold[s][0, j])
    report = plan_report(tmp_path, "synthetic", effect=4.0)
    row = next(r for r in report["rows"] if r["claim"] == "C1")
    want = truth.terms("hybrid", "ce")
    assert row["seed"] == pytest.approx(want["seed"], rel=0.35) and row["train"] < 2.0
    # its power: the rule's simulated rate under the true model, within Monte Carlo error and the fit's error
    mm = truth.with_accuracy({"hybrid": 0.88 + 0.02, "ce": 0.88 - 0.02})
    true_power = rate(lambda b, rng: clip_experiments(mm, Design(clips=(80,) * 5, runs={"hybrid": 5, "ce": 5}), b, rng),
                      pair_decider("hybrid", "ce", ratio=0.25), sims=2000, seed=5)["rate"]
    assert row["power"] == pytest.approx(true_power, abs=0.15)
    assert main(["plan", "--results", str(tmp_path), "--dataset", "synthetic", "--effect", "4", "--slurm"]) == 0
    out = capsys.readouterr().out
    assert "C1 at +4.00 points" in out and "wrote" in out
    script = next((tmp_path / "slurm").glob("soundclr-synthetic-decisive-*.sbatch")).read_text()
    assert "--schemes ce,supcon,hybrid" in script and "--folds 1,2,3,4,5" in script


def test_plan_says_what_to_train_when_the_folder_is_empty(tmp_path, capsys):
    from soundclr.cli import main
    assert main(["plan", "--results", str(tmp_path), "--dataset", "synthetic"]) == 2
    err = capsys.readouterr().err
    assert "holds no finished run" in err and "soundclr train --dataset synthetic" in err


def test_the_draws_check_and_the_rule_choice_on_known_answers():
    """draws_check: independent draws whose fold differences are independent normals (no shared part): the
    across-draw variance matches the plain estimate (ratio near 1), the Nadeau-Bengio one overstates it (near
    1 / 2.25), and the plain interval covers about 95 %. choose_rule picks the most powerful rule that passes."""
    from soundclr.analysis.calibration import choose_rule, draws_check
    rng = np.random.default_rng(0)
    draws = [{"d": list(rng.normal(1.0, 2.0, 5)), "floor": 0.0} for _ in range(400)]
    got = draws_check(draws, ratio=0.25)
    assert got["rules"]["plain"]["ratio"] == pytest.approx(1.0, abs=0.15)
    assert got["rules"]["nb"]["ratio"] == pytest.approx(1 / 2.25, abs=0.08)
    assert got["rules"]["plain"]["coverage"]["rate"] == pytest.approx(0.95, abs=0.03)
    cal = {"schemes": {"ce": {"arms": {"2": {"simulated": {
        "plain": {"rate": 0.08, "mc": 0.004}, "floor-plain": {"rate": 0.02, "mc": 0.002},
        "nb": {"rate": 0.01, "mc": 0.002}, "floor-nb": {"rate": 0.001, "mc": 0.001}}}},
        "planted": {"power_by_rule": {"plain": 0.9, "floor-plain": 0.8, "nb": 0.5, "floor-nb": 0.3}}}}}
    best, why = choose_rule(cal, got)
    assert best == "floor-plain" and any("`floor-plain` passes" in w for w in why)
    cal["schemes"]["ce"]["arms"]["2"]["simulated"]["floor-plain"] = {"rate": 0.09, "mc": 0.004}
    best, why = choose_rule(cal, got)
    assert best == "floor-nb" and any("`floor-plain` is ruled out: its simulated A/A size exceeds 5 %" in w for w in why)
