"""BGE-M3's sparse and multi-vector outputs in every runtime, on a tiny XLM-R with seeded heads.

One matrix run (dense, sparse and colbert modes; tests/parity/test_parity.py reads the same run) is judged
on each output's parity against the PyTorch fp32 reference, on the lexical weights every harness makes
(Python, Rust, C++) against the rule recomputed here from its own token weights, and on the cost table.
"""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import FAST, cells_of, embedperf, require_runtime
from embedperf.measure import parity
from embedperf.runners import outputs as extra

REAL_RUNTIMES = ["torch", "onnxruntime-python", "onnxruntime-cpp", "onnxruntime-rust", "candle", "openvino"]
MODES = "dense,sparse,colbert"


@pytest.fixture
def bge(matrix):
    return matrix("BAAI/bge-m3", "tiny", outputs=MODES)


def _docs(run_dir, runtime):
    return [json.loads(p.read_text()) for p in sorted(run_dir.glob(f"*__{runtime}__*.json"))]


def _request(run_dir, runtime, mode):
    """The request the runner of `runtime` got for output mode `mode` (fork 0)."""
    tail = "" if mode == "dense" else f"__{mode}"
    return json.loads((run_dir / "work" / f"bge-m3__tiny__{runtime}__fp32{tail}__f0.request.json").read_text())


def _workload(request, batch):
    return load_file(next(s["workload"] for s in request["shapes"] if s["batch"] == batch))


@pytest.mark.parametrize("runtime", REAL_RUNTIMES)
def test_every_output_mode_matches_the_reference(runtime, bge):
    require_runtime(runtime)
    run_dir, _ = bge
    docs = _docs(run_dir, runtime)
    assert sorted((d["spec"]["outputs"], d["spec"]["batch"]) for d in docs) == [
        (m, b) for m in ("colbert", "dense", "sparse") for b in (1, 3)]
    for doc in docs:
        assert doc["status"] == "ok", doc["reason"]
        p, mode = doc["parity"], doc["spec"]["outputs"]
        assert p["min_cosine"] >= parity.FP32_MIN_COSINE
        assert ("sparse" in p) == (mode == "sparse") and ("colbert" in p) == (mode == "colbert")
        if mode == "sparse":
            s = p["sparse"]
            assert s["token_weights_max_abs_diff"] <= parity.SPARSE_MAX_ABS
            assert s["lexical_max_abs_diff"] <= parity.SPARSE_MAX_ABS
            assert s["top_k_agreement"] == 1.0 and s["top_k_ids_judged"] > 0
            assert s["lexical_entries"] == s["reference_lexical_entries"]
        if mode == "colbert":
            c = p["colbert"]
            assert c["min_cosine"] >= parity.COLBERT_MIN_COSINE and c["padding_max_abs"] == 0.0
            mask = _workload(_request(run_dir, runtime, mode), doc["spec"]["batch"])["attention_mask"]
            assert c["vectors"] == int(mask[:, 1:].sum())  # every real token after CLS was judged


@pytest.mark.parametrize("runtime", REAL_RUNTIMES)
def test_each_harness_aggregates_the_lexical_weights_by_the_rule(runtime, bge):
    """The lexical weights a runner wrote (Python, Rust or C++ harness) are the rule applied to its own token
    weights, and each call's outputs have the protocol's shapes."""
    require_runtime(runtime)
    run_dir, _ = bge
    for doc in _docs(run_dir, runtime):
        mode, batch, seq = doc["spec"]["outputs"], doc["spec"]["batch"], doc["spec"]["seq"]
        fork = doc["forks"][0]
        out = load_file(fork["embeddings"])
        sizes = doc["outputs"]["bytes_per_item"]
        assert out[extra.DENSE].shape == (batch, 32) and sizes[extra.DENSE] == 32 * 4
        if mode == "colbert":
            assert out[extra.COLBERT].shape == (batch, seq - 1, 32)
            assert sizes[extra.COLBERT] == (seq - 1) * 32 * 4
            assert doc["outputs"]["colbert_real_bytes_per_item"] <= sizes[extra.COLBERT]
        if mode != "sparse":
            assert extra.TOKEN_WEIGHTS not in out
            continue
        request = _request(run_dir, runtime, mode)
        workload = _workload(request, batch)
        assert request["model"]["outputs"] == ["dense", "sparse"]
        assert request["model"]["unused_token_ids"] == [0, 1, 2, 3]
        ids, weights, offsets = extra.lexical_weights(out[extra.TOKEN_WEIGHTS], workload["input_ids"],
                                                      workload["attention_mask"], [0, 1, 2, 3])
        np.testing.assert_array_equal(out[extra.LEXICAL_IDS], ids)
        np.testing.assert_array_equal(out[extra.LEXICAL_WEIGHTS], weights)
        np.testing.assert_array_equal(out[extra.LEXICAL_OFFSETS], offsets)
        assert doc["outputs"]["lexical_entries_per_item"] == len(ids) / batch > 0


def test_the_table_reads_off_the_cost_of_each_mode_over_dense(bge):
    run_dir, cells = bge
    assert {c["outputs"] for c in cells} == {"dense", "sparse", "colbert"}
    proc = embedperf("report", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    section = proc.stdout.split("## Output modes: the cost over dense", 1)[1]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| bge-m3")]
    ran = {c["runtime"] for c in cells}
    assert len(rows) == len(ran) * 2 * 3  # runtimes x batches x modes
    for cols in rows:
        runtime, mode, status, ratio = cols[1], cols[3], cols[4], cols[6]
        if runtime.startswith("null") and mode != "dense":  # the null runners time the harness, dense only
            assert status.startswith("skipped: null") and "dense output only" in status and ratio == "–"
        elif mode == "dense":
            assert ratio == "1 (base)"
        else:
            assert status == "ok" and float(ratio.split()[0]) > 0 and "(" in ratio  # the ratio and its CI


def test_an_output_mode_at_another_precision_is_skipped_with_the_reason(results):
    """Output modes are measured at fp32: beside an int8 dense cell, the int8 sparse cell is skipped, not run at
    another precision or with the dense graph."""
    require_runtime("onnxruntime-python")
    proc = embedperf("run", "--model", "BAAI/bge-m3", "--source", "tiny", "--runtimes", "onnxruntime-python",
                     "--precision", "fp32,int8", "--outputs", "dense,sparse", "--batch", "2", "--seq", "16", *FAST,
                     "--results", str(results), timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cells = {(c["precision"], c["outputs"]): c for c in cells_of(results)}
    assert set(cells) == {(p, m) for p in ("fp32", "int8") for m in ("dense", "sparse")}
    skipped = cells[("int8", "sparse")]
    assert skipped["status"] == "skipped" and "measured at fp32 only" in skipped["reason"]
    assert all(cells[k]["status"] == "ok" for k in cells if k != ("int8", "sparse"))
