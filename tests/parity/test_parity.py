"""Parity with the PyTorch fp32 reference: the real MiniLM and tiny configs of all four families."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import require_runtime

REAL_RUNTIMES = ["torch", "onnxruntime-python", "onnxruntime-cpp", "onnxruntime-rust", "candle", "openvino"]
CASES = [
    ("sentence-transformers/all-MiniLM-L6-v2", "package"),
    ("sentence-transformers/all-MiniLM-L6-v2", "tiny"),
    ("google/embeddinggemma-300m", "tiny"),
    ("Qwen/Qwen3-Embedding-0.6B", "tiny"),
    ("BAAI/bge-m3", "tiny"),
]
# BGE-M3 runs its three output modes in the one matrix run (tests/parity/test_output_parity.py reads the same run)
OUTPUTS = {"BAAI/bge-m3": "dense,sparse,colbert"}


def run_of(matrix, model, source):
    return matrix(model, source, outputs=OUTPUTS.get(model))


@pytest.mark.parametrize("model, source", CASES)
@pytest.mark.parametrize("runtime", REAL_RUNTIMES)
def test_runtime_matches_the_reference(model, source, runtime, matrix):
    require_runtime(runtime)
    run_dir, cells = run_of(matrix, model, source)
    mine = [c for c in cells if c["runtime"] == runtime]
    assert mine, f"no {runtime} cells"
    for cell in mine:
        assert cell["status"] == "ok", cell["reason"]
        assert cell["min_cosine"] >= 0.9999, cell


@pytest.mark.parametrize("model, source", CASES)
def test_reference_rows_differ_enough_for_parity_to_mean_something(model, source, matrix):
    _, cells = run_of(matrix, model, source)
    spreads = [c["reference_spread"] for c in cells if c["reference_spread"] is not None]
    assert spreads, "no multi-row reference"
    assert max(spreads) < 0.99, f"reference rows are too alike (spread {max(spreads):.4f}): parity would prove nothing"


@pytest.mark.parametrize("model, source", [CASES[0], CASES[2]])
def test_onnxruntime_bindings_agree_with_each_other(model, source, matrix):
    run_dir, _ = run_of(matrix, model, source)
    outs = {}
    for runtime in ("onnxruntime-python", "onnxruntime-cpp", "onnxruntime-rust"):
        files = sorted((run_dir / "embeddings").glob(f"*__{runtime}__*b3__s24.f0.safetensors"))
        if files:
            outs[runtime] = load_file(str(files[0]))["sentence_embedding"]
    if len(outs) < 2:
        pytest.skip("fewer than two ONNX Runtime bindings built here")
    base = outs.pop("onnxruntime-python")
    for runtime, out in outs.items():
        assert np.max(np.abs(out - base)) <= 1e-5, runtime


def test_a_failed_parity_is_a_failed_cell_that_keeps_its_timings(matrix, tmp_path):
    """Feed the orchestrator's parity check a wrong reference: the cell must fail but keep its samples."""
    from embedperf.orchestrator.analyse import compare_output, parity_failure

    run_dir, _ = run_of(matrix, *CASES[0])
    doc = json.loads(next(run_dir.glob("*__onnxruntime-python__*b3__s24.json")).read_text())
    wrong = tmp_path / "wrong.safetensors"
    from safetensors.numpy import save_file

    emb_file = next((run_dir / "embeddings").glob("*__onnxruntime-python__*b3__s24.f0.safetensors"))
    good = load_file(str(emb_file))["sentence_embedding"]
    save_file({"sentence_embedding": good[::-1].copy()}, str(wrong))
    p = compare_output(str(emb_file), load_file(str(wrong))["sentence_embedding"])
    assert p["min_cosine"] < 0.9999
    assert parity_failure(p, "fp32").startswith("parity: min cosine")
    assert "bf16 accuracy below its floor" in parity_failure(p, "bf16")  # reduced precisions: floors of their own
    assert doc["forks"][0]["samples_ns"]


def test_a_reduced_precision_cell_is_judged_on_its_worst_row_not_a_mean_of_one():
    """A batch-1 int8 cell at cosine 0.94 (torch's dynamic int8 on the real MiniLM) passes the workload check:
    its one row is above the min floor 0.80, and the mean floor 0.95 belongs to the accuracy pass's corpus
    (before, the one row's "mean" failed the cell while the same runtime at batch 32 passed)."""
    from embedperf.orchestrator.analyse import parity_failure

    one_row = {"min_cosine": 0.9405, "mean_cosine": 0.9405, "max_abs_diff": 0.05}
    assert parity_failure(one_row, "int8") is None
    assert parity_failure({**one_row, "min_cosine": 0.75, "mean_cosine": 0.75}, "int8").startswith(
        "parity: int8 accuracy below its floor: min cosine 0.750000 < 0.8")
    assert parity_failure({"min_cosine": 0.99897, "mean_cosine": 0.99897}, "bf16") is None
