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
from embedperf.runners.launch import launch
from embedperf.runners.registry import RUNTIMES
from embedperf.workload import corpus

THREADS = 2


def prepare(model: str, source: str, formats: set[str], root: Path) -> Prepared:
    spec = get_model(model)
    return ensure_prepared(spec, locate(spec, source), formats, root, THREADS, say=lambda _: None)


def request(model: str, source: str, runtime: str, precision: str, prepared: Prepared, shapes: list[dict],
            attention: str | None = None) -> dict:
    """The protocol request the orchestrator writes for one runner at `precision` (its artifact chosen as a cell's),
    with short timing; `attention` overrides torch's (eager for a reference pass)."""
    from embedperf.orchestrator.execute import Executor
    from embedperf.orchestrator.plan import ModelPlan
    from embedperf.spec import Timing, build, model_choice

    choice = model_choice(model, source)
    spec = build([choice], runtime, "1", "16", precision=precision, threads=THREADS,
                 timing=Timing(warmup=1, min_calls=2, min_seconds=0.0, max_seconds=30.0, target_ci=None))
    plan = ModelPlan(choice, get_model(choice.name), prepared=prepared)
    req = Executor(spec, None, THREADS, print).request(plan, RUNTIMES[runtime], shapes, precision=precision)
    if attention and runtime == "torch":
        req["artifact"]["attention"] = attention
    return req


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
