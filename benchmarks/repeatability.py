"""Does a second run give the same numbers? A suite run twice back to back, cell by cell, with forks and without.

    .venv/bin/python benchmarks/repeatability.py [--suite suites/quick.yaml] [--forks-list default,1] [--keep DIR]

For each fork setting (the suite's default forks, then `--forks 1`: one runner process per cell, as
embedperf measured before forks) it runs the suite twice and prints, per cell, both medians, their
relative difference, whether each median lies inside the other run's 95% CI, and what
`embedperf compare` says. The summary gives, per setting:
  - the share of cells whose medians differ by less than 3%,
  - the share of cells whose median lies inside the other run's 95% CI (both ways),
  - how many cells `embedperf compare` flags as significantly changed (threshold 5%).
The goal the project holds itself to with the default forks: >= 90%, >= 90%, and at most 1 flagged
cell of the quick suite's 24. Everything is printed, met or missed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from embedperf.results.compare import cell_key, compare
from embedperf.results.store import load_cells

REPO = Path(__file__).resolve().parents[1]
DIFF_LIMIT = 0.03
SHARE_NEEDED = 0.90
FLAGGED_MAX = 1
THRESHOLD = 0.05


def run_once(suite: Path, results: Path, label: str, forks: str) -> tuple[list[dict], float]:
    extra = [] if forks == "default" else ["--forks", forks]
    print(f"== {label}: embedperf run --suite {suite} {' '.join(extra)}", flush=True)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "embedperf.cli", "run", "--suite", str(suite), "--results",
                           str(results), *extra], text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wall = time.monotonic() - t0
    if proc.returncode not in (0, 3):  # 3: some cells failed; they are listed, not fatal here
        sys.exit(f"{label} failed:\n{proc.stdout[-4000:]}")
    run_dir = max((p for p in results.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    print(f"   {wall:.0f} s", flush=True)
    return load_cells([run_dir]), wall


def inside(doc: dict, other: dict) -> bool:
    s, o = doc["summary"], other["summary"]
    return o["ci_low_ms"] <= s["median_ms"] <= o["ci_high_ms"]


def compare_runs(first: list[dict], second: list[dict]) -> dict:
    """Per-cell table and the three shares for one pair of runs."""
    a = {cell_key(d): d for d in first}
    b = {cell_key(d): d for d in second}
    flagged = {tuple(r[k] for k in ("runtime", "batch", "seq", "modality", "order")): r
               for r in compare(first, second, THRESHOLD)}
    close, covered, total = 0, 0, 0
    print(f"{'runtime':20s} {'shape':>10s} {'forks':>5s} {'median 1 ms':>12s} {'median 2 ms':>12s} {'diff':>7s} "
          f"{'in CI':>6s}  compare")
    for key in sorted(a, key=lambda k: tuple(str(v) for v in k)):
        x, y = a[key], b.get(key)
        spec = x["spec"]
        shape = f"{spec['batch']}×{spec['seq']}" if not spec.get("order") else f"b{spec['batch']} {spec['order']}"
        if y is None or x["status"] != "ok" or y["status"] != "ok":
            print(f"{spec['runtime']:20s} {shape:>10s} not ok in both runs: {x['status']} / "
                  f"{y['status'] if y else 'missing'}")
            total += 1
            continue
        total += 1
        diff = y["summary"]["median_ms"] / x["summary"]["median_ms"] - 1.0
        both = inside(x, y) and inside(y, x)
        close += abs(diff) < DIFF_LIMIT
        covered += both
        row = flagged.get((spec["runtime"], spec["batch"], spec["seq"], spec.get("modality"), spec.get("order")))
        verdict = row["verdict"] if row else "?"
        print(f"{spec['runtime']:20s} {shape:>10s} {x['summary'].get('forks') or 1:>5d} "
              f"{x['summary']['median_ms']:12.3f} {y['summary']['median_ms']:12.3f} {diff:+7.1%} "
              f"{'yes' if both else 'no':>6s}  {verdict}")
    n_flagged = sum(r["significant"] for r in flagged.values())
    return {"total": total, "close": close, "covered": covered, "flagged": n_flagged}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=REPO / "suites" / "quick.yaml")
    parser.add_argument("--forks-list", default="default,1",
                        help="fork settings to try, comma-separated ('default' = the suite's own)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs' results here")
    args = parser.parse_args()
    summaries = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        for forks in args.forks_list.split(","):
            where = root / f"forks-{forks}"
            where.mkdir(parents=True, exist_ok=True)
            first, wall1 = run_once(args.suite, where / "first", f"forks {forks}, run 1", forks)
            second, wall2 = run_once(args.suite, where / "second", f"forks {forks}, run 2", forks)
            print()
            summaries[forks] = {**compare_runs(first, second), "wall_s": (wall1, wall2)}
            print()
    met_all = True
    for forks, s in summaries.items():
        total = s["total"] or 1
        close, covered = s["close"] / total, s["covered"] / total
        met = close >= SHARE_NEEDED and covered >= SHARE_NEEDED and s["flagged"] <= FLAGGED_MAX
        if forks == "default":
            met_all = met
        print(f"forks {forks}: {s['total']} cells; |Δ median| < {DIFF_LIMIT:.0%}: {s['close']} ({close:.0%}); "
              f"median inside the other run's 95% CI: {s['covered']} ({covered:.0%}); flagged by compare "
              f"(threshold {THRESHOLD:.0%}): {s['flagged']}; wall {s['wall_s'][0]:.0f} s + {s['wall_s'][1]:.0f} s"
              + (f" -> {'MET' if met else 'MISSED'} (goal >= {SHARE_NEEDED:.0%}, >= {SHARE_NEEDED:.0%}, "
                 f"<= {FLAGGED_MAX} flagged)" if forks == "default" else ""))
    return 0 if met_all else 1


if __name__ == "__main__":
    sys.exit(main())
