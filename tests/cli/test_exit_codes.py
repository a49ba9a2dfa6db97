"""Each exit status means one thing, and --help says which (issue #13, item 4): 0 ok, 2 usage/input,
3 `run` with failed cells, 4 `compare --fail-above` over the limit, 5 nothing to report or compare."""

from __future__ import annotations

import json
import shutil

import pytest

from cli_support import invoke
from conftest import embedperf

QUICK = ["--batch", "1", "--seq", "16", "--warmup", "1", "--min-calls", "3", "--min-seconds", "0",
         "--target-ci", "0", "--no-calibrate"]


@pytest.fixture(scope="module")
def null_run(tmp_path_factory):
    """One real run of the null runner: a run folder with one ok cell."""
    results = tmp_path_factory.mktemp("null-run")
    proc = embedperf("run", "--runtimes", "null", *QUICK, "--results", str(results))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return next(p for p in results.iterdir() if p.is_dir())


def test_run_with_failed_cells_exits_3(tmp_path):
    proc = embedperf("run", "--runtimes", "null", *QUICK, "--fault", "crash", "--results", str(tmp_path))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "error: 1 of 1 cell(s) failed" in proc.stderr and "Traceback" not in proc.stderr


def test_skipped_cells_are_not_failures(tmp_path):
    proc = embedperf("run", "--runtimes", "openvino", "--device", "cuda", *QUICK, "--results", str(tmp_path),
                     env={"EMBEDPERF_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "skipped" in proc.stdout


def test_report_of_a_folder_without_cells_exits_5(tmp_path):
    result = invoke("report", str(tmp_path))
    assert result.returncode == 5, result.stderr
    assert result.stderr.strip() == f"error: no cells in {tmp_path}: nothing to report"


def test_compare_with_an_empty_side_or_nothing_in_common_exits_5(null_run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("compare", str(empty), str(null_run))
    assert result.returncode == 5 and "no cells in A" in result.stderr, result.stderr
    other = tmp_path / "other"
    shutil.copytree(null_run, other)
    for path in other.glob("*.json"):
        doc = json.loads(path.read_text())
        if "spec" in doc and "batch" in doc.get("spec", {}):
            doc["spec"]["batch"] = 7  # a different cell
            path.write_text(json.dumps(doc))
    result = invoke("compare", str(null_run), str(other))
    assert result.returncode == 5 and "no cell in common" in result.stderr, result.stderr
    assert "only in A" in result.stdout and "only in B" in result.stdout


def test_compare_fail_above_exits_4_and_within_the_limit_0(null_run, tmp_path):
    slower = tmp_path / "slower"
    shutil.copytree(null_run, slower)
    for path in slower.glob("*.json"):
        doc = json.loads(path.read_text())
        for fork in doc.get("forks") or []:
            if fork.get("samples_ns"):  # B three times slower
                fork["samples_ns"] = [s * 3 + 1000 for s in fork["samples_ns"]]
                path.write_text(json.dumps(doc))
    result = invoke("compare", str(null_run), str(slower), "--fail-above", "50")
    assert result.returncode == 4, result.stdout + result.stderr
    assert result.stderr.strip() == "error: a significant slowdown exceeds 50%"
    assert invoke("compare", str(null_run), str(null_run), "--fail-above", "50").returncode == 0


@pytest.mark.parametrize("command", [[], ["run"], ["compare"], ["report"]])
def test_help_documents_the_exit_codes(command):
    result = invoke(*command, "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for code in ("0 ok", "2 usage or input error", "3 `run` finished but some cells failed",
                 "4 `compare --fail-above`", "5 nothing to report or compare", "130 interrupted"):
        assert code in text, (code, text[-1500:])


def test_a_cloud_host_whose_run_has_failed_cells_is_done_not_failed(tmp_path):
    """bootstrap.sh tells exit 3 (finished, some cells failed: the documents say why) from a run that broke."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    inp, out = tmp_path / "input", tmp_path / "out"
    inp.mkdir()
    (inp / "suite.yaml").write_text("runtimes: [null]\nbatch: [1]\nseq: [16]\n"
                                    "timing: {warmup: 1, min_calls: 3, min_seconds: 0, target_ci: 0, forks: 1}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.run(["bash", str(REPO / "src" / "embedperf" / "cloud" / "bootstrap.sh")], capture_output=True,
                          text=True, timeout=600, env={
                              **env, "EMBEDPERF_PYTHON": sys.executable, "EMBEDPERF_DEVICE": "cpu",
                              "EMBEDPERF_MACHINE": "local", "EMBEDPERF_WORKDIR": str(tmp_path / "work"),
                              "EMBEDPERF_INPUT": str(inp), "EMBEDPERF_RESULTS": str(out), "EMBEDPERF_SHUTDOWN": "0",
                              "EMBEDPERF_CACHE": str(tmp_path / "cache"),
                              "EMBEDPERF_RUN_ARGS": "--fault crash --no-calibrate"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "finished with failed cells" in proc.stdout
    assert json.loads((out / "host-status.json").read_text())["status"] == "done"
    (cell,) = [json.loads(p.read_text()) for p in out.glob("*.json") if p.name != "host-status.json"]
    assert cell["status"] == "failed" and "crashed" in cell["reason"]
