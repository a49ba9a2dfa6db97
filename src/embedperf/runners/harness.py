"""The Python side of the runner protocol: argument parsing, load, timing loop, results.

Each Python runner supplies an Engine; this module does everything else exactly as
docs/protocol.md says, so the Rust and C++ harnesses can mirror it line by line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Protocol

import numpy as np
from safetensors.numpy import load_file, save_file

from embedperf.protocol import PROTOCOL_VERSION, write_json_atomic


class Engine(Protocol):
    """What a Python runner implements: load once, then embed batches."""

    def embed(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """One call: embed a batch [B,S] and return float32 [B,D] in host memory."""

    def framework(self) -> dict:
        """{name, version, ...extras} of the library that runs the model."""

    def device(self) -> dict:
        """{requested, used, provider} that actually ran."""

    def settings(self) -> dict:
        """Framework settings actually applied."""


def vm_hwm_mb() -> float | None:
    """Resident-set high-water mark of this process (VmHWM), MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux clear_refs '5') so the loop's own peak can be read."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def truncate_and_normalize(x: np.ndarray, dim: int) -> np.ndarray:
    """Matryoshka: keep the first `dim` values, then L2-normalize again."""
    x = x[:, :dim]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def timing_loop(call, timing: dict) -> tuple[float | None, list[int], list[int], str, float, object]:
    """Warm up, then time calls until min_calls AND min_seconds, or max_seconds, or max_calls.

    Returns first-call seconds, warm-up and loop samples (ns), the stop rule,
    loop seconds and the last output.
    """
    clock = time.perf_counter_ns
    warmup_ns: list[int] = []
    out = None
    for _ in range(timing["warmup"]):
        t0 = clock()
        out = call()
        warmup_ns.append(clock() - t0)
    first_call_s = warmup_ns[0] / 1e9 if warmup_ns else None

    min_calls = timing["min_calls"]
    min_ns = int(timing["min_seconds"] * 1e9)
    max_ns = int(timing["max_seconds"] * 1e9)
    max_calls = timing.get("max_calls") or float("inf")
    samples: list[int] = []
    append = samples.append
    start = clock()
    while True:
        t0 = clock()
        out = call()
        t1 = clock()
        append(t1 - t0)
        elapsed = t1 - start
        if len(samples) >= min_calls and elapsed >= min_ns:
            rule = "min_reached"
            break
        if elapsed >= max_ns:
            rule = "time_cap"
            break
        if len(samples) >= max_calls:
            rule = "call_cap"
            break
    if first_call_s is None:
        first_call_s = samples[0] / 1e9
    return first_call_s, warmup_ns, samples, rule, (clock() - start) / 1e9, out


def _parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="embedperf runner: time one model on one runtime (docs/protocol.md)")
    parser.add_argument("--request", required=True, type=Path)
    parser.add_argument("--result", required=True, type=Path)
    return parser.parse_args(argv)


def run(name: str, load, argv=None) -> int:
    """Run the protocol with `load(request) -> Engine`. Returns the exit code."""
    args = _parse_args(argv)
    request = json.loads(args.request.read_text())
    result: dict = {
        "protocol": PROTOCOL_VERSION,
        "runner": {"name": name, "language": "python", "version": sys.version.split()[0]},
        "framework": {"name": "unknown", "version": None},
        "device": {"requested": request.get("device", "cpu"), "used": "none"},
        "threads": request["threads"],
        "settings": {},
        "load_s": None,
        "peak_rss_mb": None,
        "shapes": [],
        "error": None,
    }
    if request.get("protocol") != PROTOCOL_VERSION:
        result["error"] = {"kind": "protocol", "message": f"request protocol {request.get('protocol')} != {PROTOCOL_VERSION}"}
        write_json_atomic(args.result, result)
        return 1

    t0 = time.perf_counter()
    try:
        engine = load(request)
    except Exception as e:
        result["error"] = {"kind": "load", "message": f"{type(e).__name__}: {e}"}
        traceback.print_exc()
        write_json_atomic(args.result, result)
        return 1
    result["load_s"] = time.perf_counter() - t0
    result["framework"] = engine.framework()
    result["device"] = engine.device()
    result["settings"] = engine.settings()
    peak = vm_hwm_mb()
    result["peak_rss_mb"] = peak
    write_json_atomic(args.result, result)

    truncate = request["model"].get("truncate_dim")
    for index, shape in enumerate(request["shapes"]):
        entry = {"batch": shape["batch"], "seq": shape["seq"], "status": "ok", "error": None}
        try:
            before_shape = getattr(engine, "before_shape", None)
            if before_shape:
                before_shape(index, shape)
            tensors = load_file(shape["workload"])
            ids = np.ascontiguousarray(tensors["input_ids"], dtype=np.int64)
            mask = np.ascontiguousarray(tensors["attention_mask"], dtype=np.int64)
            if ids.shape != (shape["batch"], shape["seq"]):
                raise ValueError(f"workload shape {ids.shape} != requested {(shape['batch'], shape['seq'])}")

            if truncate:
                def call():
                    return truncate_and_normalize(engine.embed(ids, mask), truncate)
            else:
                def call():
                    return engine.embed(ids, mask)

            peak = max(filter(None, [peak, vm_hwm_mb()]), default=None)
            reset_hwm()
            first, warm, samples, rule, loop_s, out = timing_loop(call, request["timing"])
            loop_peak = vm_hwm_mb()
            peak = max(filter(None, [peak, loop_peak]), default=None)
            save_file({"sentence_embedding": np.ascontiguousarray(out, dtype=np.float32)}, shape["embeddings"])
            entry.update(
                first_call_s=first, warmup_ns=warm, samples_ns=samples, stop_rule=rule, loop_s=loop_s,
                peak_rss_mb=peak, loop_peak_rss_mb=loop_peak, embeddings=shape["embeddings"],
            )
        except MemoryError:
            entry.update(status="failed", error="out of memory (MemoryError)")
        except Exception as e:
            traceback.print_exc()
            entry.update(status="failed", error=f"{type(e).__name__}: {e}".splitlines()[0])
        result["shapes"].append(entry)
        result["peak_rss_mb"] = peak
        write_json_atomic(args.result, result)
    return 0


def main(name: str, load) -> None:
    """Entry point used by each runner module's __main__."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(run(name, load))
