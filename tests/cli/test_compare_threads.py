"""`embedperf compare` on real runs: one runtime made slower on purpose (fewer threads) is flagged, alone."""

import json

import pytest

from conftest import embedperf, require_runtime
from embedperf.measure.machine import available_cpus

TIMING = ["--warmup", "2", "--min-calls", "15", "--min-seconds", "2", "--max-seconds", "30", "--target-ci", "0",
          "--no-calibrate"]
SHAPE = ["--model", "sentence-transformers/all-MiniLM-L6-v2", "--source", "package", "--batch", "8", "--seq", "128"]


def test_compare_flags_exactly_the_runtime_given_fewer_threads(tmp_path):
    if available_cpus() < 2:
        pytest.skip("needs 2 CPUs to take one away")
    for runtime in ("onnxruntime-python", "openvino"):
        require_runtime(runtime)
    a, b = tmp_path / "a", tmp_path / "b"
    proc = embedperf("run", *SHAPE, "--runtimes", "onnxruntime-python,openvino", "--threads", "2", *TIMING,
                     "--results", str(a))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # B: the same onnxruntime-python cell, and openvino with one thread instead of two (two runs, one root)
    for runtime, threads in (("onnxruntime-python", "2"), ("openvino", "1")):
        proc = embedperf("run", *SHAPE, "--runtimes", runtime, "--threads", threads, *TIMING, "--results", str(b))
        assert proc.returncode == 0, proc.stdout + proc.stderr
    # one thread of two roughly doubles a compute-bound call; a 25% threshold keeps this VM's noise out
    proc = embedperf("compare", str(a), str(b), "--threshold", "0.25", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["runtime"]: r for r in json.loads(proc.stdout)}
    assert rows["openvino"]["slower"] is True, rows["openvino"]
    assert rows["openvino"]["note"] == "different machine or thread budget"
    assert rows["onnxruntime-python"]["significant"] is False, rows["onnxruntime-python"]
    failing = embedperf("compare", str(a), str(b), "--threshold", "0.25", "--fail-above", "20")
    assert failing.returncode == 1 and "significant slowdown" in failing.stderr
    assert "openvino" in failing.stdout and "**!**" in failing.stdout
