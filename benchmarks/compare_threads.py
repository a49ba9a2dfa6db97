"""Does `embedperf compare` flag a runtime made slower on purpose, and only that one?

    .venv/bin/python benchmarks/compare_threads.py [--threshold 0.25] [--keep DIR]

Run A: onnxruntime-python and openvino on the real all-MiniLM-L6-v2, 8×128, 2 threads each.
Run B (two runs under one results root): onnxruntime-python again with 2 threads, openvino with 1.
`compare A B` should mark openvino significantly slower and onnxruntime-python not. Timing-based, so
a benchmark (printed figures and a verdict) and not a unit test: on a busy machine the unchanged cell
itself moves by tens of percent; `tests/unit/test_compare.py` checks the flagging logic exactly.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

SHAPE = ["--model", "sentence-transformers/all-MiniLM-L6-v2", "--source", "package", "--batch", "8", "--seq", "128"]
TIMING = ["--warmup", "2", "--min-calls", "15", "--min-seconds", "2", "--max-seconds", "30", "--target-ci", "0"]


def embedperf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "embedperf.cli", *args], capture_output=True, text=True)


def run(results: Path, runtimes: str, threads: int) -> None:
    print(f"== embedperf run {' '.join(SHAPE)} --runtimes {runtimes} --threads {threads}", flush=True)
    proc = embedperf("run", *SHAPE, "--runtimes", runtimes, "--threads", str(threads), *TIMING,
                     "--results", str(results))
    if proc.returncode != 0:
        sys.exit(proc.stdout[-3000:] + proc.stderr[-3000:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=0.25)
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        a, b = root / "a", root / "b"
        run(a, "onnxruntime-python,openvino", 2)
        run(b, "onnxruntime-python", 2)
        run(b, "openvino", 1)
        table = embedperf("compare", str(a), str(b), "--threshold", str(args.threshold))
        print(table.stdout)
        rows = {r["runtime"]: r for r in json.loads(embedperf("compare", str(a), str(b), "--threshold",
                                                                str(args.threshold), "--format", "json").stdout)}
    flagged = sorted(name for name, r in rows.items() if r["significant"])
    ok = flagged == ["openvino"] and rows["openvino"]["slower"]
    print(f"flagged: {', '.join(flagged) or 'none'}; expected: openvino (slower) only -> {'MET' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
