#!/usr/bin/env python3
"""Parity of embedperf-candle against the PyTorch reference, on tiny random models.

For each family it builds a small random model with transformers (non-trivial
initializer_range, random norm weights), saves it with save_pretrained as a
`reference` artifact (plus heads.safetensors for EmbeddingGemma's Dense layers and
embedperf_model.json), runs the PyTorch reference (eager attention; mean / last /
cls pooling; dense; L2 normalize) on a right-padded batch, runs the candle binary
through the protocol (one batched shape, then each row alone at its own length)
and compares:

  candle batched vs torch:       min cosine >= 0.9999, max abs <= 1e-4
  candle batched vs candle rows: max abs <= 1e-5

Gemma3 uses use_bidirectional_attention=True, num_key_value_heads < heads and a
sliding window smaller than the sequence (layer types sliding, sliding, full); the
script also reports how far full attention is from the windowed reference, to show
that the test can see the window.

With --precision bf16|fp16|int8 candle runs at that precision instead and is
compared with the same float32 reference: the line reports the min cosine (the
floors are the caller's, --min-cosine, default 0.9999 for fp32 and 0 otherwise),
the result's settings.precision must name it and its output must differ from
candle's own fp32 output (else fp32 ran under another label).

Usage: python parity.py --bin PATH/TO/embedperf-candle [--families bert,gemma3,...]
       [--work /tmp/embedperf-candle-parity] [--threads 2] [--precision fp32]
       [--min-cosine X]
Exit status 0 when every family passes.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file, save_file
from safetensors.torch import save_file as save_torch

SEQ = 24
LENGTHS = [24, 17, 9, 3]
VOCAB = 211


def randomize_norms(model, std=0.2):
    """Norm weights start at 0 (Gemma) or 1: make them random so they matter."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name.lower():
                p.add_(torch.randn_like(p) * std)


def build(family, out):
    import transformers as T

    torch.manual_seed({"bert": 1, "gemma3": 2, "qwen3": 3, "xlm-roberta": 4}[family])
    heads = {}
    meta = {"family": family}
    if family == "bert":
        cfg = T.BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=128, max_position_embeddings=64, initializer_range=0.2)
        model = T.BertModel(cfg)
        meta.update(pooling="mean", normalize=True, dense=[])
    elif family == "gemma3":
        # widths are multiples of 32 so that int8 (q8_0 blocks of 32) can run it too
        cfg = T.Gemma3TextConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                                 num_key_value_heads=1, head_dim=32, intermediate_size=96,
                                 query_pre_attn_scalar=24, sliding_window=8, use_bidirectional_attention=True,
                                 layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                                 max_position_embeddings=128, initializer_range=0.2)
        model = T.Gemma3TextModel(cfg)
        heads = {"dense.0.weight": torch.randn(4 * 64, 64) * 0.1, "dense.1.weight": torch.randn(64, 4 * 64) * 0.1}
        meta.update(pooling="mean", normalize=True, dense=["dense.0.weight", "dense.1.weight"])
    elif family == "qwen3":
        cfg = T.Qwen3Config(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, head_dim=16, intermediate_size=128, max_position_embeddings=128,
                            rope_theta=1000000.0, initializer_range=0.2)
        model = T.Qwen3Model(cfg)
        meta.update(pooling="last", normalize=True, dense=[])
    elif family == "xlm-roberta":
        cfg = T.XLMRobertaConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=128, max_position_embeddings=SEQ + 8, pad_token_id=1,
                                 type_vocab_size=1, initializer_range=0.2)
        model = T.XLMRobertaModel(cfg)
        meta.update(pooling="cls", normalize=True, dense=[])
    else:
        raise SystemExit(f"unknown family {family}")
    randomize_norms(model)
    model.eval()
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out)
    save_torch({k: v.contiguous() for k, v in heads.items()} or {"unused": torch.zeros(1)},
               os.path.join(out, "heads.safetensors"))
    with open(os.path.join(out, "embedperf_model.json"), "w") as f:
        json.dump(meta, f)
    return meta


def batch_for(family):
    rng = np.random.default_rng(7)
    pad = {"bert": 0, "gemma3": 0, "qwen3": 5, "xlm-roberta": 1}[family]
    ids = np.full((len(LENGTHS), SEQ), pad, dtype=np.int64)
    mask = np.zeros((len(LENGTHS), SEQ), dtype=np.int64)
    for i, n in enumerate(LENGTHS):
        ids[i, :n] = rng.integers(3, VOCAB, n)
        mask[i, :n] = 1
        if family == "qwen3":
            ids[i, n - 1] = pad  # last real token is the EOS that is also the pad id
    return ids, mask


def reference(family, path, meta, ids, mask, overrides=None):
    import transformers as T

    cls = {"bert": T.BertModel, "gemma3": T.Gemma3TextModel, "qwen3": T.Qwen3Model,
           "xlm-roberta": T.XLMRobertaModel}[family]
    model = cls.from_pretrained(path, attn_implementation="eager", **(overrides or {}))
    model.eval()
    ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
    with torch.no_grad():
        h = model(input_ids=ids_t, attention_mask=mask_t).last_hidden_state
        if meta["pooling"] == "mean":
            m = mask_t.unsqueeze(-1).to(h.dtype)
            x = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        elif meta["pooling"] == "cls":
            x = h[:, 0]
        else:
            last = mask_t.shape[1] - 1 - mask_t.flip(1).argmax(1)  # last position whose mask is 1
            x = h[torch.arange(h.shape[0]), last]
        if meta["dense"]:
            from safetensors.torch import load_file as lt
            hd = lt(os.path.join(path, "heads.safetensors"))
            for name in meta["dense"]:
                x = x @ hd[name].T
        if meta["normalize"]:
            x = F.normalize(x, p=2, dim=-1)
    return x.numpy()


def run_candle(binary, family, path, meta, ids, mask, work, threads, output_dim, precision="fp32"):
    os.makedirs(work, exist_ok=True)
    shapes = []
    def add(name, i, m):
        wl = os.path.join(work, f"{name}.workload.safetensors")
        save_file({"input_ids": np.ascontiguousarray(i), "attention_mask": np.ascontiguousarray(m),
                   "lengths": m.sum(1).astype(np.int64)}, wl)
        shapes.append({"batch": int(i.shape[0]), "seq": int(i.shape[1]), "workload": wl,
                       "embeddings": os.path.join(work, f"{name}.embeddings.safetensors")})
    add("batched", ids, mask)
    for r, n in enumerate(LENGTHS):
        add(f"row{r}", ids[r:r + 1, :n], mask[r:r + 1, :n])
    request = {
        "protocol": 1, "runtime": "candle",
        "model": {"name": f"tiny-{family}", "family": family, "pooling": meta["pooling"],
                  "normalize": meta["normalize"], "dense": meta["dense"], "output_dim": output_dim,
                  "truncate_dim": None},
        "artifact": {"format": "reference", "path": path},
        "shapes": shapes, "device": os.environ.get("PARITY_DEVICE", "cpu"), "precision": precision,
        "threads": {"intra_op": threads, "inter_op": 1},
        "timing": {"warmup": 1, "min_calls": 2, "min_seconds": 0.0, "max_seconds": 30.0},
    }
    req, res = os.path.join(work, "request.json"), os.path.join(work, "result.json")
    with open(req, "w") as f:
        json.dump(request, f)
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    p = subprocess.run([binary, "--request", req, "--result", res], env=env, capture_output=True, text=True)
    result = json.load(open(res)) if os.path.exists(res) else None
    if result and (result.get("error") or {}).get("kind") == "unsupported":
        raise Refusal(result["error"]["message"])
    if p.returncode != 0 or result is None or result.get("error"):
        raise RuntimeError(f"candle runner failed ({p.returncode}): {p.stderr}\n{json.dumps(result, indent=1)}")
    for s in result["shapes"]:
        if s["status"] != "ok":
            raise RuntimeError(f"shape {s['batch']}x{s['seq']} failed: {s['error']}")
    outs = [load_file(s["embeddings"])["sentence_embedding"] for s in shapes]
    return outs[0], np.concatenate(outs[1:], 0), result


class Refusal(Exception):
    """The runner refused the precision (error kind unsupported)."""


def cosine_rows(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--families", default="bert,gemma3,qwen3,xlm-roberta")
    ap.add_argument("--work", default="/tmp/embedperf-candle-parity")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16", "int8"])
    ap.add_argument("--min-cosine", type=float, default=None)
    args = ap.parse_args()
    floor = args.min_cosine if args.min_cosine is not None else (0.9999 if args.precision == "fp32" else 0.0)
    ok = True
    for family in args.families.split(","):
        path = os.path.join(args.work, family, "model")
        work = os.path.join(args.work, family)
        meta = build(family, path)
        ids, mask = batch_for(family)
        ref = reference(family, path, meta, ids, mask)
        try:
            batched, rows, result = run_candle(args.bin, family, path, meta, ids, mask, work, args.threads,
                                               ref.shape[1], args.precision)
        except Refusal as e:
            ok = False
            print(f"{family:12s} REFUSED {args.precision}: {e} FAIL")
            continue
        cos = cosine_rows(batched, ref)
        max_abs = float(np.abs(batched - ref).max())
        row_abs = float(np.abs(batched - rows).max())
        finite = bool(np.isfinite(batched).all())
        if args.precision == "fp32":
            passed = finite and cos.min() >= floor and max_abs <= 1e-4 and row_abs <= 1e-5
            extra = ""
        else:
            fp32, _, _ = run_candle(args.bin, family, path, meta, ids, mask, os.path.join(work, "fp32"), args.threads,
                                    ref.shape[1])
            settings = result["settings"]
            passed = (finite and cos.min() >= floor and settings["precision"] == args.precision
                      and not np.array_equal(batched, fp32))
            extra = (f" precision={settings['precision']} dtype={settings['dtype']}"
                     f" vs_candle_fp32_min_cos={cosine_rows(batched, fp32).min():.6f}"
                     + (f" ({settings['quantization']})" if "quantization" in settings else ""))
        ok &= passed
        print(f"{family:12s} B={len(LENGTHS)} S={SEQ} lengths={LENGTHS} dim={ref.shape[1]} "
              f"min_cos={cos.min():.8f} max_abs={max_abs:.2e} batched_vs_rows_max_abs={row_abs:.2e} "
              f"device={result['device']['used']}{extra} {'PASS' if passed else 'FAIL'}")
        if family == "gemma3" and args.precision == "fp32":
            full = reference(family, path, meta, ids, mask, overrides={"sliding_window": 10_000})
            print(f"{'':12s} (window check: full-attention reference vs windowed reference "
                  f"min_cos={cosine_rows(full, ref).min():.4f}; candle vs full-attention "
                  f"min_cos={cosine_rows(batched, full).min():.4f})")
    print("all families PASS" if ok else "some family FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
