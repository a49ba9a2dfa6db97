"""Forks: the schedule, the statistics across runner processes, and what a cell says when they disagree.

The runner processes are stood in for by a fake `launch` (the subject is the orchestrator's handling of
forks, not a framework): each fork "draws" a mode, as processes do on a shared VM.
"""

import re
from pathlib import Path

import numpy as np
import pytest

from embedperf.orchestrator import Orchestrator, execute
from embedperf.orchestrator.plan import Shape, fork_schedule
from embedperf.runners.launch import Outcome
from embedperf.spec import Timing, build, model_choice


def test_the_schedule_interleaves_rounds_in_a_seeded_order():
    groups = {(r, "fp32", "text"): [Shape("text", 8, 16), Shape("text", 1, 16)] for r in ("a", "b", "c", "d")}
    jobs = fork_schedule(groups, 3, seed=7)
    assert len(jobs) == 12
    rounds = [[j.runtime for j in jobs if j.fork == f] for f in range(3)]
    assert all(sorted(r) == ["a", "b", "c", "d"] for r in rounds)  # every runtime once per round
    assert [j.fork for j in jobs] == [0] * 4 + [1] * 4 + [2] * 4  # round by round, never a runtime's forks in a row
    assert len({tuple(r) for r in rounds}) > 1  # shuffled, not a fixed rotation
    assert fork_schedule(groups, 3, seed=7) == jobs and fork_schedule(groups, 3, seed=8) != jobs
    assert [x.batch for x in jobs[0].shapes] == [1, 8]  # smaller shapes first inside a runner
    kept = fork_schedule(groups, 3, seed=7, needed=lambda g, x, f: not (g[0] == "a" and f == 0))
    assert len(kept) == 11 and not any(j.runtime == "a" and j.fork == 0 for j in kept)


def fake_runner(modes_ms, fail_fork=None, drift_fork=None, n=60):
    """A launch() that answers like a runner: fork k's calls centre on modes_ms[k] with 0.3% noise."""
    calls = {"n": 0}

    def launch(runtime, request, workdir, tag, timeout_s, memory_limit_mb, env, gpu=False):
        fork = calls["n"]
        calls["n"] += 1
        rng = np.random.default_rng(fork)
        shapes = []
        for asked in request["shapes"]:
            samples = modes_ms[fork] * 1e6 * (1 + 0.003 * rng.standard_normal(n))
            if fork == drift_fork:  # the last third 21% slower than the first
                samples[2 * n // 3:] *= 1.21
            shapes.append({"batch": asked["batch"], "seq": asked["seq"], "status": "ok", "error": None,
                           "samples_ns": [int(v) for v in samples], "warmup_ns": [5_000_000],
                           "first_call_s": 0.005, "stop_rule": "ci_reached", "target_ci": 0.01, "ci_checks": 3,
                           "loop_s": 1.0, "peak_rss_mb": 100.0, "loop_peak_rss_mb": 90.0,
                           "embeddings": asked["embeddings"]})
        if fork == fail_fork:
            shapes = []
        result = {"runner": {"name": runtime.name}, "framework": {"name": "none"}, "device": {"used": "cpu"},
                  "threads": request["threads"], "settings": {}, "load_s": 0.01, "shapes": shapes, "error": None}
        log = Path(workdir) / f"{tag}.log"
        log.write_text("")
        return Outcome(result, -9 if fork == fail_fork else 0, False, False, log, 0.1)

    return launch, calls


def run(tmp_path, monkeypatch, launch, forks=3, batch="1"):
    monkeypatch.setattr(execute, "launch", launch)
    spec = build([model_choice("all-MiniLM-L6-v2", "package")], "null", batch, "16",
                 timing=Timing(forks=forks, target_ci=0.01), calibrate=False)
    orch = Orchestrator(spec, tmp_path, "run", say=lambda m: None)
    return orch.run()


def test_forks_in_two_modes_warn_and_the_ci_covers_both(tmp_path, monkeypatch):
    launch, calls = fake_runner([16.5, 16.6, 20.7])
    (doc,) = run(tmp_path, monkeypatch, launch)
    assert calls["n"] == 3 and doc["status"] == "ok"
    s = doc["summary"]
    assert s["forks"] == 3 and len(doc["forks"]) == 3
    assert s["fork_medians_ms"] == pytest.approx([16.5, 16.6, 20.7], rel=0.01)
    assert s["median_ms"] == pytest.approx(16.6, rel=0.01)
    assert s["ci_low_ms"] < 16.6 and s["ci_high_ms"] > 20.5  # the CI spans both modes
    modes = [w for w in doc["warnings"] if w.startswith("process modes")]
    assert modes and "16.5 / 16.6 / 20.7 ms" in modes[0]
    for f in doc["forks"]:  # every fork keeps its own figures, stop rule, load time and machine activity
        assert f["ci_low_ms"] <= f["median_ms"] <= f["ci_high_ms"]
        assert f["stop_rule"] == "ci_reached" and f["load_s"] == 0.01 and "steal_share" in f["activity"]
    assert sorted(f["position"] for f in doc["forks"]) == [0, 1, 2]


def test_agreeing_forks_do_not_warn(tmp_path, monkeypatch):
    launch, _ = fake_runner([16.5, 16.55, 16.6])
    (doc,) = run(tmp_path, monkeypatch, launch)
    assert not [w for w in doc["warnings"] if w.startswith("process modes")]
    assert doc["summary"]["ci_high_ms"] / doc["summary"]["ci_low_ms"] < 1.02


def test_a_drifting_fork_warns(tmp_path, monkeypatch):
    launch, _ = fake_runner([16.5, 16.5, 16.5], drift_fork=1)
    (doc,) = run(tmp_path, monkeypatch, launch)
    drift = [w for w in doc["warnings"] if w.startswith("drift")]
    assert drift and "(fork 2 of 3)" in drift[0] and re.search(r"(20\.[5-9]|21\.\d)% slower", drift[0])


def test_a_failed_fork_fails_the_cell_keeps_the_others_and_stops_its_forks(tmp_path, monkeypatch):
    launch, calls = fake_runner([16.5, 16.5, 16.5], fail_fork=1)
    (doc,) = run(tmp_path, monkeypatch, launch)
    assert doc["status"] == "failed" and doc["reason"].startswith("fork 2 of 3: runner crashed")
    assert calls["n"] == 2  # no third process for a cell that already failed
    assert [f["status"] for f in doc["forks"]] == ["ok", "failed"] and doc["forks"][0]["samples_ns"]


def test_resume_runs_only_the_missing_forks(tmp_path, monkeypatch):
    launch, calls = fake_runner([16.5, 16.5, 16.5, 16.5])
    monkeypatch.setattr(execute, "launch", launch)
    spec = build([model_choice("all-MiniLM-L6-v2", "package")], "null", "1", "16",
                 timing=Timing(forks=3), calibrate=False)
    orch = Orchestrator(spec, tmp_path, "run", say=lambda m: None)
    orch.run()
    (cell_file,) = (tmp_path / "run").glob("*__null__*.json")
    cell_file.unlink()  # the cell document is gone, as after Ctrl-C before the last fork...
    forks = sorted((tmp_path / "run" / "forks").rglob("f*.json"))
    forks[-1].unlink()  # ...and so is its last fork
    (doc,) = Orchestrator(spec, tmp_path, "run", say=lambda m: None).run()
    assert calls["n"] == 4  # one more process, for the missing fork only
    assert doc["status"] == "ok" and len(doc["forks"]) == 3
