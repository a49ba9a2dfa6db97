"""The precision contract of the torch and OpenVINO runners on tiny configs: a label is what ran, or a refusal.

Each runner is launched with a protocol request as the orchestrator launches it. Where this CPU has
no native kernel for a precision the runner must refuse; where it has one, the result must say so
with the framework's own evidence, and the embeddings must be within the precision's floor.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from safetensors.numpy import load_file

from embedperf.measure import accuracy, parity
from embedperf.precision import native_flag
from embedperf.runners import harness
from embedperf.runners.refusal import Unsupported
from embedperf.workload import text as text_workload
from precision_support import THREADS, prepare, request, run

MODEL, SOURCE = "sentence-transformers/all-MiniLM-L6-v2", "tiny"
FORMATS = {"reference", "onnx", "openvino", "onnx:int8", "openvino:int8"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared")
    prepared = prepare(MODEL, SOURCE, FORMATS, root)
    from embedperf.models.registry import get_model

    load = text_workload.ensure(get_model(MODEL), SOURCE, 4, 24, tmp_path_factory.mktemp("workloads"))
    return prepared, load


def _launch(runtime, precision, tiny, tmp_path, attention=None):
    prepared, load = tiny
    shape = {"batch": 4, "seq": 24, "workload": str(load.path),
             "embeddings": str(tmp_path / f"{runtime}-{precision}.safetensors")}
    req = request(MODEL, SOURCE, runtime, precision, prepared, [shape], attention)
    result = run(runtime, req, tmp_path / "work", f"{runtime}-{precision}")
    out = load_file(shape["embeddings"])["sentence_embedding"] if result["error"] is None else None
    return result, out


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory):
    result, out = _launch("torch", "fp32", tiny, tmp_path_factory.mktemp("reference"), attention="eager")
    assert result["error"] is None
    return out


EXPECTED_MATMULS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "u8"}
HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}  # int8: the IR's own int8, f32 for the rest
_FP32: dict = {}


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16", "int8"])
@pytest.mark.parametrize("runtime", ["torch", "openvino"])
def test_a_label_is_what_ran(runtime, precision, tiny, reference, tmp_path):
    result, out = _launch(runtime, precision, tiny, tmp_path)
    native = precision in ("fp32", "int8") or native_flag(precision) is not None
    if not native:
        # no native kernel here: a refusal naming the precision, never a relabelled fp32 run
        assert result["error"] is not None and precision in result["error"]["message"], result["error"]
        assert "Unsupported" in result["error"]["message"] or result["error"]["kind"] == "unsupported"
        return
    assert result["error"] is None, result["error"]
    settings = result["settings"]
    assert settings["precision"] == precision
    evidence = settings["precision_evidence"]
    if runtime == "torch":
        if precision in ("fp16", "bf16"):
            assert evidence["parameter_dtypes"] == [f"torch.{'bfloat16' if precision == 'bf16' else 'float16'}"]
            assert native_flag(precision) in evidence["kernels"]
        if precision == "int8":
            assert evidence["int8_linear_layers"] > 0 and evidence["fp32_linear_layers"] == 0
    else:
        assert evidence["inference_precision_hint"] == HINTS[precision]
        assert EXPECTED_MATMULS[precision] in evidence["matmul_runtime_precisions"], evidence
        if precision == "int8":
            assert evidence["quantization"]["fake_quantize"] > 0
    cost = accuracy.accuracy_cost(out, reference, real_text=False)
    assert parity.below_floor(precision, cost) is None, cost
    if precision != "fp32":
        # and it really is another precision: not bit-for-bit the fp32 run
        if runtime not in _FP32:
            _FP32[runtime] = _launch(runtime, "fp32", tiny, tmp_path / "fp32")[1]
        assert not np.array_equal(out, _FP32[runtime])


def test_torch_refuses_emulated_precisions_and_int8_off_the_cpu(monkeypatch):
    import torch

    from embedperf.runners import torch as torch_runner

    monkeypatch.setattr(torch_runner, "native_flag", lambda precision: None)
    with pytest.raises(Unsupported, match="bf16 on this CPU would be emulated"):
        torch_runner.check_float_precision("bf16", torch.device("cpu"))
    with pytest.raises(Unsupported, match="CPU only"):
        torch_runner.quantize_int8(torch.nn.Linear(4, 4), torch.device("cuda"))
    with pytest.raises(Unsupported, match="converted no nn.Linear"):
        torch_runner.quantize_int8(torch.nn.Sequential(torch.nn.LayerNorm(4)), torch.device("cpu"))


def test_openvino_refuses_a_device_and_a_mismatched_artifact(tiny):
    from embedperf.runners.openvino import OpenVinoEngine

    prepared, _ = tiny
    base = request(MODEL, SOURCE, "openvino", "fp32", prepared, [])
    with pytest.raises(Unsupported, match="cpu only"):
        OpenVinoEngine({**base, "device": "cuda"})
    # an int8 IR under an fp32 label is the orchestrator's mistake: a load failure, never a run
    wrong = {**base, "artifact": {"format": "openvino", "path": str(prepared.artifact_path("openvino:int8"))}}
    with pytest.raises(ValueError, match="quantized"):
        OpenVinoEngine(wrong)
    with pytest.raises(ValueError, match="not quantized"):
        OpenVinoEngine({**base, "precision": "int8"})


@pytest.mark.skipif("Unsupported" not in inspect.getsource(harness),
                    reason="the harness maps runners.refusal.Unsupported to error.kind 'unsupported' in the "
                           "runner-protocol branch; not merged here yet")
def test_the_harness_writes_a_refusal_as_kind_unsupported(tiny, tmp_path):
    prepared, load = tiny
    shape = {"batch": 4, "seq": 24, "workload": str(load.path), "embeddings": str(tmp_path / "x.safetensors")}
    req = {**request(MODEL, SOURCE, "openvino", "fp32", prepared, [shape]), "device": "cuda"}
    result = run("openvino", req, tmp_path / "work", "refusal")
    assert result["error"]["kind"] == "unsupported" and "cpu only" in result["error"]["message"]
    assert result["shapes"] == []


def test_threads_are_still_applied_at_reduced_precision(tiny, tmp_path):
    result, _ = _launch("openvino", "int8", tiny, tmp_path)
    assert result["settings"]["INFERENCE_NUM_THREADS"] == str(THREADS)
