"""This machine's ceilings for a thread budget: peak matrix-multiply rate per precision, and memory bandwidth.

The roofline of a report needs measured numbers, not datasheet ones, and a ceiling is only honest
when no cell can beat it. So each precision's peak is the best that *any* installed engine reaches
on square GEMMs, each engine through its own kernels at the thread budget:

- torch: ``torch.mm`` (MKL/oneDNN) for fp32, bf16, fp16; ``torch._int_mm`` for int8;
- OpenVINO (oneDNN): a MatMul graph compiled with INFERENCE_PRECISION_HINT f32/bf16/f16, and int8
  through FakeQuantize on both operands (the form NNCF's int8 IRs take);
- ONNX Runtime (MLAS): MatMul (fp32, fp16) and MatMulInteger (u8 x s8, int8).

bf16, fp16 and int8 are measured only where the CPU has native kernels (avx512_bf16/amx_bf16,
avx512_fp16/amx_fp16, any x86 int8 SIMD) and the engine confirms it (oneDNN's checks, OpenVINO's
read-back hint and executed precisions); otherwise ``unsupported`` with the reason: an emulated rate
is no ceiling. int8 rates are in GOP/s (a multiply-add counts 2, as for floats). Beside each peak
stands a *theoretical* one from the CPU flags, the maximum clock and the physical cores the thread
budget spans (an upper bound no code reaches: it assumes two FMA units per core and the max clock
on every core).

Bandwidth GB/s: a copy (b = a) and a triad (a = b + s·c) over arrays far larger than the caches,
counting bytes read plus bytes written (2 and 3 arrays per pass; write-allocate traffic not counted).

Results are kept per machine fingerprint under ``cache_root()/machines/<id>.json``, one entry per thread
budget (schema 2; a schema-1 profile, torch.mm only, is read by ``read_profile(accept_old=True)`` and
``peak_for`` but never used as a ceiling: it is measured again). Importing this module imports no
framework: the measurement runs as

    python -m embedperf.measure.calibrate --threads N [--force] [--quick]

and ``load_or_calibrate`` (what the orchestrator and CLI call) starts that in a subprocess.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from embedperf.measure.machine import _cpuinfo, _memory_mb, available_cpus, thread_env
from embedperf.paths import cache_root
from embedperf.precision import NATIVE_FLAGS, native_flag

PROFILE_SCHEMA = "embedperf/machine/2"
OLD_SCHEMAS = ("embedperf/machine/1",)
SIZES = (512, 1024, 2048)
QUICK_SIZES = (128, 256)
SECONDS_PER_SIZE = 1.0
QUICK_SECONDS_PER_SIZE = 0.05
BANDWIDTH_ELEMENTS = 32 * 2**20  # float32: 128 MiB per array, far beyond any L3 here
QUICK_BANDWIDTH_ELEMENTS = 2 * 2**20
MATMUL_PRECISIONS = ("fp32", "bf16", "fp16", "int8")
ENGINES = ("torch", "openvino", "onnxruntime")


class NotNative(RuntimeError):
    """An engine cannot run a precision's GEMM natively here; the message says why."""


# -- who is this machine -------------------------------------------------------------
def machine_fingerprint() -> dict:
    """CPU model, a hash of every CPU flag, CPUs available to this process and memory: what a ceiling depends on."""
    cpu = _cpuinfo()
    flags = sorted(cpu.get("flags", []))
    flags_hash = hashlib.sha256(" ".join(flags).encode()).hexdigest()[:16]
    memory_mb = _memory_mb()
    facts = {
        "cpu_model": cpu.get("model") or "unknown",
        "flags_sha256": flags_hash,
        "cpus_available": available_cpus(),
        "memory_gb": round(memory_mb / 1024) if memory_mb else None,
        "arch": os.uname().machine,
    }
    key = json.dumps(facts, sort_keys=True).encode()
    return {**facts, "id": hashlib.sha256(key).hexdigest()[:16]}


def profile_path(fingerprint: dict | None = None) -> Path:
    """Where this machine's profile lives: cache_root()/machines/<fingerprint>.json."""
    fp = fingerprint or machine_fingerprint()
    return cache_root() / "machines" / f"{fp['id']}.json"


def native_support(flags: list[str] | None = None) -> dict[str, str | None]:
    """For bf16, fp16 and int8: the CPU flag that gives native matmul support, or None."""
    return {precision: native_flag(precision, flags) for precision in NATIVE_FLAGS}


# -- the theoretical ceiling ---------------------------------------------------------------
# operations per cycle per core of the widest native kernel, two FMA units assumed (an upper bound)
OPS_PER_CYCLE = {
    "fp32": (("avx512f", 64), ("fma", 32), ("avx", 16)),
    "bf16": (("amx_bf16", 1024), ("avx512_bf16", 128)),
    "fp16": (("amx_fp16", 1024), ("avx512_fp16", 128)),
    "int8": (("amx_int8", 2048), ("avx512_vnni", 256), ("avx_vnni", 128), ("avx512bw", 128), ("avx2", 64)),
}


def _clock_ghz() -> tuple[float | None, str]:
    """The CPU's maximum clock (cpufreq), else the clock /proc/cpuinfo shows now; and where it came from."""
    try:
        khz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text())
        return khz / 1e6, "cpufreq cpuinfo_max_freq"
    except (OSError, ValueError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) / 1e3, "/proc/cpuinfo cpu MHz (current clock; the max may be higher)"
    except (OSError, ValueError):
        pass
    return None, "unknown"


def _threads_per_core() -> int:
    """Hardware threads per physical core (siblings / cpu cores in /proc/cpuinfo), 1 when unknown."""
    facts: dict[str, int] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("siblings", "cpu cores") and key.strip() not in facts:
                facts[key.strip()] = int(value)
    except (OSError, ValueError):
        return 1
    if facts.get("siblings") and facts.get("cpu cores"):
        return max(1, facts["siblings"] // facts["cpu cores"])
    return 1


def theoretical_peaks(threads: int, flags: list[str] | None = None, clock_ghz: float | None = None,
                      threads_per_core: int | None = None) -> dict:
    """Per precision: flags x clock x physical cores -> GFLOP/s (GOP/s for int8). Theoretical, never reached."""
    have = set(_cpuinfo().get("flags", []) if flags is None else flags)
    source = "given"
    if clock_ghz is None:
        clock_ghz, source = _clock_ghz()
    tpc = threads_per_core or _threads_per_core()
    cores = math.ceil(threads / tpc)
    out = {}
    for precision, table in OPS_PER_CYCLE.items():
        flag, per_cycle = next(((f, n) for f, n in table if f in have), (None, None))
        if flag is None or clock_ghz is None:
            out[precision] = {"gflops": None, "why": "no native kernel flag" if flag is None else "clock unknown"}
            continue
        out[precision] = {"gflops": per_cycle * clock_ghz * cores, "ops_per_cycle_per_core": per_cycle,
                          "flag": flag, "clock_ghz": clock_ghz, "clock_source": source, "physical_cores": cores}
    out["assumes"] = (f"theoretical: two FMA units per core, the max clock on every core, {tpc} hardware thread(s) "
                      f"per core sharing its units; no code reaches it")
    return out


# -- measuring (imports the engines) ------------------------------------------------------------
def _rate(call, ops: float, seconds: float) -> dict:
    """Best and median rate (G ops/s) of `call`, timed in blocks of about 0.1 s (less in a quick run) after warm-up."""
    for _ in range(2):  # warm-up: page faults, kernel selection, thread pool spin-up
        call()
    t0 = time.perf_counter_ns()
    call()
    one = max(time.perf_counter_ns() - t0, 1) / 1e9
    per_block = max(1, int(min(0.1, seconds / 3) / one))
    rates = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 3:
        t0 = time.perf_counter_ns()
        for _ in range(per_block):
            call()
        elapsed = (time.perf_counter_ns() - t0) / 1e9
        rates.append(ops * per_block / elapsed / 1e9)
    rates.sort()
    return {"best_gflops": rates[-1], "median_gflops": rates[len(rates) // 2], "blocks": len(rates),
            "calls_per_block": per_block}


def _sweep(make_call, sizes, seconds) -> dict:
    """The best rate over square sizes n: make_call(n) gives one n×n×n GEMM call (2·n³ operations)."""
    by_size = {str(n): _rate(make_call(n), 2.0 * n ** 3, seconds) for n in sizes}
    best = max(by_size.items(), key=lambda kv: kv[1]["best_gflops"])
    return {"peak_gflops": best[1]["best_gflops"], "at_size": int(best[0]), "by_size": by_size}


def _onednn_native(torch, precision: str) -> bool:
    check = {"bf16": "_is_mkldnn_bf16_supported", "fp16": "_is_mkldnn_fp16_supported"}[precision]
    try:
        return torch.backends.mkldnn.is_available() and bool(getattr(torch.ops.mkldnn, check)())
    except (AttributeError, RuntimeError):
        return False


def torch_gemm(precision: str, threads: int):
    """make_call(n) for torch: torch.mm in the precision's dtype, torch._int_mm (int8 -> int32) for int8."""
    import torch

    torch.set_num_threads(threads)
    if precision == "int8":
        if not hasattr(torch, "_int_mm"):
            raise NotNative(f"torch {torch.__version__} has no torch._int_mm")

        def make(n):
            a = torch.randint(-128, 128, (n, n), dtype=torch.int8)
            b = torch.randint(-128, 128, (n, n), dtype=torch.int8)
            return lambda: torch._int_mm(a, b)
        return make
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if precision != "fp32" and not _onednn_native(torch, precision):
        raise NotNative(f"oneDNN reports no native {precision}")

    def make(n):
        a = torch.randn(n, n, dtype=torch.float32).to(dtype)
        b = torch.randn(n, n, dtype=torch.float32).to(dtype)
        out = torch.empty(n, n, dtype=dtype)
        return lambda: torch.mm(a, b, out=out)
    return make


def openvino_gemm(precision: str, threads: int):
    """make_call(n) for OpenVINO: a compiled MatMul with the precision's hint (FakeQuantize operands for int8)."""
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops

    core = ov.Core()
    hint = {"fp32": ov.Type.f32, "bf16": ov.Type.bf16, "fp16": ov.Type.f16, "int8": ov.Type.f32}[precision]
    executes = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": ("u8", "i8")}[precision]

    def make(n):
        rng = np.random.default_rng(n)
        a = ops.parameter([n, n], ov.Type.f32, name="a")
        b = ops.constant(rng.standard_normal((n, n)).astype(np.float32))
        if precision == "int8":
            def fq(x, low, high, levels):
                lo, hi = ops.constant(np.float32(low)), ops.constant(np.float32(high))
                return ops.fake_quantize(x, lo, hi, lo, hi, levels)
            left, right = fq(a, 0.0, 1.0, 256), fq(b, -3.0, 3.0, 255)  # u8 activations, s8 weights
        else:
            left, right = a, b
        model = ov.Model([ops.matmul(left, right, False, False)], [a], "gemm")
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads,
                                                     "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1})
        if compiled.get_property("INFERENCE_PRECISION_HINT") != hint:
            raise NotNative(f"OpenVINO applied {compiled.get_property('INFERENCE_PRECISION_HINT').get_type_name()}, "
                            f"not {hint.get_type_name()}")
        ran = [op.get_rt_info()["runtimePrecision"].astype(str) for op in compiled.get_runtime_model().get_ops()
               if op.get_rt_info()["layerType"].astype(str) in ("FullyConnected", "MatMul")]
        if not any(r in executes for r in ran):
            raise NotNative(f"OpenVINO's GEMM executed in {ran}, not {executes}")
        request = compiled.create_infer_request()
        x = rng.random((n, n), dtype=np.float32)
        return lambda: request.infer({0: x})
    return make


def onnxruntime_gemm(precision: str, threads: int):
    """make_call(n) for ONNX Runtime's CPU provider: MatMul (fp32/fp16), MatMulInteger u8 x s8 (int8)."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    if precision == "bf16":
        raise NotNative("ONNX Runtime's CPU provider has no bf16 MatMul kernel")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1

    def make(n):
        rng = np.random.default_rng(n)
        if precision == "int8":
            a = rng.integers(0, 256, (n, n), dtype=np.uint8)
            b = numpy_helper.from_array(rng.integers(-128, 128, (n, n), dtype=np.int8), "b")
            node, in_type, out_type = helper.make_node("MatMulInteger", ["a", "b"], ["y"]), TensorProto.UINT8, TensorProto.INT32
        else:
            dtype = np.float32 if precision == "fp32" else np.float16
            a = rng.standard_normal((n, n)).astype(dtype)
            b = numpy_helper.from_array(rng.standard_normal((n, n)).astype(dtype), "b")
            kind = TensorProto.FLOAT if precision == "fp32" else TensorProto.FLOAT16
            node, in_type, out_type = helper.make_node("MatMul", ["a", "b"], ["y"]), kind, kind
        graph = helper.make_graph([node], "gemm", [helper.make_tensor_value_info("a", in_type, [n, n])],
                                  [helper.make_tensor_value_info("y", out_type, [n, n])], [b])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 9
        try:
            session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # NOT_IMPLEMENTED: no kernel for this type
            raise NotNative(f"ONNX Runtime: {e}".splitlines()[0][:200]) from e
        return lambda: session.run(None, {"a": a})
    return make


GEMMS = {"torch": torch_gemm, "openvino": openvino_gemm, "onnxruntime": onnxruntime_gemm}


def _not_native(precision: str, flags: list[str] | None) -> str | None:
    """Why this CPU has no native kernel for `precision`, or None. int8 needs only x86 int8 SIMD (VNNI or not)."""
    if precision == "fp32":
        return None
    if precision == "int8":
        have = set(_cpuinfo().get("flags", []) if flags is None else flags)
        wanted = (*NATIVE_FLAGS["int8"], "avx512bw", "avx2")
        return None if have & set(wanted) else f"no {' or '.join(wanted)} CPU flag"
    if native_flag(precision, flags) is None:
        return f"no {' or '.join(NATIVE_FLAGS[precision])} CPU flag"
    return None


def engine_peaks(threads: int, sizes, seconds, flags: list[str] | None = None) -> dict:
    """{engine: {precision: sweep | {"unsupported": reason}}} for every installed engine."""
    import importlib.util

    out: dict = {}
    for engine, gemm in GEMMS.items():
        if importlib.util.find_spec(engine) is None:
            out[engine] = {"unsupported": f"{engine} is not installed"}
            continue
        out[engine] = {}
        for precision in MATMUL_PRECISIONS:
            why = _not_native(precision, flags)
            if why:
                out[engine][precision] = {"unsupported": why}
                continue
            try:
                out[engine][precision] = _sweep(gemm(precision, threads), sizes, seconds)
            except NotNative as e:
                out[engine][precision] = {"unsupported": str(e)}
    return out


def best_peaks(engines: dict, theoretical: dict) -> dict:
    """Per precision, the best measured peak over engines (the ceiling), with the theoretical one beside it."""
    peaks = {}
    for precision in MATMUL_PRECISIONS:
        measured = {e: r[precision] for e, r in engines.items() if "peak_gflops" in r.get(precision, {})}
        theory = theoretical.get(precision, {}).get("gflops")
        if not measured:
            reasons = "; ".join(f"{e}: {r.get(precision, r).get('unsupported', '?')}" for e, r in engines.items())
            peaks[precision] = {"peak_gflops": None, "unsupported": reasons, "theoretical_gflops": theory}
            continue
        engine, best = max(measured.items(), key=lambda kv: kv[1]["peak_gflops"])
        peaks[precision] = {"peak_gflops": best["peak_gflops"], "engine": engine, "at_size": best["at_size"],
                            "unit": "GOP/s" if precision == "int8" else "GFLOP/s", "theoretical_gflops": theory,
                            "by_engine": {e: r["peak_gflops"] for e, r in measured.items()}}
    return peaks


def _bandwidth(torch, elements: int, seconds: float) -> dict:
    """Copy and triad rates, bytes read + written, best of repeated passes."""
    a = torch.ones(elements, dtype=torch.float32)
    b = torch.full((elements,), 2.0, dtype=torch.float32)
    c = torch.full((elements,), 0.5, dtype=torch.float32)
    nbytes = elements * 4

    def best(fn, moved) -> float:
        fn()  # first touch
        rates, deadline = [], time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(rates) < 3:
            t0 = time.perf_counter_ns()
            fn()
            rates.append(moved / ((time.perf_counter_ns() - t0) / 1e9) / 1e9)
        return max(rates)

    copy = best(lambda: b.copy_(a), 2 * nbytes)
    triad = best(lambda: torch.add(b, c, alpha=3.0, out=a), 3 * nbytes)
    return {"copy_gbs": copy, "triad_gbs": triad, "array_mb": nbytes / 2**20,
            "counts": "bytes read + bytes written; write-allocate traffic not counted"}


def _versions() -> dict:
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for name in ("torch", "openvino", "onnxruntime"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def calibrate(threads: int, quick: bool = False) -> dict:
    """Measure the peaks for a thread budget in this process (imports torch, OpenVINO, ONNX Runtime)."""
    os.environ.update(thread_env(threads))
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process (a second calibration)
        pass
    sizes = QUICK_SIZES if quick else SIZES
    seconds = QUICK_SECONDS_PER_SIZE if quick else SECONDS_PER_SIZE
    load_start = list(os.getloadavg())
    started = time.perf_counter()
    engines = engine_peaks(threads, sizes, seconds)
    theory = theoretical_peaks(threads)
    peaks = best_peaks(engines, theory)
    entry: dict = {
        "threads": threads,
        "quick": quick,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(),
        "versions": _versions(),
        "load_average_start": load_start,
        "method": "square GEMMs through torch, OpenVINO and ONNX Runtime per precision, best block of calls after "
                  "warm-up (sustained); the best engine is the ceiling; 2·n³ operations per call",
        "engines": engines,
        "peaks": peaks,
        "theoretical": theory,
    }
    # schema-1 fields, kept for readers of older documents: fp32/bf16/fp16 as before, from the best engine
    best_fp32 = engines[peaks["fp32"]["engine"]]["fp32"]
    entry["fp32"] = {**best_fp32, "engine": peaks["fp32"]["engine"]}
    for name in ("bf16", "fp16"):
        if peaks[name]["peak_gflops"]:
            sweep = engines[peaks[name]["engine"]][name]
            entry[name] = {**sweep, "engine": peaks[name]["engine"], "cpu_flag": native_flag(name)}
        else:
            entry[name] = "unsupported"
            entry[f"{name}_reason"] = peaks[name]["unsupported"]
    entry["bandwidth"] = _bandwidth(torch, QUICK_BANDWIDTH_ELEMENTS if quick else BANDWIDTH_ELEMENTS,
                                    seconds)
    entry["peak_gflops"] = peaks["fp32"]["peak_gflops"]
    entry["bandwidth_gbs"] = entry["bandwidth"]["triad_gbs"]
    entry["load_average_end"] = list(os.getloadavg())
    entry["seconds"] = time.perf_counter() - started
    busy = max(load_start[0], entry["load_average_end"][0])
    cpus = available_cpus()
    entry["warnings"] = ([f"busy machine: 1-min load average {busy:.2f} with {cpus} CPU(s) available; "
                          f"the peaks may be low"] if busy > 0.5 * cpus else [])
    if quick:
        entry["warnings"].append("quick calibration: small sizes, not a ceiling to report")
    return entry


def peak_for(entry: dict | None, precision: str = "fp32", device: str = "cpu") -> float | None:
    """The ceiling a cell of `precision` on `device` is a share of: GFLOP/s (GOP/s for int8), or None.

    Reads schema-2 entries (best engine per precision) and schema-1 ones (torch.mm only: fp32, bf16, fp16).
    The profile describes this machine's CPU: a CUDA cell gets None.
    """
    if not entry or device != "cpu":
        return None
    if "peaks" in entry:
        return (entry["peaks"].get(precision) or {}).get("peak_gflops")
    if precision == "fp32":
        return entry.get("peak_gflops")
    old = entry.get(precision)
    return old.get("peak_gflops") if isinstance(old, dict) else None


# -- the profile file ----------------------------------------------------------------------
def read_profile(path: Path | None = None, accept_old: bool = False) -> dict | None:
    """This machine's profile document; a schema-1 one only with accept_old (it is no ceiling: torch.mm only)."""
    path = path or profile_path()
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    schemas = (PROFILE_SCHEMA, *OLD_SCHEMAS) if accept_old else (PROFILE_SCHEMA,)
    return doc if doc.get("schema") in schemas else None


def _entry(doc: dict | None, threads: int, quick: bool) -> dict | None:
    if not doc:
        return None
    entry = doc.get("profiles", {}).get(str(threads))
    if entry is None or (entry.get("quick") and not quick):
        return None
    return {**entry, "fingerprint": doc["fingerprint"]}


def save_entry(entry: dict, fingerprint: dict | None = None) -> Path:
    """Add (or replace) one thread budget's entry in this machine's profile, atomically."""
    fp = fingerprint or machine_fingerprint()
    path = profile_path(fp)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = read_profile(path) or {"schema": PROFILE_SCHEMA, "fingerprint": fp, "profiles": {}}
    doc["fingerprint"] = fp
    doc["profiles"][str(entry["threads"])] = entry
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)
    return path


def cached(threads: int, quick: bool = False) -> dict | None:
    """This machine's stored entry for a thread budget, or None. Framework-free, no measuring."""
    return _entry(read_profile(), threads, quick)


def load_or_calibrate(threads: int | None = None, force: bool = False, quick: bool = False,
                      timeout: float = 300.0) -> dict:
    """The stored entry for this machine and thread budget, measuring it first (in a subprocess) when missing."""
    threads = threads or available_cpus()
    if not force:
        hit = cached(threads, quick)
        if hit is not None:
            return hit
    cmd = [sys.executable, "-m", "embedperf.measure.calibrate", "--threads", str(threads), "--force"]
    if quick:
        cmd.append("--quick")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **thread_env(threads)})
    if proc.returncode != 0:
        raise RuntimeError(f"calibration failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    hit = cached(threads, quick)
    if hit is None:
        raise RuntimeError(f"calibration wrote no profile at {profile_path()}")
    return hit


def describe(entry: dict) -> str:
    """Human lines for a profile entry (schema 2, or schema 1 read with accept_old)."""
    lines = [f"machine {entry['fingerprint']['id']} ({entry['fingerprint']['cpu_model']}), "
             f"{entry['threads']} thread(s){' [quick]' if entry.get('quick') else ''}"]
    f = entry["fp32"]
    lines.append(f"peak fp32 matmul: {f['peak_gflops']:.1f} GFLOP/s (n={f['at_size']}"
                 + (f", {f['engine']}" if f.get("engine") else "") + "; "
                 + ", ".join(f"n={n}: {v['best_gflops']:.1f}" for n, v in f["by_size"].items()) + ")")
    peaks = entry.get("peaks") or {}
    for name in ("bf16", "fp16", "int8"):
        p = peaks.get(name)
        if p is None:
            v = entry.get(name)
            if isinstance(v, dict):
                lines.append(f"peak {name} matmul: {v['peak_gflops']:.1f} GFLOP/s (n={v['at_size']}, {v['cpu_flag']})")
            elif name != "int8":
                lines.append(f"peak {name} matmul: unsupported ({entry.get(f'{name}_reason', '')})")
        elif p["peak_gflops"]:
            lines.append(f"peak {name} matmul: {p['peak_gflops']:.1f} {p['unit']} (n={p['at_size']}, {p['engine']})")
        else:
            lines.append(f"peak {name} matmul: unsupported ({p['unsupported']})")
    if peaks:
        by = "; ".join(f"{name} " + ", ".join(f"{e} {g:.0f}" for e, g in p.get("by_engine", {}).items())
                       for name, p in peaks.items() if p.get("by_engine"))
        lines.append(f"by engine: {by}")
        theory = ", ".join(f"{name} {p['theoretical_gflops']:.0f}" for name, p in peaks.items()
                           if p.get("theoretical_gflops"))
        source = next((t.get("clock_source") for t in (entry.get("theoretical") or {}).values()
                       if isinstance(t, dict) and t.get("clock_source")), None)
        # a bound only at the max clock: a VM without cpufreq shows its nominal clock, which turbo passes
        bound = "never reached" if source == "cpufreq cpuinfo_max_freq" else f"clock from {source or 'unknown'}"
        lines.append(f"theoretical peaks (flags x clock x cores, {bound}): {theory or 'unknown'}")
    bw = entry["bandwidth"]
    lines.append(f"memory bandwidth: copy {bw['copy_gbs']:.1f} GB/s, triad {bw['triad_gbs']:.1f} GB/s "
                 f"({bw['array_mb']:.0f} MiB arrays, read + written)")
    lines.extend(f"warning: {w}" for w in entry.get("warnings", []))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m embedperf.measure.calibrate",
                                     description="Measure this machine's peak matmul rate and memory bandwidth.")
    parser.add_argument("--threads", type=int, default=None, help="thread budget (default: the CPUs available)")
    parser.add_argument("--force", action="store_true", help="measure again even when a profile exists")
    parser.add_argument("--quick", action="store_true", help="small sizes (tests): not a ceiling to report")
    parser.add_argument("--json", action="store_true", help="print the entry as JSON")
    args = parser.parse_args(argv)
    threads = args.threads or available_cpus()
    entry = None if args.force else cached(threads, args.quick)
    if entry is None:
        fp = machine_fingerprint()
        path = save_entry(calibrate(threads, args.quick), fp)
        entry = cached(threads, args.quick)
    else:
        path = profile_path()
    print(json.dumps(entry, indent=1) if args.json else describe(entry))
    print(f"profile: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
