"""soundclr.analysis.stats against scipy, hand computations and a simulation: the fold-level paired interval,
the Nadeau-Bengio correction and the floor-bounded rule, the analytic power (the simulator's cross-check), the
sign-flip test, Wilson's interval, the probability of improvement and its bootstrap interval, Holm's adjustment,
verdicts; and soundclr.analysis.calibration on cases whose answer is known."""
import math

import numpy as np
import pytest
import scipy.optimize
import scipy.stats

from soundclr.analysis.stats import (
    FoldInterval,
    clip_interval,
    cv_ratio,
    detectable_effect,
    fold_interval,
    holm,
    improvement_probability,
    one_sided_p,
    paper_position,
    improvement_interval,
    power,
    sign_flip_p,
    verdict,
    verdict_words,
    wilson,
)


def test_the_plain_fold_interval_is_scipys_paired_t_interval():
    rng = np.random.default_rng(0)
    a = rng.normal(80, 3, 5)
    b = a - rng.normal(1.0, 1.5, 5)
    got = fold_interval(a - b, ratio=0.25)
    ref = scipy.stats.ttest_rel(a, b).confidence_interval(0.95)
    assert got.n == 5 and got.effect == pytest.approx(float(np.mean(a - b)))
    assert (got.low, got.high) == pytest.approx((ref.low, ref.high))


def test_the_nadeau_bengio_interval_and_p_by_hand():
    d = [1.0, 2.0, 3.0, 4.0, 5.0]              # mean 3, sd sqrt(2.5), t(0.975, 4) = 2.7764451
    got = fold_interval(d, ratio=0.25, rule_name="nb")
    se_nb = math.sqrt(2.5) * math.sqrt(1 / 5 + 0.25)
    half = 2.7764451051977987 * se_nb
    assert (got.low_nb, got.high_nb) == pytest.approx((3.0 - half, 3.0 + half))
    assert got.p == pytest.approx(2 * scipy.stats.t.sf(3.0 / se_nb, 4))
    # the correction widens the plain interval by sqrt((1/k + ratio) / (1/k)) = 1.5 for five folds
    assert (got.high_nb - got.low_nb) / (got.high - got.low) == pytest.approx(1.5)
    # without correction, the p value is the one-sample t test's
    assert fold_interval(d, ratio=0.0, rule_name="nb").p == pytest.approx(scipy.stats.ttest_1samp(d, 0.0).pvalue)
    # the ledger's rule without a known floor is the plain test (floor-plain) or this one (floor-nb)
    assert fold_interval(d, ratio=0.25, rule_name="floor-plain").p == pytest.approx(got.p_plain)


def test_fewer_than_two_folds_give_no_interval():
    one = fold_interval([2.0], ratio=0.25)
    assert one.n == 1 and one.effect == 2.0 and not one.finite and verdict(one) == "inconclusive"
    assert "no interval" in verdict_words(one, "inconclusive", 1.0)
    assert fold_interval([], ratio=0.25).n == 0


def test_power_matches_a_simulated_t_test():
    """Power of the two-sided one-sample t test (5 folds, sd 1, true effect 1.2), against 20,000
    simulated experiments."""
    rng = np.random.default_rng(3)
    k, sd, effect = 5, 1.0, 1.2
    x = rng.normal(effect, sd, size=(20000, k))
    p = scipy.stats.ttest_1samp(x, 0.0, axis=1).pvalue
    simulated = float((p < 0.05).mean())
    assert power(effect, sd / math.sqrt(k), k - 1) == pytest.approx(simulated, abs=0.012)


def test_the_detectable_effect_has_80_percent_power():
    se, df = 0.7, 4
    d = detectable_effect(se, df)
    assert power(d, se, df) == pytest.approx(0.80, abs=1e-6)
    assert power(0.9 * d, se, df) < 0.80 < power(1.1 * d, se, df)


def test_holm_by_hand():
    # sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04, but at least 0.06)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    got = holm([0.5, math.nan, 0.01])             # NaN is not in the family
    assert math.isnan(got[1]) and got[0] == pytest.approx(0.5) and got[2] == pytest.approx(0.02)
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])   # 2 x 0.8 capped at 1; never below an earlier step
    assert holm([0.9, 0.3]) == pytest.approx([0.9, 0.6])


def test_cv_ratio():
    assert cv_ratio(5) == 0.25 and cv_ratio(10) == pytest.approx(1 / 9) and cv_ratio(5, validation=True) == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        cv_ratio(1)


def test_verdicts_use_the_rules_interval_and_say_cannot_tell():
    supported_plain_only = fold_interval([0.2, 1.8, 1.0, 0.6, 1.4], ratio=0.25, rule_name="nb")
    assert supported_plain_only.low > 0 > supported_plain_only.low_nb
    assert verdict(supported_plain_only) == "inconclusive"
    assert verdict(FoldInterval(1.0, 0.5, 1.5, 0.2, 1.8, 0.01, 5, 0.5, 1.0)) == "supported"
    assert verdict(FoldInterval(-1.0, -1.5, -0.5, -1.8, -0.2, 0.01, 5, 0.5, 1.0)) == "contradicted"
    # the words use the simulated power: low power at the paper's effect says "cannot tell"
    low = supported_plain_only.with_figures({"power": 0.3, "power_mc": 0.01, "detectable": 3.0})
    assert "cannot tell at this size" in verdict_words(low, "inconclusive", 1.0)
    high = supported_plain_only.with_figures({"power": 0.9, "power_mc": 0.01, "detectable": 0.5})
    assert verdict_words(high, "inconclusive", 1.0) == "inconclusive: the interval holds zero"
    # no second, unadjusted verdict about the paper's effect: where it lies is a description
    assert verdict_words(low, "inconclusive", None) == "inconclusive: the interval holds zero"
    assert paper_position(-1.0, 2.0, 5.0) == "the paper's effect lies above this interval"
    assert paper_position(-1.0, 2.0, 0.5) == "the paper's effect lies inside this interval"
    assert paper_position(-1.0, 2.0, None) == ""


def test_the_floor_bounds_the_rules_sd_from_below():
    """An SD of the fold differences below the noise floor is raised to it (floor-nb: then the Nadeau-Bengio factor);
    the plain interval beside it keeps the SD measured; above the floor nothing changes."""
    from soundclr.analysis import rule
    d = [1.0, 2.0, 3.0, 4.0, 5.0]                          # sd^2 = 2.5
    crit = scipy.stats.t.ppf(0.975, 4)
    low_floor = fold_interval(d, ratio=0.25, floor_var=1.0, rule_name="floor-nb")
    assert low_floor.high_nb - 3.0 == pytest.approx(crit * math.sqrt(2.5 * 0.45))
    high_floor = fold_interval(d, ratio=0.25, floor_var=10.0, rule_name="floor-nb")
    assert high_floor.high_nb - 3.0 == pytest.approx(crit * math.sqrt(10.0 * 0.45))
    assert high_floor.high - 3.0 == pytest.approx(crit * math.sqrt(2.5 / 5))       # the plain one: measured SD
    plain_floor = fold_interval(d, ratio=0.25, floor_var=10.0, rule_name="floor-plain")
    assert plain_floor.high_nb - 3.0 == pytest.approx(crit * math.sqrt(10.0 / 5))
    assert set(rule.RULES) == {"plain", "nb", "floor-plain", "floor-nb"} and rule.RULE in rule.RULES
    with pytest.raises(ValueError, match="rule='x' is not valid"):
        fold_interval(d, ratio=0.25, rule_name="x")


def test_the_sign_flip_test_by_enumeration():
    # five positive folds: only the observed pattern and its mirror are as extreme, 2 / 32
    assert sign_flip_p([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(2 / 32)
    assert sign_flip_p([1.0, -1.0]) == 1.0
    # |mean| >= 3/3 for the patterns (+,+,+), (-,-,-) and those flipping only the smallest... by hand:
    d = [3.0, 1.0, 1.0]
    means = [abs(a * 3 + b * 1 + c * 1) / 3 for a in (1, -1) for b in (1, -1) for c in (1, -1)]
    assert sign_flip_p(d) == pytest.approx(np.mean([m >= 5 / 3 - 1e-12 for m in means]))
    assert fold_interval([1.0, 2.0, 3.0, 4.0, 5.0], ratio=0.25).p_signflip == pytest.approx(0.0625)


def test_wilson_interval_against_its_formula_and_edges():
    lo, hi = wilson(2, 40)
    # the Wilson interval is the set of rates p the score test does not reject: |2/40 - p| <= z sqrt(p (1 - p) / 40)
    z = scipy.stats.norm.ppf(0.975)
    score = lambda p: abs(2 / 40 - p) - z * math.sqrt(p * (1 - p) / 40)          # noqa: E731
    ref = (scipy.optimize.brentq(score, 1e-9, 2 / 40), scipy.optimize.brentq(score, 2 / 40, 1 - 1e-9))
    assert (lo, hi) == pytest.approx(ref, abs=1e-9)
    assert wilson(0, 20)[0] == 0.0 and wilson(20, 20)[1] == 1.0


def test_probability_of_improvement_counts_pairs_within_folds():
    prob, won, folds = improvement_probability([[3, 1], [5]], [[2, 2], [5]])
    # fold 1: (3>2, 3>2, 1<2, 1<2) = 2 of 4; fold 2: a tie = 1/2; in all 2.5 of 5
    assert prob == pytest.approx(0.5) and won == 0 and folds == 2
    assert improvement_probability([[2.0]], [[1.0]]) == (1.0, 1, 1)


def test_the_improvement_interval_is_a_stratified_bootstrap():
    """Runs are resampled within their fold: a side that wins every pair in every resample has [1, 1]; a mixed
    design's interval holds its estimate, and a brute-force resampling loop gives the same quantiles."""
    assert improvement_interval([[3, 4], [5, 6]], [[1, 2], [0, 1]]) == (1.0, 1.0)
    left, right = [[3.0, 1.0, 2.0], [5.0, 4.0]], [[2.0, 2.5], [4.5, 6.0, 3.0]]
    lo, hi = improvement_interval(left, right, reps=4000, seed=1)
    est = improvement_probability(left, right)[0]
    assert lo <= est <= hi and lo < hi
    rng = np.random.default_rng(2)
    ref = []
    for _ in range(4000):
        a = [list(rng.choice(x, len(x))) for x in left]
        b = [list(rng.choice(x, len(x))) for x in right]
        ref.append(improvement_probability(a, b)[0])
    assert (lo, hi) == pytest.approx(tuple(np.quantile(ref, [0.025, 0.975])), abs=0.04)


def test_one_sided_p_from_the_two_sided_one():
    pos = fold_interval([1.0, 2.0, 3.0, 4.0, 5.0], ratio=0.25)
    neg = fold_interval([-1.0, -2.0, -3.0, -4.0, -5.0], ratio=0.25)
    assert one_sided_p(pos) == pytest.approx(pos.p / 2) and one_sided_p(neg) == pytest.approx(1 - neg.p / 2)


def test_clip_interval_is_a_plain_paired_interval_over_clips():
    d = np.array([0, 100, -100, 0, 100, 0, 0, 100], dtype=float)
    got = clip_interval(d, level=0.99)
    ref = scipy.stats.ttest_1samp(d, 0.0).confidence_interval(0.99)
    assert (got.low_nb, got.high_nb) == pytest.approx((ref.low, ref.high))


def _table(acc_by_seed: dict[int, float], folds: int = 5, clips: int = 10):
    """A correctness table in which seed s gets the first round(acc * clips) clips of every fold right."""
    import pandas as pd
    rows = [{"scheme": "ce", "fold": f, "seed": s, "acc": 100 * a, "seconds": 1.0,
             "correct": (np.arange(clips) < round(a * clips)).astype(float)}
            for f in range(1, folds + 1) for s, a in acc_by_seed.items()]
    return pd.DataFrame(rows)


def test_calibration_counts_each_rule_on_a_case_with_a_known_answer():
    from soundclr.analysis.calibration import arms, calibrate
    # comparison 0: seed 0 at 20 %, seed 1 at 90 % on every fold (arm A is 70 points worse, the same on every fold);
    # comparison 1: seeds 2 and 3 identical (no difference at all)
    got = calibrate(_table({0: 0.2, 1: 0.9, 2: 0.5, 3: 0.5}), arm_sizes=(1, 2), sims=200, planted_points=10.0)
    assert arms([0, 1, 2, 3], 1) == [([0], [1]), ([2], [3])] and arms([0, 1, 2, 3], 2) == [([0, 1], [2, 3])]
    one = got["arms"]["1"]
    assert one["comparisons"] == 2
    # every rule rejects comparison 0 (its folds all differ by -70, the floor is small beside that) and not 1
    assert {r["hits"] for r in one["false_positive"].values()} == {1}
    assert {r["hits"] for r in one["coverage"].values()} == {1}
    assert one["fold_differences"] == [[-70.0] * 5, [0.0] * 5]
    # two seeds per arm: (0, 1) against (2, 3): 55 % against 50 % on every fold, SD 0; only the floor-bounded
    # rules see the clip-by-clip noise (seeds 0 and 1 disagree on 7 of 10 clips) and hold back
    two = got["arms"]["2"]["false_positive"]
    assert two["plain"]["hits"] == 1 and two["nb"]["hits"] == 1
    assert two["floor-plain"]["hits"] == 0 and two["floor-nb"]["hits"] == 0
    assert got["arms"]["2"]["c9"]["margin"] == 10.0          # one clip of a 10-clip fold


def test_planting_marks_the_chosen_clips_wrong_in_every_run():
    from soundclr.analysis.calibration import plant
    correct = np.array([[1, 1, 0, 1], [0, 1, 1, 1]], dtype=float)
    got = plant(correct, np.array([1, 3]))
    assert got.tolist() == [[1, 0, 0, 0], [0, 0, 1, 0]] and correct[0, 1] == 1      # a copy; wrong stays wrong
