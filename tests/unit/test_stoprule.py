"""The stopping rule (docs/protocol.md, "Stopping rule"): the same numbers in every language."""

import math

import numpy as np
import pytest

from embedperf.measure import stoprule
from embedperf.measure.stoprule import (SEED, CheckSchedule, bootstrap_medians, ci_bounds, median, median_ci, next_check,
                                        splitmix64, splitmix64_scalar, within)

# The first outputs of SplitMix64 seeded 0x656d626564706572: the Rust and C++ runners assert the same.
FIRST_THREE = [0x611666081988FD79, 0x98D8357E2998FAD4, 0xDFF7EFD75F90528B]


def test_seed_is_embedper_in_ascii():
    assert SEED == int.from_bytes(b"embedper", "big") == 0x656D626564706572


def test_first_outputs_for_the_protocol_seed():
    assert splitmix64_scalar(SEED, 3) == FIRST_THREE
    assert [int(v) for v in splitmix64(SEED, 3)] == FIRST_THREE


def test_reference_vector_of_splitmix64():
    # Vigna's splitmix64.c seeded 0: the published first outputs.
    assert splitmix64_scalar(0, 3) == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def test_vectorised_stream_equals_stepping_one_at_a_time():
    scalar = splitmix64_scalar(SEED, 5000)
    assert [int(v) for v in splitmix64(SEED, 5000)] == scalar
    assert [int(v) for v in splitmix64(SEED, 300, start=4700)] == scalar[4700:]


def test_vectorised_stream_across_block_boundaries():
    # output k = mix(seed + (k+1)·golden), so stepping from a state k·golden ahead gives outputs k, k+1, ...
    start = (1 << 20) - 3
    ahead = (SEED + start * 0x9E3779B97F4A7C15) & ((1 << 64) - 1)
    assert [int(v) for v in splitmix64(SEED, 6, start=start)] == splitmix64_scalar(ahead, 6)
    whole = splitmix64(SEED, (1 << 20) + 10)
    assert [int(v) for v in whole[start:start + 6]] == splitmix64_scalar(ahead, 6)


def brute_force_ci(samples, B=1000):
    """The rule as the doc words it, one resample at a time in plain Python."""
    n = len(samples)
    stream = splitmix64_scalar(SEED, B * n)  # one seeding per check; resample r takes outputs r·n … r·n+n−1
    medians = []
    for r in range(B):
        values = sorted(float(samples[stream[r * n + j] % n]) for j in range(n))
        medians.append(values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2.0)
    medians.sort()
    ordered = sorted(float(v) for v in samples)
    med = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2.0
    return med, medians[math.floor(0.025 * B)], medians[math.ceil(0.975 * B) - 1]


@pytest.mark.parametrize("samples", [
    [1000, 1200, 900, 1100, 5000],  # odd n
    [1000, 1200, 900, 1100, 5000, 950],  # even n: mean of the two middles
    [7, 7, 8, 7, 9, 7, 7],  # ties
    [42],
    [3, 5],
])
def test_median_ci_matches_a_brute_force_loop(samples):
    assert median_ci(samples) == pytest.approx(brute_force_ci(samples), abs=0)


def test_median_ci_on_a_hand_checked_sample():
    # n = 2: each resample is two draws, median (a+b)/2 ∈ {10, 15, 20}; the CI spans both ends.
    med, low, high = median_ci([10, 20])
    assert med == 15.0 and low == 10.0 and high == 20.0
    # the first resample of n = 3 uses outputs 0, 1, 2 mod 3
    picks = [v % 3 for v in FIRST_THREE]
    x = np.array([100.0, 200.0, 300.0])
    assert stoprule.bootstrap_medians(x, resamples=1)[0] == float(np.median(x[picks]))


def test_ci_bounds_indices():
    assert ci_bounds(1000) == (25, 974)
    assert ci_bounds(2000) == (50, 1949)


def test_median_even_is_mean_of_middles():
    assert median([4, 1, 3, 2]) == 2.5
    assert median([5, 1, 3]) == 3.0


def test_constant_samples_are_within_at_the_first_check():
    schedule = CheckSchedule(min_calls=3)
    samples = []
    hits = []
    for _ in range(50):
        samples.append(123_456)
        if schedule.check(samples, 0.01):
            hits.append(len(samples))
            break
    assert hits == [10] and schedule.checks == 1


def test_two_valued_wide_sample_is_never_within():
    schedule = CheckSchedule(min_calls=10)
    samples = []
    for i in range(3000):
        samples.append(100 if i % 2 else 200)
        assert not schedule.check(samples, 0.01)
    assert schedule.checks > 10
    assert not within([100, 200] * 5000, 0.05)


def test_schedule_is_geometric_from_max_of_min_calls_and_ten():
    def checks_at(min_calls, upto):
        s, at = CheckSchedule(min_calls), []
        for n in range(1, upto + 1):
            if s.due(n):
                s.checked(n)
                at.append(n)
        return at

    assert checks_at(3, 60) == [10, 11, 13, 15, 17, 19, 21, 24, 27, 30, 33, 37, 41, 46, 51, 57]
    assert checks_at(100, 130)[:3] == [100, 110, 121]
    # ceil(1.1·n) exactly: a double 1.1·50 is 55.00000000000001 and would give 56
    assert next_check(50) == 55 and next_check(10) == 11 and next_check(51) == 57


def test_a_late_check_moves_the_next_one_from_where_it_ran():
    s = CheckSchedule(min_calls=10)
    assert s.due(40)  # min_seconds held the loop past 10: the check runs at 40
    s.checked(40)
    assert s.next == 44 and not s.due(43)


def test_within_is_inclusive_and_relative():
    x = [1000] * 30 + [1010] * 30 + [990] * 30
    med, low, high = median_ci(x)
    assert med == 1000.0
    assert within(x, 0.011) == (low >= med * (1 - 0.011) and high <= med * (1 + 0.011))


def test_a_check_on_twenty_thousand_samples_counts_like_a_sort():
    """The counting median (no sort per resample, what keeps a check cheap at max_calls) equals sorting."""
    x = np.random.default_rng(0).lognormal(np.log(20_000), 0.05, 20_000).round().astype(np.int64)
    med, low, high = median_ci(x)
    assert low <= med <= high
    fast = bootstrap_medians(x, 20)
    draws = splitmix64(SEED, 20 * x.size).reshape(20, x.size) % np.uint64(x.size)
    slow = np.median(x[draws.astype(np.int64)], axis=1)
    assert np.array_equal(fast, slow)


def test_cross_language_golden_cases():
    # The same cases the Rust runner's bootstrap tests assert (native/rust/protocol/src/bootstrap.rs).
    a = [1000 + (i * 7919 % 101) for i in range(37)]  # odd n
    assert median_ci(a) == (1050.0, 1034.0, 1066.0)
    assert within(a, 0.016) and not within(a, 0.015)
    b = [1_000_000 + ((i * i * 31 + 7) % 997) * 100 for i in range(24)]  # even n
    assert median_ci(b) == (1036450.0, 1012850.0, 1052400.0)
    assert within(b, 0.023) and not within(b, 0.022)
    # and the case the C++ runner's tests assert (native/cpp/tests/test_timing.cpp)
    c = [1000 + (i * 7919) % 101 for i in range(1, 21)]
    assert median_ci(c) == (1045.5, 1026.5, 1067.5)
    assert median_ci(c + [1000 + (21 * 7919) % 101]) == (1047.0, 1028.0, 1066.0)
