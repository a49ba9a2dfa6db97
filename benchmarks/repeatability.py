"""Does a second run give the same numbers? The quick suite, twice back to back, cell by cell.

    .venv/bin/python benchmarks/repeatability.py [--suite suites/quick.yaml] [--keep DIR]

For every cell it prints both medians, their relative difference and both CVs. The verdict the
project holds itself to: at least 80% of the cells have CV < 5% (in both runs), and for those the two
medians differ by less than 3%. Cells with CV ≥ 5% are listed as noisy: on a machine where they are
many, the verdict says so rather than hiding them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from embedperf.results.store import flatten, load_cells

REPO = Path(__file__).resolve().parents[1]
CV_LIMIT = 0.05
DIFF_LIMIT = 0.03
SHARE_NEEDED = 0.80


def run_once(suite: Path, results: Path, label: str) -> list[dict]:
    print(f"== {label}: embedperf run --suite {suite}", flush=True)
    proc = subprocess.run([sys.executable, "-m", "embedperf.cli", "run", "--suite", str(suite), "--results",
                           str(results)], text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        sys.exit(f"{label} failed:\n{proc.stdout[-4000:]}")
    run_dir = max((p for p in results.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return [flatten(d) for d in load_cells([run_dir])]


def key(row: dict) -> tuple:
    return (row["model"], row["source"], row["runtime"], row.get("modality"), row["batch"], row["seq"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=REPO / "suites" / "quick.yaml")
    parser.add_argument("--keep", type=Path, default=None, help="keep both runs' results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        first = {key(r): r for r in run_once(args.suite, root / "first", "run 1")}
        second = {key(r): r for r in run_once(args.suite, root / "second", "run 2")}

    rows, steady, agree = [], 0, 0
    print()
    print(f"{'runtime':20s} {'batch×seq':>10s} {'median 1 ms':>12s} {'median 2 ms':>12s} {'diff':>7s} "
          f"{'CV 1':>6s} {'CV 2':>6s} {'stop 1':>12s} {'stop 2':>12s}  verdict")
    for k in sorted(first, key=lambda k: (k[2], k[4], k[5])):
        a, b = first[k], second.get(k)
        if b is None or a["status"] != "ok" or b["status"] != "ok":
            print(f"{k[2]:20s} {k[4]:>4d}×{k[5]:<5d} not ok in both runs: {a['status']} / "
                  f"{b['status'] if b else 'missing'}")
            rows.append((k, None))
            continue
        diff = b["median_ms"] / a["median_ms"] - 1.0
        is_steady = a["cv"] < CV_LIMIT and b["cv"] < CV_LIMIT
        steady += is_steady
        agree += is_steady and abs(diff) < DIFF_LIMIT
        verdict = ("ok" if abs(diff) < DIFF_LIMIT else "MEDIANS DIFFER") if is_steady else "noisy (CV ≥ 5%)"
        print(f"{k[2]:20s} {k[4]:>4d}×{k[5]:<5d} {a['median_ms']:12.3f} {b['median_ms']:12.3f} {diff:+7.1%} "
              f"{a['cv']:6.1%} {b['cv']:6.1%} {a['stop_rule'] or '-':>12s} {b['stop_rule'] or '-':>12s}  {verdict}")
        rows.append((k, diff))
    total = len(rows)
    share = steady / total if total else 0.0
    print()
    print(f"cells: {total}; CV < {CV_LIMIT:.0%} in both runs: {steady} ({share:.0%}, goal ≥ {SHARE_NEEDED:.0%}); "
          f"of those, medians within {DIFF_LIMIT:.0%}: {agree}/{steady}")
    met = share >= SHARE_NEEDED and agree == steady
    print("verdict: " + ("MET" if met else "MISSED") + (
        "" if share >= SHARE_NEEDED else " — too many noisy cells on this machine (see CV columns)")
        + ("" if agree == steady else " — some steady cells moved by 3% or more between runs"))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
