"""This machine's ceilings for a thread budget: peak matrix-multiply rate and memory bandwidth.

The roofline of a report needs two measured numbers, not datasheet ones:

- peak GFLOP/s: ``torch.mm`` on square fp32 matrices of a few sizes, after warm-up, timed in blocks of
  calls; the best block rate is the *sustained* peak (bf16 and fp16 too where the CPU has native
  support — avx512_bf16/amx_bf16, avx512_fp16/amx_fp16 — else ``"unsupported"``: an emulated rate is
  no ceiling);
- bandwidth GB/s: a copy (b = a) and a triad (a = b + s·c) over arrays far larger than the caches,
  counting bytes read plus bytes written (2 and 3 arrays per pass; write-allocate traffic not counted).

Results are kept per machine fingerprint under ``cache_root()/machines/<id>.json``, one entry per thread
budget. Importing this module imports no framework: the measurement runs as

    python -m embedperf.measure.calibrate --threads N [--force] [--quick]

and ``load_or_calibrate`` (what the orchestrator and CLI call) starts that in a subprocess.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from embedperf.measure.machine import _cpuinfo, _memory_mb, available_cpus, thread_env
from embedperf.paths import cache_root

PROFILE_SCHEMA = "embedperf/machine/1"
SIZES = (512, 1024, 2048)
QUICK_SIZES = (128, 256)
SECONDS_PER_SIZE = 1.5
QUICK_SECONDS_PER_SIZE = 0.2
BANDWIDTH_ELEMENTS = 32 * 2**20  # float32: 128 MiB per array, far beyond any L3 here
QUICK_BANDWIDTH_ELEMENTS = 2 * 2**20
NATIVE_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}


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
    """For bf16 and fp16: the CPU flag that gives native matmul support, or None."""
    have = set(flags if flags is not None else _cpuinfo().get("flags", []))
    return {dtype: next((f for f in wanted if f in have), None) for dtype, wanted in NATIVE_FLAGS.items()}


# -- measuring (imports torch) -----------------------------------------------------------
def _mm_rate(torch, n: int, dtype, seconds: float) -> dict:
    """Best and median GFLOP/s of n×n×n matmuls timed in blocks; a block lasts about 0.1 s."""
    a = torch.randn(n, n, dtype=torch.float32).to(dtype)
    b = torch.randn(n, n, dtype=torch.float32).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    flops = 2.0 * n * n * n
    for _ in range(2):  # warm-up: page faults, oneDNN/MKL kernel selection, thread pool spin-up
        torch.mm(a, b, out=out)
    t0 = time.perf_counter_ns()
    torch.mm(a, b, out=out)
    one = max(time.perf_counter_ns() - t0, 1) / 1e9
    per_block = max(1, int(0.1 / one))
    rates = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 3:
        t0 = time.perf_counter_ns()
        for _ in range(per_block):
            torch.mm(a, b, out=out)
        elapsed = (time.perf_counter_ns() - t0) / 1e9
        rates.append(flops * per_block / elapsed / 1e9)
    rates.sort()
    return {"best_gflops": rates[-1], "median_gflops": rates[len(rates) // 2], "blocks": len(rates),
            "calls_per_block": per_block}


def _peak(torch, dtype, sizes, seconds) -> dict:
    by_size = {str(n): _mm_rate(torch, n, dtype, seconds) for n in sizes}
    best = max(by_size.items(), key=lambda kv: kv[1]["best_gflops"])
    return {"peak_gflops": best[1]["best_gflops"], "at_size": int(best[0]), "by_size": by_size}


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


def calibrate(threads: int, quick: bool = False) -> dict:
    """Measure the peaks for a thread budget in this process (imports torch)."""
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
    entry: dict = {
        "threads": threads,
        "quick": quick,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(),
        "versions": {"torch": torch.__version__, "python": sys.version.split()[0]},
        "load_average_start": load_start,
        "method": "torch.mm on square matrices, best block of calls after warm-up (sustained), "
                  "2·n³ FLOPs per call",
        "fp32": _peak(torch, torch.float32, sizes, seconds),
    }
    support = native_support()
    mkldnn = torch.backends.mkldnn.is_available()
    checks = {
        "bf16": lambda: torch.ops.mkldnn._is_mkldnn_bf16_supported(),
        "fp16": lambda: torch.ops.mkldnn._is_mkldnn_fp16_supported(),
    }
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        try:
            onednn = bool(checks[name]()) if mkldnn else False
        except (AttributeError, RuntimeError):
            onednn = False
        if support[name] and onednn:
            entry[name] = {**_peak(torch, dtype, sizes, seconds), "cpu_flag": support[name]}
        else:
            why = []
            if not support[name]:
                why.append(f"no {' or '.join(NATIVE_FLAGS[name])} CPU flag")
            if not onednn:
                why.append(f"oneDNN reports no native {name}")
            entry[name] = "unsupported"
            entry[f"{name}_reason"] = "; ".join(why)
    entry["bandwidth"] = _bandwidth(torch, QUICK_BANDWIDTH_ELEMENTS if quick else BANDWIDTH_ELEMENTS,
                                    seconds)
    entry["peak_gflops"] = entry["fp32"]["peak_gflops"]
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


# -- the profile file ----------------------------------------------------------------------
def read_profile(path: Path | None = None) -> dict | None:
    path = path or profile_path()
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return doc if doc.get("schema") == PROFILE_SCHEMA else None


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
    """Human lines for a profile entry."""
    lines = [f"machine {entry['fingerprint']['id']} ({entry['fingerprint']['cpu_model']}), "
             f"{entry['threads']} thread(s){' [quick]' if entry.get('quick') else ''}"]
    f = entry["fp32"]
    lines.append(f"peak fp32 matmul: {f['peak_gflops']:.1f} GFLOP/s (n={f['at_size']}; "
                 + ", ".join(f"n={n}: {v['best_gflops']:.1f}" for n, v in f["by_size"].items()) + ")")
    for name in ("bf16", "fp16"):
        v = entry.get(name)
        if isinstance(v, dict):
            lines.append(f"peak {name} matmul: {v['peak_gflops']:.1f} GFLOP/s (n={v['at_size']}, {v['cpu_flag']})")
        else:
            lines.append(f"peak {name} matmul: unsupported ({entry.get(f'{name}_reason', '')})")
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
