"""soundclr.analysis.stats against scipy, hand computations and a simulation: the fold-level paired interval,
the Nadeau-Bengio correction, power and the detectable effect, Holm's adjustment, verdicts."""
import math

import numpy as np
import pytest
import scipy.stats

from soundclr.analysis.stats import (
    FoldInterval,
    clip_interval,
    cv_ratio,
    detectable_effect,
    fold_interval,
    holm,
    power,
    verdict,
    verdict_words,
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
    got = fold_interval(d, ratio=0.25)
    se_nb = math.sqrt(2.5) * math.sqrt(1 / 5 + 0.25)
    half = 2.7764451051977987 * se_nb
    assert (got.low_nb, got.high_nb) == pytest.approx((3.0 - half, 3.0 + half))
    assert got.p == pytest.approx(2 * scipy.stats.t.sf(3.0 / se_nb, 4))
    # the correction widens the plain interval by sqrt((1/k + ratio) / (1/k)) = 1.5 for five folds
    assert (got.high_nb - got.low_nb) / (got.high - got.low) == pytest.approx(1.5)
    # without correction, the p value is the one-sample t test's
    assert fold_interval(d, ratio=0.0).p == pytest.approx(scipy.stats.ttest_1samp(d, 0.0).pvalue)


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
    got = fold_interval([1.0, 2.0, 3.0, 4.0, 5.0], ratio=0.25, reference=1.0)
    assert got.detectable == pytest.approx(detectable_effect(math.sqrt(2.5 * 0.45), 4))
    assert got.power == pytest.approx(power(1.0, math.sqrt(2.5 * 0.45), 4))


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


def test_verdicts_use_the_corrected_interval_and_say_cannot_tell():
    supported_plain_only = FoldInterval(1.0, 0.2, 1.8, -0.3, 2.3, 0.1, 5, 1.0, 3.0)
    assert verdict(supported_plain_only) == "inconclusive"
    assert verdict(FoldInterval(1.0, 0.5, 1.5, 0.2, 1.8, 0.01, 5, 0.5, 1.0)) == "supported"
    assert verdict(FoldInterval(-1.0, -1.5, -0.5, -1.8, -0.2, 0.01, 5, 0.5, 1.0)) == "contradicted"
    words = verdict_words(supported_plain_only, "inconclusive", 1.0)
    assert "cannot tell at this size" in words
    assert "not the paper's effect" in verdict_words(supported_plain_only, "inconclusive", 5.0)
    assert verdict_words(supported_plain_only, "inconclusive", None) == "inconclusive: the interval holds zero"


def test_clip_interval_is_a_plain_paired_interval_over_clips():
    d = np.array([0, 100, -100, 0, 100, 0, 0, 100], dtype=float)
    got = clip_interval(d, level=0.99)
    ref = scipy.stats.ttest_1samp(d, 0.0).confidence_interval(0.99)
    assert (got.low_nb, got.high_nb) == pytest.approx((ref.low, ref.high))
