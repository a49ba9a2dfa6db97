"""The stopping rule (`timing.target_ci`): stop once the median is known to ±r.

docs/protocol.md, "Stopping rule", defines it so that every runner (Python, Rust,
C++) computes the same thing from the same samples:

- checks at n >= max(min_calls, 10) calls, the next one at ceil(1.1·n);
- B = 1000 bootstrap resamples; random numbers from SplitMix64 seeded with
  0x656d626564706572 afresh at every check; resample r (0-based) takes the
  outputs r·n … r·n+n−1 of that stream, index = output mod n;
- the median of a resample is the mean of the two middle values when n is even;
- the B medians sorted, low = m[floor(0.025·B)], high = m[ceil(0.975·B) − 1];
- within: low >= median·(1 − r) and high <= median·(1 + r), median being the
  samples' own median (same even-n rule), all in IEEE double.

SplitMix64's k-th output (k = 0, 1, …) is mix(seed + (k+1)·0x9E3779B97F4A7C15 mod
2^64), which is what stepping the generator k+1 times gives; that is what lets this
module compute the whole stream by index, vectorised, in chunks.
"""

from __future__ import annotations

import numpy as np

SEED = 0x656D626564706572  # "embedper"
RESAMPLES = 1000
MIN_CHECK = 10
GROWTH_NUM, GROWTH_DEN = 11, 10  # next check at ceil(1.1·n), computed exactly in integers

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_CHUNK = 1 << 20  # generator outputs per vectorised block in splitmix64()
_BLOCK = 1 << 18  # draws per block in the bootstrap (2 MiB of uint64: cache-sized buffers)


def splitmix64_scalar(seed: int, count: int) -> list[int]:
    """The first `count` outputs of SplitMix64, stepped one at a time in plain Python ints."""
    state = seed & _MASK
    out = []
    for _ in range(count):
        state = (state + _GOLDEN) & _MASK
        z = state
        z = ((z ^ (z >> 30)) * _M1) & _MASK
        z = ((z ^ (z >> 27)) * _M2) & _MASK
        out.append(z ^ (z >> 31))
    return out


class _Stream:
    """SplitMix64 outputs by index, a block at a time, into reused buffers.

    Output k is mix(seed + (k+1)·golden): a block starting at k0 is the fixed array
    (i+1)·golden (i = 0 … size−1) plus the constant seed + k0·golden, then mixed.
    """

    def __init__(self, seed: int, size: int):
        self.seed = seed & _MASK
        self.steps = np.arange(1, size + 1, dtype=np.uint64)
        self.steps *= np.uint64(_GOLDEN)
        self.z = np.empty(size, dtype=np.uint64)
        self.tmp = np.empty(size, dtype=np.uint64)

    def block(self, start: int, count: int) -> np.ndarray:
        """Outputs start … start+count−1 (count <= size); a view into a buffer the next call reuses."""
        z, t = self.z[:count], self.tmp[:count]
        np.add(self.steps[:count], np.uint64((self.seed + start * _GOLDEN) & _MASK), out=z)
        for shift, mult in ((30, _M1), (27, _M2)):
            np.right_shift(z, np.uint64(shift), out=t)
            np.bitwise_xor(z, t, out=z)
            np.multiply(z, np.uint64(mult), out=z)
        np.right_shift(z, np.uint64(31), out=t)
        np.bitwise_xor(z, t, out=z)
        return z


def splitmix64(seed: int, count: int, start: int = 0) -> np.ndarray:
    """Outputs start … start+count−1 of SplitMix64 seeded with `seed`, as uint64."""
    out = np.empty(count, dtype=np.uint64)
    stream = _Stream(seed, min(count, _CHUNK))
    for lo in range(0, count, _CHUNK):
        hi = min(lo + _CHUNK, count)
        out[lo:hi] = stream.block(start + lo, hi - lo)
    return out


def median(samples) -> float:
    """The samples' median, mean of the two middle values when n is even (IEEE double)."""
    x = np.sort(np.asarray(samples, dtype=np.float64))
    n = x.size
    if n == 0:
        raise ValueError("median of no samples")
    half = n // 2
    return float(x[half]) if n % 2 else float((x[half - 1] + x[half]) / 2.0)


def bootstrap_medians(samples, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """The `resamples` bootstrap medians, unsorted; resample r is drawn from outputs r·n … r·n+n−1.

    A resample's median is found by counting, not sorting: with the samples sorted once,
    each draw becomes the sorted position (rank) of the sample it picks, the ranks are
    counted per resample, and the k-th smallest value is xs[first rank whose running
    count exceeds k]. That is exactly the order statistic a sort would give.
    """
    x = np.asarray(samples, dtype=np.float64).ravel()
    n = x.size
    if n == 0:
        raise ValueError("bootstrap of no samples")
    order = np.argsort(x, kind="stable")
    xs = x[order]
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n, dtype=np.int64)
    rows_per_block = max(1, min(resamples, _BLOCK // n))
    stream = _Stream(seed, rows_per_block * n)
    picked = np.empty(rows_per_block * n, dtype=np.int64)
    offsets = np.arange(rows_per_block, dtype=np.int64) * n
    half = n // 2
    medians = np.empty(resamples, dtype=np.float64)
    for r0 in range(0, resamples, rows_per_block):
        rows = min(rows_per_block, resamples - r0)
        draws = stream.block(r0 * n, rows * n)
        np.remainder(draws, np.uint64(n), out=draws)  # index = next() mod n
        ranks = picked[:rows * n]
        np.take(rank, draws.view(np.int64), out=ranks)
        ranks.reshape(rows, n)[...] += offsets[:rows, None]  # resample j's ranks live in [j·n, (j+1)·n)
        running = np.cumsum(np.bincount(ranks, minlength=rows * n))
        base = offsets[:rows]
        upper = xs[np.searchsorted(running, base + half, side="right") - base]
        if n % 2:
            medians[r0:r0 + rows] = upper
        else:
            lower = xs[np.searchsorted(running, base + half - 1, side="right") - base]
            medians[r0:r0 + rows] = (lower + upper) / 2.0
    return medians


def ci_bounds(resamples: int = RESAMPLES) -> tuple[int, int]:
    """Indices of low and high in the sorted bootstrap medians: floor(0.025·B), ceil(0.975·B) − 1."""
    return (resamples * 25) // 1000, -((-resamples * 975) // 1000) - 1


def median_ci(samples, B: int = RESAMPLES) -> tuple[float, float, float]:
    """(median, low, high): the samples' median and its 95% percentile bootstrap interval."""
    m = np.sort(bootstrap_medians(samples, B))
    lo, hi = ci_bounds(B)
    return median(samples), float(m[lo]), float(m[hi])


def within(samples, rel: float, B: int = RESAMPLES) -> bool:
    """Whether the 95% bootstrap CI of the median lies within [median·(1−rel), median·(1+rel)]."""
    med, low, high = median_ci(samples, B)
    return low >= med * (1.0 - rel) and high <= med * (1.0 + rel)


def next_check(n: int) -> int:
    """ceil(1.1·n) in exact integer arithmetic (in doubles 1.1·50 = 55.000000000000007 would give 56)."""
    return -((-n * GROWTH_NUM) // GROWTH_DEN)


class CheckSchedule:
    """When the stopping rule runs: first at max(min_calls, 10) calls, then at ceil(1.1·n).

    `due(n)` says whether a check should run now that n samples exist (the loop also
    requires min_calls and min_seconds); `checked(n)` records one at n and moves the
    next one to ceil(1.1·n) of that n.
    """

    def __init__(self, min_calls: int = 1):
        self.next = max(int(min_calls), MIN_CHECK)
        self.checks = 0

    def due(self, n: int) -> bool:
        return n >= self.next

    def checked(self, n: int) -> None:
        self.checks += 1
        self.next = next_check(n)

    def check(self, samples, rel: float) -> bool:
        """Run the rule on `samples` if it is due; True when the CI is within ±rel."""
        n = len(samples)
        if not self.due(n):
            return False
        self.checked(n)
        return within(samples, rel)


__all__ = ["SEED", "RESAMPLES", "splitmix64", "splitmix64_scalar", "median", "bootstrap_medians", "median_ci",
           "within", "next_check", "CheckSchedule", "ci_bounds"]
