"""int8 on the real all-MiniLM-L6-v2: ONNX Runtime (dynamic) and OpenVINO (NNCF static) against the fp32 reference.

The accuracy cost is measured as a cell's is: real standard-library sentences through the model's own
tokenizer, one untimed corpus pass per runner, recall@10 and Spearman over the corpus.
"""

from __future__ import annotations

import json

import pytest

from embedperf.measure import accuracy, parity
from embedperf.models.registry import get_model
from embedperf.models.sources import locate
from embedperf.workload import sentences
from precision_support import corpus_embeddings, prepare, request, run

MODEL, SOURCE = "sentence-transformers/all-MiniLM-L6-v2", "package"
ITEMS, BATCH = 256, 32


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared")
    prepared = prepare(MODEL, SOURCE, {"onnx", "openvino", "onnx:int8", "openvino:int8"}, root)
    spec = get_model(MODEL)
    w = sentences.ensure(spec, SOURCE, locate(spec, SOURCE).folder, tmp_path_factory.mktemp("workloads"),
                         items=ITEMS, batch=BATCH)
    return prepared, w


def _corpus_pass(runtime, precision, minilm, tmp_path, attention=None):
    prepared, w = minilm
    shape = {"batch": BATCH, "seq": w.facts["longest"], "workload": str(w.path), "scenario": "throughput",
             "embeddings": str(tmp_path / f"{runtime}-{precision}.safetensors")}
    req = request(MODEL, SOURCE, runtime, precision, prepared, [shape], attention)
    req["timing"] = {"warmup": 0, "min_calls": 1, "min_seconds": 0.0, "max_seconds": 60.0, "target_ci": None}
    result = run(runtime, req, tmp_path / "work", f"{runtime}-{precision}")
    assert result["error"] is None and result["shapes"][0]["status"] == "ok", result
    return result, corpus_embeddings(shape)


@pytest.fixture(scope="module")
def reference(minilm, tmp_path_factory):
    return _corpus_pass("torch", "fp32", minilm, tmp_path_factory.mktemp("reference"), attention="eager")[1]


def test_the_manifest_records_each_int8_recipe(minilm):
    prepared, _ = minilm
    onnx = prepared.recipe("onnx", "int8")
    assert onnx["tool"] == "onnxruntime.quantization.quantize_dynamic" and onnx["per_channel"]
    assert onnx["op_types"] == ["MatMul", "Gather"] and onnx["versions"]["onnxruntime"]
    ov = prepared.recipe("openvino", "int8")
    assert ov["tool"] == "nncf.quantize" and ov["versions"]["nncf"] and ov["calibration_rows"] >= 256
    assert prepared.recipe("onnx") is None  # fp32 artifacts carry no recipe
    # int8 weights: about a quarter of the fp32 artifact on disk, embedding tables included
    for fmt in ("onnx", "openvino"):
        assert prepared.size_bytes(fmt, precision="int8") < 0.3 * prepared.size_bytes(fmt)


@pytest.mark.parametrize("runtime", ["onnxruntime-python", "openvino"])
def test_int8_on_the_real_minilm_keeps_retrieval_within_the_floor(runtime, minilm, reference, tmp_path):
    result, out = _corpus_pass(runtime, "int8", minilm, tmp_path)
    if runtime == "openvino":  # the other helper's ORT runner reports its own evidence
        assert result["settings"]["precision"] == "int8"
        assert "u8" in result["settings"]["precision_evidence"]["matmul_runtime_precisions"]
    cost = accuracy.accuracy_cost(out, reference, real_text=True)
    print(runtime, "int8", json.dumps(cost))
    assert cost["items"] == ITEMS
    assert parity.below_floor("int8", cost) is None, cost
    # and it is int8, not fp32 under its label: fp32 would give cosine 1 to 6 places
    assert cost["min_cosine"] < 0.99999 and cost["recall_at_10"] < 1.0
