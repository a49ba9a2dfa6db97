"""Precisions a cell can run at, and what this CPU offers for each. Framework-free.

A label is a promise: a cell labelled bf16 or int8 ran at that precision, or it is `skipped` with
the reason. The CPU flags here say which kernels a framework can use natively; the runners record
them as evidence beside what their framework reports it applied.
"""

from __future__ import annotations

from embedperf.measure.machine import _cpuinfo

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
REDUCED = ("fp16", "bf16", "int8")

# CPU flags that give a native matmul kernel for each precision, best first.
NATIVE_FLAGS = {
    "bf16": ("amx_bf16", "avx512_bf16"),
    "fp16": ("amx_fp16", "avx512_fp16"),
    "int8": ("amx_int8", "avx512_vnni", "avx_vnni"),
}


def cpu_flags() -> list[str]:
    """This CPU's flags (/proc/cpuinfo), empty when unknown."""
    return list(_cpuinfo().get("flags", []))


def native_flag(precision: str, flags: list[str] | None = None) -> str | None:
    """The best CPU flag giving `precision` a native matmul kernel, or None (fp32 is always native)."""
    if precision == "fp32":
        return "fp32"
    have = set(cpu_flags() if flags is None else flags)
    return next((f for f in NATIVE_FLAGS.get(precision, ()) if f in have), None)


def int8_kernel(flags: list[str] | None = None) -> str:
    """Which int8 matmul path x86 libraries (MLAS, fbgemm, oneDNN) pick here, from the CPU flags.

    VNNI (vpdpbusd) multiplies u8 x s8 and accumulates in int32 in one instruction; without it,
    AVX2/AVX-512BW kernels use vpmaddubsw, whose int16 intermediate can saturate.
    """
    have = set(cpu_flags() if flags is None else flags)
    if "amx_int8" in have:
        return "AMX-INT8 (amx_int8; VNNI too)" if {"avx512_vnni", "avx_vnni"} & have else "AMX-INT8 (amx_int8)"
    for flag in ("avx512_vnni", "avx_vnni"):
        if flag in have:
            return f"VNNI ({flag})"
    if "avx512bw" in have:
        return "no VNNI: AVX-512BW vpmaddubsw (int16 intermediate)"
    if "avx2" in have:
        return "no VNNI: AVX2 vpmaddubsw (int16 intermediate)"
    return "no VNNI: no x86 int8 SIMD flag seen"
