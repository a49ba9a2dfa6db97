"""Cell warnings from hand-made samples."""

import pytest

from embedperf.measure.warnings import check_samples, drift, modified_z_scores, outliers

MS = 1_000_000


def kinds(result):
    return [w["kind"] for w in result["warnings"]]


def test_modified_z_score_by_hand():
    x = [10, 11, 12, 13, 100]
    # median 12, |dev| = 2,1,0,1,88 -> MAD 1; M = 0.6745 * (x - 12) / 1
    z = modified_z_scores(x)
    assert z == pytest.approx([-1.349, -0.6745, 0.0, 0.6745, 59.356])
    assert outliers(x) == [4]


def test_threshold_is_strictly_above_3_5():
    # median 0, MAD 1: 3.5 / 0.6745 = 5.189 -> 5.18 is in, 5.2 is out
    x = [-1, -1, 0, 1, 1, 5.18, -5.2]
    assert sorted(outliers(x)) == [6]


def test_zero_mad_falls_back_to_mean_absolute_deviation():
    x = [5] * 9 + [50]
    # MAD 0; MeanAD = 45/10 = 4.5; M = 45 / (1.253314 * 4.5) = 7.98 > 3.5
    assert outliers(x) == [9]
    assert outliers([7] * 5) == []


def test_quiet_cell_has_no_warnings():
    x = [MS + d for d in (0, 1000, -1000, 2000, -2000, 500, -500, 0, 1500, -1500, 300, -300)]
    r = check_samples(x, first_call_s=0.002, load_average_1m=0.1, cpus=2, null_overhead_ns=5_000)
    assert r["warnings"] == []
    assert r["outliers"]["count"] == 0 and r["outliers"]["n"] == 12


def test_outlier_and_high_cv_are_flagged():
    x = [MS] * 10 + [5 * MS]
    r = check_samples(x)
    assert r["outliers"]["indices"] == [10]
    assert "outliers" in kinds(r)
    assert "noisy" in kinds(r)  # CV of this set is about 112%


def test_cv_threshold_is_configurable():
    x = [MS, 1.08 * MS] * 5  # CV about 4%
    assert "noisy" not in kinds(check_samples(x))
    assert "noisy" in kinds(check_samples(x, cv_max=0.01))


def test_slow_first_call():
    x = [MS] * 6
    assert "slow first call" in kinds(check_samples(x, first_call_s=0.011))  # 11 ms > 10 × 1 ms
    assert "slow first call" not in kinds(check_samples(x, first_call_s=0.009))


def test_drift_between_first_and_last_third():
    steady = [MS] * 9
    slowing = [MS] * 3 + [1.03 * MS] * 3 + [1.10 * MS] * 3
    assert drift(steady) == 0.0
    assert drift(slowing) == pytest.approx(0.10)
    assert drift([MS] * 5) is None  # too few to split in thirds
    r = check_samples(slowing, cv_max=1.0)
    assert kinds(r) == ["drift"]
    assert "slower" in r["warnings"][0]["message"]
    assert "drift" not in kinds(check_samples([MS] * 3 + [1.04 * MS] * 6, cv_max=1.0))


def test_busy_machine():
    x = [MS] * 5
    assert "busy machine" in kinds(check_samples(x, load_average_1m=1.2, cpus=2))
    assert "busy machine" not in kinds(check_samples(x, load_average_1m=0.9, cpus=2))


def test_harness_overhead():
    x = [40_000] * 5  # 40 µs per call
    assert "harness overhead" in kinds(check_samples(x, null_overhead_ns=5_000))  # 40 < 50 µs
    assert "harness overhead" not in kinds(check_samples(x, null_overhead_ns=3_000))
