"""Bad inputs are one line and exit 2 (issue #13, item 5): results paths, YAML with its line and column,
timing that contradicts itself, names in any case with a "did you mean"."""

from __future__ import annotations

import pytest

from cli_support import assert_rejected, invoke
from conftest import embedperf


def test_a_results_path_that_is_a_file_or_cannot_be_created(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for results, message in ((blocker, "not a folder"), (blocker / "sub", "cannot create it")):
        proc = embedperf("run", "--runtimes", "null", "--batch", "1", "--seq", "16", "--results", str(results))
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert f"error: --results {results}" in proc.stderr and message in proc.stderr
    assert_rejected(invoke("run", "--dry-run", "--results", str(blocker / "sub")), "is not a folder")


@pytest.mark.parametrize("text, where", [
    ("runtimes: [null]\nbatch: [1\nseq: [16]\n", "line 3, column"),
    ("runtimes: [null]\nbatch: 1\n  seq: 16\n", "line 3, column 6"),
    ("runtimes: [null]\n\tbatch: 1\n", "line 2, column 1"),
])
def test_malformed_yaml_names_its_line_and_column(text, where, tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(text)
    assert_rejected(invoke("run", "--suite", str(suite), "--dry-run"), where)


@pytest.mark.parametrize("text, message", [
    ("runtimes: [null]\nbatch: [1]\nthreads: abc\n", "threads must be an integer, got 'abc'"),
    ("runtimes: [null]\nbatch: [1]\ntiming: {max_seconds: .nan}\n", "must be finite numbers"),
    ("runtimes: [null]\nbatch: [1]\ntiming: {warmup: [1]}\n", "timing: warmup must be an integer"),
    ("runtimes: [null]\nbatch: [1]\ndevice: 5\n", "device must be a string"),
    ("runtimes: [null]\nbatch: [1]\nmodels: [{name: bge-m3, sorce: tiny}]\n", "unknown key(s) sorce"),
    ("runtimes: [null]\nbatch: [1]\n1: 2\n", "unknown key(s) 1"),
    ("runtimes: [null]\nbatch: [1]\nimages: !!python/object:os.system {}\n", "not valid YAML at line 3"),
])
def test_wrong_types_in_a_suite_are_one_line(text, message, tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(text)
    assert_rejected(invoke("run", "--suite", str(suite), "--dry-run"), message)


def test_min_seconds_above_max_seconds_is_refused():
    assert_rejected(invoke("run", "--min-seconds", "2", "--max-seconds", "1", "--dry-run"),
                    "--min-seconds 2 is above --max-seconds 1")


def test_help_says_the_time_cap_wins_over_min_calls():
    text = " ".join(invoke("run", "--help").stdout.replace("│", " ").split())  # rich draws boxes
    assert "unless --max-seconds ends the shape first: the time cap wins" in text


def test_names_match_in_any_case():
    result = invoke("run", "--model", "all-minilm-l6-v2", "--runtimes", "NULL,Torch", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "model sentence-transformers/all-MiniLM-L6-v2 (package)" in result.stdout
    assert "runtimes: null, torch" in result.stdout


@pytest.mark.parametrize("args, hint", [
    (["--runtimes", "onnxruntime"], "did you mean onnxruntime-python or onnxruntime-cpp or onnxruntime-rust?"),
    (["--runtimes", "ort"], "did you mean onnxruntime-rust?"),
    (["--runtimes", "openvno"], "did you mean openvino?"),
    (["--model", "minilm"], "did you mean sentence-transformers/all-MiniLM-L6-v2?"),
    (["--model", "bge"], "did you mean BAAI/bge-m3?"),
])
def test_a_near_miss_gets_a_did_you_mean(args, hint):
    assert_rejected(invoke("run", *args, "--dry-run"), hint)


def test_a_report_file_that_cannot_be_written_is_one_line(tmp_path):
    results = tmp_path / "results"
    proc = embedperf("run", "--runtimes", "null", "--batch", "1", "--seq", "16", "--warmup", "1", "--min-calls", "3",
                     "--min-seconds", "0", "--target-ci", "0", "--no-calibrate", "--results", str(results))
    assert proc.returncode == 0, proc.stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert_rejected(invoke("report", str(results), "--html", str(blocker / "report.html")),
                    f"cannot write the html report to {blocker / 'report.html'}")
