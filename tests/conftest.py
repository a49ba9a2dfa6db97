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
FAST = ["--warmup", "1", "--min-calls", "3", "--min-seconds", "0", "--max-seconds", "30"]


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
