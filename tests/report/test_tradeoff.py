"""Speed against accuracy: the Pareto front and the speedups, on hand-made points and cell documents."""

import numpy as np

from embedperf.measure.stats import ForkStats
from embedperf.report.tradeoff import Point, pareto, tradeoff_lines, tradeoffs
from embedperf.report.verdicts import Ratio


def point(name, speedup, accuracy):
    return Point(name, "int8", Ratio(speedup, speedup * 0.95, speedup * 1.05), accuracy, accuracy, None, None, None)


def test_the_front_keeps_only_the_cells_no_other_beats_on_both():
    a, b, c, d = point("a", 2.0, 0.99), point("b", 3.0, 0.95), point("c", 1.5, 0.98), point("d", 3.0, 0.95)
    unplaced = Point("e", "int8", None, 0.5, 0.5, None, None, None)  # no torch fp32 baseline: not placed
    pareto([a, b, c, d, unplaced])
    assert (a.pareto, b.pareto, c.pareto, d.pareto, unplaced.pareto) == (True, True, False, True, False)


def doc(runtime, precision, ms, recall, size_mb, seed):
    rng = np.random.default_rng(seed)
    forks = [[int(v) for v in ms * 1e6 * (1 + 0.005 * rng.standard_normal(50))] for _ in range(3)]
    return {"schema": "embedperf/cell/2", "run_id": "r", "cell_id": f"{runtime}-{precision}", "status": "ok",
            "reason": None, "created": "2026-01-01",
            "spec": {"model": "sentence-transformers/all-MiniLM-L6-v2", "source": "package", "runtime": runtime,
                     "language": "python", "precision": precision, "device": "cpu", "scenario": "latency",
                     "modality": "text", "order": None, "batch": 32, "seq": 128, "truncate_dim": None,
                     "threads": {"intra_op": 2, "inter_op": 1}},
            "model": {"weights": "real", "pooling": "mean", "size_on_disk_bytes": size_mb * 2**20},
            "machine": {"cpu_model": "test CPU", "cpus_available": 2},
            "forks": [{"fork": i, "status": "ok", "samples_ns": f} for i, f in enumerate(forks)],
            "summary": {**ForkStats.of(forks).summary(32), "peak_rss_mb": 200.0},
            "parity": {"min_cosine": 1.0 if precision == "fp32" else 0.99},
            "accuracy": {"recall_at_10": recall, "min_cosine": 0.99}, "warnings": []}


def test_cells_of_every_precision_are_placed_against_torch_fp32():
    cells = [doc("torch", "fp32", 100.0, 1.0, 87, 1), doc("onnxruntime-python", "fp32", 50.0, 1.0, 87, 2),
             doc("onnxruntime-python", "int8", 25.0, 0.90, 23, 3), doc("openvino", "int8", 30.0, 0.95, 23, 4)]
    (view,) = tradeoffs(cells)
    assert view.axis == "recall@10" and view.shape == "32×128"
    by = {(p.runtime, p.precision): p for p in view.points}
    assert abs(by[("onnxruntime-python", "int8")].speedup.ratio - 4.0) < 0.1
    assert abs(by[("openvino", "int8")].speedup.ratio - 100 / 30) < 0.1
    # fastest int8 and the exact fp32 are on the front; openvino int8 is slower than ORT int8 but more accurate
    assert {k for k, p in by.items() if p.pareto} == {("onnxruntime-python", "int8"), ("openvino", "int8"),
                                                      ("onnxruntime-python", "fp32")}
    text = "\n".join(tradeoff_lines(cells))
    assert "## Speed against accuracy" in text and "| onnxruntime-python | int8 | 4.0" in text and "★" in text
    assert tradeoffs(cells[:2]) == []  # one precision only: nothing to trade
