"""The contract every runner must pass, checked on the real all-MiniLM-L6-v2 (and the Gemma tiny config).

Each runner is started through the registry exactly as a user's run starts it; what it
writes must satisfy the protocol's schema and mean what the protocol says.
"""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import EVERY_RUNTIME, require_runtime
from embedperf.protocol import validate

MINILM = ("sentence-transformers/all-MiniLM-L6-v2", "package")


def runner_result(run_dir, runtime):
    files = [p for p in (run_dir / "work").glob(f"*__{runtime}__fp32__f0.result.json")]
    assert files, f"no result file for {runtime}"
    return json.loads(files[0].read_text()), json.loads(files[0].with_name(
        files[0].name.replace(".result.", ".request.")).read_text())


@pytest.mark.parametrize("runtime", EVERY_RUNTIME)
def test_runner_honours_the_protocol(runtime, matrix):
    require_runtime(runtime)
    run_dir, cells = matrix(*MINILM)
    result, request = runner_result(run_dir, runtime)
    validate("request", request)
    validate("result", result)
    assert result["runner"]["name"] == runtime
    assert result["threads"] == request["threads"]
    assert result["framework"]["name"] and (runtime.startswith("null") or result["framework"]["version"])
    assert result["device"]["used"] == "cpu"
    assert result["error"] is None and result["load_s"] >= 0
    assert [(s["batch"], s["seq"]) for s in result["shapes"]] == [(s["batch"], s["seq"]) for s in request["shapes"]]
    timed = [(shape, asked) for shape, asked in zip(result["shapes"], request["shapes"])
             if asked.get("scenario") != "accuracy"]
    passes = [(shape, asked) for shape, asked in zip(result["shapes"], request["shapes"])
              if asked.get("scenario") == "accuracy"]
    # a real runtime's first process also makes one untimed pass over the accuracy corpus, after its shapes
    assert len(passes) == (0 if runtime.startswith("null") else 1)
    for shape, asked in passes:
        assert shape["status"] == "ok" and shape["stop_rule"] == "single_pass", shape.get("error")
        out = load_file(asked["embeddings"])["sentence_embedding"]
        assert out.shape[0] == shape["items"] and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    for shape, asked in timed:
        assert shape["status"] == "ok", shape.get("error")
        samples = shape["samples_ns"]
        assert len(samples) >= request["timing"]["min_calls"] and all(s > 0 for s in samples)
        assert len(shape["warmup_ns"]) == request["timing"]["warmup"]
        assert shape["first_call_s"] == pytest.approx(shape["warmup_ns"][0] / 1e9)
        assert shape["stop_rule"] == "min_reached"
        assert shape["peak_rss_mb"] >= shape["loop_peak_rss_mb"] > 0
        out = load_file(asked["embeddings"])["sentence_embedding"]
        assert out.dtype == np.float32 and out.shape == (asked["batch"], request["model"]["output_dim"])
        if not runtime.startswith("null"):
            assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("runtime", EVERY_RUNTIME)
def test_every_cell_is_a_self_describing_document(runtime, matrix):
    require_runtime(runtime)
    run_dir, cells = matrix(*MINILM)
    docs = [json.loads(p.read_text()) for p in run_dir.glob(f"*__{runtime}__*.json")]
    assert len(docs) == 2
    for doc in docs:
        assert doc["status"] == "ok", doc["reason"]
        assert doc["model"]["weights"] == "real"
        assert doc["model"]["weights_sha256"]
        assert doc["machine"]["cpu_model"] and doc["machine"]["cpus_available"] >= 1
        assert doc["versions"]["framework"]["name"]
        assert doc["spec"]["threads"]["inter_op"] == 1 and doc["spec"]["precision"] == "fp32"
        assert len(doc["forks"]) == doc["summary"]["forks"] == 1
        assert len(doc["forks"][0]["samples_ns"]) == doc["summary"]["n"]
        assert doc["summary"]["ci_low_ms"] <= doc["summary"]["median_ms"] <= doc["summary"]["ci_high_ms"]


def test_onnxruntime_bindings_share_their_session_options(matrix):
    run_dir, _ = matrix(*MINILM)
    seen = {}
    for runtime in ("onnxruntime-python", "onnxruntime-cpp", "onnxruntime-rust"):
        try:
            result, request = runner_result(run_dir, runtime)
        except AssertionError:
            continue
        seen[runtime] = request["onnxruntime"]
        settings = result["settings"]
        assert settings["intra_op_num_threads"] == request["threads"]["intra_op"]
        assert settings["inter_op_num_threads"] == 1
        assert result["framework"]["library_path"] and result["framework"]["library_sha256"]
    assert len({json.dumps(v, sort_keys=True) for v in seen.values()}) == 1
    libraries = set()
    for runtime in seen:
        libraries.add(runner_result(run_dir, runtime)[0]["framework"]["library_sha256"])
    assert len(libraries) == 1, "the ONNX Runtime bindings loaded different libraries"
