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
