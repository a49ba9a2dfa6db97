"""Does fetching fewer outputs skip their work? BGE-M3's all-outputs graph, asked for the dense output only.

Why embedperf exports one graph per output mode (docs/outputs.md): if ONNX Runtime or OpenVINO pruned the
nodes of the outputs a call does not fetch, one graph with every output would do. This times, interleaved,
the dense graph, the all-outputs graph fetching only sentence_embedding, and the all-outputs graph fetching
everything (ONNX Runtime's Python binding; OpenVINO's compiled model has no per-call output selection, it
always computes every result). When the middle one costs what the last one does, nothing was pruned.

    .venv/bin/python benchmarks/output_fetch.py [--source twin] [--batch 8] [--seq 512] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from embedperf.measure.machine import available_cpus
from embedperf.models.registry import get_model
from embedperf.models.sources import locate
from embedperf.paths import models_dir, workloads_dir
from embedperf.prepare import ensure_prepared
from embedperf.workload import text


def main() -> None:
    import onnxruntime as ort
    from safetensors.numpy import load_file

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="tiny", choices=["tiny", "twin"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    spec = get_model("BAAI/bge-m3")
    threads = available_cpus()
    prepared = ensure_prepared(spec, locate(spec, args.source), {"onnx", "onnx+all"}, models_dir(), threads)
    feed = load_file(str(text.ensure(spec, args.source, args.batch, args.seq, workloads_dir()).path))
    feed = {k: feed[k] for k in ("input_ids", "attention_mask")}
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    dense = ort.InferenceSession(str(prepared.artifact_path("onnx")), options, providers=["CPUExecutionProvider"])
    both = ort.InferenceSession(str(prepared.artifact_path("onnx", outputs="all")), options,
                                providers=["CPUExecutionProvider"])
    every = [o.name for o in both.get_outputs()]
    cases = {"dense graph": (dense, ["sentence_embedding"]),
             "all-outputs graph, fetching sentence_embedding": (both, ["sentence_embedding"]),
             f"all-outputs graph, fetching {', '.join(every)}": (both, every)}
    times: dict[str, list[float]] = {name: [] for name in cases}
    for session, names in cases.values():
        session.run(names, feed)  # warm-up
    for _ in range(args.rounds):
        for name, (session, names) in cases.items():
            for _ in range(args.calls):
                t0 = time.perf_counter()
                session.run(names, feed)
                times[name].append(time.perf_counter() - t0)
    print(f"BGE-M3 ({args.source}), batch {args.batch} x seq {args.seq}, {threads} thread(s), onnxruntime "
          f"{ort.__version__}, {args.rounds} interleaved rounds of {args.calls} calls")
    base = statistics.median(times["dense graph"])
    for name, series in times.items():
        m = statistics.median(series)
        print(f"  {name:60s} median {m * 1e3:9.3f} ms  ({m / base:.3f}x the dense graph)")


if __name__ == "__main__":
    main()
