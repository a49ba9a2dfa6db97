"""Options given on the command line override a suite's keys, and the cells record what ran (issue #13, item 3)."""

from __future__ import annotations

import json

import pytest

from cli_support import assert_rejected, invoke
from conftest import embedperf
from embedperf.spec import OPTION_KEYS, apply_overrides, load_suite

SUITE = """\
model: sentence-transformers/all-MiniLM-L6-v2
source: package
runtimes: [null]
batch: [1]
seq: [16]
timing: {warmup: 1, min_calls: 3, min_seconds: 0, target_ci: 0, forks: 1}
"""


@pytest.fixture
def suite(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE)
    return path


def test_given_options_replace_the_suites_keys_in_the_plan(suite, tmp_path):
    result = invoke("run", "--suite", str(suite), "--batch", "4", "--runtimes", "openvino", "--threads", "1",
                    "--precision", "bf16", "--dry-run", "--results", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "runtimes: openvino" in out and "b4 s16" in out and "b1 s16" not in out
    assert "precision: bf16" in out and "threads: 1\n" in out
    assert "1 warm-up call(s); at least 3 call(s)" in out  # the suite's own keys stay


def test_defaults_never_override_the_suite(suite, tmp_path):
    result = invoke("run", "--suite", str(suite), "--dry-run", "--results", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    assert "runtimes: null" in result.stdout and "b1 s16" in result.stdout


def test_the_cell_records_the_overridden_values(suite, tmp_path):
    results = tmp_path / "results"
    proc = embedperf("run", "--suite", str(suite), "--batch", "2", "--seq", "24", "--threads", "1",
                     "--min-calls", "4", "--no-calibrate", "--results", str(results),
                     env={"EMBEDPERF_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (cell,) = [json.loads(p.read_text()) for p in results.glob("*/*.json") if p.name != "run.json"]
    spec = cell["spec"]
    assert (spec["batch"], spec["seq"], spec["threads"]["intra_op"]) == (2, 24, 1)
    assert spec["timing"]["min_calls"] == 4 and spec["timing"]["warmup"] == 1  # the suite's warmup kept


def test_model_options_win_over_every_entry_of_models(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  - {name: bge-m3, source: twin}\n  - {name: Qwen/Qwen3-Embedding-0.6B, source: twin}\n"
                    "runtimes: [null]\nbatch: [1]\nseq: [16]\n")
    (spec,) = load_suite(path, {"source": "tiny"})
    assert [m.source for m in spec.models] == ["tiny", "tiny"]
    (spec,) = load_suite(path, {"model": "all-MiniLM-L6-v2"})
    assert [m.name for m in spec.models] == ["sentence-transformers/all-MiniLM-L6-v2"]


def test_every_spec_option_of_run_has_a_suite_key():
    """A new `run` option that changes the spec must be added to OPTION_KEYS, or --suite would ignore it."""
    import typer

    from embedperf.cli import app

    run = typer.main.get_command(app).commands["run"]
    not_spec = {"suite", "results", "resume", "upload", "dry_run"}
    options = {p.name for p in run.params} - not_spec
    assert options == set(OPTION_KEYS), options ^ set(OPTION_KEYS)
    doc = apply_overrides({}, {"timing.forks": 2, "precision": "fp32,int8"})
    assert doc == {"timing": {"forks": 2}, "precision": "fp32,int8"}


def test_resume_refuses_options_that_would_change_its_cells(tmp_path):
    assert_rejected(invoke("run", "--resume", "20250101-000000-abcd", "--batch", "4", "--results", str(tmp_path)),
                    "--resume runs 20250101-000000-abcd's own spec: drop --batch")
