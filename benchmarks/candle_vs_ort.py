"""Candle (models written in this project) against ONNX Runtime's C++ API on the same weights.

For batch 8 x seq 128 on the real all-MiniLM-L6-v2 and the EmbeddingGemma twin, prints the
medians of `candle` and `onnxruntime-cpp` and the ratio candle / onnxruntime-cpp with a
bootstrap 95% CI. The goal is a ratio of at most 1.5 on the CPU.

    .venv/bin/python benchmarks/candle_vs_ort.py [--rounds 2]
"""

from __future__ import annotations

import argparse

from common import describe_setup, median_line, run_rounds

CASES = [("sentence-transformers/all-MiniLM-L6-v2", "package"), ("google/embeddinggemma-300m", "twin")]
RUNTIMES = ["onnxruntime-cpp", "candle"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    args = parser.parse_args()
    for model, source in CASES:
        pooled, docs = run_rounds(model, source, RUNTIMES, args.batch, args.seq, args.rounds)
        print(f"batch {args.batch} x seq {args.seq}: {describe_setup(docs)}; {args.rounds} rounds")
        for name in RUNTIMES:
            print(median_line(name, pooled[name], pooled["onnxruntime-cpp"], "onnxruntime-cpp"))


if __name__ == "__main__":
    main()
