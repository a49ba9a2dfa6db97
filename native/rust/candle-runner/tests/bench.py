#!/usr/bin/env python3
"""Speed check of embedperf-candle against PyTorch on random models with the real
architectures (vocabulary cut to 1000 rows: the lookup cost does not depend on it).

Builds each model once under --work, then for every shape runs the candle binary
through the protocol and PyTorch (sdpa, same thread count) and prints the median
ms per call of each. Correctness is parity.py's job; this prints max abs diff too.

Usage: python bench.py --bin PATH [--families bert,gemma3] [--shapes 8x128,1x512]
       [--threads 2] [--calls 5]
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file, save_file
from safetensors.torch import save_file as save_torch

V = 1000


def configs():
    import transformers as T
    return {
        "bert": (T.BertModel, T.BertConfig(vocab_size=V, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                           intermediate_size=1536, max_position_embeddings=512), "mean", []),
        "gemma3": (T.Gemma3TextModel, T.Gemma3TextConfig(
            vocab_size=V, hidden_size=768, num_hidden_layers=24, num_attention_heads=3, num_key_value_heads=1,
            head_dim=256, intermediate_size=1152, query_pre_attn_scalar=256, sliding_window=512,
            use_bidirectional_attention=True, max_position_embeddings=2048), "mean",
            ["dense.0.weight", "dense.1.weight"]),
        "qwen3": (T.Qwen3Model, T.Qwen3Config(
            vocab_size=V, hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
            head_dim=128, intermediate_size=3072, max_position_embeddings=32768, rope_theta=1e6), "last", []),
        "xlm-roberta": (T.XLMRobertaModel, T.XLMRobertaConfig(
            vocab_size=V, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
            max_position_embeddings=8194, pad_token_id=1, type_vocab_size=1, layer_norm_eps=1e-5), "cls", []),
    }


def build(family, path):
    cls, cfg, pooling, dense = configs()[family]
    if not os.path.exists(os.path.join(path, "model.safetensors")):
        torch.manual_seed(0)
        m = cls(cfg)
        m.save_pretrained(path)
        heads = {"dense.0.weight": torch.randn(3072, 768) * 0.02, "dense.1.weight": torch.randn(768, 3072) * 0.02} \
            if dense else {"unused": torch.zeros(1)}
        save_torch(heads, os.path.join(path, "heads.safetensors"))
        json.dump({"family": family, "pooling": pooling, "normalize": True, "dense": dense},
                  open(os.path.join(path, "embedperf_model.json"), "w"))
    return cls, pooling, dense


def workload(b, s, pad):
    rng = np.random.default_rng(0)
    ids = rng.integers(3, V, (b, s)).astype(np.int64)
    mask = np.ones((b, s), np.int64)
    for i in range(1, b):  # some rows padded
        n = max(1, s - (i * s) // (2 * b))
        ids[i, n:] = pad
        mask[i, n:] = 0
    return ids, mask


def torch_ref(cls, path, pooling, dense, ids, mask, calls, threads):
    torch.set_num_threads(threads)
    m = cls.from_pretrained(path, attn_implementation="sdpa").eval()
    hd = {}
    if dense:
        from safetensors.torch import load_file as lt
        hd = lt(os.path.join(path, "heads.safetensors"))
    it, mt = torch.from_numpy(ids), torch.from_numpy(mask)

    def call():
        with torch.inference_mode():
            h = m(input_ids=it, attention_mask=mt).last_hidden_state
            if pooling == "mean":
                mm = mt.unsqueeze(-1).to(h.dtype)
                x = (h * mm).sum(1) / mm.sum(1).clamp(min=1e-9)
            elif pooling == "cls":
                x = h[:, 0]
            else:
                last = mt.shape[1] - 1 - mt.flip(1).argmax(1)
                x = h[torch.arange(h.shape[0]), last]
            for n in dense:
                x = x @ hd[n].T
            return F.normalize(x, dim=-1).numpy()
    out = call()
    ts = []
    for _ in range(calls):
        t = time.perf_counter(); call(); ts.append(time.perf_counter() - t)
    return out, float(np.median(ts)) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--families", default="bert,gemma3")
    ap.add_argument("--shapes", default="8x128")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--work", default="/tmp/embedperf-candle-bench")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()
    for family in args.families.split(","):
        path = os.path.join(args.work, family, "model")
        os.makedirs(path, exist_ok=True)
        cls, pooling, dense = build(family, path)
        pad = {"bert": 0, "gemma3": 0, "qwen3": 5, "xlm-roberta": 1}[family]
        shapes, wls = [], []
        for sh in args.shapes.split(","):
            b, s = map(int, sh.split("x"))
            ids, mask = workload(b, s, pad)
            wl = os.path.join(args.work, family, f"{sh}.workload.safetensors")
            save_file({"input_ids": ids, "attention_mask": mask, "lengths": mask.sum(1)}, wl)
            shapes.append({"batch": b, "seq": s, "workload": wl,
                           "embeddings": os.path.join(args.work, family, f"{sh}.emb.safetensors")})
            wls.append((sh, ids, mask))
        out_dim = 768 if family == "gemma3" else (384 if family == "bert" else 1024)
        req = {"protocol": 1, "runtime": "candle",
               "model": {"name": family, "family": family, "pooling": pooling, "normalize": True, "dense": dense,
                         "output_dim": out_dim, "truncate_dim": None},
               "artifact": {"format": "reference", "path": path}, "shapes": shapes, "device": "cpu",
               "precision": "fp32", "threads": {"intra_op": args.threads, "inter_op": 1},
               "timing": {"warmup": 1, "min_calls": args.calls, "min_seconds": 0.0, "max_seconds": 120.0}}
        rp, resp = os.path.join(args.work, family, "req.json"), os.path.join(args.work, family, "res.json")
        json.dump(req, open(rp, "w"))
        env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
        p = subprocess.run([args.bin, "--request", rp, "--result", resp], env=env, capture_output=True, text=True)
        res = json.load(open(resp))
        if p.returncode or res.get("error"):
            print(p.stderr, res.get("error")); return 1
        for (sh, ids, mask), s in zip(wls, res["shapes"]):
            if s["status"] != "ok":
                print(family, sh, s["error"]); continue
            c_ms = float(np.median(s["samples_ns"])) / 1e6
            line = f"{family:12s} {sh:8s} candle {c_ms:9.1f} ms"
            if not args.no_torch:
                out, t_ms = torch_ref(cls, path, pooling, dense, ids, mask, args.calls, args.threads)
                emb = load_file(s["embeddings"])["sentence_embedding"]
                line += f"  torch {t_ms:9.1f} ms  ratio {c_ms / t_ms:5.2f}  max_abs {np.abs(emb - out).max():.1e}"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
