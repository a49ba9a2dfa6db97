"""BGE-M3's output modes without a runner: the lexical weights by hand, the parity measures, the axis in the
spec, the plan and the cell ids, the refusals, and reading the real checkpoint's heads safely."""

import pickle

import numpy as np
import pytest
import torch

from conftest import FAST, embedperf
from embedperf.measure import parity
from embedperf.models.registry import MODE_OUTPUTS, get_model
from embedperf.models.sources import Located, SourceError, materialize_token_heads
from embedperf.orchestrator.plan import ModelPlan, shapes_for
from embedperf.prepare.cache import format_for
from embedperf.protocol import validate
from embedperf.results.store import cell_id
from embedperf.runners.outputs import lexical_weights, rows_of_lexical
from embedperf.spec import SpecError, build, model_choice

# Two rows of 8 tokens (the same case is in native/rust/protocol/src/outputs.rs and
# native/cpp/tests/test_outputs.cpp): repeated ids (7 twice in row 0, the larger weight wins; 5 twice in
# row 1, the first is larger), a zero and a negative weight (never kept), the special ids 0 cls, 2 eos,
# 1 pad, 3 unk, and padding that holds an ordinary id (9 in row 1, dropped by the mask).
IDS = np.array([[0, 7, 9, 7, 3, 2, 1, 1], [0, 5, 5, 8, 2, 1, 9, 9]])
MASK = np.array([[1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0, 0, 0]])
WEIGHTS = np.array([[0.9, 0.2, 0.0, 0.5, 0.7, 0.8, 0.6, 0.6], [0.4, 0.3, 0.1, -0.2, 0.9, 0.5, 0.9, 0.9]],
                   dtype=np.float32)
BGE_UNUSED = [0, 1, 2, 3]


def test_lexical_weights_by_hand():
    ids, weights, offsets = lexical_weights(WEIGHTS, IDS, MASK, BGE_UNUSED)
    assert rows_of_lexical(ids, weights, offsets) == [{7: pytest.approx(0.5)}, {5: pytest.approx(0.3)}]
    assert offsets.tolist() == [0, 1, 2] and ids.dtype == np.int64 and weights.dtype == np.float32
    # nothing dropped: every real id keeps its max, ids ascending within a row
    ids, weights, offsets = lexical_weights(WEIGHTS, IDS, MASK, [])
    assert offsets.tolist() == [0, 4, 7]
    assert ids.tolist() == [0, 2, 3, 7, 0, 2, 5]
    np.testing.assert_array_equal(weights, np.float32([0.9, 0.8, 0.7, 0.5, 0.4, 0.9, 0.3]))
    # the registry's ids are BGE-M3's cls, pad, eos, unk
    assert get_model("BAAI/bge-m3").unused_token_ids == tuple(BGE_UNUSED)


def test_top_k_agreement_forgives_only_ties_within_the_tolerance():
    ref = {i: 1.0 - i / 100 for i in range(40)}  # ids 0..39, weights 1.00 .. 0.61
    assert parity.top_k_agreement(ref, ref, k=32) == (1.0, 1.0, 32)
    # id 31 (the 32nd) and id 32 (the 33rd) swap places by less than the tolerance: no disagreement
    close = {**ref, 31: 0.685, 32: 0.6851}
    assert close[32] - close[31] < parity.SPARSE_MAX_ABS
    agreement, plain, judged = parity.top_k_agreement(close, {**ref, 32: 0.6849, 31: 0.685}, k=32)
    assert agreement == 1.0 and judged == 31
    # a clear member of the top-k missing from the runtime's is a disagreement
    wrong = {**ref, 0: 0.0}
    agreement, plain, _ = parity.top_k_agreement(wrong, ref, k=32)
    assert agreement == pytest.approx(31 / 32) and plain == pytest.approx(31 / 32)
    # fewer ids than k: the boundary is 0, and a weight near 0 is at the boundary
    small = {5: 0.5, 6: 0.00001}
    assert parity.top_k_agreement({5: 0.5}, small) == (1.0, 0.5, 1)


def test_sparse_and_colbert_measures_and_their_failures():
    rows = rows_of_lexical(*lexical_weights(WEIGHTS, IDS, MASK, BGE_UNUSED))
    same = parity.compare_sparse(WEIGHTS, WEIGHTS.astype(np.float64), MASK, rows, rows)
    assert same["token_weights_max_abs_diff"] == 0 and same["top_k_agreement"] == 1.0
    assert parity.outputs_failure({"sparse": same}) is None
    # padding may differ (it is no token); a real token may not
    moved = WEIGHTS.copy()
    moved[1, 6] += 1.0
    assert parity.compare_sparse(moved, WEIGHTS, MASK, rows, rows)["token_weights_max_abs_diff"] == 0
    moved[0, 3] += 1e-3
    bad = parity.compare_sparse(moved, WEIGHTS, MASK, rows_of_lexical(*lexical_weights(moved, IDS, MASK, BGE_UNUSED)),
                                rows)
    assert parity.outputs_failure({"sparse": bad}).startswith("sparse: weights differ by 1.00e-03")

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(2, 7, 4))
    ref /= np.linalg.norm(ref, axis=-1, keepdims=True)
    ref[~MASK[:, 1:].astype(bool)] = 0
    good = parity.compare_colbert(ref.astype(np.float32), ref, MASK)
    assert good["vectors"] == int(MASK[:, 1:].sum()) and good["min_cosine"] > 0.9999
    assert parity.outputs_failure({"colbert": good}) is None
    leaky = ref.copy()
    leaky[0, 6] = 0.5  # a padding position (row 0, token 7)
    leak = parity.outputs_failure({"colbert": parity.compare_colbert(leaky, ref, MASK)})
    assert "padding vectors are not zero" in leak
    turned = ref.copy()
    turned[1, 0] = -turned[1, 0]
    turn = parity.outputs_failure({"colbert": parity.compare_colbert(turned, ref, MASK)})
    assert turn.startswith("colbert: min cosine")


def test_the_outputs_axis_in_the_spec_the_plan_and_the_ids():
    choice = model_choice("BAAI/bge-m3", "tiny")
    spec = build([choice], "torch,onnxruntime-python", "1,8", "16", outputs="dense,colbert,sparse")
    assert spec.outputs == ["dense", "colbert", "sparse"]
    shapes = shapes_for(spec, ModelPlan(choice, get_model(choice.name)))
    assert [(x.outputs, x.batch) for x in shapes] == [(m, b) for m in ("dense", "colbert", "sparse") for b in (1, 8)]
    assert shapes[2].label() == "b1 s16 colbert"
    # a dense cell keeps the id it had before output modes; another mode is its own cell
    args = ("bge-m3", "tiny", "torch", "fp32", "cpu", "latency", 1, 16)
    assert cell_id(*args) == cell_id(*args, outputs="dense") == "bge-m3__tiny__torch__fp32__cpu__latency__b1__s16"
    assert cell_id(*args, outputs="sparse").endswith("__s16__sparse")
    assert format_for("onnx", "fp32", "sparse") == "onnx+sparse"
    assert format_for("reference", "fp32", "all") == "reference"  # the reference folder holds every head
    assert MODE_OUTPUTS["all"] == ("dense", "sparse", "colbert")
    with pytest.raises(SpecError, match="unknown output mode 'lexical'"):
        build([choice], "torch", "1", "16", outputs="lexical")
    with pytest.raises(SpecError, match="latency scenario"):
        build([choice], "torch", "8", None, scenario="throughput", outputs="sparse")


def test_a_request_with_outputs_validates():
    from embedperf.orchestrator.execute import Executor
    from embedperf.runners.registry import get_runtime

    choice = model_choice("BAAI/bge-m3", "tiny")
    spec = build([choice], "null", "1", "16")
    shapes = [{"batch": 1, "seq": 16, "workload": "/w.safetensors", "embeddings": "/e.safetensors"}]
    request = Executor(spec, None, 2, print).request(ModelPlan(choice, get_model(choice.name)), get_runtime("null"),
                                                     shapes, outputs="all")
    assert request["model"]["outputs"] == ["dense", "sparse", "colbert"]
    assert request["model"]["unused_token_ids"] == BGE_UNUSED
    validate("request", request)


def test_a_model_without_the_heads_refuses_the_mode_in_one_line(tmp_path):
    proc = embedperf("run", "--model", "sentence-transformers/all-MiniLM-L6-v2", "--source", "package",
                     "--runtimes", "torch", "--outputs", "dense,sparse", "--batch", "1", "--seq", "16", *FAST,
                     "--results", str(tmp_path / "results"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "all-MiniLM-L6-v2 has no sparse output" in lines[0] and "--outputs sparse" in lines[0]
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def _state(path, weight, bias):
    torch.save({"weight": weight, "bias": bias}, path)


class _Boom:
    def __reduce__(self):  # unpickling this would run os.system
        import os

        return (os.system, ("echo pwned",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_the_real_heads_load_as_plain_tensors_and_nothing_else(tmp_path):
    spec = get_model("BAAI/bge-m3")
    _state(tmp_path / "sparse_linear.pt", torch.ones(1, 8), torch.zeros(1))
    _state(tmp_path / "colbert_linear.pt", torch.eye(8), torch.zeros(8))
    heads = materialize_token_heads(spec, Located("local", tmp_path, {}, "real"))
    assert heads["sparse"]["weight"].shape == (1, 8) and heads["colbert"]["weight"].shape == (8, 8)
    (tmp_path / "colbert_linear.pt").unlink()  # a snapshot without one head: that mode cannot run
    assert set(materialize_token_heads(spec, Located("local", tmp_path, {}, "real"))) == {"sparse"}
    with open(tmp_path / "sparse_linear.pt", "wb") as f:
        pickle.dump({"weight": _Boom()}, f)
    with pytest.raises(SourceError, match="not a plain state dict"):
        materialize_token_heads(spec, Located("local", tmp_path, {}, "real"))
    # twins and tiny models get seeded heads of the real shapes: the same on every machine
    twin = Located("tiny", None, {"config": spec.architecture("tiny"), "seed": 1}, "random")
    a, b = materialize_token_heads(spec, twin), materialize_token_heads(spec, twin)
    assert a["sparse"]["weight"].shape == (1, 32) and a["colbert"]["weight"].shape == (32, 32)
    assert torch.equal(a["colbert"]["weight"], b["colbert"]["weight"])
    assert materialize_token_heads(get_model("sentence-transformers/all-MiniLM-L6-v2"), twin) == {}
