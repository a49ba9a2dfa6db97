"""What a reduced precision costs in accuracy: a cell's corpus embeddings against the fp32 reference's.

Three measures, each answering a user's question:

- cosine (min, mean) of each row to its fp32 row: is each embedding still the same vector?
- recall@k: of each row's k nearest fp32 neighbours over the corpus (itself excluded), how many are
  still among its k nearest at this precision? (what a retrieval user sees)
- Spearman correlation of all pairwise similarities: is the corpus' whole similarity order kept?
  (what clustering, deduplication and reranking see)

Rows are compared as given: both arrays hold the same corpus rows in the same order. Framework-free
(numpy only; ranks are computed here with ties averaged, as scipy.stats.rankdata's "average").
"""

from __future__ import annotations

import numpy as np

DEFAULT_K = 10
RANDOM_WEIGHTS_NOTE = "weights random: accuracy cost not meaningful (cosine to the fp32 reference only)"


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length in float64 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def cosine(candidate: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosine of each candidate row to the same reference row."""
    return np.sum(unit_rows(candidate) * unit_rows(reference), axis=1)


def _similarities(x: np.ndarray) -> np.ndarray:
    u = unit_rows(x)
    return u @ u.T


def top_k(similarity: np.ndarray, k: int) -> np.ndarray:
    """Indices of each row's k most similar other rows (itself excluded), most similar first; ties by index."""
    n = len(similarity)
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}] for {n} rows, got {k}")
    sim = np.array(similarity, dtype=np.float64, copy=True)
    np.fill_diagonal(sim, -np.inf)
    # a stable sort of the negated similarities: equal similarities keep index order on every machine
    return np.argsort(-sim, axis=1, kind="stable")[:, :k]


def recall_at_k(candidate: np.ndarray, reference: np.ndarray, k: int = DEFAULT_K) -> float:
    """Mean over rows of |fp32 top-k ∩ candidate top-k| / k, neighbours by cosine over the whole corpus."""
    ref = top_k(_similarities(reference), k)
    got = top_k(_similarities(candidate), k)
    hits = [len(np.intersect1d(a, b, assume_unique=True)) for a, b in zip(ref, got)]
    return float(np.mean(hits) / k)


def rank_average(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a 1-D array, tied values sharing the mean of the ranks they span."""
    x = np.asarray(x).ravel()
    order = np.argsort(x, kind="stable")
    ranks = np.empty(x.size, dtype=np.float64)
    ordered = x[order]
    # start index of each run of equal values in sorted order, and the run each element belongs to
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], x.size]
    run = np.repeat(np.arange(starts.size), ends - starts)
    # a run spanning sorted positions s..e-1 holds ranks s+1..e, whose mean is (s + 1 + e) / 2
    ranks[order] = (starts[run] + 1 + ends[run]) / 2.0
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two equal-length samples (Pearson of average ranks)."""
    ra, rb = rank_average(a), rank_average(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom else float("nan")


def pairwise_spearman(candidate: np.ndarray, reference: np.ndarray) -> float:
    """Spearman correlation of the similarities of every pair of distinct rows, candidate vs reference."""
    upper = np.triu_indices(len(reference), k=1)
    return spearman(_similarities(candidate)[upper], _similarities(reference)[upper])


def accuracy_cost(candidate: np.ndarray, reference: np.ndarray, real_text: bool, k: int = DEFAULT_K) -> dict:
    """The accuracy block of a cell: cosine always; recall@k and Spearman only for real text and real weights."""
    if candidate.shape != reference.shape:
        return {"error": f"shape {list(candidate.shape)} differs from the reference's {list(reference.shape)}"}
    if not np.all(np.isfinite(candidate)):
        return {"error": "output holds NaN or Inf", "min_cosine": float("nan")}
    cos = cosine(candidate, reference)
    # A text the tokenizer maps to nothing but padding embeds to a zero vector in the reference; a runtime that
    # returns zero there agrees with it, but a cosine of two zero vectors is undefined: those rows leave the
    # cosine figures and are counted. A runtime that returns anything else there keeps its cosine of 0.
    zero_ref = np.linalg.norm(reference, axis=1) == 0
    degenerate = zero_ref & (np.linalg.norm(candidate, axis=1) == 0)
    kept = cos[~degenerate] if (~degenerate).any() else cos
    out: dict = {"items": int(len(cos)), "min_cosine": float(kept.min()), "mean_cosine": float(kept.mean()),
                 "reference": "torch fp32 eager"}
    if degenerate.any():
        out["zero_rows"] = int(degenerate.sum())  # rows both embed to zero (all-padding tokenizations)
    if not real_text:
        out["note"] = RANDOM_WEIGHTS_NOTE
        return out
    if len(cos) > k:
        out[f"recall_at_{k}"] = recall_at_k(candidate, reference, k)
    if len(cos) > 2:
        out["spearman"] = pairwise_spearman(candidate, reference)
        out["pairs"] = int(len(cos) * (len(cos) - 1) // 2)
    return out


def corpus_accuracy(candidate_fed: np.ndarray, reference_fed: np.ndarray, order: np.ndarray, real_text: bool,
                    precision: str, k: int = DEFAULT_K) -> dict:
    """A cell's accuracy block from two accuracy passes over one corpus (rows in feed order) and its `order`.

    Adds the precision's floor and `below_floor` (None when the cell passes, else the reason to fail it).
    """
    from embedperf.measure.parity import FLOORS, below_floor
    from embedperf.workload.corpus import in_corpus_order

    cost = accuracy_cost(in_corpus_order(candidate_fed, order), in_corpus_order(reference_fed, order), real_text, k)
    cost["precision"] = precision
    cost["floor"] = FLOORS.get(precision)
    cost["below_floor"] = below_floor(precision, cost)
    return cost
