"""Fixed cell documents for the report's tests: the structure orchestrator/analyse.py writes (schema 2, forks),
with seeded samples so every figure and every bootstrap is reproducible."""

from __future__ import annotations

import numpy as np

from embedperf.measure.stats import ForkStats
from embedperf.results.store import CELL_SCHEMA, cell_id, flatten

MACHINE = {"cpu_model": "Test CPU 9000", "cpus_available": 2, "load_average": [0.1, 0.1, 0.1], "gpus": []}
VERSIONS = {
    "torch": {"name": "torch", "version": "2.8.0", "transformers": "4.56.0"},
    "onnxruntime-python": {"name": "onnxruntime", "version": "1.22.0", "binding": "python onnxruntime 1.22.0"},
    "onnxruntime-rust": {"name": "onnxruntime", "version": "1.22.0", "binding": "ort 2.0.0-rc.10"},
    "openvino": {"name": "openvino", "version": "2025.2.0"},
    "candle": {"name": "candle", "version": "0.9.1"},
}


def doc(runtime: str = "torch", median_ms: float = 10.0, *, model: str = "BAAI/bge-m3", source: str = "twin",
        batch: int = 1, seq: int = 128, modality: str = "text", order: str | None = None, precision: str = "fp32",
        device: str = "cpu", threads: int = 2, spread: float = 0.01, n: int = 40, k: int = 3, seed: int = 0,
        status: str = "ok", reason: str | None = None, rss_mb: float = 500.0, run_id: str = "RUN-A",
        machine: dict | None = None, warnings: list[str] | None = None, parameters: int | None = 567_754_752,
        output_dim: int = 1024, size: int = 2_270_000_000, fork_medians: list[float] | None = None,
        accuracy: dict | None = None, created: str = "2026-01-01T00:00:00+00:00") -> dict:
    """One cell document; `fork_medians` gives each fork its own median (process modes), else all share `median_ms`."""
    rng = np.random.default_rng(seed)
    medians = fork_medians or [median_ms] * k
    forks = [[max(1, int(m * 1e6 * (1 + spread * rng.standard_normal()))) for _ in range(n)] for m in medians] \
        if status == "ok" else []
    scenario = "throughput" if order else "latency"
    d = {
        "schema": CELL_SCHEMA, "run_id": run_id, "status": status, "reason": reason,
        "cell_id": cell_id(model.split("/")[-1], source, runtime, precision, device, scenario, batch, seq,
                           modality=modality if modality != "text" else None, order=order, threads=threads),
        "spec": {"model": model, "family": "xlm-roberta", "source": source, "revision": None, "runtime": runtime,
                 "language": "python", "precision": precision, "device": device, "scenario": scenario,
                 "modality": modality, "order": order, "batch": batch, "seq": seq, "truncate_dim": None,
                 "threads": {"intra_op": threads, "inter_op": 1}, "timing": {}, "memory_limit_mb": None,
                 "workload": {"kind": "tokens", "seed": 0, "padding": "right"}},
        "model": {"weights": "random" if source in ("twin", "tiny") else "real", "weights_sha256": None,
                  "parameters": parameters, "artifact": "onnx", "pooling": "cls", "output_dim": output_dim,
                  "size_on_disk_bytes": size},
        "machine": machine or MACHINE,
        "versions": {"embedperf": "0.1.0", "python": "3.11.7", "framework": VERSIONS.get(runtime)},
        "project": {"commit": "0123456789abcdef0123", "dirty": False},
        "runner": {}, "forks": [], "summary": None, "parity": None, "warnings": list(warnings or []),
        "created": created,
    }
    if forks:
        d["forks"] = [{"fork": i, "status": "ok", "samples_ns": f, "peak_rss_mb": rss_mb - i,
                       **({"passes_ns": f} if order else {})} for i, f in enumerate(forks)]
        stats = ForkStats.of(forks)
        d["summary"] = {**stats.summary(batch), "load_s": 1.0, "first_call_s": 0.05, "peak_rss_mb": rss_mb,
                        "loop_peak_rss_mb": rss_mb - 10, "stop_rule": "ci_reached"}
        d["parity"] = {"min_cosine": 0.9999999, "mean_cosine": 0.99999995, "max_abs_diff": 1e-6}
        if accuracy:
            d["accuracy"] = accuracy
    flatten(d)  # the documents must be what the store's flat view reads
    return d


def shape_docs(medians: dict[str, float], **kw) -> list[dict]:
    """One document per runtime at the same shape, seeds apart."""
    return [doc(rt, m, seed=i, **kw) for i, (rt, m) in enumerate(medians.items())]
