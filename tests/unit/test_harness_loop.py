"""The Python harness's timing loops, driven by fake calls on a fake clock, and its shape handling.

No framework is needed for the loops; the last tests run the real ONNX Runtime and
OpenVINO engines on tiny hand-built graphs (skipped where those are not installed).
"""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from embedperf.models.registry import TokenScheme
from embedperf.protocol import validate
from embedperf.runners import harness
from embedperf.runners.harness import Unsupported, accuracy_pass, throughput_loop, timing_loop
from embedperf.runners.null import NullEngine
from embedperf.workload.corpus import lengths, make_corpus, write_corpus

US = 1_000  # ns
MS = 1_000_000


class Clock:
    """A monotonic clock that only moves when a fake call does work."""

    def __init__(self):
        self.now = 0

    def __call__(self) -> int:
        return self.now


def work(clock, ns, out=None):
    """A call that takes `ns` (an int, or a list cycled through) and returns `out`."""
    durations = ns if isinstance(ns, list) else [ns]
    state = {"i": 0}

    def call():
        clock.now += durations[state["i"] % len(durations)]
        state["i"] += 1
        return out

    call.count = state
    return call


def timing(**kw):
    return {"warmup": 2, "min_calls": 5, "min_seconds": 0.0, "max_seconds": 10.0, **kw}


# ----- latency ------------------------------------------------------------------------------------------------

def test_min_reached_needs_min_calls_and_min_seconds():
    clock = Clock()
    loop = timing_loop(work(clock, 10 * US, "x"), timing(min_calls=5, min_seconds=0.0001), clock=clock)
    assert loop.stop_rule == "min_reached" and len(loop.samples_ns) == 10  # 100 µs of 10 µs calls
    assert loop.warmup_ns == [10 * US, 10 * US] and loop.first_call_s == pytest.approx(1e-5)
    assert loop.out == "x" and loop.ci_checks is None and loop.passes_ns == []
    loop = timing_loop(work(clock, 10 * US), timing(min_calls=25, min_seconds=0.0001), clock=clock)
    assert loop.stop_rule == "min_reached" and len(loop.samples_ns) == 25


def test_no_warmup_takes_the_first_sample_as_first_call():
    clock = Clock()
    loop = timing_loop(work(clock, [7 * US, 1 * US]), timing(warmup=0, min_calls=3), clock=clock)
    assert loop.warmup_ns == [] and loop.first_call_s == pytest.approx(7e-6) and len(loop.samples_ns) == 3


def test_ci_reached_on_constant_work_at_the_first_check():
    clock = Clock()
    loop = timing_loop(work(clock, 50 * US), timing(min_calls=3, target_ci=0.01), clock=clock)
    assert loop.stop_rule == "ci_reached" and len(loop.samples_ns) == 10 and loop.ci_checks == 1


def test_ci_waits_for_min_seconds_then_checks():
    clock = Clock()
    loop = timing_loop(work(clock, 50 * US), timing(min_calls=3, min_seconds=0.002, target_ci=0.01), clock=clock)
    assert loop.stop_rule == "ci_reached" and len(loop.samples_ns) == 40 and loop.ci_checks == 1


def test_noisy_work_never_reaches_the_ci_and_hits_the_time_cap():
    clock = Clock()
    loop = timing_loop(work(clock, [100 * US, 200 * US]), timing(min_calls=3, target_ci=0.01, max_seconds=0.1),
                       clock=clock)
    n = len(loop.samples_ns)
    assert loop.stop_rule == "time_cap" and n == 667  # 0.1 s of calls averaging 150 µs
    expected, at = 0, 10
    while at <= n:
        expected, at = expected + 1, -((-at * 11) // 10)
    assert loop.ci_checks == expected


def test_time_cap_before_min_calls():
    clock = Clock()
    loop = timing_loop(work(clock, 1 * MS), timing(min_calls=1000, max_seconds=0.0095), clock=clock)
    assert loop.stop_rule == "time_cap" and len(loop.samples_ns) == 10


def test_call_cap():
    clock = Clock()
    loop = timing_loop(work(clock, 1 * US), timing(min_calls=100, max_calls=7), clock=clock)
    assert loop.stop_rule == "call_cap" and len(loop.samples_ns) == 7
    loop = timing_loop(work(clock, 1 * US), timing(min_calls=100, max_calls=30, target_ci=0.01), clock=clock)
    assert loop.stop_rule == "call_cap" and loop.ci_checks == 0  # checks wait for min_calls


def test_the_real_clock_works():
    loop = timing_loop(lambda: np.zeros(3), timing(min_calls=20))
    assert loop.stop_rule == "min_reached" and len(loop.samples_ns) == 20 and loop.loop_s > 0


def numbered(clock, ns=10 * US):
    """A call returning [[its 1-based number]] (a fresh array each time), taking `ns`."""
    state = {"i": 0}

    def call():
        clock.now += ns
        state["i"] += 1
        return np.array([[state["i"]]], dtype=np.float32)

    return call


@pytest.mark.parametrize("warmup", [0, 1, 3])
def test_keep_first_copies_the_shapes_first_call(warmup):
    clock = Clock()
    loop = timing_loop(numbered(clock), timing(warmup=warmup, min_calls=4), clock=clock, keep_first=True)
    assert loop.first.tolist() == [[1.0]] and loop.out.tolist() == [[warmup + 4.0]]
    assert len(loop.samples_ns) == 4 and loop.stop_rule == "min_reached"
    assert timing_loop(numbered(clock), timing(warmup=warmup), clock=clock).first is None


def test_keep_first_copies_rather_than_keeps_a_reused_buffer():
    clock = Clock()
    buffer = np.zeros((1, 1), dtype=np.float32)

    def call():
        clock.now += US
        buffer[...] += 1  # an engine that writes every output into the same array
        return buffer

    loop = timing_loop(call, timing(warmup=0, min_calls=3), clock=clock, keep_first=True)
    assert loop.first.tolist() == [[1.0]] and loop.out.tolist() == [[3.0]]


def test_one_call_is_enough_when_min_calls_is_one():
    clock = Clock()
    loop = timing_loop(numbered(clock), timing(warmup=0, min_calls=1), clock=clock, keep_first=True)
    assert loop.samples_ns == [10 * US] and loop.stop_rule == "min_reached" and loop.first.tolist() == [[1.0]]


# ----- throughput ---------------------------------------------------------------------------------------------

def corpus_calls(clock, rows=(4, 4, 2), ns=(30 * US, 30 * US, 10 * US)):
    """K fake batch calls; each returns [rows, 2] holding (batch index, pass number) so order can be checked."""
    log = []

    def make(k):
        def call():
            clock.now += ns[k]
            log.append(k)
            return np.array([[k, log.count(k)]] * rows[k], dtype=np.float32)
        return call

    return [make(k) for k in range(len(rows))], log


def test_throughput_runs_full_passes_until_min_seconds():
    clock = Clock()
    calls, log = corpus_calls(clock)
    loop = throughput_loop(calls, timing(warmup=4, min_seconds=0.00015), clock=clock)
    assert log[:4] == [0, 1, 2, 0]  # warm-up cycles through the batches
    assert loop.stop_rule == "min_reached"
    assert loop.passes_ns == [70 * US, 70 * US, 70 * US]  # 140 µs < 150 µs after two passes
    assert loop.samples_ns == [30 * US, 30 * US, 10 * US] * 3
    assert loop.warmup_ns == [30 * US, 30 * US, 10 * US, 30 * US] and loop.first_call_s == pytest.approx(3e-5)
    assert loop.out.shape == (10, 2)
    assert loop.out[:, 0].tolist() == [0] * 4 + [1] * 4 + [2] * 2  # feed order
    assert loop.out[:, 1].tolist() == [5] * 4 + [4] * 4 + [4] * 2  # the last pass's calls (after 2 warm-ups of 0)
    assert loop.ci_checks is None


def test_throughput_min_calls_and_target_ci_do_not_apply():
    clock = Clock()
    calls, _ = corpus_calls(clock)
    loop = throughput_loop(calls, timing(min_calls=1000, target_ci=0.01), clock=clock)
    assert loop.stop_rule == "min_reached" and len(loop.passes_ns) == 1 and len(loop.samples_ns) == 3


def test_throughput_time_cap_waits_for_one_full_pass():
    clock = Clock()
    calls, _ = corpus_calls(clock)
    loop = throughput_loop(calls, timing(warmup=0, min_seconds=5, max_seconds=0.00001), clock=clock)
    assert loop.stop_rule == "time_cap" and len(loop.passes_ns) == 1 and len(loop.samples_ns) == 3
    assert loop.first_call_s == pytest.approx(3e-5) and loop.out.shape == (10, 2)


def test_throughput_time_cap_mid_pass_keeps_the_last_full_pass():
    clock = Clock()
    calls, log = corpus_calls(clock)
    loop = throughput_loop(calls, timing(warmup=0, min_seconds=5, max_seconds=0.0001), clock=clock)
    # pass 1 ends at 70 µs; pass 2's first call ends at 100 µs >= the cap: stop, dropping the partial pass
    assert loop.stop_rule == "time_cap" and log == [0, 1, 2, 0]
    assert loop.passes_ns == [70 * US] and loop.samples_ns == [30 * US, 30 * US, 10 * US]
    assert loop.out[:, 1].tolist() == [1] * 10


def test_throughput_call_cap_at_a_pass_boundary():
    clock = Clock()
    calls, _ = corpus_calls(clock)
    loop = throughput_loop(calls, timing(min_seconds=5, max_calls=4), clock=clock)
    assert loop.stop_rule == "call_cap" and len(loop.passes_ns) == 2 and len(loop.samples_ns) == 6


@pytest.mark.parametrize("warmup", [0, 2])
def test_throughput_keep_first_is_batch_zeros_first_call(warmup):
    clock = Clock()
    calls, log = corpus_calls(clock)
    loop = throughput_loop(calls, timing(warmup=warmup, min_seconds=0.0001), clock=clock, keep_first=True)
    assert loop.first.shape == (4, 2) and loop.first[:, 0].tolist() == [0] * 4
    assert loop.first[:, 1].tolist() == [1] * 4  # the first call of batch 0
    assert len(loop.passes_ns) == 2  # the last pass's batch 0 is its 2nd call (3rd after one warm-up call on it)
    assert loop.out[:4, 1].tolist() == [{0: 2, 2: 3}[warmup]] * 4


def test_throughput_with_one_batch_ends_a_pass_at_every_call():
    clock = Clock()
    calls, _ = corpus_calls(clock, rows=(3,), ns=(10 * US,))
    loop = throughput_loop(calls, timing(warmup=0, min_seconds=0.00005), clock=clock, keep_first=True)
    assert loop.passes_ns == [10 * US] * 5 and len(loop.samples_ns) == 5 and loop.stop_rule == "min_reached"
    assert loop.first[:, 1].tolist() == [1] * 3 and loop.out[:, 1].tolist() == [5] * 3


# ----- accuracy -----------------------------------------------------------------------------------------------

def test_accuracy_embeds_every_batch_once_in_feed_order():
    clock = Clock()
    calls, log = corpus_calls(clock)
    loop = accuracy_pass(calls, clock=clock, keep_first=True)
    assert log == [0, 1, 2] and loop.stop_rule == "single_pass"
    assert loop.samples_ns == [30 * US, 30 * US, 10 * US] and loop.warmup_ns == [] and loop.passes_ns == []
    assert loop.first_call_s == pytest.approx(3e-5) and loop.loop_s == pytest.approx(7e-5)
    assert loop.out[:, 0].tolist() == [0] * 4 + [1] * 4 + [2] * 2 and loop.out[:, 1].tolist() == [1] * 10
    assert loop.first.tolist() == loop.out[:4].tolist()


# ----- whole runs through harness.run (null engine, in process) ----------------------------------------------

TOKENS = TokenScheme(prefix=(101,), suffix=(102,), pad=0, regular=(999, 2048))


def text_workload(path, batch, seq):
    ids = np.full((batch, seq), 1000, dtype=np.int64)
    save_file({"input_ids": ids, "attention_mask": np.ones_like(ids), "lengths": np.full(batch, seq)}, str(path))
    return str(path)


def run_request(tmp_path, shapes, engine=NullEngine, name="null", dim=8, extra=None, timing_=None):
    request = {
        "protocol": 1, "runtime": name,
        "model": {"name": "t", "family": "bert", "pooling": "mean", "normalize": True, "output_dim": dim},
        "artifact": {"format": "none", "path": ""},
        "shapes": shapes, "device": "cpu", "precision": "fp32", "threads": {"intra_op": 1, "inter_op": 1},
        "timing": timing_ or {"warmup": 2, "min_calls": 3, "min_seconds": 0, "max_seconds": 5},
        **(extra or {}),
    }
    validate("request", request)
    (tmp_path / "req.json").write_text(json.dumps(request))
    code = harness.run(name, engine, ["--request", str(tmp_path / "req.json"), "--result", str(tmp_path / "res.json")])
    result = json.loads((tmp_path / "res.json").read_text())
    validate("result", result)
    return code, result


def test_run_records_latency_image_and_throughput_shapes(tmp_path):
    text = text_workload(tmp_path / "t.safetensors", 3, 16)
    pixels = str(tmp_path / "i.safetensors")
    save_file({"pixel_values": np.zeros((2, 3, 32, 32), dtype=np.float32)}, pixels)
    tensors, stats = make_corpus(TOKENS, lengths(n=37, high=100), 8, sort=True, seed=0)
    corpus = str(write_corpus(tmp_path / "c.safetensors", tensors))
    shapes = [
        {"batch": 3, "seq": 16, "workload": text, "embeddings": str(tmp_path / "e0.safetensors")},
        {"batch": 2, "seq": 32, "workload": pixels, "embeddings": str(tmp_path / "e1.safetensors")},
        {"batch": 8, "seq": stats["longest"], "workload": corpus, "embeddings": str(tmp_path / "e2.safetensors"),
         "scenario": "throughput"},
        {"batch": 2, "seq": 48, "workload": pixels, "embeddings": str(tmp_path / "e3.safetensors")},
        {"batch": 4, "seq": 16, "workload": text, "embeddings": str(tmp_path / "e4.safetensors")},
    ]
    timing_ = {"warmup": 2, "min_calls": 3, "min_seconds": 0, "max_seconds": 5, "target_ci": 0.5}
    code, result = run_request(tmp_path, shapes, timing_=timing_)
    assert code == 0 and result["error"] is None
    lat, img, thr, bad_img, bad_text = result["shapes"]
    for shape in (lat, img):
        assert shape["status"] == "ok" and shape["scenario"] == "latency"
        assert shape["target_ci"] == 0.5 and shape["ci_checks"] >= 1 and shape["stop_rule"] == "ci_reached"
        assert len(shape["samples_ns"]) >= 10
    assert load_file(lat["embeddings"])["sentence_embedding"].shape == (3, 8)
    assert load_file(img["embeddings"])["sentence_embedding"].shape == (2, 8)
    assert thr["status"] == "ok" and thr["scenario"] == "throughput" and thr["stop_rule"] == "min_reached"
    assert thr["items"] == 37 and len(thr["passes_ns"]) == 1 and len(thr["samples_ns"]) == stats["batches"] == 5
    assert thr["target_ci"] is None and thr["ci_checks"] is None and len(thr["warmup_ns"]) == 2
    assert load_file(thr["embeddings"])["sentence_embedding"].shape == (37, 8)
    assert bad_img["status"] == "failed" and "pixel_values" in bad_img["error"]
    assert bad_text["status"] == "failed" and "(3, 16) != requested (4, 16)" in bad_text["error"]


def test_run_truncates_corpus_rows(tmp_path):
    tensors, _ = make_corpus(TOKENS, lengths(n=10, high=40), 4, sort=False, seed=1)
    corpus = str(write_corpus(tmp_path / "c.safetensors", tensors))
    shapes = [{"batch": 4, "seq": int(tensors["batches"][:, 1].max()), "workload": corpus,
               "embeddings": str(tmp_path / "e.safetensors"), "scenario": "throughput"}]
    code, result = run_request(tmp_path, shapes, dim=8)
    assert code == 0 and result["shapes"][0]["status"] == "ok"
    request = json.loads((tmp_path / "req.json").read_text())
    request["model"]["truncate_dim"] = 4
    (tmp_path / "req.json").write_text(json.dumps(request))
    harness.run("null", NullEngine, ["--request", str(tmp_path / "req.json"), "--result", str(tmp_path / "res.json")])
    assert load_file(str(tmp_path / "e.safetensors"))["sentence_embedding"].shape == (10, 4)


def test_run_refuses_a_corpus_wider_than_the_request(tmp_path):
    tensors, stats = make_corpus(TOKENS, lengths(n=10, high=40), 4, sort=False, seed=1)
    corpus = str(write_corpus(tmp_path / "c.safetensors", tensors))
    shapes = [{"batch": 4, "seq": stats["longest"] - 1, "workload": corpus,
               "embeddings": str(tmp_path / "e.safetensors"), "scenario": "throughput"},
              {"batch": 4, "seq": 16, "workload": corpus, "embeddings": str(tmp_path / "f.safetensors")}]
    code, result = run_request(tmp_path, shapes)
    assert code == 0
    assert [s["status"] for s in result["shapes"]] == ["failed", "failed"]
    assert "exceeds the requested" in result["shapes"][0]["error"]
    assert "neither input_ids nor pixel_values" in result["shapes"][1]["error"]


def test_run_writes_first_embeddings_accuracy_and_memory_method(tmp_path):
    text = text_workload(tmp_path / "t.safetensors", 3, 16)
    tensors, stats = make_corpus(TOKENS, lengths(n=11, high=40), 4, sort=False, seed=2)
    corpus = str(write_corpus(tmp_path / "c.safetensors", tensors))
    shapes = [
        {"batch": 3, "seq": 16, "workload": text, "embeddings": str(tmp_path / "e0.safetensors"),
         "first_embeddings": str(tmp_path / "f0.safetensors")},
        {"batch": 4, "seq": stats["longest"], "workload": corpus, "embeddings": str(tmp_path / "e1.safetensors"),
         "first_embeddings": str(tmp_path / "f1.safetensors"), "scenario": "accuracy"},
        {"batch": 4, "seq": stats["longest"], "workload": corpus, "embeddings": str(tmp_path / "e2.safetensors"),
         "scenario": "throughput"},
    ]
    code, result = run_request(tmp_path, shapes)
    assert code == 0 and result["error"] is None
    lat, acc, thr = result["shapes"]
    assert lat["first_embeddings"] == shapes[0]["first_embeddings"] and thr["first_embeddings"] is None
    assert load_file(lat["first_embeddings"])["sentence_embedding"].shape == (3, 8)
    assert acc["status"] == "ok" and acc["scenario"] == "accuracy" and acc["stop_rule"] == "single_pass"
    assert len(acc["samples_ns"]) == stats["batches"] and acc["warmup_ns"] == [] and acc["items"] == 11
    assert load_file(acc["embeddings"])["sentence_embedding"].shape == (11, 8)
    first_rows = int(tensors["batches"][0, 0])
    assert load_file(acc["first_embeddings"])["sentence_embedding"].shape == (first_rows, 8)
    for shape in result["shapes"]:
        assert shape["memory_method"] in (harness.MEMORY_RESET, harness.MEMORY_NO_RESET)
        assert (shape["loop_peak_rss_mb"] is None) == (shape["memory_method"] != harness.MEMORY_RESET)


def test_loop_peak_is_null_when_the_reset_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "reset_hwm", lambda: False)
    text = text_workload(tmp_path / "t.safetensors", 2, 8)
    code, result = run_request(tmp_path, [{"batch": 2, "seq": 8, "workload": text,
                                           "embeddings": str(tmp_path / "e.safetensors")}])
    shape = result["shapes"][0]
    assert code == 0 and shape["status"] == "ok" and shape["peak_rss_mb"] > 0
    assert shape["loop_peak_rss_mb"] is None and shape["memory_method"] == "not measured: clear_refs not writable"


def test_an_unsupported_load_is_its_own_error_kind(tmp_path):
    class Refuses:
        def __init__(self, request):
            raise Unsupported(f"precision {request['precision']} is not run natively here")

    text = text_workload(tmp_path / "t.safetensors", 1, 8)
    code, result = run_request(tmp_path, [{"batch": 1, "seq": 8, "workload": text,
                                           "embeddings": str(tmp_path / "e.safetensors")}], engine=Refuses)
    assert code == 1 and result["shapes"] == []
    assert result["error"] == {"kind": "unsupported", "message": "precision fp32 is not run natively here"}


# ----- real graph engines feed exactly the inputs their graph declares ----------------------------------------

def tiny_graphs(tmp_path):
    """Two tiny ONNX graphs: an image tower (pixel_values only) and a mask-less text tower (input_ids only)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    def save(name, inp, elem, dims, nodes):
        graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info(inp, elem, dims)],
                                  [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, None)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, str(path))
        return str(path)

    image = save("image", "pixel_values", TensorProto.FLOAT, ["B", 3, "H", "W"],
                 [helper.make_node("ReduceMean", ["pixel_values"], ["sentence_embedding"], axes=[2, 3], keepdims=0)])
    text = save("text", "input_ids", TensorProto.INT64, ["B", "S"],
                [helper.make_node("Cast", ["input_ids"], ["f"], to=TensorProto.FLOAT),
                 helper.make_node("ReduceMean", ["f"], ["sentence_embedding"], axes=[1], keepdims=1)])
    return image, text


@pytest.mark.parametrize("runner", ["onnxruntime", "openvino"])
def test_graph_runners_feed_declared_inputs_and_name_a_missing_one(tmp_path, runner):
    image, text = tiny_graphs(tmp_path)
    if runner == "onnxruntime":
        pytest.importorskip("onnxruntime")
        from embedperf.runners.onnxruntime import OrtEngine as Engine
    else:
        pytest.importorskip("openvino")
        from embedperf.runners.openvino import OpenVinoEngine as Engine
    words = text_workload(tmp_path / "w.safetensors", 2, 4)
    pixels = str(tmp_path / "p.safetensors")
    values = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    save_file({"pixel_values": values}, pixels)

    def shapes(batch, seq, workloads):
        return [{"batch": batch, "seq": seq, "workload": w, "embeddings": str(tmp_path / f"e{i}.safetensors")}
                for i, w in enumerate(workloads)]

    code, result = run_request(tmp_path, shapes(2, 4, [pixels, words]), engine=Engine, name=runner, dim=3,
                               extra={"artifact": {"format": "onnx", "path": image}})
    ok, missing = result["shapes"]
    assert code == 0 and ok["status"] == "ok", ok["error"]
    assert np.allclose(load_file(ok["embeddings"])["sentence_embedding"], values.mean(axis=(2, 3)))
    assert missing["status"] == "failed" and "'pixel_values'" in missing["error"]

    code, result = run_request(tmp_path, shapes(2, 4, [words]), engine=Engine, name=runner, dim=1,
                               extra={"artifact": {"format": "onnx", "path": text}})
    assert result["shapes"][0]["status"] == "ok", result["shapes"][0]["error"]  # attention_mask is not fed
    assert np.allclose(load_file(result["shapes"][0]["embeddings"])["sentence_embedding"], 1000.0)
