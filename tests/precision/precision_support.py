"""Helpers of the precision tests: prepare into a test cache, and launch a runner with a request as the orchestrator does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from embedperf.measure.machine import thread_env
from embedperf.models.registry import get_model
from embedperf.models.sources import locate
from embedperf.prepare import ensure_prepared
from embedperf.prepare.cache import Prepared
from embedperf.protocol import PROTOCOL_VERSION
from embedperf.runners.launch import launch
from embedperf.runners.registry import RUNTIMES
from embedperf.workload import corpus

THREADS = 2


def prepare(model: str, source: str, formats: set[str], root: Path) -> Prepared:
    spec = get_model(model)
    return ensure_prepared(spec, locate(spec, source), formats, root, THREADS, say=lambda _: None)


def request(model: str, source: str, runtime: str, precision: str, prepared: Prepared, shapes: list[dict],
            attention: str | None = None) -> dict:
    """A protocol request for one runner, its artifact chosen as the orchestrator chooses it for `precision`."""
    spec = get_model(model)
    fmt = RUNTIMES[runtime].artifact
    artifact = {"format": fmt, "path": str(prepared.artifact_path(fmt, precision=precision)),
                "sha256": prepared.artifact_sha256(fmt, precision=precision)}
    if runtime == "torch":
        artifact["attention"] = attention or "sdpa"
    return {
        "protocol": PROTOCOL_VERSION, "runtime": runtime,
        "model": {"name": spec.name, "family": spec.family, "pooling": spec.pooling, "normalize": spec.normalize,
                  "dense": spec.dense_names(), "output_dim": spec.embedding_dim(source), "truncate_dim": None},
        "artifact": artifact, "shapes": shapes, "device": "cpu", "precision": precision,
        "threads": {"intra_op": THREADS, "inter_op": 1},
        "timing": {"warmup": 1, "min_calls": 2, "min_seconds": 0.0, "max_seconds": 30.0, "target_ci": None},
        "onnxruntime": {"graph_optimization_level": "all", "execution_mode": "sequential",
                        "enable_cpu_mem_arena": True, "allow_spinning": True} if fmt == "onnx" else None,
        "fault": None,
    }


def run(runtime: str, req: dict, work: Path, tag: str) -> dict:
    """Start the runner, wait, and return its result document (asserting it wrote one)."""
    outcome = launch(RUNTIMES[runtime], req, work, tag, 600, None, thread_env(THREADS))
    assert outcome.result is not None, f"{runtime} wrote no result: {outcome.why()} (log {outcome.log})"
    return outcome.result


def corpus_embeddings(shape: dict) -> np.ndarray:
    """A corpus shape's embeddings (written in feed order) back in corpus order."""
    fed = load_file(shape["embeddings"])["sentence_embedding"]
    order = load_file(shape["workload"])["order"]
    return corpus.in_corpus_order(fed, order)
