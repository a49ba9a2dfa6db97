"""Statistics against values computed by hand."""

import math

import numpy as np
import pytest

from embedperf.measure.stats import Stats, bootstrap_ci, ratio_ci


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
    assert s.items_per_s(8) == pytest.approx(8 / 0.003)


def test_single_sample_edge_case():
    s = Stats(ns([2.5]))
    assert s.median_ms == s.mean_ms == s.p99_ms == pytest.approx(2.5)
    assert s.stdev_ms == 0.0
    assert s.ci_ms == (pytest.approx(2.5), pytest.approx(2.5))


def test_bootstrap_ci_brackets_the_median_and_is_repeatable():
    rng = np.random.default_rng(1)
    x = rng.normal(10.0, 1.0, size=400)
    low, high = bootstrap_ci(x)
    assert low < np.median(x) < high
    assert high - low < 0.5  # ~ 2 * 1.96 * 1.2533 / sqrt(400) = 0.25
    assert bootstrap_ci(x) == (low, high)


def test_bootstrap_ci_of_constant_samples_is_a_point():
    assert bootstrap_ci([4.0] * 50) == (4.0, 4.0)


def test_ratio_ci_of_a_known_slowdown():
    rng = np.random.default_rng(2)
    base = rng.normal(10.0, 0.2, size=300)
    slow = base * 1.2
    ratio, low, high = ratio_ci(slow, base)
    assert ratio == pytest.approx(1.2, rel=1e-9)
    assert low < 1.2 < high
    assert low > 1.15 and high < 1.25
