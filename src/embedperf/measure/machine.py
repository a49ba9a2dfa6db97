"""What machine ran a cell, and how many CPUs a runner may use. Framework-free."""

from __future__ import annotations

import math
import os
import platform
import subprocess
from pathlib import Path


def cgroup_cpu_limit() -> float | None:
    """CPUs allowed by a cgroup v2 (cpu.max) or v1 (cfs quota) limit, or None when unlimited."""
    v2 = Path("/sys/fs/cgroup/cpu.max")
    try:
        if v2.exists():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        q = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
        p = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
        if q.exists() and p.exists():
            quota = int(q.read_text())
            return None if quota <= 0 else quota / int(p.read_text())
    except (OSError, ValueError):
        return None
    return None


def available_cpus() -> int:
    """The CPUs this process may use: its affinity mask, capped by a cgroup quota."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit()
    if limit is not None:
        n = min(n, max(1, math.ceil(limit)))
    return max(1, n)


def thread_env(intra_op: int) -> dict[str, str]:
    """Thread variables every framework's own pool reads; set in each runner's environment."""
    value = str(intra_op)
    return {
        "OMP_NUM_THREADS": value,
        "MKL_NUM_THREADS": value,
        "OPENBLAS_NUM_THREADS": value,
        "RAYON_NUM_THREADS": value,
        "TOKENIZERS_PARALLELISM": "false",
    }


def _cpuinfo() -> dict:
    info: dict = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "model name" and "model" not in info:
                info["model"] = value
            elif key == "flags" and "flags" not in info:
                info["flags"] = value.split()
    except OSError:
        pass
    return info


def _memory_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _gpus() -> list[dict]:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, driver, memory = [x.strip() for x in line.split(",")]
        gpus.append({"name": name, "driver": driver, "memory": memory})
    return gpus


def machine_info() -> dict:
    """CPU model and flags, cores, memory, OS, load average, GPUs: everything a figure depends on."""
    cpu = _cpuinfo()
    flags = cpu.get("flags", [])
    interesting = [f for f in flags if f.startswith(("avx", "amx", "fma", "sse4", "f16c", "vnni", "bf16"))]
    return {
        "hostname": platform.node(),
        "cpu_model": cpu.get("model", platform.processor()),
        "cpu_flags": interesting,
        "cpu_count": os.cpu_count(),
        "cpus_available": available_cpus(),
        "cgroup_cpu_limit": cgroup_cpu_limit(),
        "memory_mb": _memory_mb(),
        "os": platform.platform(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "load_average": list(os.getloadavg()),
        "gpus": _gpus(),
    }
