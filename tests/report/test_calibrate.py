"""The machine profile the roofline reads: `python -m embedperf.measure.calibrate --quick` in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from embedperf.measure import calibrate


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDPERF_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_fingerprint_and_profile_path(cache):
    fp = calibrate.machine_fingerprint()
    assert fp == calibrate.machine_fingerprint()  # stable
    assert len(fp["id"]) == 16 and fp["cpus_available"] >= 1 and fp["cpu_model"]
    assert calibrate.profile_path(fp) == cache / "machines" / f"{fp['id']}.json"


def test_native_support_from_flags():
    assert calibrate.native_support(["avx2", "fma"]) == {"bf16": None, "fp16": None, "int8": None}
    assert calibrate.native_support(["amx_bf16", "avx512_fp16", "avx512_vnni"]) == {
        "bf16": "amx_bf16", "fp16": "avx512_fp16", "int8": "avx512_vnni"}


def test_quick_calibration_writes_and_reuses_the_profile(cache):
    assert calibrate.cached(1, quick=True) is None
    entry = calibrate.load_or_calibrate(1, quick=True)
    assert entry["threads"] == 1 and entry["quick"]
    assert entry["peak_gflops"] > 0 and entry["bandwidth_gbs"] > 0
    assert entry["fp32"]["peak_gflops"] == entry["peak_gflops"]
    assert set(entry["fp32"]["by_size"]) == {str(n) for n in calibrate.QUICK_SIZES}
    for name in ("bf16", "fp16"):
        assert entry[name] == "unsupported" or entry[name]["peak_gflops"] > 0
    doc = json.loads(calibrate.profile_path().read_text())
    assert doc["schema"] == calibrate.PROFILE_SCHEMA and "1" in doc["profiles"]
    # a second call reads the file: same entry, no measuring
    assert calibrate.load_or_calibrate(1, quick=True)["created"] == entry["created"]
    # a quick entry never stands in for a full calibration
    assert calibrate.cached(1, quick=False) is None
    assert "peak fp32 matmul" in calibrate.describe(entry)


def test_command_line_prints_the_peaks(cache):
    proc = subprocess.run([sys.executable, "-m", "embedperf.measure.calibrate", "--threads", "1", "--quick"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "peak fp32 matmul:" in proc.stdout and "GFLOP/s" in proc.stdout
    assert "memory bandwidth:" in proc.stdout and "GB/s" in proc.stdout
    assert f"profile: {calibrate.profile_path()}" in proc.stdout
