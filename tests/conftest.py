"""Shared test helpers: run the real CLI in a subprocess and read what it stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Quick timing for tests: the behaviour is under test here, not the speed.
# (--target-ci 0: stop at min_calls; --forks 1: one runner process per cell. The stopping rule and the
# forks have tests of their own.)
FAST = ["--warmup", "1", "--min-calls", "3", "--min-seconds", "0", "--max-seconds", "30", "--target-ci", "0",
        "--no-calibrate", "--forks", "1"]


def shared_models() -> Path:
    """The reference configs folder: $EMBEDPERF_SHARED, else ../shared/models beside the checkout."""
    base = Path(os.environ.get("EMBEDPERF_SHARED", REPO.parent / "shared"))
    return base / "models" if (base / "models").is_dir() else base


def embedperf(*args: str, timeout: float = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `embedperf ARGS` as a user would, capturing its output."""
    return subprocess.run([sys.executable, "-m", "embedperf.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=REPO)


def cells_of(results: Path) -> list[dict]:
    """The flat JSON cells `embedperf report --format json` prints for a results folder."""
    proc = embedperf("report", str(results), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def require_runtime(name: str) -> None:
    """Skip a test whose runtime is not built here; in CI a missing runtime is a failure."""
    from embedperf.runners.registry import availability, get_runtime

    reason = availability(get_runtime(name))
    if reason:
        if IN_CI:
            pytest.fail(f"{name} must be available in CI: {reason}")
        pytest.skip(reason)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / "results"


EVERY_RUNTIME = ["torch", "onnxruntime-python", "onnxruntime-cpp", "onnxruntime-rust", "candle", "openvino",
                 "null", "null-rust", "null-cpp"]
_MATRICES: dict = {}


def available(names: list[str]) -> list[str]:
    from embedperf.runners.registry import availability, get_runtime

    return [n for n in names if availability(get_runtime(n)) is None]


@pytest.fixture(scope="session")
def matrix(tmp_path_factory):
    """Run (once per session) one model on every available runtime (and output modes, when given); returns
    (run folder, flat cells)."""

    def get(model: str, source: str, batch: str = "1,3", seq: str | None = "24",
            outputs: str | None = None) -> tuple[Path, list[dict]]:
        key = (model, source, batch, seq, outputs)
        if key not in _MATRICES:
            results = tmp_path_factory.mktemp("matrix")
            runtimes = ",".join(available(EVERY_RUNTIME))
            shape = ["--batch", batch] + (["--seq", seq] if seq else [])  # CLIP/SigLIP lengths are fixed
            modes = ["--outputs", outputs] if outputs else []
            proc = embedperf("run", "--model", model, "--source", source, "--runtimes", runtimes, *shape, *modes,
                             *FAST, "--results", str(results), timeout=1800)
            # 3: finished with failed cells; the tests that read the cells judge each one
            assert proc.returncode in (0, 3), proc.stdout + proc.stderr
            run_dir = next(p for p in results.iterdir() if p.is_dir())
            _MATRICES[key] = (run_dir, cells_of(run_dir))
        return _MATRICES[key]

    return get
