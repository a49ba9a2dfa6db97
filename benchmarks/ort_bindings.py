"""What does the binding cost? ONNX Runtime through Python, its C++ API and the Rust `ort` crate.

Same .onnx artifact, same libonnxruntime, same session options; for batch 1 x seq 16 and
batch 32 x seq 128 on the real all-MiniLM-L6-v2 it prints each runner's median and its
ratio to onnxruntime-python (bootstrap 95% CIs), then the null runners' per-call overhead
in each language. Runtimes are rotated between rounds so drift favours none.

    .venv/bin/python benchmarks/ort_bindings.py [--rounds 3]
"""

from __future__ import annotations

import argparse

from common import describe_setup, median_line, overhead_us, run_rounds
from embedperf.measure.stats import ForkStats

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
ORT = ["onnxruntime-python", "onnxruntime-cpp", "onnxruntime-rust"]
NULLS = ["null", "null-rust", "null-cpp"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for batch, seq in ((1, 16), (32, 128)):
        pooled, docs = run_rounds(MODEL, "package", ORT, batch, seq, args.rounds)
        print(f"batch {batch} x seq {seq}: {describe_setup(docs)}; {args.rounds} rounds")
        base = pooled["onnxruntime-python"]
        for name in ORT:
            print(median_line(name, pooled[name], base, "onnxruntime-python"))
        medians = [ForkStats.of(pooled[n]).median_ms for n in ORT]
        print(f"  largest gap between the three medians: {max(medians) / min(medians) - 1:.1%}")
    pooled, docs = run_rounds(MODEL, "package", NULLS, 1, 16, 1, ["--min-seconds", "1"])
    print("harness overhead per call (null runners, batch 1 x seq 16):")
    for name in NULLS:
        print(f"  {name:10s} median {overhead_us(pooled[name]):.3f} µs over {sum(map(len, pooled[name]))} calls")


if __name__ == "__main__":
    main()
