"""Usage mistakes end in click's `Usage:` and `Error:` lines and exit 2, never a traceback (issue #13, item 1);
every command line the README and docs/ quote runs (with --help, or --dry-run for `run`)."""

from __future__ import annotations

import re
import shlex

import pytest

from cli_support import assert_rejected, invoke
from conftest import REPO, embedperf


@pytest.mark.parametrize("args, message", [
    (["run", "--batchs", "1"], "No such option: --batchs"),
    (["reprot"], "No such command 'reprot'. Did you mean 'report'?"),
    (["run", "--max-seconds", "abc"], "Invalid value for '--max-seconds'"),
    (["report"], "Missing argument"),
    (["compare", "only-one"], "Missing argument"),
    (["cloud", "plan", "--suite", "suites/cloud-example.yaml"], "No such option: --suite"),
    (["cache", "prune", "--everything"], "No such option: --everything"),
    (["run", "--threads", "two"], "Invalid value for '--threads'"),
])
def test_usage_errors_are_clicks_lines_and_exit_2(args, message):
    result = invoke(*args)
    assert_rejected(result, message)
    assert result.stderr.startswith("Usage: embedperf")


def test_a_usage_error_from_the_console_script_has_no_traceback():
    proc = embedperf("run", "--batchs", "1")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[0].startswith("Usage:")
    assert proc.stderr.strip().splitlines()[-1] == "Error: No such option: --batchs (Possible options: --batch, --path)"


def test_no_command_prints_the_help_and_exits_2():
    result = invoke()
    assert result.returncode == 2 and "run" in result.stdout
    assert result.stderr.strip() == "Error: Missing command."


# -- the command lines the documentation quotes ---------------------------------------------
def doc_command_lines() -> list[tuple[str, str]]:
    """(where, command line) for every `embedperf ...` line inside a fenced code block of README.md and docs/."""
    found = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        in_block = False
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith("```"):
                in_block = not in_block
                continue
            if not in_block:
                continue
            code = line.split("  #")[0].strip()  # drop a trailing comment
            match = re.match(r"^(?:\S*/)?embedperf\s+(.*)$", code)
            if match:
                found.append((f"{path.name}:{n}", match.group(1)))
    return found


def test_the_docs_quote_the_commands():
    lines = [cmd for _, cmd in doc_command_lines()]
    assert len(lines) >= 15  # README's "Using it" and docs/cloud.md
    assert any(cmd.startswith("cloud plan ") for cmd in lines)
    assert any(cmd.startswith("run --suite ") for cmd in lines)


@pytest.mark.parametrize("where, command", doc_command_lines(), ids=[w for w, _ in doc_command_lines()])
def test_every_documented_command_line_parses(where, command, tmp_path, monkeypatch):
    """`run` lines with --dry-run (validated for real, nothing runs); others (and placeholders) with --help."""
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("EMBEDPERF_CACHE", str(tmp_path / "cache"))
    args = shlex.split(command)
    placeholder = any(re.search(r"RUN_ID|RUN_A|<", a) for a in args)
    extra = ["--dry-run", "--results", str(tmp_path / "results")] if args[0] == "run" and not placeholder \
        else ["--help"]
    result = invoke(*args, *extra)
    assert result.returncode == 0, (where, command, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr and "Error" not in result.stderr, result.stderr
    if extra[0] == "--dry-run":
        assert "dry run: nothing is prepared or measured" in result.stdout
        assert not (tmp_path / "results").exists()  # a dry run creates nothing
