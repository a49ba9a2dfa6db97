"""Calibration per precision and engine: the best engine is the ceiling, the theoretical peak stands beside it."""

from __future__ import annotations

import json

import pytest

from embedperf.measure import calibrate


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDPERF_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_quick_calibration_measures_every_precision_through_every_engine(cache):
    entry = calibrate.load_or_calibrate(2, quick=True)
    assert set(entry["engines"]) == set(calibrate.ENGINES)
    assert set(entry["peaks"]) == set(calibrate.MATMUL_PRECISIONS)
    for precision, peak in entry["peaks"].items():
        measured = {e: r[precision]["peak_gflops"] for e, r in entry["engines"].items()
                    if "peak_gflops" in r.get(precision, {})}
        if not measured:
            assert peak["peak_gflops"] is None and peak["unsupported"]
            continue
        # the ceiling is the best engine, so no engine's GEMM exceeds 100% of it
        assert peak["peak_gflops"] == max(measured.values()) and peak["by_engine"] == measured
        assert peak["engine"] in measured
        assert calibrate.peak_for(entry, precision) == peak["peak_gflops"]
        theory = peak["theoretical_gflops"]
        # an upper bound from flags x max clock x cores: nothing measured may pass it. Without cpufreq (VMs)
        # the clock is /proc/cpuinfo's nominal one and turbo passes it (337.7 > 332.8 GFLOP/s seen here)
        if theory and entry["theoretical"][precision].get("clock_source") == "cpufreq cpuinfo_max_freq":
            assert peak["peak_gflops"] < theory
    assert entry["peak_gflops"] == entry["peaks"]["fp32"]["peak_gflops"] == entry["fp32"]["peak_gflops"]
    assert entry["peaks"]["int8"].get("unit", "GOP/s") == "GOP/s"
    assert calibrate.peak_for(entry, "fp32", device="cuda") is None  # a CPU profile says nothing of a GPU
    text = calibrate.describe(entry)
    assert "peak int8 matmul:" in text and "theoretical peaks" in text and "by engine:" in text


def test_unsupported_precisions_say_why(cache, monkeypatch):
    # a CPU without bf16/fp16/VNNI flags: those GEMMs are not measured (an emulated rate is no ceiling)
    engines = calibrate.engine_peaks(1, (64,), 0.01, flags=["avx2", "fma"])
    for engine in calibrate.ENGINES:
        assert "no amx_bf16 or avx512_bf16 CPU flag" in engines[engine]["bf16"]["unsupported"]
        assert "peak_gflops" in engines[engine]["int8"]  # avx2 still has int8 kernels (vpmaddubsw)
    assert engines["onnxruntime"]["fp32"]["peak_gflops"] > 0


def test_theoretical_peaks_from_flags_clock_and_cores():
    t = calibrate.theoretical_peaks(4, flags=["avx512f", "fma", "avx512_bf16", "avx512_vnni"], clock_ghz=2.0,
                                    threads_per_core=2)
    assert t["fp32"]["gflops"] == 64 * 2.0 * 2 and t["fp32"]["physical_cores"] == 2
    assert t["bf16"]["gflops"] == 128 * 2.0 * 2 and t["int8"]["gflops"] == 256 * 2.0 * 2
    assert t["fp16"]["gflops"] is None and "theoretical" in t["assumes"]
    amx = calibrate.theoretical_peaks(1, flags=["avx512f", "amx_bf16", "amx_int8"], clock_ghz=1.0, threads_per_core=1)
    assert amx["bf16"]["gflops"] == 1024 and amx["int8"]["gflops"] == 2048


def test_a_schema_1_profile_is_read_but_measured_again(cache):
    fp = calibrate.machine_fingerprint()
    old = {"threads": 1, "quick": True, "created": "2025-01-01T00:00:00+00:00", "peak_gflops": 50.0,
           "fp32": {"peak_gflops": 50.0, "at_size": 256, "by_size": {}}, "bf16": {"peak_gflops": 120.0},
           "fp16": "unsupported", "bandwidth": {"copy_gbs": 1, "triad_gbs": 1, "array_mb": 8}, "bandwidth_gbs": 1}
    path = calibrate.profile_path(fp)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"schema": "embedperf/machine/1", "fingerprint": fp, "profiles": {"1": old}}))
    assert calibrate.cached(1, quick=True) is None  # torch.mm only: no honest ceiling, so not used
    doc = calibrate.read_profile(accept_old=True)
    assert doc["schema"] == "embedperf/machine/1"
    entry = doc["profiles"]["1"]
    assert calibrate.peak_for(entry, "fp32") == 50.0 and calibrate.peak_for(entry, "bf16") == 120.0
    assert calibrate.peak_for(entry, "fp16") is None and calibrate.peak_for(entry, "int8") is None
    fresh = calibrate.load_or_calibrate(1, quick=True)
    assert "peaks" in fresh
    assert json.loads(path.read_text())["schema"] == calibrate.PROFILE_SCHEMA
