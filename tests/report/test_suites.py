"""suites/full.yaml and suites/full-small.yaml: the plan's models, runtimes and shapes, every part a valid suite.

Both use `parts` (each part a suite whose keys replace the top-level ones; timing and corpus merge key by
key, all parts run into one run folder) and a list-valued `precision`; the real suite reader reads them,
so a model, source, shape or timing it would refuse fails here.
"""

from __future__ import annotations

import pytest

from conftest import REPO

from embedperf import spec
from embedperf.models.registry import get_model

SUITES = REPO / "suites"
SIX = {"sentence-transformers/all-MiniLM-L6-v2", "google/embeddinggemma-300m", "Qwen/Qwen3-Embedding-0.6B",
       "BAAI/bge-m3", "openai/clip-vit-base-patch16", "google/siglip-base-patch16-224"}
ALL_RUNTIMES = ["torch", "onnxruntime-python", "onnxruntime-cpp", "onnxruntime-rust", "candle", "openvino"]


def names(part: spec.RunSpec) -> set[str]:
    return {m.name for m in part.models}


@pytest.mark.parametrize("suite", ["full.yaml", "full-small.yaml"])
def test_the_plans_models_and_scenarios(suite):
    parts = spec.load_suite(SUITES / suite)
    assert set().union(*(names(p) for p in parts)) == SIX
    for p in parts:
        assert p.runtimes == ALL_RUNTIMES
        for m in p.models:  # MiniLM is the real bundled model, the others twins unless overridden (--source hub)
            assert m.source == ("package" if m.name == "sentence-transformers/all-MiniLM-L6-v2" else "twin")
    towers = [p for p in parts if names(p) & {"openai/clip-vit-base-patch16", "google/siglip-base-patch16-224"}]
    assert towers and all(not p.seq for p in towers)  # towers run at their fixed lengths
    throughput = [p for p in parts if p.scenario == "throughput"]
    assert throughput and all(not get_model(n).multimodal for p in throughput for n in names(p))


def test_full_has_every_precision_and_the_plans_shapes():
    parts = spec.load_suite(SUITES / "full.yaml")
    modes = [p for p in parts if p.outputs != ["dense"]]
    parts = [p for p in parts if p.outputs == ["dense"]]
    assert all(p.precision == ["fp32", "bf16", "fp16", "int8"] for p in parts)
    # BGE-M3's sparse and multi-vector outputs, at fp32 (their thresholds are fp32's), at the plan's shapes
    want = ({"BAAI/bge-m3"}, ["sparse", "colbert"], ["fp32"])
    assert [(names(p), p.outputs, p.precision) for p in modes] == [want] * 2
    assert (modes[0].batch, modes[0].seq) == ([1, 8, 32], [128, 512])
    text = [p for p in parts if p.scenario == "latency" and p.seq]
    plan = next(p for p in text if p.batch == [1, 8, 32])
    assert plan.seq == [128, 512] and names(plan) == SIX - {"openai/clip-vit-base-patch16",
                                                            "google/siglip-base-patch16-224"}
    longest = {}  # the sweep reaches each model's longest input up to 2048, never past it
    for p in text:
        for n in names(p):
            longest[n] = max(longest.get(n, 0), max(p.seq))
    for n, seq in longest.items():
        assert seq == min(2048, get_model(n).max_length), (n, seq)
    towers = next(p for p in parts if "openai/clip-vit-base-patch16" in names(p))
    assert towers.batch == [1, 8, 32]


def test_full_small_keeps_the_comparison_shapes():
    parts = spec.load_suite(SUITES / "full-small.yaml")
    assert all(p.precision == ["fp32"] and p.timing.forks == 2 for p in parts)
    text = [p for p in parts if p.seq and p.scenario == "latency"]
    shapes = {(b, s) for p in text for b in p.batch for s in p.seq}
    assert {(1, 128), (8, 128), (1, 16), (1, 512)} <= shapes  # the model table, batch and length curves


def test_parts_merge_sections_key_by_key_and_the_command_line_wins_everywhere(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text("runtimes: [null]\nbatch: [1]\nseq: [16]\ntiming: {warmup: 1, forks: 2}\n"
                     "parts:\n  - {batch: [4], timing: {forks: 3}}\n  - {seq: [32], description: long}\n")
    first, second = spec.load_suite(suite)
    assert (first.batch, first.seq, first.timing.warmup, first.timing.forks) == ([4], [16], 1, 3)
    assert (second.batch, second.seq, second.timing.forks, second.description) == ([1], [32], 2, "long")
    overridden = spec.load_suite(suite, {"timing.forks": 1, "batch": "2"})
    assert [(p.batch, p.timing.forks) for p in overridden] == [([2], 1), ([2], 1)]
    bad = tmp_path / "bad.yaml"
    bad.write_text("runtimes: [null]\nbatch: [1]\nparts:\n  - {machines: []}\n")
    with pytest.raises(spec.SpecError, match=r"parts\[0\]: unknown key"):
        spec.load_suite(bad)
