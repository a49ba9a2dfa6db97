"""Run the CLI in-process through the console script's own entry point (`embedperf.cli:main`)."""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import dataclass


@dataclass
class Result:
    """What one command line did: its exit status and what it printed."""

    returncode: int
    stdout: str
    stderr: str


def invoke(*args: str) -> Result:
    """`embedperf ARGS` as the console script runs it (sys.argv patched), without a subprocess.

    An exception escaping main() is a traceback the user would see: it propagates, failing the test.
    """
    from embedperf.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv, stdin = sys.argv, sys.stdin
    sys.argv, sys.stdin = ["embedperf", *args], io.StringIO("")  # no terminal: prompts must not wait
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv, sys.stdin = argv, stdin
    return Result(code, out.getvalue(), err.getvalue())


def error_lines(stderr: str) -> list[str]:
    """The error lines of a rejection: click's `Error: ...` or embedperf's `error: ...`."""
    return [line for line in stderr.splitlines() if line.startswith(("Error:", "error:"))]


def assert_rejected(result: Result, message: str | None = None) -> None:
    """Exit 2 with exactly one error line (after click's `Usage:` header for a usage error), no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    others = [line for line in result.stderr.splitlines() if line.strip() and line not in errors]
    assert all(line.startswith(("Usage:", "Try '")) for line in others), result.stderr
    if message is not None:
        assert message in errors[0], result.stderr
