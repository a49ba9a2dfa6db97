"""Analytic work per call: matrix-multiply FLOPs and weight bytes of one embedding call. Framework-free.

Counting rules (the same ones `torch.utils.flop_counter.FlopCounterMode` applies to matmuls):

- only matrix multiplies are counted, 2·m·n·k each, over the *padded* shape [batch, seq]: a runtime
  computes the padding rows too;
- per encoder layer: the Q, K, V and O projections (K and V at ``num_key_value_heads × head_dim``),
  QKᵀ and attention×V over the full seq × seq square for every query head, and the MLP (gate, up,
  down for the gated gemma3/qwen3 MLP; two matrices for bert/xlm-roberta);
- Gemma's sliding-window layers are counted as full attention, because the runtimes compute the
  full square and mask it (``"attention": "full"`` and ``sliding_window_layers`` say so);
- the bias-free Dense heads on [batch, hidden] after pooling;
- not counted: the embedding lookup, norms, activations, softmax, pooling, L2 normalisation (all
  elementwise or reductions), the rotary-angle product (2·batch·seq·head_dim/2 per layer type), no LM
  head; and the BERT/XLM-R ``pooler`` (a [batch, H]×[H, H] dense on the CLS token that the
  transformers encoder evaluates but the embedding graph does not use: 2·batch·H², negligible).
"""

from __future__ import annotations

from embedperf.models.registry import ModelSpec

GATED_FAMILIES = ("gemma3", "qwen3")
FP32_BYTES = 4


def _shape(spec: ModelSpec, source: str) -> dict:
    """The numbers of the architecture the counts need, with the family's defaults filled in."""
    cfg = spec.architecture(source)
    hidden = int(cfg["hidden_size"])
    heads = int(cfg["num_attention_heads"])
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    layer_types = cfg.get("layer_types") or []
    return {
        "layers": int(cfg["num_hidden_layers"]),
        "hidden": hidden,
        "heads": heads,
        "kv_heads": kv_heads,
        "head_dim": head_dim,
        "intermediate": int(cfg["intermediate_size"]),
        "gated": spec.family in GATED_FAMILIES,
        "bias": spec.family not in GATED_FAMILIES or bool(cfg.get("attention_bias")),
        "sliding_layers": sum(1 for t in layer_types if t == "sliding_attention"),
        "sliding_window": cfg.get("sliding_window") if layer_types else None,
        "vocab": int(cfg.get("vocab_size", 0)),
        "positions": int(cfg.get("max_position_embeddings", 0)),
        "token_types": int(cfg.get("type_vocab_size", 0) or 0),
    }


def flops_per_call(spec: ModelSpec, source: str, batch: int, seq: int) -> dict:
    """Matrix-multiply FLOPs of one call on a padded [batch, seq] input, with a per-part breakdown."""
    if batch < 1 or seq < 1:
        raise ValueError(f"batch and seq must be positive, got {batch} × {seq}")
    a = _shape(spec, source)
    tokens = batch * seq
    h, d, nq, nkv, inter, layers = a["hidden"], a["head_dim"], a["heads"], a["kv_heads"], a["intermediate"], a["layers"]
    per_layer = {
        "q_proj": 2 * tokens * h * nq * d,
        "kv_proj": 2 * 2 * tokens * h * nkv * d,
        "o_proj": 2 * tokens * nq * d * h,
        "attn_scores": 2 * batch * nq * seq * seq * d,  # QKᵀ
        "attn_values": 2 * batch * nq * seq * seq * d,  # softmax(QKᵀ)·V
        "mlp": (3 if a["gated"] else 2) * 2 * tokens * h * inter,
    }
    breakdown = {k: v * layers for k, v in per_layer.items()}
    breakdown["dense_heads"] = sum(2 * batch * head.in_features * head.out_features for head in spec.heads(source))
    total = sum(breakdown.values())
    return {
        "flops": int(total),
        "breakdown": breakdown,
        "attention": "full",
        "sliding_window_layers": a["sliding_layers"],
        "sliding_window_note": ("sliding-window layers counted as full seq×seq attention, as the runtimes "
                                "compute it") if a["sliding_layers"] else None,
        "batch": batch,
        "seq": seq,
        "padded_tokens": tokens,
    }


def parameter_counts(spec: ModelSpec, source: str) -> dict:
    """Parameters by part: the encoder layers, final/embedding norms, Dense heads, and the embedding tables."""
    a = _shape(spec, source)
    h, d, nq, nkv, inter, layers = a["hidden"], a["head_dim"], a["heads"], a["kv_heads"], a["intermediate"], a["layers"]
    attn = h * nq * d + 2 * h * nkv * d + nq * d * h
    mlp = (3 if a["gated"] else 2) * h * inter
    if a["gated"]:
        # no biases; RMSNorm weights: q_norm/k_norm (head_dim) and 2 (qwen3) or 4 (gemma3) per-layer norms
        norms = 2 * d + (4 if spec.family == "gemma3" else 2) * h
        biases = (nq * d + 2 * nkv * d + h) if a["bias"] else 0
        final_norm = h
    else:
        # q, k, v, o and both MLP biases; two LayerNorms (weight + bias) per layer; the embeddings' LayerNorm
        biases = nq * d + 2 * nkv * d + h + inter + h
        norms = 2 * 2 * h
        final_norm = 2 * h
    heads = sum(x.in_features * x.out_features for x in spec.heads(source))
    embedding = a["vocab"] * h
    if not a["gated"]:
        embedding += a["positions"] * h + a["token_types"] * h
    return {
        "layers": layers * (attn + mlp + norms + biases),
        "norm": final_norm,
        "dense_heads": heads,
        "embedding": embedding,
    }


def weight_bytes(spec: ModelSpec, source: str) -> int:
    """fp32 bytes of the weights one call reads: every non-embedding parameter plus the Dense heads.

    The embedding tables are left out (a call reads only batch × seq rows of them); the unused BERT
    pooler is left out too. Kept simple on purpose: the figure is for a bandwidth bound, not a cache model.
    """
    p = parameter_counts(spec, source)
    return FP32_BYTES * (p["layers"] + p["norm"] + p["dense_heads"])


def arithmetic_intensity(spec: ModelSpec, source: str, batch: int, seq: int) -> float:
    """FLOPs per weight byte read: the x-axis of a roofline chart."""
    return flops_per_call(spec, source, batch, seq)["flops"] / weight_bytes(spec, source)


def cell_work(spec: ModelSpec, source: str, batch: int, seq: int, median_ms: float | None,
              peak_gflops: float | None = None) -> dict:
    """The work fields of one cell: flops, weight bytes, achieved GFLOP/s and the share of a measured peak."""
    f = flops_per_call(spec, source, batch, seq)
    wb = weight_bytes(spec, source)
    gflops = f["flops"] / (median_ms * 1e-3) / 1e9 if median_ms and median_ms > 0 else None
    return {
        "flops": f["flops"],
        "flops_breakdown": f["breakdown"],
        "attention": f["attention"],
        "weight_bytes": wb,
        "arithmetic_intensity": f["flops"] / wb,
        "gflops": gflops,
        "share_of_peak": (gflops / peak_gflops) if gflops is not None and peak_gflops else None,
    }
