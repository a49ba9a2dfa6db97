"""Shared by the benchmark scripts: run cells through the real CLI and pool their raw samples."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from embedperf.measure.stats import ForkStats, ratio_ci
from embedperf.results.store import fork_series, load_cells


def run_rounds(model: str, source: str, runtimes: list[str], batch: int, seq: int, rounds: int,
               extra: list[str] | None = None) -> tuple[dict[str, list[int]], list[dict]]:
    """Run `rounds` times, rotating the runtime order each round (so drift does not favour one);
    returns every runtime's forks of every round (lists of ns) and all cell documents."""
    pooled: dict[str, list[list[int]]] = {r: [] for r in runtimes}
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
                pooled[doc["spec"]["runtime"]] += fork_series(doc)
    return pooled, docs


def describe_setup(docs: list[dict]) -> str:
    d = docs[0]
    m = d["machine"]
    return (f"{d['spec']['model']} ({d['spec']['source']}, weights {d['model']['weights']}), {d['spec']['precision']}, "
            f"{d['spec']['device']}, {d['spec']['threads']['intra_op']} intra-op thread(s), inter-op 1; "
            f"CPU {m['cpu_model']} ({m['cpus_available']} available), load average at start {m['load_average'][0]:.2f}")


def median_line(name: str, samples: list[list[int]], base: list[list[int]] | None, base_name: str = "") -> str:
    """One runtime's median of fork medians over all rounds, its CI, and its ratio to a base runtime."""
    s = ForkStats.of(samples)
    line = (f"  {name:20s} median {s.median_ms:10.4f} ms  (95% CI {s.ci_ms[0]:.4f}-{s.ci_ms[1]:.4f}, "
            f"{s.k} forks, n {s.pooled.n}, CV {s.pooled.cv:.1%})")
    if base is not None and base is not samples:
        ratio, low, high = ratio_ci(samples, base)
        line += f"  ratio to {base_name} {ratio:.3f} (95% CI {low:.3f}-{high:.3f})"
    return line


def overhead_us(forks: list[list[int]]) -> float:
    """The median of fork medians of a null runner's calls, in µs."""
    return ForkStats.of(forks).median_ms * 1e3
