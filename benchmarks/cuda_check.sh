#!/usr/bin/env bash
# The CUDA check, run on a lent GPU machine from the repository root, with that machine's
# own python3/torch (nothing installed): the torch and ONNX Runtime CUDA paths on a
# full-size EmbeddingGemma twin. Results land in ${OUT:-/tmp/cuda-check}.
set -uo pipefail
OUT=${OUT:-/tmp/cuda-check}
export PYTHONPATH=$PWD/src EMBEDPERF_CACHE=${EMBEDPERF_CACHE:-/tmp/embedperf-cache} PYTHONUNBUFFERED=1
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 - <<'PY'
import importlib
for m in ("torch", "transformers", "onnxruntime", "onnxscript", "onnx", "safetensors", "typer"):
    try:
        mod = importlib.import_module(m)
        print(m, getattr(mod, "__version__", "?"))
    except Exception as e:
        print(m, "MISSING", e)
import torch, onnxruntime
print("cuda available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
print("ort providers", onnxruntime.get_available_providers())
PY
python3 -m embedperf.cli run --model google/embeddinggemma-300m --source twin \
  --runtimes torch,onnxruntime-python --device cuda --batch 1,8,32 --seq 128,512 \
  --threads "$(nproc)" --results "$OUT/results" 2>&1 | grep -v -i warning
python3 -m embedperf.cli report "$OUT/results" --format json > "$OUT/cells.json"
