"""Ctrl-C or SIGTERM stops the runner's process group, keeps every finished cell and prints the
command that resumes the run, exit 130 (issue #13, item 2)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import REPO, embedperf

# two models, one null runner: the first model's runner hangs at its second shape and is killed at its
# cap (two cells written), then the second model's runner hangs: that is where the signal lands
SUITE = """\
models:
  - {name: sentence-transformers/all-MiniLM-L6-v2, source: package}
  - {name: BAAI/bge-m3, source: tiny}
runtimes: [null]
batch: [1]
seq: [16, 32]
"""
ARGS = ["--fault", "hang", "--fault-at-shape", "1", "--load-timeout", "2", "--max-seconds", "1", "--grace", "1",
        "--warmup", "1", "--min-calls", "3", "--min-seconds", "0", "--target-ci", "0", "--no-calibrate"]


def cell_files(results: Path) -> list[Path]:
    return [p for p in results.glob("*/*.json") if p.name != "run.json"]


def runners_of(pid: int) -> list[psutil.Process]:
    """The runner processes under the CLI (they sit in process groups of their own)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for child in children:
        try:
            if "--request" in child.cmdline():
                out.append(child)
        except psutil.Error:
            pass
    return out


def gone(proc: psutil.Process, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_runner_and_prints_the_resume_command(sig, tmp_path):
    suite, results = tmp_path / "two-models.yaml", tmp_path / "results"
    suite.write_text(SUITE)
    env = {**os.environ, "EMBEDPERF_CACHE": str(tmp_path / "cache")}
    with open(tmp_path / "out.txt", "w") as out, open(tmp_path / "err.txt", "w") as err:
        # only the CLI gets the signal, as from `timeout -s INT` or `kill`: the runner's group never does
        cli = subprocess.Popen([sys.executable, "-m", "embedperf.cli", "run", "--suite", str(suite), *ARGS,
                                "--results", str(results)], stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                               env=env, cwd=REPO)
        try:
            deadline = time.monotonic() + 240
            runners: list[psutil.Process] = []
            while time.monotonic() < deadline and cli.poll() is None:
                runners = runners_of(cli.pid)
                if len(cell_files(results)) >= 2 and runners:
                    break
                time.sleep(0.2)
            assert runners and cli.poll() is None, (tmp_path / "out.txt").read_text()
            time.sleep(0.5)
            cli.send_signal(sig)
            rc = cli.wait(timeout=60)
        finally:
            if cli.poll() is None:
                cli.kill()
    stderr = (tmp_path / "err.txt").read_text()
    run_id = next(p.name for p in results.iterdir() if p.is_dir())
    assert rc == 130, stderr
    assert "Traceback" not in stderr
    assert f"run {run_id} stopped" in stderr and "2 finished cell(s) are kept" in stderr
    assert f"resume with: embedperf run --resume {run_id} --results {results}" in stderr
    assert all(gone(r) for r in runners), "the runner outlived the CLI"
    assert len(cell_files(results)) == 2
    if sig == signal.SIGINT:
        # the run goes on where it stopped: only the second model's cells run (and hang again, failing)
        again = embedperf("run", "--resume", run_id, "--results", str(results), env={"EMBEDPERF_CACHE":
                                                                                       str(tmp_path / "cache")})
        assert again.returncode == 3, again.stderr
        assert "2 cell(s) already on disk are kept" in again.stdout
        assert len(cell_files(results)) == 4
