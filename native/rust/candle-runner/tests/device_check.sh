#!/usr/bin/env bash
# One-shot check of a prebuilt embedperf-candle (CPU build) on another machine, run from
# the repository root with that machine's own python3/torch/transformers:
#   BIN=build/candle-device/embedperf-candle bash native/rust/candle-runner/tests/device_check.sh
# 1) parity on the tiny models of every family (another CPU: other gemm kernels);
# 2) speed against torch on the real architectures, pinned to 2 cores and on 8 cores,
#    and the element-wise pool A/B (CANDLE_NUM_THREADS=1 vs intra_op).
set -uo pipefail
BIN=${BIN:-build/candle-device/embedperf-candle}
OUT=${OUT:-/tmp/candle-device-check}
T=native/rust/candle-runner/tests
mkdir -p "$OUT"
{
  nproc; lscpu | grep -E "Model name|Flags" | cut -c1-200
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
  which cargo nvcc || true
} 2>&1 | tee "$OUT/env.txt"
timeout 150 python3 $T/parity.py --bin "$BIN" --work /tmp/cpar 2>&1 | grep -E "PASS|FAIL|window|Error|error" | tee "$OUT/parity.txt"
timeout 100 taskset -c 0,1 python3 $T/bench.py --bin "$BIN" --families bert --shapes 8x128,32x256,1x512 \
  --threads 2 --calls 3 2>&1 | grep -vE "Writing|Loading|Warn" | tee "$OUT/bench2.txt"
timeout 120 taskset -c 0,1 python3 $T/bench.py --bin "$BIN" --families gemma3 --shapes 8x128,1x512 \
  --threads 2 --calls 3 2>&1 | grep -vE "Writing|Loading|Warn" | tee -a "$OUT/bench2.txt"
for c in 1 2; do
  CANDLE_NUM_THREADS=$c timeout 60 taskset -c 0,1 python3 $T/bench.py --bin "$BIN" --families bert,gemma3 \
    --shapes 8x128 --threads 2 --calls 4 --no-torch 2>&1 | sed "s/^/elemwise=$c /" | grep -vE "Writing|Loading|Warn" | tee -a "$OUT/ab.txt"
done
timeout 80 taskset -c 0-7 python3 $T/bench.py --bin "$BIN" --families bert,gemma3 --shapes 8x128 \
  --threads 8 --calls 3 2>&1 | grep -vE "Writing|Loading|Warn" | tee "$OUT/bench8.txt"
