"""Candle: batched output equals one-at-a-time output, on tiny models of all four families, at every precision.

Runs the candle crate's own parity script (it builds tiny random models with
transformers, runs the PyTorch reference and the binary through the protocol).
"""

import subprocess
import sys

import pytest

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


@pytest.mark.parametrize("precision", ["bf16", "fp16", "int8"])
def test_candle_runs_every_family_at_reduced_precision(tmp_path, precision):
    """Every text family runs natively at bf16, fp16 and int8 (Q8_0), says so, and differs from its fp32
    output; the min cosine against the float32 reference is printed for the lead's floors (0.99 here is only
    a sanity floor: the tiny random models amplify rounding)."""
    require_runtime("candle")
    from embedperf.runners.registry import binary_path, get_runtime

    script = REPO / "native" / "rust" / "candle-runner" / "tests" / "parity.py"
    proc = subprocess.run([sys.executable, str(script), "--bin", str(binary_path(get_runtime("candle"))),
                           "--work", str(tmp_path), "--precision", precision, "--min-cosine", "0.99"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for family in ("bert", "gemma3", "qwen3", "xlm-roberta"):
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith(family))
        print(line)
        assert f"precision={precision}" in line and line.rstrip().endswith("PASS"), line


@pytest.mark.parametrize("precision, refused", [
    ("fp16", set()),
    ("bf16", {"clip image", "siglip image"}),  # candle's CPU conv2d has no bf16 kernel (patch embedding)
    ("int8", {"clip text", "clip image", "siglip text", "siglip image"}),  # float linears in candle-transformers
])
def test_candle_towers_at_reduced_precision_run_or_are_refused(tmp_path, precision, refused):
    require_runtime("candle")
    from embedperf.runners.registry import binary_path, get_runtime

    script = REPO / "native" / "rust" / "candle-runner" / "tests" / "multimodal_parity.py"
    proc = subprocess.run([sys.executable, str(script), "--bin", str(binary_path(get_runtime("candle"))),
                           "--work", str(tmp_path), "--precision", precision, "--min-cosine", "0.99"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for tower in ("clip text", "clip image", "siglip text", "siglip image"):
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(tower + " ")]
        assert lines, f"no line for {tower}"
        print(*lines, sep="\n")
        if tower in refused:
            assert all(f"REFUSED {precision}" in ln for ln in lines), lines
        else:
            assert all(ln.rstrip().endswith("PASS") for ln in lines), lines
