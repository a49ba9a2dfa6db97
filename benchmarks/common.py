"""Shared by the benchmark scripts: run cells through the real CLI and pool their raw samples."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from embedperf.measure.stats import Stats, ratio_ci
from embedperf.results.store import load_cells


def run_rounds(model: str, source: str, runtimes: list[str], batch: int, seq: int, rounds: int,
               extra: list[str] | None = None) -> tuple[dict[str, list[int]], list[dict]]:
    """Run `rounds` times, rotating the runtime order each round (so drift does not favour one);
    returns every runtime's pooled samples (ns) and all cell documents."""
    pooled: dict[str, list[int]] = {r: [] for r in runtimes}
    docs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(rounds):
            order = runtimes[k % len(runtimes):] + runtimes[:k % len(runtimes)]
            proc = subprocess.run([sys.executable, "-m", "embedperf.cli", "run", "--model", model, "--source", source,
                                   "--runtimes", ",".join(order), "--batch", str(batch), "--seq", str(seq),
                                   "--results", tmp, *(extra or [])], capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"embedperf run failed:\n{proc.stdout}\n{proc.stderr}")
            run_dir = max((p for p in Path(tmp).iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
            for doc in load_cells([run_dir]):
                docs.append(doc)
                if doc["status"] != "ok":
                    sys.exit(f"{doc['spec']['runtime']} {batch}x{seq}: {doc['status']}: {doc['reason']}")
                pooled[doc["spec"]["runtime"]] += doc["raw"]["samples_ns"]
    return pooled, docs


def describe_setup(docs: list[dict]) -> str:
    d = docs[0]
    m = d["machine"]
    return (f"{d['spec']['model']} ({d['spec']['source']}, weights {d['model']['weights']}), {d['spec']['precision']}, "
            f"{d['spec']['device']}, {d['spec']['threads']['intra_op']} intra-op thread(s), inter-op 1; "
            f"CPU {m['cpu_model']} ({m['cpus_available']} available), load average at start {m['load_average'][0]:.2f}")


def median_line(name: str, samples: list[int], base: list[int] | None, base_name: str = "") -> str:
    s = Stats(tuple(samples))
    line = (f"  {name:20s} median {s.median_ms:10.4f} ms  (95% CI {s.ci_ms[0]:.4f}-{s.ci_ms[1]:.4f}, "
            f"n {s.n}, CV {s.cv:.1%})")
    if base is not None and base is not samples:
        ratio, low, high = ratio_ci(samples, base)
        line += f"  ratio to {base_name} {ratio:.3f} (95% CI {low:.3f}-{high:.3f})"
    return line


def overhead_us(samples: list[int]) -> float:
    return float(np.median(samples)) / 1e3
