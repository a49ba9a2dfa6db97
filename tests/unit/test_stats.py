"""Statistics against values computed by hand."""

import math

import numpy as np
import pytest

from embedperf.measure import stoprule
from embedperf.measure.stats import ForkStats, Stats, hierarchical_medians, ratio_ci


def ns(ms_values):
    return tuple(int(v * 1e6) for v in ms_values)


def test_summary_matches_hand_computed_values():
    s = Stats(ns([1, 2, 3, 4, 10]))
    assert s.n == 5
    assert s.median_ms == pytest.approx(3.0)
    assert s.mean_ms == pytest.approx(4.0)
    # sample stdev: deviations -3,-2,-1,0,6 -> squares 9+4+1+0+36 = 50; 50/4 = 12.5
    assert s.stdev_ms == pytest.approx(math.sqrt(12.5))
    assert s.cv == pytest.approx(math.sqrt(12.5) / 4.0)
    # linear interpolation: p90 at rank 0.9*4 = 3.6 -> 4 + 0.6*(10-4) = 7.6
    assert s.p90_ms == pytest.approx(7.6)
    # p99 at rank 3.96 -> 4 + 0.96*6 = 9.76
    assert s.p99_ms == pytest.approx(9.76)


def test_single_sample_edge_case():
    s = Stats(ns([2.5]))
    assert s.median_ms == s.mean_ms == s.p99_ms == pytest.approx(2.5)
    assert s.stdev_ms == 0.0
    assert s.ci_ms == (pytest.approx(2.5), pytest.approx(2.5))


def test_ratio_ci_of_a_known_slowdown():
    rng = np.random.default_rng(2)
    base = rng.normal(10.0, 0.2, size=300)
    slow = base * 1.2
    ratio, low, high = ratio_ci(slow, base)
    assert ratio == pytest.approx(1.2, rel=1e-9)
    assert low < 1.2 < high
    assert low > 1.15 and high < 1.25


def test_ratio_ci_of_identical_series_brackets_one():
    rng = np.random.default_rng(3)
    x = rng.normal(10.0, 0.5, size=200)
    ratio, low, high = ratio_ci(x, x)
    assert ratio == 1.0
    assert low < 1.0 < high  # the two sides are resampled independently


def test_the_stored_ci_is_the_stopping_rules_ci():
    """One CI, computed one way: a fork's stored interval is exactly what its stopping rule saw."""
    rng = np.random.default_rng(4)
    samples = tuple(int(v) for v in rng.normal(5e6, 2e5, size=137))
    median, low, high = stoprule.median_ci(samples)
    s = Stats(samples)
    assert s.ci_ms == (low / 1e6, high / 1e6)
    assert s.median_ms == median / 1e6
    cell = ForkStats.of([samples])  # one fork: the cell's CI is the fork's
    assert cell.ci_ms == s.ci_ms
    assert cell.median_ms == s.median_ms


def test_hierarchical_bootstrap_of_three_constant_forks():
    """Forks of 10, 10 and 20 ms with no spread inside: the cell median is 10; a resample's median is 20
    exactly when at least two of its three fork picks are the third fork, P = 3·(1/3)²·(2/3) + (1/3)³ = 7/27."""
    forks = [[10_000_000] * 30, [10_000_000] * 25, [20_000_000] * 40]
    cell = ForkStats.of(forks)
    assert cell.median_ms == 10.0
    values = cell.distribution_ms
    assert set(np.unique(values)) == {10.0, 20.0}
    share = float(np.mean(values == 20.0))
    assert share == pytest.approx(7 / 27, abs=0.045)  # B = 1000: sd of the share ~0.014
    assert cell.ci_ms == (10.0, 20.0)  # the interval covers both modes


def test_hierarchical_bootstrap_of_two_forks_averages_the_middle():
    """k = 2: a resample's value is the mean of its two picks: 10 (1/4), 15 (1/2), 20 (1/4)."""
    values = hierarchical_medians([[10_000_000] * 9, [20_000_000] * 9]) / 1e6
    assert set(np.unique(values)) == {10.0, 15.0, 20.0}
    assert float(np.mean(values == 15.0)) == pytest.approx(0.5, abs=0.05)
    assert float(np.mean(values == 10.0)) == pytest.approx(0.25, abs=0.05)


def test_forks_in_two_modes_are_flagged_and_agreeing_forks_are_not():
    rng = np.random.default_rng(5)

    def fork(ms):
        return [int(v) for v in rng.normal(ms * 1e6, ms * 1e6 * 0.01, size=80)]

    modes = ForkStats.of([fork(16.5), fork(16.6), fork(20.7)])
    assert modes.disagreeing()
    low, high = modes.ci_ms
    assert low < 16.7 and high > 20.5
    steady = ForkStats.of([fork(16.5), fork(16.55), fork(16.6)])
    assert not steady.disagreeing()
    summary = steady.summary(batch=8)
    assert summary["forks"] == 3 and summary["n"] == 240
    assert summary["items_per_s"] == pytest.approx(8 / (steady.median_ms / 1e3))
