"""What to distrust in a cell: outliers, noise, a slow first call, drift, a busy machine, harness overhead.

Everything here works on a cell's kept raw samples (nanoseconds) and the facts stored beside them;
it imports no framework and changes no sample: outliers are *flagged*, never dropped.

Outliers use the modified Z-score of Iglewicz and Hoaglin (B. Iglewicz and D. C. Hoaglin, "How to
Detect and Handle Outliers", ASQC Basic References in Quality Control, vol. 16, 1993):

    M_i = 0.6745 · (x_i − median) / MAD,   MAD = median(|x_i − median|)

and x_i is an outlier when |M_i| > 3.5 (a cell with fewer than 5 samples gets no outlier flags).
0.6745 is the 0.75 quantile of the standard normal, so MAD / 0.6745 estimates σ for normal data.
When MAD is 0 (more than half the samples tie), the mean absolute deviation is used instead, scaled
to the same σ estimate (σ ≈ 1.2533 · MeanAD); when that is 0 too, nothing is an outlier.
"""

from __future__ import annotations

import numpy as np

from embedperf.measure.stats import Stats

MODIFIED_Z_THRESHOLD = 3.5
OUTLIER_MIN_SAMPLES = 5  # below this a median absolute deviation says little: nothing is flagged
CV_MAX = 0.05
FIRST_CALL_FACTOR = 10.0
DRIFT_MAX = 0.05
BUSY_LOAD_SHARE = 0.5
OVERHEAD_FACTOR = 10.0


def modified_z_scores(samples) -> np.ndarray:
    """Iglewicz–Hoaglin modified Z-score of every sample (0 for all when the spread is 0)."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return x
    med = np.median(x)
    dev = np.abs(x - med)
    mad = np.median(dev)
    if mad > 0:
        return 0.6745 * (x - med) / mad
    mean_ad = np.mean(dev)
    if mean_ad > 0:
        return (x - med) / (1.253314 * mean_ad)
    return np.zeros_like(x)


def outliers(samples, threshold: float = MODIFIED_Z_THRESHOLD) -> list[int]:
    """Indices of samples whose |modified Z-score| exceeds the threshold (3.5)."""
    z = modified_z_scores(samples)
    return [int(i) for i in np.flatnonzero(np.abs(z) > threshold)]


def drift(samples) -> float | None:
    """Relative change of the median from the first third of the samples to the last third (None below 6)."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size < 6:
        return None
    third = x.size // 3
    first, last = np.median(x[:third]), np.median(x[-third:])
    return float(last / first - 1.0) if first > 0 else None


def _time(ns: float) -> str:
    """A duration in the unit that keeps it readable."""
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e3:.1f} µs"


def _w(kind: str, message: str, **facts) -> dict:
    return {"kind": kind, "message": f"{kind}: {message}", **facts}


def check_samples(samples_ns, first_call_s: float | None = None, load_average_1m: float | None = None,
                  cpus: int | None = None, null_overhead_ns: float | None = None, *, cv_max: float = CV_MAX,
                  first_call_factor: float = FIRST_CALL_FACTOR, drift_max: float = DRIFT_MAX,
                  busy_share: float = BUSY_LOAD_SHARE, overhead_factor: float = OVERHEAD_FACTOR) -> dict:
    """Outliers and warnings of one cell. Returns {"outliers": {...}, "warnings": [{"kind", "message", ...}]}."""
    x = np.asarray(samples_ns, dtype=np.float64)
    warnings: list[dict] = []
    idx = outliers(x) if x.size >= OUTLIER_MIN_SAMPLES else []
    result = {"outliers": {"method": "modified Z-score (Iglewicz-Hoaglin), |M| > 3.5", "indices": idx,
                           "count": len(idx), "n": int(x.size)},
              "warnings": warnings}
    if x.size == 0:
        return result
    med = float(np.median(x))
    if idx:
        warnings.append(_w("outliers", f"{len(idx)} of {x.size} samples (|modified Z| > {MODIFIED_Z_THRESHOLD}); "
                                       f"kept, the median is robust to them", count=len(idx)))
    if x.size > 1:
        cv = Stats(tuple(int(v) for v in x)).cv
        if cv > cv_max:
            warnings.append(_w("noisy", f"CV {cv:.1%} > {cv_max:.0%}", cv=cv))
    if first_call_s is not None and med > 0 and first_call_s * 1e9 > first_call_factor * med:
        ratio = first_call_s * 1e9 / med
        warnings.append(_w("slow first call", f"{_time(first_call_s * 1e9)}, {ratio:.0f}× the median "
                                              f"(lazy initialisation or compilation on first use)", ratio=ratio))
    d = drift(x)
    if d is not None and abs(d) > drift_max:
        direction = "slower" if d > 0 else "faster"
        warnings.append(_w("drift", f"the last third's median is {abs(d):.1%} {direction} than the first "
                                    f"third's (throttling or interference?)", drift=d))
    if load_average_1m is not None and cpus and load_average_1m > busy_share * cpus:
        warnings.append(_w("busy machine", f"1-minute load average {load_average_1m:.2f} at start with {cpus} "
                                           f"CPU(s) available (> {busy_share:.0%} of them)",
                           load_average=load_average_1m))
    if null_overhead_ns is not None and null_overhead_ns > 0 and med < overhead_factor * null_overhead_ns:
        warnings.append(_w("harness overhead", f"median {_time(med)} is within {overhead_factor:.0f}× the "
                                               f"null runner's {_time(null_overhead_ns)} per call: the "
                                               f"harness is a visible part of this figure",
                           null_overhead_ns=null_overhead_ns))
    return result
