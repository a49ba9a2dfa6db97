"""One CI, computed one way: a fork that stopped at `ci_reached` stores an interval within its target.

The Python, Rust and C++ harnesses decide `ci_reached` with the stopping rule's bootstrap; the cell
stores the interval the same bootstrap gives on the same samples, so it must lie within ±target (before
this was one bootstrap, a candle cell stopped at ±1% while its stored CI started at −1.01%).
"""

import pytest

from conftest import available, embedperf
from embedperf.results.store import load_cells

NULLS = ["null", "null-rust", "null-cpp"]


@pytest.mark.parametrize("target", [0.01, 0.05])
def test_a_fork_that_reached_its_ci_stores_that_ci(results, target):
    runtimes = available(NULLS)
    assert runtimes
    proc = embedperf("run", "--runtimes", ",".join(runtimes), "--batch", "1", "--seq", "16", "--warmup", "1",
                     "--min-calls", "20", "--min-seconds", "0", "--max-seconds", "2", "--target-ci", str(target),
                     "--forks", "2", "--no-calibrate", "--results", str(results))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reached = 0
    for doc in load_cells([results]):
        for fork in doc["forks"]:
            if fork["stop_rule"] == "ci_reached":
                reached += 1
                m = fork["median_ms"]
                # the rule accepts an interval that ends exactly at ±target: for the null runners (200 ns
                # medians) that end is a float product, so the comparison allows a rounding error
                tol = 1e-9 * m
                low, high = fork["ci_low_ms"], fork["ci_high_ms"]
                assert m * (1 - target) - tol <= low <= m <= high <= m * (1 + target) + tol, fork
    assert reached, "no fork reached its CI target: nothing was checked"
