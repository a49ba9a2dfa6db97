"""How faithful a cell's embeddings are to the PyTorch fp32 reference, and the floors a precision must meet.

fp32 must match the reference (min cosine 0.9999). A reduced precision is expected to cost some
accuracy: its cell is `ok` with its accuracy columns (measure/accuracy.py) and fails only below its
precision's floor. The floors catch a broken result (overflow, saturation, a wrong scale), not a
recipe that is merely less accurate than another; docs/precision.md gives the measurements they
were set from and the margin each keeps.
"""

from __future__ import annotations

import numpy as np

FP32_MIN_COSINE = 0.9999  # below this an fp32 cell is failed, not footnoted
SPREAD_LIMIT = 0.99  # reference rows this alike prove nothing about parity
ZERO_SHOT_LIMIT = 1e-4  # max |Δ probability| of the zero-shot check against the reference (fp32)

# Accuracy floors per precision (docs/precision.md). min/mean cosine apply to every corpus;
# recall@10 and Spearman only where they are measured (real text through a real tokenizer, real weights).
FLOORS: dict[str, dict[str, float]] = {
    "fp32": {"min_cosine": FP32_MIN_COSINE},
    "fp16": {"min_cosine": 0.999, "mean_cosine": 0.9995, "recall_at_10": 0.95, "spearman": 0.999},
    "bf16": {"min_cosine": 0.995, "mean_cosine": 0.999, "recall_at_10": 0.95, "spearman": 0.999},
    "int8": {"min_cosine": 0.80, "mean_cosine": 0.95, "recall_at_10": 0.70, "spearman": 0.90},
}
# max |Δ probability| of the zero-shot check per precision (docs/precision.md)
ZERO_SHOT_LIMITS = {"fp32": ZERO_SHOT_LIMIT, "fp16": 1e-2, "bf16": 5e-2, "int8": 0.25}


def below_floor(precision: str, measures: dict) -> str | None:
    """Why `measures` (parity.compare or accuracy.accuracy_cost output) fail `precision`'s floor, else None.

    Only the measures present are judged; a missing one (no recall without real text) passes.
    """
    if measures.get("error"):
        return measures["error"]
    floor = FLOORS.get(precision)
    if floor is None:
        return f"no accuracy floor for precision {precision!r}"
    failed = [f"{name.replace('_', ' ')} {measures[name]:.6f} < {limit}" for name, limit in floor.items()
              if measures.get(name) is not None and not measures[name] >= limit]
    return f"{precision} accuracy below its floor: " + ", ".join(failed) if failed else None


def zero_shot_limit(precision: str) -> float:
    """The zero-shot check's max |Δ probability| for a cell of `precision`."""
    return ZERO_SHOT_LIMITS[precision]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def compare(candidate: np.ndarray, reference: np.ndarray) -> dict:
    """Row-wise cosine, max abs difference and nearest-neighbour agreement against the reference."""
    if candidate.shape != reference.shape:
        return {"error": f"shape {list(candidate.shape)} differs from the reference's {list(reference.shape)}"}
    if not np.all(np.isfinite(candidate)):
        return {"error": "output holds NaN or Inf", "min_cosine": float("nan")}
    a, b = _unit(candidate), _unit(reference)
    cos = np.sum(a * b, axis=1)
    result = {
        "min_cosine": float(cos.min()),
        "mean_cosine": float(cos.mean()),
        "max_abs_diff": float(np.max(np.abs(candidate.astype(np.float64) - reference))),
    }
    if len(a) > 1:
        # Does each row's nearest other row stay the same? (ranking faithfulness)
        sa, sb = a @ a.T, b @ b.T
        np.fill_diagonal(sa, -np.inf)
        np.fill_diagonal(sb, -np.inf)
        result["nn_agreement"] = float(np.mean(sa.argmax(1) == sb.argmax(1)))
    return result


def spread(reference: np.ndarray) -> float | None:
    """Mean cosine between different rows of the reference (None for one row)."""
    if len(reference) < 2:
        return None
    u = _unit(reference)
    sim = u @ u.T
    n = len(u)
    return float((sim.sum() - np.trace(sim)) / (n * (n - 1)))


def zero_shot_probabilities(text: np.ndarray, image: np.ndarray, scale: float, bias: float | None,
                            rule: str) -> tuple[np.ndarray, np.ndarray]:
    """(logits, probabilities) of every image [rows] against every caption [columns].

    clip: logits = scale · cosine, softmax over the captions of each image;
    siglip: logits = scale · cosine + bias, an independent sigmoid per pair.
    """
    logits = scale * (_unit(image) @ _unit(text).T)
    if rule == "softmax":
        z = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return logits, e / e.sum(axis=1, keepdims=True)
    logits = logits + (bias or 0.0)
    return logits, 1.0 / (1.0 + np.exp(-logits))


def zero_shot(text: np.ndarray, image: np.ndarray, ref_text: np.ndarray, ref_image: np.ndarray, scale: float,
              bias: float | None, rule: str, precision: str = "fp32") -> dict:
    """A runtime's zero-shot probabilities (its own text and image embeddings) against the reference's."""
    logits, probs = zero_shot_probabilities(text, image, scale, bias, rule)
    ref_logits, ref_probs = zero_shot_probabilities(ref_text, ref_image, scale, bias, rule)
    return {
        "captions": int(len(text)), "images": int(len(image)), "rule": rule, "logit_scale": float(scale),
        "logit_bias": bias, "max_abs_prob_diff": float(np.max(np.abs(probs - ref_probs))),
        "max_abs_logit_diff": float(np.max(np.abs(logits - ref_logits))),
        "top1_agreement": float(np.mean(probs.argmax(1) == ref_probs.argmax(1))),
        "limit": zero_shot_limit(precision), "precision": precision, "reference": "torch fp32 eager",
    }


# -- BGE-M3's token outputs (docs/outputs.md) -------------------------------------------------------------------
# fp32 thresholds of the sparse and multi-vector outputs against the reference (docs/outputs.md gives the
# measurements they were set from). Sparse: max |Δ| of the per-token weights at real positions and of the lexical
# weights, and each row's top-k ids; multi-vector: min cosine over the real token vectors.
SPARSE_MAX_ABS = 1e-4
TOP_K = 32
COLBERT_MIN_COSINE = FP32_MIN_COSINE


def top_k_agreement(run: dict[int, float], ref: dict[int, float], k: int = TOP_K, tol: float = SPARSE_MAX_ABS
                    ) -> tuple[float, float, int]:
    """How many of the reference row's top-k token ids (by lexical weight) are in the runtime's top-k.

    Returns (agreement, plain, counted). `plain` counts every id of the reference's top-k; `agreement` only the
    ids that are in it by more than the weights' own tolerance (weight above the (k+1)-th's, or above 0 when the row
    has fewer than k ids, by more than 2·tol): an id at the boundary may change places with its neighbour within
    the tolerance the weights are allowed, and that is no disagreement. `counted`: the ids `agreement` judged.
    """
    order = sorted(ref.items(), key=lambda kv: (-kv[1], kv[0]))
    top = order[:k]
    boundary = order[k][1] if len(order) > k else 0.0
    mine = {i for i, _ in sorted(run.items(), key=lambda kv: (-kv[1], kv[0]))[:k]}
    sure = [i for i, w in top if w - boundary > 2 * tol]
    plain = sum(i in mine for i, _ in top) / len(top) if top else 1.0
    agreement = sum(i in mine for i in sure) / len(sure) if sure else 1.0
    return agreement, plain, len(sure)


def compare_sparse(token_weights: np.ndarray, ref_token_weights: np.ndarray, mask: np.ndarray,
                   lexical: list[dict[int, float]], ref_lexical: list[dict[int, float]], k: int = TOP_K) -> dict:
    """A runtime's sparse output against the reference's: per-token weights at real positions, the lexical
    weights it aggregated (every id of either side; a missing id weighs 0) and each row's top-k ids."""
    if token_weights.shape != ref_token_weights.shape or len(lexical) != len(ref_lexical):
        return {"error": f"token weights {list(token_weights.shape)} / {len(lexical)} lexical rows differ from the "
                         f"reference's {list(ref_token_weights.shape)} / {len(ref_lexical)}"}
    if not np.all(np.isfinite(token_weights)):
        return {"error": "token weights hold NaN or Inf"}
    real = np.asarray(mask) != 0
    diff = np.abs(token_weights.astype(np.float64) - ref_token_weights)[real]
    lex = max((abs(run.get(i, 0.0) - ref.get(i, 0.0)) for run, ref in zip(lexical, ref_lexical)
               for i in set(run) | set(ref)), default=0.0)
    tops = [top_k_agreement(run, ref, k) for run, ref in zip(lexical, ref_lexical)]
    return {"token_weights_max_abs_diff": float(diff.max()) if diff.size else 0.0,
            "lexical_max_abs_diff": float(lex), "top_k": k,
            "top_k_agreement": min(t[0] for t in tops), "top_k_agreement_plain": min(t[1] for t in tops),
            "top_k_ids_judged": sum(t[2] for t in tops),
            "lexical_entries": [len(row) for row in lexical],
            "reference_lexical_entries": [len(r) for r in ref_lexical],
            "threshold": {"max_abs_diff": SPARSE_MAX_ABS, "top_k_agreement": 1.0}}


def compare_colbert(vectors: np.ndarray, ref_vectors: np.ndarray, mask: np.ndarray) -> dict:
    """A runtime's multi-vectors [B,S-1,Dc] against the reference's: cosine of every real token's vector (the tokens
    after CLS with mask 1), and padding exactly zero as the model masks it."""
    if vectors.shape != ref_vectors.shape:
        return {"error": f"colbert vectors {list(vectors.shape)} differ from the reference's {list(ref_vectors.shape)}"}
    if not np.all(np.isfinite(vectors)):
        return {"error": "colbert vectors hold NaN or Inf"}
    real = np.asarray(mask)[:, 1:] != 0
    a, b = vectors[real].astype(np.float64), ref_vectors[real].astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = np.sum(a * b, axis=1) / np.where(norms == 0, 1.0, norms)
    padding = float(np.max(np.abs(vectors[~real]))) if (~real).any() else 0.0
    result = {"min_cosine": float(cos.min()) if cos.size else None,
              "mean_cosine": float(cos.mean()) if cos.size else None,
              "vectors": int(real.sum()), "max_abs_diff": float(np.max(np.abs(a - b))) if a.size else 0.0,
              "padding_max_abs": padding, "threshold": {"min_cosine": COLBERT_MIN_COSINE}}
    if padding != 0.0:
        result["error"] = f"padding vectors are not zero (max |x| {padding:.3g})"
    return result


def outputs_failure(p: dict) -> str | None:
    """Why a cell's sparse or multi-vector parity fails it (fp32 thresholds above), or None."""
    sparse, colbert = p.get("sparse"), p.get("colbert")
    if sparse:
        if sparse.get("error"):
            return f"sparse: {sparse['error']}"
        worst = max(sparse["token_weights_max_abs_diff"], sparse["lexical_max_abs_diff"])
        if not worst <= SPARSE_MAX_ABS:
            return f"sparse: weights differ by {worst:.2e} > {SPARSE_MAX_ABS:g}"
        if sparse["top_k_agreement"] < 1.0:
            return f"sparse: top-{sparse['top_k']} token ids agree {sparse['top_k_agreement']:.3f} < 1"
    if colbert:
        if colbert.get("error"):
            return f"colbert: {colbert['error']}"
        if colbert["min_cosine"] is not None and not colbert["min_cosine"] >= COLBERT_MIN_COSINE:
            return f"colbert: min cosine {colbert['min_cosine']:.6f} < {COLBERT_MIN_COSINE}"
    return None
