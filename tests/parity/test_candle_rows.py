"""Candle: batched output equals one-at-a-time output, on tiny models of all four families.

Runs the candle crate's own parity script (it builds tiny random models with
transformers, runs the PyTorch reference and the binary through the protocol).
"""

import subprocess
import sys

from conftest import REPO, require_runtime


def test_candle_batched_equals_rows_and_matches_torch(tmp_path):
    require_runtime("candle")
    from embedperf.runners.registry import binary_path, get_runtime

    script = REPO / "native" / "rust" / "candle-runner" / "tests" / "parity.py"
    proc = subprocess.run([sys.executable, str(script), "--bin", str(binary_path(get_runtime("candle"))),
                           "--work", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for family in ("bert", "gemma3", "qwen3", "xlm-roberta"):
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith(family))
        assert line.rstrip().endswith("PASS"), line
