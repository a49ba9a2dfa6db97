"""The command line: help reads well, mistakes are one line with exit code 2 and no traceback."""

import pytest

from conftest import embedperf


def test_help_lists_the_commands():
    proc = embedperf("--help")
    assert proc.returncode == 0
    for command in ("run", "models", "runtimes", "report", "cache"):
        assert command in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["run", "--model", "gpt2"], "error: unknown model 'gpt2'; choose from:"),
    (["run", "--runtimes", "tensorflow"], "error: unknown runtime 'tensorflow'; choose from: torch,"),
    (["run", "--source", "s3"], "error: unknown source 's3'; choose from: hub, local, package, twin, tiny"),
    (["run", "--seq", "abc"], "error: seq must be positive integers, got 'abc'"),
    (["run", "--batch", "-1"], "error: batch must be positive integers"),
    (["run", "--seq", "100000"], "error: seq 100000 is longer than"),
    (["run", "--suite", "no/such/suite.yaml"], "error: suite file no/such/suite.yaml does not exist"),
    (["report", "no/such/dir"], "error: no such results folder: no/such/dir"),
    (["run", "--runtimes", "torch", "--fault", "crash"], "error: --fault is only for the null runners"),
    (["run", "--resume", "nope"], "error: no run 'nope' under"),
    (["run", "--model", "openai/clip-vit-base-patch16", "--seq", "77"], "text length is fixed by the model"),
    (["run", "--model", "siglip-base-patch16-224", "--scenario", "throughput"], "the throughput scenario is for text"),
    (["run", "--scenario", "offline"], "error: unknown scenario 'offline'; choose from: latency, throughput"),
    (["run", "--model", "openai/clip-vit-base-patch16", "--images", "no/such/folder"], "--images no/such/folder: not a folder"),
    (["run", "--target-ci", "1.5"], "--target-ci must be in [0, 1)"),
])
def test_user_mistakes_are_one_clear_line(args, message, tmp_path):
    proc = embedperf(*args, "--results", str(tmp_path)) if args[0] == "run" else embedperf(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_bad_suite_file_is_one_line(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text("runtimes: [torch]\nbatch: [1]\nseq: [16]\nthreds: 2\n")
    proc = embedperf("run", "--suite", str(suite))
    assert proc.returncode == 2 and "unknown key(s) threds" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_models_and_runtimes_list_everything():
    models = embedperf("models").stdout
    for name in ("google/embeddinggemma-300m", "Qwen/Qwen3-Embedding-0.6B", "BAAI/bge-m3",
                 "sentence-transformers/all-MiniLM-L6-v2"):
        assert name in models
    assert "768→3072 → 3072→768" in models
    runtimes = embedperf("runtimes").stdout
    for name in ("torch", "onnxruntime-python", "onnxruntime-cpp", "onnxruntime-rust", "candle", "openvino", "null"):
        assert name in runtimes


def test_null_run_prints_the_harness_overhead(tmp_path):
    proc = embedperf("run", "--runtimes", "null", "--batch", "1", "--seq", "16", "--warmup", "1", "--min-calls", "5",
                     "--min-seconds", "0.2", "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "harness overhead per call (null, batch 1 × seq 16): median" in proc.stdout
