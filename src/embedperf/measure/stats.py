"""Statistics of a cell's raw samples, within one runner process (a fork) and across its forks.

Every figure is derived from the kept samples, and there is one confidence interval, computed one
way everywhere: the 95% percentile bootstrap of the median that the stopping rule uses
(`measure/stoprule.py`: SplitMix64, B = 1000). A fork's stored CI is therefore exactly the
interval its stopping rule saw.

A cell is measured in several forks because on shared machines a process lands in a fast or a slow
mode that no number of calls inside it reveals (one process is one draw). Across forks:

- the cell's median is the median of the fork medians (equal weight per process: a fork that ran
  more calls because it was fast does not outvote the others);
- its CI is a two-level (hierarchical) bootstrap: each resample draws k forks with replacement,
  then, for each drawn fork, one median from that fork's own bootstrap distribution (an independent
  resample of its samples), and takes the median of those k values. With one fork this is exactly
  the fork's own interval. See Saravanan, Berman and Sober, "Application of the hierarchical
  bootstrap to multi-level data in neuroscience" (Neurons, Behavior, Data analysis and Theory, 2020).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from embedperf.measure import stoprule

RESAMPLES = stoprule.RESAMPLES
# Separate streams for the outer level (fork picks) and for the candidate side of a ratio, so that
# neither is correlated with the within-fork resamples that use stoprule.SEED.
FORK_SEED = stoprule.SEED ^ 0x666F726B73  # "forks"
OTHER_SIDE = 0x9E3779B97F4A7C15  # added to both seeds for the second series of a ratio
# Two forks disagree when their CIs do not overlap AND their medians differ by more than this:
# the per-fork CIs on a quiet machine are a fraction of a percent wide, and a gap below this is
# below anything a reader would act on.
MODE_GAP = 0.03


def _percentile_interval(values: np.ndarray) -> tuple[float, float]:
    """low, high of B bootstrap values, with the stopping rule's percentile indices."""
    m = np.sort(values)
    lo, hi = stoprule.ci_bounds(m.size)
    return float(m[lo]), float(m[hi])


def _median_rows(picked: np.ndarray) -> np.ndarray:
    """The median of each row (mean of the two middle values for an even row length)."""
    picked = np.sort(picked, axis=1)
    k = picked.shape[1]
    half = k // 2
    return picked[:, half] if k % 2 else (picked[:, half - 1] + picked[:, half]) / 2.0


def as_forks(series) -> list[np.ndarray]:
    """A cell's series as a list of forks: a flat sequence of numbers is one fork."""
    items = list(series)
    if items and np.ndim(items[0]) == 0:
        return [np.asarray(items, dtype=np.float64)]
    forks = [np.asarray(f, dtype=np.float64) for f in items]
    if not forks or any(f.size == 0 for f in forks):
        raise ValueError("every fork needs at least one sample")
    return forks


def hierarchical_medians(forks, resamples: int = RESAMPLES, side: int = 0) -> np.ndarray:
    """B bootstrap values of the median of fork medians (see the module docstring), unsorted.

    `side` 1 draws from streams independent of side 0, for the second series of a ratio.
    """
    forks = as_forks(forks)
    inner_seed = (stoprule.SEED + side * OTHER_SIDE) & ((1 << 64) - 1)
    inner = [stoprule.bootstrap_medians(f, resamples, inner_seed) for f in forks]
    k = len(forks)
    if k == 1:
        return inner[0]
    outer_seed = (FORK_SEED + side * OTHER_SIDE) & ((1 << 64) - 1)
    draws = stoprule.splitmix64(outer_seed, 2 * resamples * k)
    fork = (draws[:resamples * k] % np.uint64(k)).astype(np.int64).reshape(resamples, k)
    which = (draws[resamples * k:] % np.uint64(resamples)).astype(np.int64).reshape(resamples, k)
    return _median_rows(np.stack(inner)[fork, which])


@dataclass(frozen=True)
class Stats:
    """Summary of one series of latency samples in nanoseconds (one fork, or forks pooled); figures in ms."""

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
        """95% CI of the median: the stopping rule's bootstrap (stoprule.median_ci), in ms."""
        _, low, high = stoprule.median_ci(self.samples_ns)
        return low / 1e6, high / 1e6


@dataclass(frozen=True)
class ForkStats:
    """A cell measured in k forks (separate runner processes): the statistics that span them."""

    forks_ns: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, forks) -> "ForkStats":
        return cls(tuple(tuple(int(v) for v in f) for f in forks))

    @cached_property
    def forks(self) -> list[Stats]:
        """Each fork's own statistics (its CI is the one its stopping rule used)."""
        return [Stats(f) for f in self.forks_ns]

    @cached_property
    def pooled(self) -> Stats:
        """All samples of all forks together: the tail percentiles, mean and spread of the cell."""
        return Stats(tuple(v for f in self.forks_ns for v in f))

    @property
    def k(self) -> int:
        """Number of forks."""
        return len(self.forks_ns)

    @cached_property
    def fork_medians_ms(self) -> list[float]:
        return [s.median_ms for s in self.forks]

    @cached_property
    def median_ms(self) -> float:
        """The median of the fork medians."""
        return stoprule.median(self.fork_medians_ms)

    @cached_property
    def distribution_ms(self) -> np.ndarray:
        """The hierarchical bootstrap values of the median, in ms."""
        return hierarchical_medians(self.forks_ns) / 1e6

    @cached_property
    def ci_ms(self) -> tuple[float, float]:
        """95% CI of the cell's median across forks (== the fork's own CI when k is 1)."""
        return _percentile_interval(self.distribution_ms)

    def disagreeing(self, gap: float = MODE_GAP) -> bool:
        """Whether two forks' medians differ beyond both their own CIs and by more than `gap`."""
        cis = [s.ci_ms for s in self.forks]
        meds = self.fork_medians_ms
        for i in range(self.k):
            for j in range(self.k):
                if i != j and cis[i][1] < cis[j][0] and meds[j] > meds[i] * (1 + gap):
                    return True
        return False

    def summary(self, batch: int) -> dict:
        """The cell's figures: median and CI across forks, tails and spread of the pooled samples."""
        low, high = self.ci_ms
        pooled = self.pooled
        return {
            "n": pooled.n,
            "forks": self.k,
            "median_ms": self.median_ms,
            "ci_low_ms": low,
            "ci_high_ms": high,
            "ci_method": (f"two-level bootstrap over {self.k} forks (median of fork medians), B={RESAMPLES}"
                          if self.k > 1 else f"bootstrap of the median, B={RESAMPLES} (the stopping rule's)"),
            "fork_medians_ms": self.fork_medians_ms,
            "mean_ms": pooled.mean_ms,
            "p90_ms": pooled.p90_ms,
            "p99_ms": pooled.p99_ms,
            "stdev_ms": pooled.stdev_ms,
            "cv": pooled.cv,
            "items_per_s": batch / (self.median_ms / 1e3) if self.median_ms > 0 else float("nan"),
        }


def ratio_ci(numerator, denominator) -> tuple[float, float, float]:
    """median(numerator) / median(denominator) with its 95% CI; each side a flat series or a list of forks.

    Both sides use the cell statistic above (the median of fork medians) and its hierarchical
    bootstrap; the two sides draw from independent streams.
    """
    num, den = as_forks(numerator), as_forks(denominator)
    point = stoprule.median([stoprule.median(f) for f in num]) / stoprule.median([stoprule.median(f) for f in den])
    ratios = hierarchical_medians(num, side=1) / hierarchical_medians(den, side=0)
    low, high = _percentile_interval(ratios)
    return float(point), low, high
