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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from safetensors.numpy import load_file, save_file

from embedperf.measure.stoprule import CheckSchedule
from embedperf.protocol import PROTOCOL_VERSION, write_json_atomic
from embedperf.runners import outputs as extra
from embedperf.runners.refusal import Unsupported


INPUT_NAMES = ("input_ids", "attention_mask", "pixel_values")
INPUT_DTYPES = {"input_ids": np.int64, "attention_mask": np.int64, "pixel_values": np.float32}


class Engine(Protocol):
    """What a Python runner implements: load once, then embed batches."""

    def embed(self, inputs: dict[str, np.ndarray]) -> np.ndarray | dict[str, np.ndarray]:
        """One call: embed one batch and return float32 [rows,D] in host memory.

        `inputs` holds what the workload has, by name: input_ids and attention_mask
        (int64 [B,S]) for text, pixel_values (float32 [B,3,H,W]) for an image tower.
        An engine feeds the ones its model declares and fails naming any it lacks.
        With request.model.outputs beyond dense it returns a dict of its graph outputs by
        name (sentence_embedding, token_weights, colbert_vectors; runners/outputs.py).
        """

    def framework(self) -> dict:
        """{name, version, ...extras} of the library that runs the model."""

    def device(self) -> dict:
        """{requested, used, provider} that actually ran."""

    def settings(self) -> dict:
        """Framework settings actually applied."""


def missing_input(name: str, inputs: dict) -> ValueError:
    """The shape failure for a declared input the workload lacks (docs/protocol.md, Inputs by name)."""
    return ValueError(f"the model declares input {name!r} but the workload has only {sorted(inputs)}")


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


# shapes[].memory_method: how loop_peak_rss_mb was measured (the same strings in every harness)
MEMORY_RESET = "VmHWM after clear_refs reset before the loop"
MEMORY_NO_RESET = "not measured: clear_refs not writable"
MEMORY_NO_HWM = "not measured: VmHWM not readable"


def loop_peak(reset: bool, reading: float | None) -> tuple[float | None, str]:
    """loop_peak_rss_mb and memory_method: without a successful reset the reading is the
    process's peak since it started, not the loop's, so it is not reported as the loop's."""
    if not reset:
        return None, MEMORY_NO_RESET
    if reading is None:
        return None, MEMORY_NO_HWM
    return reading, MEMORY_RESET


def truncate_and_normalize(x: np.ndarray, dim: int) -> np.ndarray:
    """Matryoshka: keep the first `dim` values, then L2-normalize again."""
    x = x[:, :dim]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


@dataclass
class Loop:
    """What a timing loop measured."""

    first_call_s: float | None
    warmup_ns: list[int]
    samples_ns: list[int]
    stop_rule: str
    loop_s: float
    out: object  # the embeddings to write: last call (latency), last full pass / the one pass in feed order (corpus)
    ci_checks: int | None = None  # latency with target_ci: how many times the bootstrap ran
    passes_ns: list[int] = field(default_factory=list)  # throughput: wall time of each full pass
    first: np.ndarray | None = None  # keep_first: a copy of the shape's first call's output


def _copy(out):
    """A copy of one call's output (the first call's, kept for shapes[].first_embeddings): float32 for the
    embedding, every array as it is for a call with several outputs."""
    if isinstance(out, dict):
        return {name: np.array(array, copy=True) for name, array in out.items()}
    return np.array(out, dtype=np.float32, copy=True)


def _tensors(out) -> dict[str, np.ndarray]:
    """What an embeddings file holds for one call's output (docs/protocol.md, Files)."""
    if not isinstance(out, dict):
        return {extra.DENSE: np.ascontiguousarray(out, dtype=np.float32)}
    ints = (extra.LEXICAL_IDS, extra.LEXICAL_OFFSETS)
    return {name: np.ascontiguousarray(array, dtype=np.int64 if name in ints else np.float32)
            for name, array in out.items()}


def timing_loop(call, timing: dict, clock=time.perf_counter_ns, keep_first: bool = False) -> Loop:
    """Latency scenario: warm up, then time calls of one batch until a stop rule holds.

    Stops once len >= min_calls and elapsed >= min_seconds (min_reached; with
    timing.target_ci set, only when the stopping rule's CI is within ±target_ci:
    ci_reached), or elapsed >= max_seconds (time_cap), or after max_calls (call_cap).
    With keep_first, `first` is a copy of the first call's output (the first warm-up
    call, else the first timed one), made outside every timed span.
    """
    warmup_ns: list[int] = []
    first = None
    out = None
    for i in range(timing["warmup"]):
        t0 = clock()
        out = call()
        warmup_ns.append(clock() - t0)
        if keep_first and i == 0:
            first = _copy(out)
    first_call_s = warmup_ns[0] / 1e9 if warmup_ns else None

    min_calls = timing["min_calls"]
    min_ns = int(timing["min_seconds"] * 1e9)
    max_ns = int(timing["max_seconds"] * 1e9)
    max_calls = timing.get("max_calls") or float("inf")
    target = timing.get("target_ci")
    schedule = CheckSchedule(min_calls) if target is not None else None
    samples: list[int] = []
    append = samples.append
    # The loop is rotated (call, then [checks, call]*) so that the first timed call's
    # output can be copied between it and the checks without adding anything to the loop.
    start = clock()
    t0 = clock()
    out = call()
    t1 = clock()
    append(t1 - t0)
    if keep_first and first is None:
        first = _copy(out)
    while True:
        n = len(samples)
        elapsed = t1 - start
        if n >= min_calls and elapsed >= min_ns:
            if schedule is None:
                rule = "min_reached"
                break
            if schedule.check(samples, target):
                rule = "ci_reached"
                break
        if elapsed >= max_ns:
            rule = "time_cap"
            break
        if n >= max_calls:
            rule = "call_cap"
            break
        t0 = clock()
        out = call()
        t1 = clock()
        append(t1 - t0)
    loop_s = (clock() - start) / 1e9
    if first_call_s is None:
        first_call_s = samples[0] / 1e9
    return Loop(first_call_s, warmup_ns, samples, rule, loop_s, out,
                ci_checks=schedule.checks if schedule else None, first=first)


def throughput_loop(calls, timing: dict, clock=time.perf_counter_ns, keep_first: bool = False) -> Loop:
    """Throughput scenario: `calls` embed the corpus' K batches in feed order; time full passes.

    Warm-up: timing.warmup calls on batches 0, 1, … (mod K). Then passes over all K
    batches; every call's time goes into samples_ns and every full pass's wall time into
    passes_ns. After a call: time_cap once elapsed >= max_seconds, but only when at
    least one full pass is done (the unfinished pass's samples are dropped, so
    len(samples_ns) == passes·K). After a full pass: min_reached once elapsed >=
    min_seconds, else time_cap at max_seconds, else call_cap once max_calls calls are
    timed. target_ci and min_calls do not apply. `out` is the last full pass's
    outputs concatenated in feed order; with keep_first, `first` is a copy of the first
    call's output (batch 0's rows).
    """
    calls = list(calls)
    k = len(calls)
    if not k:
        raise ValueError("the corpus has no batches")
    warmup_ns: list[int] = []
    first = None
    for i in range(timing["warmup"]):
        t0 = clock()
        out = calls[i % k]()
        warmup_ns.append(clock() - t0)
        if keep_first and i == 0:
            first = _copy(out)
    first_call_s = warmup_ns[0] / 1e9 if warmup_ns else None

    min_ns = int(timing["min_seconds"] * 1e9)
    max_ns = int(timing["max_seconds"] * 1e9)
    max_calls = timing.get("max_calls") or float("inf")
    samples: list[int] = []
    passes: list[int] = []
    last_pass: list | None = None
    # One flat loop over calls, rotated like timing_loop's: the first call is made
    # before it, so its output can be copied without adding anything to the loop.
    index = 0
    start = clock()
    t0 = clock()
    pass_start = t0  # a pass: its first call's start to its last call's end
    outs = [calls[0]()]
    t1 = clock()
    samples.append(t1 - t0)
    if keep_first and first is None:
        first = _copy(outs[0])
    while True:
        elapsed = t1 - start
        if index < k - 1:
            if passes and elapsed >= max_ns:
                del samples[len(passes) * k:]
                rule = "time_cap"
                break
            index += 1
        else:
            passes.append(t1 - pass_start)
            last_pass = outs
            if elapsed >= min_ns:
                rule = "min_reached"
                break
            if elapsed >= max_ns:
                rule = "time_cap"
                break
            if len(samples) >= max_calls:
                rule = "call_cap"
                break
            outs = []
            index = 0
        t0 = clock()
        if index == 0:
            pass_start = t0
        outs.append(calls[index]())
        t1 = clock()
        samples.append(t1 - t0)
    loop_s = (clock() - start) / 1e9
    if first_call_s is None:
        first_call_s = samples[0] / 1e9
    return Loop(first_call_s, warmup_ns, samples, rule, loop_s, np.concatenate(last_pass, axis=0),
                passes_ns=passes, first=first)


def accuracy_pass(calls, clock=time.perf_counter_ns, keep_first: bool = False) -> Loop:
    """Accuracy scenario: every batch of the corpus embedded exactly once, in feed order, no warm-up.

    Each call's time is recorded in samples_ns (for the record: a single untimed-for-
    speed pass); stop_rule is "single_pass" and `out` is every output concatenated
    in feed order.
    """
    calls = list(calls)
    if not calls:
        raise ValueError("the corpus has no batches")
    samples: list[int] = []
    outs = []
    start = clock()
    for call in calls:
        t0 = clock()
        outs.append(call())
        samples.append(clock() - t0)
    loop_s = (clock() - start) / 1e9
    first = _copy(outs[0]) if keep_first else None
    return Loop(samples[0] / 1e9, [], samples, "single_pass", loop_s, np.concatenate(outs, axis=0), first=first)


def _inputs(tensors: dict, suffix: str = "") -> dict[str, np.ndarray]:
    """The model inputs a workload holds, by name, contiguous in their protocol dtype."""
    return {name: np.ascontiguousarray(tensors[name + suffix], dtype=INPUT_DTYPES[name])
            for name in INPUT_NAMES if name + suffix in tensors}


def latency_inputs(tensors: dict, batch: int, seq: int) -> dict[str, np.ndarray]:
    """One batch's inputs, checked against the requested shape (image: B == batch and H == seq)."""
    inputs = _inputs(tensors)
    if "pixel_values" in inputs:
        pixels = inputs["pixel_values"]
        if pixels.ndim != 4 or pixels.shape[0] != batch or pixels.shape[2] != seq:
            raise ValueError(f"workload pixel_values {pixels.shape} != requested [{batch},3,{seq},W]")
    elif "input_ids" in inputs:
        if inputs["input_ids"].shape != (batch, seq):
            raise ValueError(f"workload shape {inputs['input_ids'].shape} != requested {(batch, seq)}")
    else:
        raise ValueError(f"workload has neither input_ids nor pixel_values (it holds {sorted(tensors)})")
    for name, array in inputs.items():
        if array.shape[0] != batch:
            raise ValueError(f"workload {name} {array.shape} has not {batch} rows")
    return inputs


def corpus_inputs(tensors: dict, batch: int, seq: int) -> tuple[list[dict[str, np.ndarray]], int]:
    """The corpus' batches in feed order, each checked against `batches` and [batch, seq]; and its rows."""
    if "batches" not in tensors:
        raise ValueError(f"corpus workload has no 'batches' tensor (it holds {sorted(tensors)[:8]})")
    shapes = np.asarray(tensors["batches"], dtype=np.int64).reshape(-1, 2)
    feeds = []
    for k, (rows, width) in enumerate(shapes.tolist()):
        inputs = _inputs(tensors, f".{k}")
        if not inputs:
            raise ValueError(f"corpus batch {k} has no inputs (no input_ids.{k})")
        for name, array in inputs.items():
            fits = array.shape[:1] == (rows,) if name == "pixel_values" else array.shape == (rows, width)
            if not fits:
                raise ValueError(f"corpus {name}.{k} {array.shape} != batches[{k}] {(rows, width)}")
        if rows > batch or width > seq:
            raise ValueError(f"corpus batch {k} [{rows},{width}] exceeds the requested [{batch},{seq}]")
        feeds.append(inputs)
    items = int(shapes[:, 0].sum())
    if "order" in tensors and len(tensors["order"]) != items:
        raise ValueError(f"corpus order has {len(tensors['order'])} rows, its batches {items}")
    return feeds, items


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
    except Unsupported as e:
        result["error"] = {"kind": "unsupported", "message": str(e).splitlines()[0] if str(e) else "unsupported"}
        print(f"{name}: unsupported: {e}", file=sys.stderr)
        write_json_atomic(args.result, result)
        return 1
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
    asked = tuple(request["model"].get("outputs") or ["dense"])
    unused = np.asarray(request["model"].get("unused_token_ids") or [], dtype=np.int64)
    timing = request["timing"]
    for index, shape in enumerate(request["shapes"]):
        scenario = shape.get("scenario") or "latency"
        entry = {"batch": shape["batch"], "seq": shape["seq"], "status": "ok", "error": None, "scenario": scenario}
        try:
            before_shape = getattr(engine, "before_shape", None)
            if before_shape:
                before_shape(index, shape)
            tensors = load_file(shape["workload"])
            if asked != ("dense",) and scenario != "latency":
                raise ValueError(f"scenario {scenario} takes the dense output only; model.outputs asks for "
                                 f"{', '.join(asked)}")
            if scenario in ("throughput", "accuracy"):
                feeds, items = corpus_inputs(tensors, shape["batch"], shape["seq"])
            else:
                feeds, items = [latency_inputs(tensors, shape["batch"], shape["seq"])], None
            del tensors
            calls = [_make_call(engine, inputs, truncate, asked, unused) for inputs in feeds]
            keep_first = bool(shape.get("first_embeddings"))

            peak = max(filter(None, [peak, vm_hwm_mb()]), default=None)
            reset = reset_hwm()
            if scenario == "throughput":
                loop = throughput_loop(calls, timing, keep_first=keep_first)
            elif scenario == "accuracy":
                loop = accuracy_pass(calls, keep_first=keep_first)
            else:
                loop = timing_loop(calls[0], timing, keep_first=keep_first)
            reading = vm_hwm_mb()
            peak = max(filter(None, [peak, reading]), default=None)
            loop_peak_mb, memory_method = loop_peak(reset, reading)
            if asked != ("dense",):
                for out in (loop.out, loop.first) if keep_first else (loop.out,):
                    extra.check_outputs({k: v for k, v in out.items() if not k.startswith("lexical_")}, asked,
                                        shape["batch"], shape["seq"])
            save_file(_tensors(loop.out), shape["embeddings"])
            if keep_first:
                save_file(_tensors(loop.first), shape["first_embeddings"])
            entry.update(
                first_call_s=loop.first_call_s, warmup_ns=loop.warmup_ns, samples_ns=loop.samples_ns,
                stop_rule=loop.stop_rule, loop_s=loop.loop_s, peak_rss_mb=peak, loop_peak_rss_mb=loop_peak_mb,
                memory_method=memory_method, embeddings=shape["embeddings"],
                first_embeddings=shape["first_embeddings"] if keep_first else None,
            )
            if scenario == "throughput":
                entry.update(passes_ns=loop.passes_ns, items=items, target_ci=None, ci_checks=None)
            elif scenario == "accuracy":
                entry.update(items=items, target_ci=None, ci_checks=None)
            else:
                entry.update(target_ci=timing.get("target_ci"), ci_checks=loop.ci_checks)
        except MemoryError:
            entry.update(status="failed", error="out of memory (MemoryError)")
        except Exception as e:
            traceback.print_exc()
            entry.update(status="failed", error=f"{type(e).__name__}: {e}".splitlines()[0])
        result["shapes"].append(entry)
        result["peak_rss_mb"] = peak
        write_json_atomic(args.result, result)
    return 0


def _make_call(engine, inputs: dict, truncate: int | None, asked: tuple[str, ...] = ("dense",),
               unused: np.ndarray | None = None):
    """One call on one batch: the engine's embed, then inside the call Matryoshka truncation and, for a sparse
    call, the lexical weights (what a user of that output does with the token weights)."""
    embed = engine.embed
    if asked != ("dense",):
        ids, mask = inputs.get("input_ids"), inputs.get("attention_mask")
        sparse = "sparse" in asked

        def call():
            out = embed(inputs)
            if not isinstance(out, dict):
                raise ValueError(f"the engine returned one array; the request asks for {', '.join(asked)}")
            if truncate:
                out = {**out, extra.DENSE: truncate_and_normalize(out[extra.DENSE], truncate)}
            if sparse:
                (out[extra.LEXICAL_IDS], out[extra.LEXICAL_WEIGHTS],
                 out[extra.LEXICAL_OFFSETS]) = extra.lexical_weights(out[extra.TOKEN_WEIGHTS], ids, mask, unused)
            return out
        return call
    if truncate:
        def call():
            return truncate_and_normalize(embed(inputs), truncate)
    else:
        def call():
            return embed(inputs)
    return call


def main(name: str, load) -> None:
    """Entry point used by each runner module's __main__."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(run(name, load))
