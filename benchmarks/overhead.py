"""Does the harness change what it measures?

Alternates five times between a bare in-process PyTorch loop and `embedperf run
--runtimes torch` on the real all-MiniLM-L6-v2 at batch 4 x seq 128 (same weights,
same workload file, same threads, same sdpa attention), then prints the ratio of the
medians (harness / bare) with a bootstrap 95% CI. The goal is a ratio within
0.97-1.03. Run it on an otherwise idle machine:

    .venv/bin/python benchmarks/overhead.py [--rounds 5] [--batch 4] [--seq 128]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from embedperf.measure.machine import available_cpus, thread_env

THREADS = available_cpus()
os.environ.update(thread_env(THREADS))  # before torch is imported, as the runner's environment has it

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

from embedperf.measure.stats import ForkStats, ratio_ci  # noqa: E402
from embedperf.models.embedder import load_reference  # noqa: E402
from embedperf.paths import models_dir  # noqa: E402

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def harness_round(results: Path, batch: int, seq: int) -> tuple[list[int], dict]:
    """One `embedperf run --runtimes torch`; returns its raw samples and its cell document."""
    proc = subprocess.run([sys.executable, "-m", "embedperf.cli", "run", "--model", MODEL, "--source", "package",
                           "--runtimes", "torch", "--batch", str(batch), "--seq", str(seq),
                           "--threads", str(THREADS), "--forks", "1", "--results", str(results)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"embedperf run failed:\n{proc.stdout}\n{proc.stderr}")
    newest = max((p for p in results.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    doc = json.loads(next(newest.glob("*__torch__*.json")).read_text())
    if doc["status"] != "ok":
        sys.exit(f"torch cell {doc['status']}: {doc['reason']}")
    return doc["forks"][0]["samples_ns"], doc


def bare_round(model, ids: np.ndarray, mask: np.ndarray, timing: dict) -> list[int]:
    """The same calls with no harness at all: a plain loop under the same stopping rule."""
    def call():
        with torch.inference_mode():
            return model(torch.from_numpy(ids), torch.from_numpy(mask)).cpu().numpy()

    for _ in range(timing["warmup"]):
        call()
    samples: list[int] = []
    start = time.perf_counter_ns()
    while True:
        t0 = time.perf_counter_ns()
        call()
        t1 = time.perf_counter_ns()
        samples.append(t1 - t0)
        if len(samples) >= timing["min_calls"] and t1 - start >= timing["min_seconds"] * 1e9:
            return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128)
    args = parser.parse_args()

    torch.set_num_threads(THREADS)
    torch.set_num_interop_threads(1)
    harness: list[list[int]] = []  # one list per round: each round is its own process (a fork) on the
    bare: list[list[int]] = []  # harness side, and a fresh loop on the bare side
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp)
        samples, doc = harness_round(results, args.batch, args.seq)  # also prepares model and workload
        folder = models_dir() / doc["model"]["prepare_key"] / "reference"
        request = json.loads(next((results / doc["run_id"] / "work").glob("*torch__f0.request.json")).read_text())
        tensors = load_file(request["shapes"][0]["workload"])
        ids, mask = tensors["input_ids"], tensors["attention_mask"]
        model = load_reference(folder, attention="sdpa")
        timing = request["timing"]
        print(f"{MODEL} (real weights), batch {args.batch} x seq {args.seq}, fp32, cpu, {THREADS} thread(s), "
              f"sdpa; {args.rounds} alternating rounds of >= {timing['min_calls']} calls and "
              f">= {timing['min_seconds']} s each")
        for r in range(args.rounds):
            b = bare_round(model, ids, mask, timing)
            h, _ = harness_round(results, args.batch, args.seq)
            bare.append(b)
            harness.append(h)
            print(f"  round {r + 1}: bare median {np.median(b) / 1e6:8.3f} ms ({len(b)} calls)   "
                  f"embedperf median {np.median(h) / 1e6:8.3f} ms ({len(h)} calls)")
    ratio, low, high = ratio_ci(harness, bare)  # medians of round medians, two-level bootstrap CI
    hb, bb = ForkStats.of(harness), ForkStats.of(bare)
    print(f"bare loop:  median of round medians {bb.median_ms:.3f} ms, CV {bb.pooled.cv:.1%}, n {bb.pooled.n}")
    print(f"embedperf:  median of round medians {hb.median_ms:.3f} ms, CV {hb.pooled.cv:.1%}, n {hb.pooled.n}")
    point = "within" if 0.97 <= ratio <= 1.03 else "NOT within"
    interval = "lies wholly within" if 0.97 <= low and high <= 1.03 else "does NOT lie wholly within"
    print(f"ratio embedperf/bare = {ratio:.4f}: {point} 0.97-1.03; its 95% CI {low:.4f}-{high:.4f} {interval} it "
          f"(a wide CI is the machine's call-to-call noise, CV above)")


if __name__ == "__main__":
    main()
