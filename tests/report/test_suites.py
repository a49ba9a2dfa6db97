"""suites/full.yaml and suites/full-small.yaml: the plan's models, runtimes and shapes, every part a valid suite.

The suites use two things the suite reader is to learn (docs/results.md, "Suites"): `parts` (each part a suite
whose keys replace the top-level ones; timing and corpus merge key by key) and a list-valued `precision`. Until
it does, this test expands the parts itself, exactly as documented, and validates each part at each precision the
current reader knows through `spec.load_suite`, so a model, source, shape or timing the reader would refuse
fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import REPO

from embedperf import spec
from embedperf.models.registry import get_model

SUITES = REPO / "suites"
SIX = {"sentence-transformers/all-MiniLM-L6-v2", "google/embeddinggemma-300m", "Qwen/Qwen3-Embedding-0.6B",
       "BAAI/bge-m3", "openai/clip-vit-base-patch16", "google/siglip-base-patch16-224"}
MERGED = ("timing", "corpus")


def expand(path: Path) -> list[dict]:
    """The suite's parts as stand-alone suite documents (top-level keys, then the part's; sections merged)."""
    doc = yaml.safe_load(path.read_text())
    parts = doc.pop("parts")
    out = []
    for part in parts:
        merged = {**doc, **{k: v for k, v in part.items() if k not in MERGED}}
        for key in MERGED:
            if key in doc or key in part:
                merged[key] = {**(doc.get(key) or {}), **(part.get(key) or {})}
        out.append(merged)
    return out


def names(part: dict) -> set[str]:
    return {m if isinstance(m, str) else m["name"] for m in part["models"]}


@pytest.mark.parametrize("suite", ["full.yaml", "full-small.yaml"])
def test_every_part_is_a_valid_suite(suite, tmp_path):
    parts = expand(SUITES / suite)
    for i, part in enumerate(parts):
        precisions = part["precision"] if isinstance(part["precision"], list) else [part["precision"]]
        for precision in (p for p in precisions if p in spec.PRECISIONS):
            one = tmp_path / f"part{i}-{precision}.yaml"
            one.write_text(yaml.safe_dump({**part, "precision": precision}))
            run = spec.load_suite(one)
            assert run.runtimes[:6] == ["torch", "onnxruntime-python", "onnxruntime-cpp", "onnxruntime-rust",
                                        "candle", "openvino"]


@pytest.mark.parametrize("suite", ["full.yaml", "full-small.yaml"])
def test_the_plans_models_and_scenarios(suite):
    parts = expand(SUITES / suite)
    assert set().union(*(names(p) for p in parts)) == SIX
    towers = [p for p in parts if names(p) & {"openai/clip-vit-base-patch16", "google/siglip-base-patch16-224"}]
    assert towers and all("seq" not in p for p in towers)  # towers run at their fixed lengths
    throughput = [p for p in parts if p.get("scenario") == "throughput"]
    assert throughput and all(not get_model(n).multimodal for p in throughput for n in names(p))
    for p in parts:  # MiniLM is the real bundled model, the others twins unless overridden (--source hub)
        for m in p["models"]:
            if (m if isinstance(m, str) else m["name"]) == "sentence-transformers/all-MiniLM-L6-v2":
                assert isinstance(m, dict) and m["source"] == "package"
        assert p["source"] == "twin" and p["runtimes"] == "all"


def test_full_has_every_precision_and_the_plans_shapes():
    parts = expand(SUITES / "full.yaml")
    assert all(p["precision"] == ["fp32", "bf16", "fp16", "int8"] for p in parts)
    text = [p for p in parts if p.get("scenario", "latency") == "latency" and "seq" in p]
    plan = next(p for p in text if p["batch"] == [1, 8, 32])
    assert plan["seq"] == [128, 512] and names(plan) == SIX - {"openai/clip-vit-base-patch16",
                                                               "google/siglip-base-patch16-224"}
    # the sweep reaches each model's longest input up to 2048, never past it
    longest = {}
    for p in text:
        for n in names(p):
            longest[n] = max(longest.get(n, 0), max(p["seq"]))
    for n, seq in longest.items():
        assert seq == min(2048, get_model(n).max_length), (n, seq)
    towers = next(p for p in parts if "openai/clip-vit-base-patch16" in names(p))
    assert towers["batch"] == [1, 8, 32]


def test_full_small_keeps_the_comparison_shapes():
    parts = expand(SUITES / "full-small.yaml")
    assert all(p["precision"] == "fp32" and p["timing"]["forks"] == 2 for p in parts)
    text = [p for p in parts if "seq" in p and p.get("scenario", "latency") == "latency"]
    shapes = {(b, s) for p in text for b in p["batch"] for s in p["seq"]}
    assert {(1, 128), (8, 128), (1, 16), (1, 512)} <= shapes  # the model table, batch and length curves
