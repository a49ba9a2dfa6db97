"""Analytic work per call: matrix-multiply FLOPs and weight bytes of one embedding call. Framework-free.

Counting rules (the same ones `torch.utils.flop_counter.FlopCounterMode` applies to matmuls):

- only matrix multiplies are counted, 2·m·n·k each, over the *padded* shape [batch, seq]: a runtime
  computes the padding rows too;
- per encoder layer: the Q, K, V and O projections (K and V at ``num_key_value_heads × head_dim``),
  QKᵀ and attention×V over the (query, key) pairs the model's mask lets attend, for every query head,
  and the MLP (gate, up, down for the gated gemma3/qwen3 MLP; two matrices for bert/xlm-roberta);
- attention counts the work the model *needs*: all seq × seq pairs for bidirectional encoders, the
  lower triangle seq·(seq+1)/2 for causal ones (Qwen3, CLIP's text tower), and the band |i − j| <
  window for EmbeddingGemma's bidirectional sliding-window layers (the full square while seq <=
  window). A runtime that computes the full square and masks it does more than this; the cell says
  what was counted (``attention``, ``attention_note``) and how many FLOPs the full squares would add
  (``unneeded_attention_flops``), which is what ``torch.utils.flop_counter`` counts;
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


def attended_pairs(seq: int, causal: bool = False, window: int | None = None) -> int:
    """(query, key) pairs one head attends over in a sequence of `seq` tokens.

    causal: key <= query; window (bidirectional, as EmbeddingGemma's local layers): |query − key| <
    window; a causal window: query − window < key <= query.
    """
    if window is None or window >= seq:
        return seq * (seq + 1) // 2 if causal else seq * seq
    if causal:  # query q sees min(q + 1, window) keys
        return window * (window + 1) // 2 + (seq - window) * window
    far = seq - window  # pairs with |i − j| >= window: d = window … seq−1, seq − d of them each way
    return seq * seq - far * (far + 1)


def _attention(kind: str, layers: int, sliding_layers: int, window: int | None, seq: int) -> tuple[int, str]:
    """Pairs attended over all layers (per batch row and head), and a sentence saying what was counted."""
    causal = kind == "causal"
    full = attended_pairs(seq, causal)
    pairs = (layers - sliding_layers) * full + sliding_layers * attended_pairs(seq, causal, window)
    what = "causal: the lower triangle seq·(seq+1)/2 of each head's scores" if causal else "all seq × seq pairs"
    if sliding_layers:
        band = "bidirectional band |i − j| < " if not causal else "causal window of "
        extra = "" if window and window < seq else f" (the whole sequence while seq <= {window})"
        what += f"; {sliding_layers} sliding-window layers: the {band}{window}{extra}"
    return pairs, what


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
        # Qwen3 (and Gemma3 unless made bidirectional, as EmbeddingGemma is) attend causally
        "kind": "causal" if (spec.family == "qwen3" or spec.family == "gemma3")
                and not cfg.get("use_bidirectional_attention") else "full",
        "sliding_window": cfg.get("sliding_window") if layer_types else None,
        "vocab": int(cfg.get("vocab_size", 0)),
        "positions": int(cfg.get("max_position_embeddings", 0)),
        "token_types": int(cfg.get("type_vocab_size", 0) or 0),
    }


def _tower(spec: ModelSpec, source: str, modality: str) -> dict:
    """The numbers of one CLIP/SigLIP tower: width, depth, tokens it attends over, its head."""
    cfg = spec.architecture(source)
    sub = cfg["text_config" if modality == "text" else "vision_config"]
    h, heads = int(sub["hidden_size"]), int(sub["num_attention_heads"])
    out = {"hidden": h, "heads": heads, "head_dim": h // heads, "intermediate": int(sub["intermediate_size"]),
           "layers": int(sub["num_hidden_layers"])}
    if modality == "text":
        out["tokens"] = int(sub["max_position_embeddings"])
        out["vocab"] = int(sub["vocab_size"])
    else:
        patch, side = int(sub["patch_size"]), int(sub["image_size"])
        out["patches"] = (side // patch) ** 2
        out["patch_in"] = int(sub.get("num_channels", 3)) * patch * patch
        out["tokens"] = out["patches"] + (1 if spec.family == "clip" else 0)  # CLIP prepends a CLS token
    out["projection"] = int(cfg["projection_dim"]) if spec.family == "clip" else h
    return out


def tower_flops(spec: ModelSpec, source: str, modality: str, batch: int) -> dict:
    """Matrix-multiply FLOPs of one call of a CLIP/SigLIP tower, by part.

    Text towers run their fixed length (77 or 64) whatever the caption; image towers attend over
    every patch (+ CLIP's CLS). The patch embedding is a convolution with stride = kernel, i.e. one
    [patches, C·p·p] × [C·p·p, hidden] matrix multiply. SigLIP's image head (MAP) is one probe
    query attending over all patches, then an MLP on that one row; CLIP projects one row.
    """
    a = _tower(spec, source, modality)
    h, d, n, inter, layers, t = a["hidden"], a["head_dim"], a["heads"], a["intermediate"], a["layers"], a["tokens"]
    tokens = batch * t
    kind = "causal" if spec.family == "clip" and modality == "text" else "full"  # CLIP's text tower is causal
    pairs, what = _attention(kind, layers, 0, None, t)
    breakdown = {
        "q_proj": layers * 2 * tokens * h * h,
        "kv_proj": layers * 2 * 2 * tokens * h * h,
        "o_proj": layers * 2 * tokens * h * h,
        "attn_scores": 2 * batch * n * pairs * d,
        "attn_values": 2 * batch * n * pairs * d,
        "mlp": layers * 2 * 2 * tokens * h * inter,
    }
    unneeded = 2 * 2 * batch * n * d * (layers * t * t - pairs)
    if modality == "image":
        breakdown["patch_embedding"] = 2 * batch * a["patches"] * a["patch_in"] * h
    if spec.family == "siglip" and modality == "image":
        p = a["patches"]
        breakdown["head"] = (2 * batch * h * h + 2 * 2 * batch * p * h * h  # probe q, patch k and v
                             + 2 * 2 * batch * n * p * d  # one query's scores and values
                             + 2 * batch * h * h + 2 * 2 * batch * h * inter)  # out_proj, MLP on one row
    else:
        breakdown["head"] = 2 * batch * h * a["projection"]
    return {"flops": int(sum(breakdown.values())), "breakdown": breakdown, "attention": kind,
            "attention_note": what, "unneeded_attention_flops": int(unneeded), "sliding_window_layers": 0,
            "batch": batch, "seq": t, "padded_tokens": tokens, "modality": modality}


def tower_parameters(spec: ModelSpec, source: str, modality: str) -> dict:
    """Parameters of one tower by part (the embedding tables apart, as for the text models)."""
    a = _tower(spec, source, modality)
    h, inter, layers = a["hidden"], a["intermediate"], a["layers"]
    per_layer = 4 * h * h + 4 * h + 2 * h * inter + inter + h + 2 * 2 * h
    out = {"layers": layers * per_layer, "norm": 2 * h}
    if modality == "text":
        out["embedding"] = a["vocab"] * h + a["tokens"] * h
        out["dense_heads"] = h * a["projection"] + (h if spec.family == "siglip" else 0)
    else:
        out["embedding"] = a["tokens"] * h + (h if spec.family == "clip" else 0)  # positions (+ CLS)
        out["patch_embedding"] = a["patch_in"] * h + (h if spec.family == "siglip" else 0)
        if spec.family == "clip":
            out["norm"] += 2 * h  # pre_layrnorm
            out["dense_heads"] = h * a["projection"]
        else:  # probe, in/out projections, layer norm, MLP
            out["dense_heads"] = h + 4 * h * h + 4 * h + 2 * h + 2 * h * inter + inter + h
    return out


def flops_per_call(spec: ModelSpec, source: str, batch: int, seq: int, modality: str = "text") -> dict:
    """Matrix-multiply FLOPs of one call on a padded [batch, seq] input, with a per-part breakdown."""
    if batch < 1 or seq < 1:
        raise ValueError(f"batch and seq must be positive, got {batch} × {seq}")
    if spec.multimodal:
        return tower_flops(spec, source, modality, batch)
    a = _shape(spec, source)
    tokens = batch * seq
    h, d, nq, nkv, inter, layers = a["hidden"], a["head_dim"], a["heads"], a["kv_heads"], a["intermediate"], a["layers"]
    per_layer = {
        "q_proj": 2 * tokens * h * nq * d,
        "kv_proj": 2 * 2 * tokens * h * nkv * d,
        "o_proj": 2 * tokens * nq * d * h,
        "mlp": (3 if a["gated"] else 2) * 2 * tokens * h * inter,
    }
    breakdown = {k: v * layers for k, v in per_layer.items()}
    pairs, what = _attention(a["kind"], layers, a["sliding_layers"], a["sliding_window"], seq)
    breakdown["attn_scores"] = 2 * batch * nq * pairs * d  # QKᵀ over the attended pairs
    breakdown["attn_values"] = 2 * batch * nq * pairs * d  # softmax(QKᵀ)·V
    breakdown["dense_heads"] = sum(2 * batch * head.in_features * head.out_features for head in spec.heads(source))
    total = sum(breakdown.values())
    return {
        "flops": int(total),
        "breakdown": breakdown,
        "attention": a["kind"] + (" + sliding window" if a["sliding_layers"] else ""),
        "attention_note": what,
        # what computing every seq × seq square (and masking) adds: what flop counters of the graph see
        "unneeded_attention_flops": int(2 * 2 * batch * nq * d * (layers * seq * seq - pairs)),
        "sliding_window_layers": a["sliding_layers"],
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


def weight_bytes(spec: ModelSpec, source: str, modality: str = "text") -> int:
    """fp32 bytes of the weights one call reads: every non-embedding parameter plus the Dense heads.

    The embedding tables are left out (a call reads only batch × seq rows of them); the unused BERT
    pooler is left out too. Kept simple on purpose: the figure is for a bandwidth bound, not a cache model.
    """
    if spec.multimodal:
        p = tower_parameters(spec, source, modality)
        return FP32_BYTES * (sum(p.values()) - p["embedding"])
    p = parameter_counts(spec, source)
    return FP32_BYTES * (p["layers"] + p["norm"] + p["dense_heads"])


def arithmetic_intensity(spec: ModelSpec, source: str, batch: int, seq: int, modality: str = "text") -> float:
    """FLOPs per weight byte read: the x-axis of a roofline chart."""
    return flops_per_call(spec, source, batch, seq, modality)["flops"] / weight_bytes(spec, source, modality)


def cell_work(spec: ModelSpec, source: str, batch: int, seq: int, median_ms: float | None,
              peak_gflops: float | None = None, modality: str = "text") -> dict:
    """The work fields of one cell: flops, weight bytes, achieved GFLOP/s and the share of a measured peak."""
    f = flops_per_call(spec, source, batch, seq, modality)
    wb = weight_bytes(spec, source, modality)
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


def corpus_work(spec: ModelSpec, source: str, batches: list, pass_s: float | None,
                peak_gflops: float | None = None) -> dict:
    """Work of one pass over a throughput corpus: the sum over its batches [(rows, seq), ...]."""
    calls = [flops_per_call(spec, source, int(rows), int(seq)) for rows, seq in batches]
    flops = sum(c["flops"] for c in calls)
    wb = weight_bytes(spec, source)
    gflops = flops / pass_s / 1e9 if pass_s else None
    return {
        "flops": flops, "flops_per": "one pass over the corpus", "weight_bytes": wb,
        "attention": calls[0]["attention"] if calls else None,
        "attention_note": calls[0]["attention_note"] if calls else None,
        "unneeded_attention_flops": sum(c["unneeded_attention_flops"] for c in calls),
        "arithmetic_intensity": flops / len(batches) / wb if batches else None,
        "gflops": gflops, "share_of_peak": (gflops / peak_gflops) if gflops is not None and peak_gflops else None,
    }
