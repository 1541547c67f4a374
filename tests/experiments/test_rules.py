"""The decision rules: each can say SUPPORTED, NOT SUPPORTED and INCONCLUSIVE, and says which on what data."""

import numpy as np
import pytest

from winning_ticket.experiments import rules


def test_interval_rules_give_all_three_verdicts():
    assert rules.above(0.5, 0.2, 0.8, 20, 0.0).verdict == "SUPPORTED"
    assert rules.above(-0.5, -0.8, -0.2, 20, 0.0).verdict == "NOT SUPPORTED"
    assert rules.above(0.1, -0.1, 0.3, 20, 0.0).verdict == "INCONCLUSIVE"
    assert rules.above(0.5, 0.2, 0.8, 3, 0.0).verdict == "INCONCLUSIVE"  # too few units
    assert rules.below(0.5, 0.4, 0.6, 20, 1.0).verdict == "SUPPORTED"
    assert rules.within(0.5, 0.4, 0.6, 20, 0.35, 0.65).verdict == "SUPPORTED"
    assert rules.within(0.9, 0.8, 1.0, 20, 0.35, 0.65).verdict == "NOT SUPPORTED"
    assert rules.within(0.6, 0.5, 0.7, 20, 0.35, 0.65).verdict == "INCONCLUSIVE"
    with pytest.raises(ValueError, match="lower < upper"):
        rules.within(0.5, 0.4, 0.6, 20, 1.0, 0.0)


def test_paired_difference_on_true_false_and_thin_data():
    rng = np.random.default_rng(0)
    base = rng.normal(size=40)
    better = base + 0.5 + 0.1 * rng.normal(size=40)
    assert rules.paired_difference(better, base, lower=0.0).verdict == "SUPPORTED"
    assert rules.paired_difference(base, better, lower=0.0).verdict == "NOT SUPPORTED"
    noise = base + 0.3 * rng.normal(size=40)
    assert rules.paired_difference(noise, base, lower=0.0).verdict == "INCONCLUSIVE"
    thin = rules.paired_difference(better[:3], base[:3], lower=0.0)
    assert thin.verdict == "INCONCLUSIVE" and "needs at least 5" in thin.reason
    with pytest.raises(ValueError, match="paired"):
        rules.paired_difference(base, better[:5], lower=0.0)


def test_rate_rule_uses_the_wilson_interval():
    assert rules.rate_at_least(60, 60, 0.9).verdict == "SUPPORTED"
    assert rules.rate_at_least(20, 60, 0.9).verdict == "NOT SUPPORTED"
    assert rules.rate_at_least(7, 8, 0.9, min_units=5).verdict == "INCONCLUSIVE"  # 7 of 8 cannot decide
    assert rules.rate_at_least(4, 4, 0.9).verdict == "INCONCLUSIVE"  # too few trials


def test_cluster_slope_resamples_whole_units():
    rng = np.random.default_rng(2)
    x = np.tile(np.arange(5.0), 30)
    units = np.repeat(np.arange(30), 5)
    offsets = rng.normal(size=30)[units] * 3.0  # a large per-unit effect, shared by its points
    y = 0.5 * x + offsets + 0.01 * rng.normal(size=x.size)
    slope, lo, hi, n = rules.cluster_slope(x, y, units, seed=0)
    assert n == 30 and lo < 0.5 < hi and hi - lo < 0.05
    assert rules.within(slope, lo, hi, n, 0.4, 0.6).verdict == "SUPPORTED"
    flat = rules.cluster_slope(x, offsets, units, seed=0)
    assert rules.above(*flat, threshold=0.1).verdict == "NOT SUPPORTED"
    one_x = rules.cluster_slope(np.ones(10), np.arange(10.0), np.arange(10), seed=0)
    assert np.isnan(one_x[0]) and rules.above(*one_x, threshold=0.0).verdict == "INCONCLUSIVE"


def test_holm_and_sign_test():
    np.testing.assert_allclose(rules.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    assert rules.sign_test_p(np.ones(10)) < 0.01 and rules.sign_test_p([1, -1, 1, -1]) == 1.0
    with pytest.raises(ValueError):
        rules.holm([1.5])


def test_a_decision_becomes_a_claim():
    d = rules.above(0.5, 0.2, 0.8, 20, 0.0)
    c = d.claim("x", "x is positive", "95% CI above 0", what="slope")
    assert c.verdict == "SUPPORTED" and "slope = 0.5 [0.2, 0.8] (95% CI, 20 units)" in c.statistic


def test_mean_interval_is_a_t_interval():
    est, lo, hi = rules.mean_interval([1.0, 2.0, 3.0])
    assert est == 2.0 and lo == pytest.approx(2 - 4.302653 / np.sqrt(3), rel=1e-6)
    assert np.isnan(rules.mean_interval([1.0])[1])
    with pytest.raises(ValueError, match="successes"):
        rules.rate_at_least(5, 4, 0.5)


def test_at_every_needs_every_point_and_fails_on_any():
    from winning_ticket.experiments.claims import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED
    from winning_ticket.experiments.rules import at_every, bonferroni_level, paired_difference

    level = bonferroni_level(3)
    assert level == pytest.approx(1 - 0.05 / 3)
    rng = np.random.default_rng(0)
    good = {n: paired_difference(rng.normal(1.0, 0.1, 20), np.zeros(20), lower=0.0, level=level) for n in (1, 2, 3)}
    assert at_every(good).verdict == SUPPORTED
    one_bad = dict(good, bad=paired_difference(rng.normal(-1.0, 0.1, 20), np.zeros(20), lower=0.0, level=level))
    d = at_every(one_bad)
    assert d.verdict == NOT_SUPPORTED and "fails at bad" in d.reason
    unclear = dict(good, few=paired_difference(rng.normal(1.0, 0.1, 3), np.zeros(3), lower=0.0, level=level))
    d = at_every(unclear)
    assert d.verdict == INCONCLUSIVE and "undecided at few" in d.reason and d.units == 3
    straddle = dict(good, noisy=paired_difference(rng.normal(0.0, 1.0, 20), np.zeros(20), lower=0.0, level=level))
    assert at_every(straddle).verdict in (INCONCLUSIVE, NOT_SUPPORTED)
    with pytest.raises(ValueError, match="at least one"):
        at_every({})
    with pytest.raises(ValueError, match="points"):
        bonferroni_level(0)


def test_a_wider_level_widens_the_interval():
    from winning_ticket.experiments.rules import mean_interval

    v = np.random.default_rng(1).normal(0, 1, 12)
    _, lo95, hi95 = mean_interval(v)
    _, lo99, hi99 = mean_interval(v, 0.99)
    assert lo99 < lo95 and hi99 > hi95
    with pytest.raises(ValueError, match="level"):
        mean_interval(v, 1.0)
