#!/usr/bin/env python3
"""Parity of embedperf-candle against the project's own PyTorch graph
(embedperf.models.embedder.load_reference, eager attention) on reference artifacts
that `embedperf prepare` built (e.g. under ~/.cache/embedperf/models/*/reference).

Usage: PYTHONPATH=src python native/rust/candle-runner/tests/project_artifacts.py \
           --bin PATH/embedperf-candle [--batch 3] [--seq 300] REFERENCE_DIR...
Random token ids (>= 3, rows right-padded to decreasing lengths); passes when
min cosine >= 0.9999 and max abs <= 1e-4 for every artifact.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.numpy import load_file, save_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("folders", nargs="+")
    args = ap.parse_args()
    from embedperf.models.embedder import load_reference

    ok = True
    for folder in args.folders:
        info = json.load(open(os.path.join(folder, "embedperf_model.json")))
        cfg = json.load(open(os.path.join(folder, "config.json")))
        rng = np.random.default_rng(0)
        b, s = args.batch, args.seq
        pad = cfg.get("pad_token_id") or 0
        ids = rng.integers(3, min(cfg["vocab_size"], 30000), (b, s)).astype(np.int64)
        mask = np.zeros((b, s), np.int64)
        for i in range(b):
            n = max(1, s - i * s // (b + 1))
            mask[i, :n] = 1
            ids[i, n:] = pad
        try:
            model = load_reference(__import__("pathlib").Path(folder), attention="eager")
            torch.set_num_threads(args.threads)
            with torch.no_grad():
                ref = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        except Exception as e:  # an artifact the PyTorch reference itself cannot run
            print(f"{folder}: SKIP, the PyTorch reference fails: {e}")
            continue
        with tempfile.TemporaryDirectory() as work:
            wl = os.path.join(work, "w.safetensors")
            emb = os.path.join(work, "e.safetensors")
            save_file({"input_ids": ids, "attention_mask": mask, "lengths": mask.sum(1)}, wl)
            req = {"protocol": 1, "runtime": "candle",
                   "model": {"name": info["model"], "family": info["family"], "pooling": info["pooling"],
                             "normalize": info["normalize"], "dense": info["dense"],
                             "output_dim": info["output_dim"], "truncate_dim": None},
                   "artifact": {"format": "reference", "path": folder},
                   "shapes": [{"batch": b, "seq": s, "workload": wl, "embeddings": emb}],
                   "device": "cpu", "precision": "fp32", "threads": {"intra_op": args.threads, "inter_op": 1},
                   "timing": {"warmup": 0, "min_calls": 1, "min_seconds": 0.0, "max_seconds": 600.0}}
            rp, resp = os.path.join(work, "req.json"), os.path.join(work, "res.json")
            json.dump(req, open(rp, "w"))
            p = subprocess.run([args.bin, "--request", rp, "--result", resp], capture_output=True, text=True)
            res = json.load(open(resp))
            if p.returncode or res.get("error") or res["shapes"][0]["status"] != "ok":
                shape_err = res["shapes"][0].get("error") if res.get("shapes") else None
                print(folder, "FAILED", p.stderr[-2000:], res.get("error"), shape_err)
                ok = False
                continue
            out = load_file(emb)["sentence_embedding"]
        cos = (out * ref).sum(1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1))
        mx = float(np.abs(out - ref).max())
        passed = bool(np.isfinite(out).all()) and cos.min() >= 0.9999 and mx <= 1e-4
        ok &= passed
        print(f"{info['model']:40s} {info['family']:12s} weights={info['weights']:6s} dim={out.shape[1]:5d} "
              f"B={b} S={s} lengths={mask.sum(1).tolist()} min_cos={cos.min():.8f} max_abs={mx:.2e} "
              f"{'PASS' if passed else 'FAIL'}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
