"""Compare two sets of cell documents (A = baseline, B = candidate): median ratio B/A with a bootstrap CI.

A pair of cells matches on (model, source, runtime, precision, device, threads, scenario, modality, order,
batch, seq, truncate_dim). The ratio is the cell figure of B over A's — the median of the fork
medians of calls (latency) or of whole corpus passes (throughput) — and its 95% interval comes
from the two-level bootstrap of each side (`measure.stats.ratio_ci`): it spans the process-to-process
spread, not only the noise inside one process. A change is *significant* only when that whole
interval lies outside [1 − threshold, 1 + threshold]: a difference smaller than the threshold, or one
the forks cannot pin down, is reported as such and never as a regression.
"""

from __future__ import annotations

from embedperf.measure.stats import ratio_ci
from embedperf.results.store import fork_series

KEY_FIELDS = ("model", "source", "runtime", "precision", "device", "threads", "scenario", "modality", "order",
              "texts", "batch", "seq", "truncate_dim")


def cell_key(doc: dict) -> tuple:
    spec = doc["spec"]
    return tuple((spec.get("threads") or {}).get("intra_op") if k == "threads" else
                 bool(spec.get(k)) if k == "texts" else spec.get(k) for k in KEY_FIELDS)


def _samples(doc: dict | None) -> list[list[int]] | None:
    """The forks' series of an ok cell (calls, or passes for throughput), or None."""
    if doc is None or doc.get("status") != "ok":
        return None
    return fork_series(doc) or None


def _index(cells: list[dict]) -> dict[tuple, dict]:
    """One cell per key; when a key repeats (several runs under one root), the newest document wins."""
    out: dict[tuple, dict] = {}
    for doc in cells:
        key = cell_key(doc)
        if key not in out or (doc.get("created") or "") > (out[key].get("created") or ""):
            out[key] = doc
    return out


def _machine(doc: dict) -> tuple:
    m = doc.get("machine") or {}
    return (m.get("cpu_model"), m.get("cpus_available"), (doc["spec"].get("threads") or {}).get("intra_op"))


def compare(cells_a: list[dict], cells_b: list[dict], threshold: float = 0.05) -> list[dict]:
    """One row per cell key present on either side, sorted by key."""
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    a_idx, b_idx = _index(cells_a), _index(cells_b)
    rows = []
    for key in sorted(set(a_idx) | set(b_idx), key=lambda k: tuple("" if v is None else str(v).zfill(8)
                                                                   for v in k)):
        a, b = a_idx.get(key), b_idx.get(key)
        row: dict = dict(zip(KEY_FIELDS, key))
        row.update({"run_a": a and a.get("run_id"), "run_b": b and b.get("run_id"),
                    "status_a": a and a.get("status"), "status_b": b and b.get("status"),
                    "median_a_ms": None, "median_b_ms": None, "ratio": None, "ci_low": None, "ci_high": None,
                    "change_pct": None, "significant": False, "slower": False, "faster": False,
                    "verdict": None, "note": None})
        sa, sb = _samples(a), _samples(b)
        if a is None or b is None:
            row["verdict"] = "only in A" if b is None else "only in B"
        elif sa is None or sb is None:
            row["verdict"] = "not comparable"
            row["note"] = "no ok samples in " + " and ".join(s for s, x in (("A", sa), ("B", sb)) if x is None)
        else:
            ratio, low, high = ratio_ci(sb, sa)
            slower, faster = low > 1 + threshold, high < 1 - threshold
            row.update({
                "median_a_ms": a["summary"]["median_ms"], "median_b_ms": b["summary"]["median_ms"],
                "forks_a": len(sa), "forks_b": len(sb), "of": "passes" if a["spec"].get("order") else "calls",
                "ratio": ratio, "ci_low": low, "ci_high": high, "change_pct": (ratio - 1) * 100,
                "significant": slower or faster, "slower": slower, "faster": faster,
                "verdict": "slower" if slower else "faster" if faster else "no significant change",
            })
            if _machine(a) != _machine(b):
                row["note"] = "different machine or thread budget"
        rows.append(row)
    return rows


def fail_above(rows: list[dict], pct: float) -> bool:
    """True when a significant slowdown's median ratio exceeds 1 + pct/100 (for `compare --fail-above PCT`)."""
    return any(r["slower"] and r["ratio"] is not None and (r["ratio"] - 1) * 100 > pct for r in rows)


def _f(v, spec):
    return "–" if v is None else format(v, spec)


def render_markdown(rows: list[dict], threshold: float = 0.05) -> str:
    """A Markdown table of compare() rows, with a line saying how to read it."""
    if not rows:
        return "_no cells to compare_\n"
    lines = [f"B/A = each cell's median of fork medians (calls; whole passes for throughput); 95% CI from a "
             f"two-level bootstrap of both sides (forks, then samples in each); significant when the CI lies wholly "
             f"outside [{1 - threshold:.2f}, {1 + threshold:.2f}].", "",
             "| model | runtime | precision | device | threads | batch×seq | forks A/B | A median ms | B median ms | "
             "B/A | 95% CI | change | verdict |",
             "|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        shape = (f"b{r['batch']} {r['order']} corpus" if r.get("order") else f"{r['batch']}×{r['seq']}") + (
            f" d{r['truncate_dim']}" if r.get("truncate_dim") else "")
        forks = f"{r['forks_a']}/{r['forks_b']}" if r.get("forks_a") else "–"
        ci = f"{r['ci_low']:.3f}–{r['ci_high']:.3f}" if r["ci_low"] is not None else "–"
        change = f"{r['change_pct']:+.1f}%" if r["change_pct"] is not None else "–"
        verdict = r["verdict"] + (" **!**" if r["slower"] else "")
        if r.get("note"):
            verdict += f" ({r['note']})"
        lines.append(f"| {str(r['model']).split('/')[-1]} ({r['source']}) | {r['runtime']} | {r['precision']} | "
                     f"{r['device']} | {_f(r['threads'], 'd')} | {shape} | {forks} | {_f(r['median_a_ms'], '.3f')} | {_f(r['median_b_ms'], '.3f')} | "
                     f"{_f(r['ratio'], '.3f')} | {ci} | {change} | {verdict} |")
    slower = sum(r["slower"] for r in rows)
    faster = sum(r["faster"] for r in rows)
    lines += ["", f"{slower} significantly slower, {faster} significantly faster, "
                  f"{sum(r['verdict'] == 'no significant change' for r in rows)} unchanged, "
                  f"{sum(r['ratio'] is None for r in rows)} not compared"]
    return "\n".join(lines) + "\n"
