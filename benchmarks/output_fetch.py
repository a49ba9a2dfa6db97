"""Does fetching fewer outputs skip their work? A graph with a cheap and a costly output, asked for the cheap one.

Why embedperf exports one graph per output mode (docs/outputs.md): if ONNX Runtime pruned the nodes of the
outputs a call does not fetch, one BGE-M3 graph with every output would serve every mode. This builds a
graph whose output `cheap` is one Relu of the input and whose output `costly` is eight 2048×2048 matmuls
after it, and times, interleaved, ONNX Runtime fetching `cheap` only, `costly` only and both; then a graph
holding `cheap` alone. When fetching `cheap` from the two-output graph costs what fetching both does (and
far more than the one-output graph), nothing was pruned. OpenVINO's compiled model has no per-call choice of
outputs: an infer request computes every result.

    .venv/bin/python benchmarks/output_fetch.py [--rows 256] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def graph(path: Path, costly: bool, width: int = 2048, matmuls: int = 8) -> None:
    """x -> cheap = Relu(x); with `costly`, also costly = x W W ... W (`matmuls` times)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, width])
    outputs = [helper.make_tensor_value_info("cheap", TensorProto.FLOAT, None)]
    nodes = [helper.make_node("Relu", ["x"], ["cheap"])]
    weights = []
    if costly:
        weights.append(numpy_helper.from_array(np.random.default_rng(0).random((width, width), dtype=np.float32), "W"))
        prev = "x"
        for i in range(matmuls):
            nodes.append(helper.make_node("MatMul", [prev, "W"], [f"m{i}"]))
            prev = f"m{i}"
        nodes.append(helper.make_node("Identity", [prev], ["costly"]))
        outputs.append(helper.make_tensor_value_info("costly", TensorProto.FLOAT, None))
    model = helper.make_model(helper.make_graph(nodes, "outputs", [x], outputs, weights),
                              opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, str(path))


def main() -> None:
    import numpy as np
    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    with tempfile.TemporaryDirectory() as tmp:
        graph(Path(tmp) / "both.onnx", costly=True)
        graph(Path(tmp) / "cheap.onnx", costly=False)
        both = ort.InferenceSession(str(Path(tmp) / "both.onnx"), options, providers=["CPUExecutionProvider"])
        alone = ort.InferenceSession(str(Path(tmp) / "cheap.onnx"), options, providers=["CPUExecutionProvider"])
    feed = {"x": np.random.default_rng(1).random((args.rows, 2048), dtype=np.float32)}
    cases = {"two-output graph, fetching cheap": (both, ["cheap"]),
             "two-output graph, fetching costly": (both, ["costly"]),
             "two-output graph, fetching both": (both, ["cheap", "costly"]),
             "one-output graph (cheap only)": (alone, ["cheap"])}
    times: dict[str, list[float]] = {name: [] for name in cases}
    for session, names in cases.values():
        session.run(names, feed)  # warm-up
    for _ in range(args.rounds):
        for name, (session, names) in cases.items():
            for _ in range(args.calls):
                t0 = time.perf_counter()
                session.run(names, feed)
                times[name].append(time.perf_counter() - t0)
    print(f"onnxruntime {ort.__version__}, {args.rows} rows, {args.threads} thread(s), {args.rounds} interleaved "
          f"rounds of {args.calls} calls")
    base = statistics.median(times["two-output graph, fetching both"])
    for name, series in times.items():
        m = statistics.median(series)
        print(f"  {name:36s} median {m * 1e3:9.3f} ms  ({m / base:.3f}x fetching both)")


if __name__ == "__main__":
    main()
