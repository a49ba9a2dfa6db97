"""Result documents: one self-describing JSON file per cell under results/<run-id>/."""

from __future__ import annotations

import json
import re
from pathlib import Path

CELL_SCHEMA = "embedperf/cell/2"  # 2: measured in forks (separate runner processes)


def cell_id(model_slug: str, source: str, runtime: str, precision: str, device: str, scenario: str,
            batch: int, seq: int, truncate_dim: int | None = None, modality: str | None = None,
            order: str | None = None, threads: int | None = None, texts: bool = False, outputs: str = "dense") -> str:
    """A file-safe name that is unique per cell of a run (towers, corpus orders, thread budgets and output modes are
    their own cells; the dense mode adds nothing, so ids from before output modes stay)."""
    parts = [model_slug, source, runtime, precision, device] + ([f"t{threads}"] if threads else []) + [scenario]
    if modality:
        parts.append(modality)
    parts += [f"b{batch}", order if order else f"s{seq}"] + (["texts"] if texts else [])
    if truncate_dim:
        parts.append(f"d{truncate_dim}")
    if outputs != "dense":
        parts.append(outputs)
    return re.sub(r"[^A-Za-z0-9._-]", "-", "__".join(parts))


def existing_cells(run_dir: Path) -> set[str]:
    """Cell ids already written in a run folder (what --resume keeps)."""
    out = set()
    for path in run_dir.glob("*.json"):
        if path.name == "run.json":
            continue
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if doc.get("schema") == CELL_SCHEMA:
            out.add(doc["cell_id"])
    return out


def load_cells(paths: list[Path]) -> list[dict]:
    """Every cell document under the given run folders or results roots."""
    cells = []
    for root in paths:
        if root.is_file():
            files = [root]
        else:
            files = sorted(root.rglob("*.json"))
        for path in files:
            if path.name == "run.json" or path.parent.name == "work" or path.parent.parent.name == "forks":
                continue  # a cell document carries its forks: their records are the orchestrator's working state
            try:
                doc = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(doc, dict) and doc.get("schema") == CELL_SCHEMA:
                cells.append(doc)
    return cells


def fork_series(doc: dict) -> list[list[int]]:
    """The series a cell's figure is the median of, one list per measured fork (ns): calls for the
    latency scenario, whole passes for throughput. Empty for a cell that has none."""
    key = "passes_ns" if (doc.get("spec") or {}).get("order") else "samples_ns"
    return [f[key] for f in doc.get("forks") or [] if f.get("status") == "ok" and f.get(key)]


def flatten(doc: dict) -> dict:
    """The flat view of a cell that `report --format json` prints."""
    spec, summary, parity = doc["spec"], doc.get("summary") or {}, doc.get("parity") or {}
    work = doc.get("work") or {}
    return {
        "run_id": doc["run_id"],
        "model": spec["model"],
        "runtime": spec["runtime"],
        "source": spec["source"],
        "weights": doc["model"]["weights"],
        "weights_sha256": doc["model"].get("weights_sha256"),
        "modality": spec.get("modality", "text"),
        "order": spec.get("order"),
        "batch": spec["batch"],
        "seq": spec["seq"],
        "truncate_dim": spec.get("truncate_dim"),
        "outputs": spec.get("outputs") or "dense",
        "status": doc["status"],
        "reason": doc.get("reason"),
        "median_ms": summary.get("median_ms"),
        "p90_ms": summary.get("p90_ms"),
        "p99_ms": summary.get("p99_ms"),
        "mean_ms": summary.get("mean_ms"),
        "cv": summary.get("cv"),
        "ci_low_ms": summary.get("ci_low_ms"),
        "ci_high_ms": summary.get("ci_high_ms"),
        "n": summary.get("n"),
        "forks": summary.get("forks"),
        "fork_medians_ms": summary.get("fork_medians_ms"),
        "items_per_s": summary.get("items_per_s"),
        "tokens_per_s": summary.get("tokens_per_s"),
        "padding_waste": summary.get("padding_waste"),
        "preprocess_ms_per_image": summary.get("preprocess_ms_per_image"),
        "texts": bool(spec.get("texts")),
        "tokenize_ms_batch": summary.get("tokenize_ms_batch"),
        "tokenize_ms_per_text": summary.get("tokenize_ms_per_text"),
        "encode_ms_batch": summary.get("encode_ms_batch"),
        "recall_at_10": (doc.get("accuracy") or {}).get("recall_at_10"),
        "spearman": (doc.get("accuracy") or {}).get("spearman"),
        "accuracy_min_cosine": (doc.get("accuracy") or {}).get("min_cosine"),
        "stop_rule": summary.get("stop_rule"),
        "size_on_disk_bytes": doc["model"].get("size_on_disk_bytes"),
        "gpu_peak_mb": summary.get("gpu_peak_mb"),
        "zero_shot_max_abs_prob_diff": (doc.get("zero_shot") or {}).get("max_abs_prob_diff"),
        "load_s": summary.get("load_s"),
        "first_call_s": summary.get("first_call_s"),
        "peak_rss_mb": summary.get("peak_rss_mb"),
        "loop_peak_rss_mb": summary.get("loop_peak_rss_mb"),
        "min_cosine": parity.get("min_cosine"),
        "sparse_max_abs_diff": (parity.get("sparse") or {}).get("token_weights_max_abs_diff"),
        "sparse_top32_agreement": (parity.get("sparse") or {}).get("top_k_agreement"),
        "colbert_min_cosine": (parity.get("colbert") or {}).get("min_cosine"),
        "output_bytes_per_item": (doc.get("outputs") or {}).get("bytes_per_item_total"),
        "mean_cosine": parity.get("mean_cosine"),
        "max_abs_diff": parity.get("max_abs_diff"),
        "reference_spread": parity.get("reference_spread"),
        "threads": spec["threads"]["intra_op"],
        "precision": spec["precision"],
        "device": spec["device"],
        "scenario": spec["scenario"],
        "flops": work.get("flops"),
        "weight_bytes": work.get("weight_bytes"),
        "arithmetic_intensity": work.get("arithmetic_intensity"),
        "gflops": work.get("gflops"),
        "share_of_peak": work.get("share_of_peak"),
        "outliers": (doc.get("outliers") or {}).get("count"),
        "warnings": doc.get("warnings", []),
    }
