"""compare(): synthetic cell documents with the structure results/store.py and the orchestrator write."""

import numpy as np
import pytest

from embedperf.measure.stats import ForkStats
from embedperf.results.compare import compare, fail_above, render_markdown
from embedperf.results.store import CELL_SCHEMA, cell_id, flatten


def make_doc(run_id, runtime="torch", batch=1, seq=16, median_ms=1.0, spread=0.01, n=60, seed=0, status="ok",
             model="BAAI/bge-m3", source="tiny", truncate_dim=None, created="2026-01-01T00:00:00+00:00", k=3,
             threads=2):
    rng = np.random.default_rng(seed)
    forks = [[int(v) for v in median_ms * 1e6 * (1 + spread * rng.standard_normal(n))] for _ in range(k)] \
        if status == "ok" else []
    stats = ForkStats.of(forks) if forks else None
    doc = {
        "schema": CELL_SCHEMA, "run_id": run_id,
        "cell_id": cell_id(model.split("/")[-1], source, runtime, "fp32", "cpu", "latency", batch, seq, truncate_dim),
        "status": status, "reason": None if status == "ok" else "runner crashed",
        "spec": {"model": model, "family": "xlm-roberta", "source": source, "revision": None, "runtime": runtime,
                 "language": "python", "precision": "fp32", "device": "cpu", "scenario": "latency",
                 "batch": batch, "seq": seq, "truncate_dim": truncate_dim,
                 "threads": {"intra_op": threads, "inter_op": 1}, "timing": {}, "memory_limit_mb": 1000,
                 "workload": {"seed": 0, "padding": "right"}},
        "model": {"weights": "random", "weights_sha256": None, "heads_sha256": None, "parameters": None,
                  "prepare_key": None, "artifact": "reference", "pooling": "cls", "output_dim": 32},
        "machine": {"cpu_model": "AMD EPYC", "cpus_available": 2, "load_average": [0.1, 0.1, 0.1]},
        "versions": {}, "project": {"commit": None, "dirty": None},
        "runner": {}, "forks": [], "summary": None, "parity": None, "warnings": [], "log": None,
        "created": created,
    }
    if stats:
        doc["forks"] = [{"fork": i, "status": "ok", "samples_ns": f, "warmup_ns": []} for i, f in enumerate(forks)]
        doc["summary"] = {**stats.summary(batch), "load_s": 0.1, "first_call_s": 0.002, "peak_rss_mb": 300.0,
                          "loop_peak_rss_mb": 290.0, "stop_rule": "min_reached", "loop_s": 1.0}
    flatten(doc)  # the documents must be what the store's flat view reads
    return doc


def by_runtime(rows):
    return {(r["runtime"], r["batch"]): r for r in rows}


def test_slower_faster_and_unchanged_cells():
    a = [make_doc("A", "torch", seed=1), make_doc("A", "onnxruntime-python", seed=2),
         make_doc("A", "openvino", seed=3)]
    b = [make_doc("B", "torch", median_ms=1.20, seed=4),               # 20% slower
         make_doc("B", "onnxruntime-python", median_ms=0.80, seed=5),  # 20% faster
         make_doc("B", "openvino", median_ms=1.01, seed=6)]            # 1%: inside the threshold
    rows = by_runtime(compare(a, b, threshold=0.05))
    t = rows[("torch", 1)]
    assert t["ratio"] == pytest.approx(1.2, rel=0.02)
    assert t["ci_low"] < t["ratio"] < t["ci_high"]
    assert t["significant"] and t["slower"] and not t["faster"] and t["verdict"] == "slower"
    o = rows[("onnxruntime-python", 1)]
    assert o["faster"] and o["significant"] and o["change_pct"] == pytest.approx(-20, abs=2)
    v = rows[("openvino", 1)]
    assert not v["significant"] and v["verdict"] == "no significant change"


def test_a_noisy_difference_is_not_significant():
    a = [make_doc("A", spread=0.5, n=8, seed=1)]
    b = [make_doc("B", median_ms=1.1, spread=0.5, n=8, seed=2)]
    (row,) = compare(a, b)
    assert row["ci_low"] < 1.05 and not row["significant"]


def test_matching_uses_the_whole_key():
    a = [make_doc("A", batch=1), make_doc("A", batch=8), make_doc("A", truncate_dim=16)]
    b = [make_doc("B", batch=1), make_doc("B", seq=32), make_doc("B", truncate_dim=16)]
    rows = compare(a, b)
    verdicts = {(r["batch"], r["seq"], r["truncate_dim"]): r["verdict"] for r in rows}
    assert verdicts == {(1, 16, None): "no significant change", (8, 16, None): "only in A",
                        (1, 32, None): "only in B", (1, 16, 16): "no significant change"}


def test_failed_cells_are_not_compared_and_newest_duplicate_wins():
    a = [make_doc("A", status="failed")]
    b = [make_doc("B1", median_ms=2.0, created="2026-01-01T00:00:00+00:00"),
         make_doc("B2", median_ms=1.0, created="2026-02-01T00:00:00+00:00")]
    (row,) = compare(a, b)
    assert row["verdict"] == "not comparable" and "A" in row["note"] and row["ratio"] is None
    (row,) = compare([make_doc("A")], b)
    assert row["run_b"] == "B2" and not row["significant"]


def test_fail_above():
    a = [make_doc("A", seed=1)]
    rows = compare(a, [make_doc("B", median_ms=1.20, seed=2)])
    assert fail_above(rows, 10) and not fail_above(rows, 25)
    faster = compare(a, [make_doc("B", median_ms=0.5, seed=2)])
    assert not fail_above(faster, 0)
    noisy = compare([make_doc("A", spread=0.5, n=8, seed=1)], [make_doc("B", median_ms=1.3, spread=0.5, n=8)])
    assert not noisy[0]["significant"] and not fail_above(noisy, 1)


def test_markdown_table():
    a = [make_doc("A", seed=1), make_doc("A", "openvino", status="failed")]
    b = [make_doc("B", median_ms=1.2, seed=2), make_doc("B", "openvino")]
    text = render_markdown(compare(a, b), threshold=0.05)
    assert "| B/A |" in text and "[0.95, 1.05]" in text
    assert "slower **!**" in text and ("+19.9%" in text or "+20." in text)
    assert "not comparable" in text
    assert "1 significantly slower" in text
    assert render_markdown([]) == "_no cells to compare_\n"


def test_bad_threshold():
    with pytest.raises(ValueError):
        compare([], [], threshold=1.5)


def test_two_thread_budgets_are_two_cells():
    a = [make_doc("A", threads=1, median_ms=2.0), make_doc("A", threads=2)]
    b = [make_doc("B", threads=1, median_ms=2.0, seed=7), make_doc("B", threads=2, seed=8)]
    rows = compare(a, b)
    assert sorted(r["threads"] for r in rows) == [1, 2]
    assert all(r["verdict"] == "no significant change" for r in rows)
    assert cell_id("m", "tiny", "torch", "fp32", "cpu", "latency", 1, 16, threads=1) != \
        cell_id("m", "tiny", "torch", "fp32", "cpu", "latency", 1, 16, threads=2)


def test_process_modes_are_not_reported_as_a_change():
    """Unchanged code whose processes land in a fast or a slow mode: A drew fast, fast, slow; B slow, fast, fast.
    Each fork is tight (±0.3%), so a single-process comparison would call the difference real."""
    def doc(run_id, modes, seed):
        d = make_doc(run_id, seed=seed)
        rng = np.random.default_rng(seed)
        forks = [[int(v) for v in ms * 1e6 * (1 + 0.003 * rng.standard_normal(200))] for ms in modes]
        d["forks"] = [{"fork": i, "status": "ok", "samples_ns": f} for i, f in enumerate(forks)]
        d["summary"] = {**d["summary"], **ForkStats.of(forks).summary(1)}
        return d

    (row,) = compare([doc("A", [16.5, 16.6, 20.7], 1)], [doc("B", [20.7, 20.6, 16.5], 2)])
    assert row["ratio"] > 1.2  # the medians of fork medians moved by 25%...
    assert not row["significant"]  # ...but the forks show that is a process draw, not a change
    assert row["ci_low"] < 1.0 < row["ci_high"]


def throughput_doc(run_id, longest_ms, seed, passes=6, k=3):
    """A corpus pass of 16 calls: 14 short (1 ms) and the two longest batches at `longest_ms` each."""
    d = make_doc(run_id, seed=seed)
    rng = np.random.default_rng(seed)
    d["spec"]["order"], d["spec"]["scenario"] = "sorted", "throughput"
    forks = []
    for i in range(k):
        calls, pass_ns = [], []
        for _ in range(passes):
            one = [1e6] * 14 + [longest_ms * 1e6] * 2
            one = [int(v * (1 + 0.002 * rng.standard_normal())) for v in one]
            calls += one
            pass_ns.append(sum(one))
        forks.append({"fork": i, "status": "ok", "samples_ns": calls, "passes_ns": pass_ns})
    d["forks"] = forks
    d["summary"] = {**d["summary"], **ForkStats.of([f["passes_ns"] for f in forks]).summary(32)}
    return d


def test_throughput_cells_compare_whole_passes():
    """Doubling the two longest batches of every pass: +19% pass time, while the median call is unchanged."""
    a = throughput_doc("A", 1.642, 1)
    b = throughput_doc("B", 2 * 1.642, 2)
    (row,) = compare([a], [b])
    assert row["of"] == "passes"
    assert row["ratio"] == pytest.approx(1.19, abs=0.01)
    assert row["slower"] and row["significant"]
