"""How faithful a cell's embeddings are to the PyTorch fp32 reference."""

from __future__ import annotations

import numpy as np

FP32_MIN_COSINE = 0.9999  # below this an fp32 cell is failed, not footnoted
SPREAD_LIMIT = 0.99  # reference rows this alike prove nothing about parity
ZERO_SHOT_LIMIT = 1e-4  # max |Δ probability| of the zero-shot check against the reference


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
              bias: float | None, rule: str) -> dict:
    """A runtime's zero-shot probabilities (its own text and image embeddings) against the reference's."""
    logits, probs = zero_shot_probabilities(text, image, scale, bias, rule)
    ref_logits, ref_probs = zero_shot_probabilities(ref_text, ref_image, scale, bias, rule)
    return {
        "captions": int(len(text)), "images": int(len(image)), "rule": rule, "logit_scale": float(scale),
        "logit_bias": bias, "max_abs_prob_diff": float(np.max(np.abs(probs - ref_probs))),
        "max_abs_logit_diff": float(np.max(np.abs(logits - ref_logits))),
        "top1_agreement": float(np.mean(probs.argmax(1) == ref_probs.argmax(1))),
        "limit": ZERO_SHOT_LIMIT, "reference": "torch fp32 eager",
    }
