"""Each runner runs the precision a request names natively and says so, or refuses it ("unsupported").

The runners are started directly with a request, as the orchestrator starts them, on the
tiny all-MiniLM-L6-v2 (real frameworks, seeded random weights). A precision a runner
accepts must be named in settings.precision and its output must not be bit-identical to
the same runner's fp32 output (that would be fp32 under another label); a precision it
refuses must come back as error kind "unsupported" with a reason, and no shapes.
The int8 ONNX graph is made here the way the int8 artifact is made (ONNX Runtime's
dynamic per-channel quantization of the fp32 graph).
"""

import json
import os
import subprocess

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from conftest import require_runtime
from embedperf.protocol import validate

ORT = ["onnxruntime-python", "onnxruntime-cpp", "onnxruntime-rust"]
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny MiniLM's reference and fp32 ONNX artifacts, its int8 graph, and a padded workload."""
    from embedperf.models.registry import get_model
    from embedperf.models.sources import locate
    from embedperf.paths import models_dir
    from embedperf.prepare import ensure_prepared

    spec = get_model(MODEL)
    prepared = ensure_prepared(spec, locate(spec, "tiny"), {"onnx"}, models_dir(), threads=1, say=lambda _: None)
    work = tmp_path_factory.mktemp("precision")
    fp32 = prepared.artifact_path("onnx")
    fp32 = fp32 / "model.onnx" if fp32.is_dir() else fp32
    int8 = work / "model.int8.onnx"
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(int8), per_channel=True, weight_type=QuantType.QInt8)
    rng = np.random.default_rng(5)
    lengths = [16, 11, 4]
    ids = np.zeros((3, 16), dtype=np.int64)
    mask = np.zeros((3, 16), dtype=np.int64)
    for row, n in enumerate(lengths):
        ids[row, :n] = [101, *rng.integers(999, 2048, n - 2), 102]
        mask[row, :n] = 1
    workload = work / "w.safetensors"
    save_file({"input_ids": ids, "attention_mask": mask, "lengths": np.array(lengths, dtype=np.int64)}, str(workload))
    config = json.loads((prepared.artifact_path("reference") / "config.json").read_text())
    return {"onnx": fp32, "int8": int8, "reference": prepared.artifact_path("reference"), "workload": workload,
            "dim": config["hidden_size"], "work": work}


def run_runner(runtime: str, tiny: dict, precision: str, artifact: str, name: str, onnxruntime=None,
               intra_op: int = 1) -> tuple[int, dict, np.ndarray | None]:
    """Start `runtime` on the tiny model with one latency shape; (exit code, result, embeddings)."""
    from embedperf.runners.registry import command, get_runtime, runner_env

    rt = get_runtime(runtime)
    out = tiny["work"] / name
    out.mkdir(exist_ok=True)
    fmt = "reference" if rt.artifact == "reference" else "onnx"
    path = tiny["reference"] if fmt == "reference" else tiny[artifact]
    request = {
        "protocol": 1, "runtime": runtime,
        "model": {"name": MODEL, "family": "bert", "pooling": "mean", "normalize": True, "output_dim": tiny["dim"]},
        "artifact": {"format": fmt, "path": str(path),
                     **({"precision": "int8"} if artifact == "int8" else {})},
        "shapes": [{"batch": 3, "seq": 16, "workload": str(tiny["workload"]),
                    "embeddings": str(out / "e.safetensors"), "first_embeddings": str(out / "f.safetensors")}],
        "device": "cpu", "precision": precision, "threads": {"intra_op": intra_op, "inter_op": 1},
        "timing": {"warmup": 1, "min_calls": 2, "min_seconds": 0, "max_seconds": 30},
        **({"onnxruntime": onnxruntime} if onnxruntime is not None else {}),
    }
    validate("request", request)
    (out / "request.json").write_text(json.dumps(request))
    env = {**os.environ, **runner_env(rt), "OMP_NUM_THREADS": str(intra_op), "RAYON_NUM_THREADS": str(intra_op)}
    proc = subprocess.run(command(rt, out / "request.json", out / "result.json"), env=env, capture_output=True,
                          text=True, timeout=300)
    result = json.loads((out / "result.json").read_text())
    validate("result", result)
    emb = None
    if result["error"] is None and result["shapes"] and result["shapes"][0]["status"] == "ok":
        emb = load_file(str(out / "e.safetensors"))["sentence_embedding"]
        first = load_file(str(out / "f.safetensors"))["sentence_embedding"]
        assert np.array_equal(first, emb), f"{runtime} {precision}: the first call's output differs from the last's"
    else:
        assert proc.returncode != 0 or result["shapes"], proc.stderr
    return proc.returncode, result, emb


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


@pytest.mark.parametrize("runtime", ORT)
def test_onnxruntime_runs_fp32_and_int8_and_says_which(runtime, tiny):
    require_runtime(runtime)
    code, fp32, out32 = run_runner(runtime, tiny, "fp32", "onnx", f"{runtime}-fp32")
    assert code == 0 and fp32["error"] is None and fp32["shapes"][0]["status"] == "ok", fp32
    evidence = fp32["settings"]["precision_evidence"]
    assert fp32["settings"]["precision"] == "fp32" and evidence["artifact_precision"] == "fp32"
    assert evidence["quantized_ops"] == 0 and evidence["initializer_types"]["float32"] > 0

    code, q, out8 = run_runner(runtime, tiny, "int8", "int8", f"{runtime}-int8")
    assert code == 0 and q["error"] is None and q["shapes"][0]["status"] == "ok", q
    evidence = q["settings"]["precision_evidence"]
    assert q["settings"]["precision"] == "int8" and evidence["artifact_precision"] == "int8"
    assert evidence["quantized_ops"] > 0 and evidence["quantized_op_types"].get("MatMulInteger", 0) > 0
    assert evidence["initializer_types"].get("int8", 0) > 0
    assert not np.array_equal(out8, out32), "int8 gave the fp32 output bit for bit"
    cosine = min_cosine(out8, out32)
    print(f"{runtime} int8 vs fp32 min cosine {cosine:.6f}")
    assert cosine > 0.9  # quantized, but still the same model


def test_onnxruntime_bindings_read_the_same_evidence(tiny):
    seen = {}
    for runtime in ORT:
        try:
            require_runtime(runtime)
        except pytest.skip.Exception:
            continue
        _, result, _ = run_runner(runtime, tiny, "int8", "int8", f"{runtime}-evidence")
        seen[runtime] = result["settings"]["precision_evidence"]
    if len(seen) < 2:
        pytest.skip("fewer than two ONNX Runtime bindings built here")
    assert len({json.dumps(v, sort_keys=True) for v in seen.values()}) == 1, seen


@pytest.mark.parametrize("runtime", ORT)
@pytest.mark.parametrize("precision, artifact, reason", [
    ("fp16", "onnx", "no fp16/bf16 kernels"),
    ("bf16", "onnx", "no fp16/bf16 kernels"),
    ("int8", "onnx", "needs the int8 artifact"),
])
def test_onnxruntime_refuses_what_it_cannot_run_natively(runtime, precision, artifact, reason, tiny):
    require_runtime(runtime)
    code, result, _ = run_runner(runtime, tiny, precision, artifact, f"{runtime}-{precision}-{artifact}")
    assert code == 1 and result["shapes"] == []
    assert result["error"]["kind"] == "unsupported" and reason in result["error"]["message"], result["error"]


@pytest.mark.parametrize("runtime", ORT)
def test_onnxruntime_fails_an_artifact_labelled_fp32_that_is_quantized(runtime, tiny):
    require_runtime(runtime)
    tiny_mislabelled = {**tiny, "onnx": tiny["int8"]}
    code, result, _ = run_runner(runtime, tiny_mislabelled, "fp32", "onnx", f"{runtime}-mislabelled")
    assert code == 1 and result["error"]["kind"] == "load" and "labelled fp32" in result["error"]["message"]


@pytest.mark.parametrize("runtime", ORT)
def test_onnxruntime_applies_the_requests_session_config(runtime, tiny):
    """Two intra-op threads take one affinity (the calling thread has none): "1;2" must make ORT fail,
    which proves the entry reaches the session; "2" runs and is echoed in settings."""
    require_runtime(runtime)
    key = "session.intra_op_thread_affinities"
    code, result, _ = run_runner(runtime, tiny, "fp32", "onnx", f"{runtime}-affinity-ok", intra_op=2,
                                 onnxruntime={"session_config": {key: "2"}})
    assert code == 0 and result["shapes"][0]["status"] == "ok", result
    assert result["settings"]["session_config"][key] == "2"
    code, result, _ = run_runner(runtime, tiny, "fp32", "onnx", f"{runtime}-affinity-bad", intra_op=2,
                                 onnxruntime={"session_config": {key: "1;2"}})
    assert code == 1 and result["error"]["kind"] == "load" and "affinities" in result["error"]["message"]


@pytest.mark.parametrize("precision, dtype", [("bf16", "bf16"), ("fp16", "f16"), ("int8", "f32")])
def test_candle_runs_bf16_fp16_and_int8_natively_and_says_how(precision, dtype, tiny):
    require_runtime("candle")
    code, fp32, out32 = run_runner("candle", tiny, "fp32", "reference", "candle-fp32")
    assert code == 0 and fp32["settings"]["precision"] == "fp32" and fp32["settings"]["dtype"] == "f32", fp32
    code, result, out = run_runner("candle", tiny, precision, "reference", f"candle-{precision}")
    assert code == 0 and result["error"] is None and result["shapes"][0]["status"] == "ok", result
    settings = result["settings"]
    assert settings["precision"] == precision and settings["dtype"] == dtype  # read back from the loaded weights
    assert settings["compute"]
    if precision == "int8":
        # the tiny MiniLM: 2 blocks of q, k, v, attention output, intermediate, output
        assert settings["quantized_linear_layers"] == 12
        assert settings["quantization"] == "q8_0 weights quantized at load, 12 linear layers"
    assert not np.array_equal(out, out32), f"candle {precision} gave its fp32 output bit for bit"
    cosine = min_cosine(out, out32)
    print(f"candle {precision} vs fp32 min cosine {cosine:.6f}")
    assert cosine > 0.99
