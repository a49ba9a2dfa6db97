"""Statistics of one cell's raw samples. Every figure is derived from the kept samples."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # fixed: the same samples give the same interval on every read


def _resampled(x: np.ndarray, statistic, resamples: int, rng: np.random.Generator, chunk: int = 64) -> np.ndarray:
    """`statistic` over `resamples` bootstrap resamples of x, drawn in chunks to bound memory."""
    out = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        out[start:start + rows] = statistic(x[rng.integers(0, x.size, size=(rows, x.size))], axis=1)
    return out


def bootstrap_ci(values, statistic=np.median, confidence: float = 0.95,
                 resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of `statistic` over `values`."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return (float("nan"), float("nan"))
    if x.size == 1:
        return (float(x[0]), float(x[0]))
    stats = _resampled(x, statistic, resamples, np.random.default_rng(seed))
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return (float(low), float(high))


@dataclass(frozen=True)
class Stats:
    """Summary of latency samples given in nanoseconds; figures in milliseconds."""

    samples_ns: tuple[int, ...]

    @cached_property
    def ms(self) -> np.ndarray:
        """The samples in milliseconds."""
        return np.asarray(self.samples_ns, dtype=np.float64) / 1e6

    @property
    def n(self) -> int:
        """Number of timed calls."""
        return len(self.samples_ns)

    @cached_property
    def median_ms(self) -> float:
        """Median call time."""
        return float(np.median(self.ms))

    @cached_property
    def mean_ms(self) -> float:
        """Arithmetic mean call time."""
        return float(np.mean(self.ms))

    @cached_property
    def p90_ms(self) -> float:
        """90th percentile, linear interpolation between closest ranks."""
        return float(np.percentile(self.ms, 90))

    @cached_property
    def p99_ms(self) -> float:
        """99th percentile, linear interpolation between closest ranks."""
        return float(np.percentile(self.ms, 99))

    @cached_property
    def stdev_ms(self) -> float:
        """Sample standard deviation (n - 1); 0 for a single sample."""
        return float(np.std(self.ms, ddof=1)) if self.n > 1 else 0.0

    @cached_property
    def cv(self) -> float:
        """Coefficient of variation: stdev / mean."""
        return self.stdev_ms / self.mean_ms if self.mean_ms > 0 else float("nan")

    @cached_property
    def ci_ms(self) -> tuple[float, float]:
        """95% percentile-bootstrap confidence interval of the median."""
        return bootstrap_ci(self.ms)

    def items_per_s(self, batch: int) -> float:
        """Rows embedded per second at the median call time."""
        return batch / (self.median_ms / 1e3) if self.median_ms > 0 else float("nan")

    def summary(self, batch: int) -> dict:
        low, high = self.ci_ms
        return {
            "n": self.n,
            "median_ms": self.median_ms,
            "mean_ms": self.mean_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "stdev_ms": self.stdev_ms,
            "cv": self.cv,
            "ci_low_ms": low,
            "ci_high_ms": high,
            "items_per_s": self.items_per_s(batch),
        }


def ratio_ci(a, b, confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
             seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """Ratio of medians median(a)/median(b) with a bootstrap CI resampling both sides."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    ra = _resampled(x, np.median, resamples, rng)
    rb = _resampled(y, np.median, resamples, rng)
    ratios = ra / rb
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(ratios, [alpha, 1.0 - alpha])
    return float(np.median(x) / np.median(y)), float(low), float(high)
