"""A runner that crashes, hangs, exits or eats memory fails only its own shapes; the run goes on."""

import pytest

from conftest import cells_of, embedperf, require_runtime

NULLS = ["null", "null-rust", "null-cpp"]
BASE = ["--runtimes", None, "--batch", "1", "--seq", "16,32", "--warmup", "1", "--min-calls", "3",
        "--min-seconds", "0", "--target-ci", "0", "--max-seconds", "5"]


def run_fault(runtime, results, *extra):
    args = ["run", *[runtime if a is None else a for a in BASE], "--results", str(results), *extra]
    return embedperf(*args, timeout=300)


@pytest.mark.parametrize("runtime", NULLS)
@pytest.mark.parametrize("fault, reason", [
    ("crash", "runner crashed: killed by SIG"),
    ("exit", "runner exited with code 3"),
])
def test_crash_or_exit_at_the_second_shape_keeps_the_first(runtime, fault, reason, results):
    require_runtime(runtime)
    proc = run_fault(runtime, results, "--fault", fault, "--fault-at-shape", "1")
    assert proc.returncode == 3, proc.stderr  # the run finished with a failed cell
    cells = {c["seq"]: c for c in cells_of(results)}
    assert cells[16]["status"] == "ok" and cells[16]["median_ms"] is not None
    assert cells[32]["status"] == "failed" and reason in cells[32]["reason"]


@pytest.mark.parametrize("runtime", NULLS)
def test_a_hung_runner_is_killed_at_its_cap(runtime, results):
    require_runtime(runtime)
    proc = run_fault(runtime, results, "--fault", "hang", "--fault-at-shape", "0", "--load-timeout", "3",
                     "--grace", "1", "--max-seconds", "1")
    assert proc.returncode == 3, proc.stderr
    cells = cells_of(results)
    assert {c["status"] for c in cells} == {"failed"}
    assert all("runner hung" in c["reason"] for c in cells)


@pytest.mark.parametrize("runtime", NULLS)
def test_unbounded_allocation_is_stopped_by_the_memory_limit(runtime, results):
    require_runtime(runtime)
    proc = run_fault(runtime, results, "--fault", "oom", "--fault-at-shape", "1", "--memory-limit-mb", "400")
    assert proc.returncode == 3, proc.stderr
    cells = {c["seq"]: c for c in cells_of(results)}
    assert cells[16]["status"] == "ok"
    assert cells[32]["status"] == "failed" and "memory" in cells[32]["reason"]


def test_the_run_goes_on_after_a_crashing_runtime(results):
    """A crash in one runtime's process does not stop the next runtime's cells."""
    require_runtime("null-rust")
    proc = embedperf("run", "--runtimes", "null,null-rust", "--batch", "1", "--seq", "16", "--warmup", "1",
                     "--min-calls", "3", "--min-seconds", "0", "--target-ci", "0", "--fault", "crash", "--results", str(results))
    assert proc.returncode == 3, proc.stderr
    cells = {c["runtime"]: c for c in cells_of(results)}
    assert cells["null"]["status"] == "failed" and cells["null-rust"]["status"] == "failed"
    assert "crashed" in cells["null-rust"]["reason"]


def test_resume_runs_only_missing_cells(results):
    proc = embedperf("run", "--runtimes", "null", "--batch", "1", "--seq", "16,32", "--warmup", "1",
                     "--min-calls", "3", "--min-seconds", "0", "--target-ci", "0", "--results", str(results))
    assert proc.returncode == 0, proc.stderr
    run_dir = next(p for p in results.iterdir() if p.is_dir())
    victim = next(run_dir.glob("*__s32.json"))
    kept = next(run_dir.glob("*__s16.json"))
    kept_bytes = kept.read_bytes()
    victim.unlink()
    again = embedperf("run", "--resume", run_dir.name, "--results", str(results))
    assert again.returncode == 0, again.stderr
    assert "1 cell(s) already on disk are kept" in again.stdout
    assert victim.exists() and kept.read_bytes() == kept_bytes
