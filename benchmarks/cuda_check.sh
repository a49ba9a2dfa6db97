#!/usr/bin/env bash
# The CUDA check, run on a lent GPU machine from the repository root, with that machine's own python3 and
# CUDA torch (nothing installed): torch at fp32, fp16 and bf16 on CUDA, each cell in two forks, against the
# CPU fp32 eager reference; ONNX Runtime's CUDA cells say whether this onnxruntime has the CUDA execution
# provider (else `skipped` with the reason). Results land in ${OUT:-/tmp/cuda-check}.
set -uo pipefail
OUT=${OUT:-/tmp/cuda-check}
export PYTHONPATH=$PWD/src EMBEDPERF_CACHE=${EMBEDPERF_CACHE:-/tmp/embedperf-cache} PYTHONUNBUFFERED=1
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 - <<'PY'
import importlib
for m in ("torch", "transformers", "onnxruntime", "onnxscript", "onnx", "safetensors", "typer", "pynvml"):
    try:
        mod = importlib.import_module(m)
        print(m, getattr(mod, "__version__", "?"))
    except Exception as e:
        print(m, "MISSING", e)
import torch
print("cuda available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "",
      "bf16 supported", torch.cuda.is_bf16_supported() if torch.cuda.is_available() else None)
PY
run() { python3 -m embedperf.cli run --device cuda --threads "$(nproc)" --forks 2 --max-seconds 10 \
          --results "$OUT/results" "$@" 2>&1 | grep -v -i -E "warning|^ +fork "; }
# the real-size MiniLM architecture (random weights): every precision, torch and ONNX Runtime
run --model sentence-transformers/all-MiniLM-L6-v2 --source twin --runtimes torch,onnxruntime-python \
    --precision fp32,fp16,bf16 --batch 1,32 --seq 128
# the plan's EmbeddingGemma twin on torch: where fp16/bf16 matter on a GPU
run --model google/embeddinggemma-300m --source twin --runtimes torch --precision fp32,fp16,bf16 \
    --batch 1,32 --seq 512
python3 -m embedperf.cli report "$OUT/results" --format json > "$OUT/cells.json"
python3 - "$OUT/cells.json" <<'PY'
import json, sys
for c in json.load(open(sys.argv[1])):
    print(f"{c['model'].split('/')[-1]:22s} {c['runtime']:18s} {c['precision']:5s} {c['batch']:>3}x{c['seq']:<4} "
          f"{c['status']:8s} median {c['median_ms'] or float('nan'):9.3f} ms  CI {c['ci_low_ms'] or float('nan'):.3f}-"
          f"{c['ci_high_ms'] or float('nan'):.3f}  forks {c['forks']}  min cos {c['min_cosine'] or float('nan'):.6f}  "
          f"GPU MB {c['gpu_peak_mb']}  {(c['reason'] or '')[:90]}")
PY
