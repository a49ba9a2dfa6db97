"""Where do process-level modes come from? Fresh processes, one median each, with and without thread pinning.

    .venv/bin/python benchmarks/process_modes.py [--processes 12] [--seconds 3] [--batch 8] [--seq 16]

For ONNX Runtime (Python binding) and OpenVINO on the real all-MiniLM-L6-v2, it starts `--processes` fresh
processes per setting, alternating the settings (A B A' B' ...), each loading the model and timing calls for
`--seconds`; it prints every process's median and, per setting, the spread of those medians (min, max,
max/min) beside what the machine did meanwhile (CPU steal, other processes' CPU time, load average).

Settings: `free` (the OS places the threads) and `pinned` (ONNX Runtime: `session.intra_op_thread_affinities`
for the pool threads and the main thread on the first CPU; OpenVINO: `ENABLE_CPU_PINNING`). If pinning
narrows the spread of process medians, it removes the modes; if both spread alike, the modes come from
outside the process (the host), and forks plus the "process modes" warning are the answer.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from embedperf.measure import activity

CHILD = r'''
import json, os, sys, time
import numpy as np
from safetensors.numpy import load_file
runtime, path, workload, pinned, seconds, threads = sys.argv[1:7]
pinned, seconds, threads = pinned == "1", float(seconds), int(threads)
cpus = sorted(os.sched_getaffinity(0))[:threads]
inputs = {k: v for k, v in load_file(workload).items() if k in ("input_ids", "attention_mask")}
if runtime == "onnxruntime":
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    if pinned and threads > 1:  # pool threads on the other CPUs (1-based ids); the main thread below
        so.add_session_config_entry("session.intra_op_thread_affinities", ";".join(str(c + 1) for c in cpus[1:]))
    session = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
    if pinned:
        os.sched_setaffinity(0, {cpus[0]})  # this (main) thread only; the pool threads are pinned already
    call = lambda: session.run(None, inputs)
else:
    import openvino as ov
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
              "NUM_STREAMS": 1, "ENABLE_CPU_PINNING": pinned}
    compiled = core.compile_model(core.read_model(path), "CPU", config)
    request = compiled.create_infer_request()
    call = lambda: request.infer(inputs)
for _ in range(3):
    call()
samples, start = [], time.perf_counter()
while time.perf_counter() - start < seconds:
    t0 = time.perf_counter_ns(); call(); samples.append(time.perf_counter_ns() - t0)
print(json.dumps({"median_ms": float(np.median(samples)) / 1e6, "n": len(samples)}))
'''


def artifacts(batch: int, seq: int) -> tuple[str, str, str]:
    """The MiniLM ONNX graph, OpenVINO IR and one workload, prepared through embedperf (cached)."""
    from embedperf.models.registry import get_model
    from embedperf.models.sources import locate
    from embedperf.paths import models_dir, workloads_dir
    from embedperf.prepare import ensure_prepared
    from embedperf.workload import text

    spec = get_model("sentence-transformers/all-MiniLM-L6-v2")
    prepared = ensure_prepared(spec, locate(spec, "package", None, None), {"onnx", "openvino"}, models_dir(), 2,
                               lambda m: None)
    work = text.ensure(spec, "package", batch, seq, workloads_dir())
    return str(prepared.artifact_path("onnx")), str(prepared.artifact_path("openvino")), str(work.path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=16)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    onnx, ir, work = artifacts(args.batch, args.seq)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    results: dict[tuple[str, str], list[tuple[float, dict]]] = {}
    for i in range(args.processes):
        for runtime, path in (("onnxruntime", onnx), ("openvino", ir)):
            for setting in (("free", "pinned") if i % 2 == 0 else ("pinned", "free")):
                before = activity.snapshot()
                proc = subprocess.run([sys.executable, "-c", CHILD, runtime, path, work, "1" if setting == "pinned"
                                       else "0", str(args.seconds), str(args.threads)],
                                      capture_output=True, text=True, env=env)
                machine = activity.between(before, activity.snapshot())
                if proc.returncode != 0:
                    sys.exit(f"{runtime} {setting} failed:\n{proc.stderr[-2000:]}")
                median = json.loads(proc.stdout.strip().splitlines()[-1])["median_ms"]
                results.setdefault((runtime, setting), []).append((median, machine))
                print(f"process {i + 1:2d} {runtime:11s} {setting:6s} median {median:8.3f} ms   steal "
                      f"{machine['steal_share'] or 0:5.1%}  other CPU {machine['other_cpu_share'] or 0:5.1%}  load "
                      f"{machine['load_average'][0]:.2f}", flush=True)
                time.sleep(0.2)
    print()
    print(f"MiniLM {args.batch}x{args.seq}, {args.threads} thread(s), {args.processes} processes per setting, "
          f"{args.seconds:g} s each")
    for (runtime, setting), got in sorted(results.items()):
        medians = [m for m, _ in got]
        steal = max((a["steal_share"] or 0) for _, a in got)
        other = max((a["other_cpu_share"] or 0) for _, a in got)
        print(f"  {runtime:11s} {setting:6s} process medians: min {min(medians):.3f}, median "
              f"{statistics.median(medians):.3f}, max {max(medians):.3f} ms, max/min {max(medians) / min(medians):.3f}"
              f"; max steal {steal:.1%}, max other CPU {other:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
