"""The front of a report in Markdown: where the numbers come from, the verdicts, the speedup grid, the models.

Built from `report.verdicts` and `report.models`; the HTML report draws the same content
(`report.html`), so both say the same sentences.
"""

from __future__ import annotations

from collections import defaultdict

from embedperf.report.groups import BASELINE, Setup, is_document, precision_rank, runtime_rank, versions_line
from embedperf.report.markdown import md_table
from embedperf.report.models import PLAN_MODELS, ModelRow, expectations, model_rows, plan_facts
from embedperf.report.verdicts import RULES, Verdict, fmt_ratio, headlines

STATUS_MARK = {"held": "✅ held", "not held": "❌ not held", "inconclusive": "≈ inconclusive",
               "not checkable": "– not checkable", "mixed": "◐ mixed"}


def provenance(cells: list[dict]) -> list[str]:
    """Where the numbers come from: machines, threads, precisions, weights, runs, commits, versions."""
    docs = [c for c in cells if is_document(c)]
    if not docs:
        return []
    setups = {Setup.of(d) for d in docs}
    machines = sorted({s.machine.label for s in setups})
    runs = sorted({d.get("run_id") for d in docs if d.get("run_id")})
    commits = sorted({((d.get("project") or {}).get("commit") or "")[:10] + (
        " (dirty)" if (d.get("project") or {}).get("dirty") else "") for d in docs} - {""})
    weights = sorted({f"{s.source}: {s.weights or '?'}" for s in setups})
    out = [f"machine: {'; '.join(machines)}",
           f"threads: {', '.join(str(t) for t in sorted({s.threads for s in setups}))}; "
           f"device: {', '.join(sorted({s.device for s in setups}))}; "
           f"precision: {', '.join(sorted({s.precision for s in setups}, key=precision_rank))}; "
           f"weights: {', '.join(weights)}",
           f"runs: {', '.join(runs)}" + (f"; commit {', '.join(commits)}" if commits else "")]
    versions = versions_line(docs)
    if versions:
        out.append(versions)
    return out


def _shape_cell(v: Verdict, runtime: str) -> str:
    e = v.entry(runtime)
    if e is None:
        return ""
    if e.status != "ok":
        return e.status
    if e.speedup is None:
        return f"{e.median_ms:.3g} ms" if e.median_ms is not None else "–"
    if e.runtime == BASELINE[0] and v.setup.precision == BASELINE[1]:
        return "**1 (baseline)**" if e.fastest else "1 (baseline)"
    text = f"{fmt_ratio(e.speedup.ratio)}× ({fmt_ratio(e.speedup.low)}–{fmt_ratio(e.speedup.high)})"
    return f"**{text}**" if e.fastest else text


def speedup_tables(vs: list[Verdict]) -> list[str]:
    """Markdown: per machine/device/threads, rows = model and shape, columns = runtime (and precision)."""
    benches: dict[tuple, list[Verdict]] = defaultdict(list)
    for v in vs:
        benches[(v.setup.machine, v.setup.device, v.setup.threads)].append(v)
    out = []
    for (machine, device, threads), group in benches.items():
        columns = sorted({(e.runtime, v.setup.precision) for v in group for e in v.entries},
                         key=lambda c: (precision_rank(c[1]), runtime_rank(c[0])))
        multi = len({p for _, p in columns}) > 1
        heads = [f"{rt} {p}" if multi else rt for rt, p in columns]
        out += [f"Speedup over torch {BASELINE[1]} ({machine.label}, {device}, {threads} thread(s)); **bold**: "
                "fastest or tied; 95% CI in brackets", "",
                "| model | shape | " + " | ".join(heads) + " |", "|---|---|" + "---:|" * len(heads)]
        rows: dict[tuple, dict[tuple, str]] = defaultdict(dict)
        for v in group:
            key = (f"{v.setup.slug} ({v.setup.source})", v.shape.label, v.shape.sort_key())
            for rt, p in columns:
                if p == v.setup.precision and v.entry(rt) is not None:
                    rows[key][(rt, p)] = _shape_cell(v, rt)
        for key in rows:
            out.append(f"| {key[0]} | {key[1]} | " + " | ".join(rows[key].get(c, "") for c in columns) + " |")
        out.append("")
    return out


def verdict_lines(vs: list[Verdict], level: str = "##") -> list[str]:
    """The verdict section: rules, the speedup grid, then per setup its headline and one sentence per shape."""
    if not vs:
        return [f"{level} Verdicts", "", "_no cell documents with forks: nothing to judge_", ""]
    out = [f"{level} Verdicts", "", RULES, ""]
    out += speedup_tables(vs)
    heads = {h.setup: h for h in headlines(vs)}
    by: dict[Setup, list[Verdict]] = defaultdict(list)
    for v in vs:
        by[v.setup].append(v)
    for setup, group in by.items():
        out.append(f"- **{setup.label}, {setup.scenario}**: {heads[setup].sentence}")
        out += [f"  - {v.shape.label}: {v.sentence}" for v in group]
    return out + [""]


def fmt_value(value: float, spec: str) -> str:
    """A figure by format spec; "ms" gives three or four significant digits, never exponent form."""
    if spec == "ms":
        return f"{value:.{0 if value >= 1000 else 1 if value >= 10 else 2 if value >= 1 else 3}f}"
    return format(value, spec)


def pick_text(p, spec: str, usual: str | None = None) -> str:
    """`12.3 (openvino)`, with ` at 8×128` when the figure comes from another shape than the column's."""
    if p is None:
        return "–"
    return f"{fmt_value(p.value, spec)} ({p.runtime})" + ("" if usual is None or p.shape == usual else
                                                          f" at {p.shape}")


def _params(n: int | None) -> str:
    if n is None:
        return "–"
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


def model_table_rows(rows: list[ModelRow], pick=pick_text) -> tuple[list[tuple[str, bool]], list[tuple[str, list]]]:
    """The comparison table; `pick(p, format, usual shape)` renders one figure with its runtime (text or HTML)."""
    headers = [("model", False), ("setup", False), ("parameters", True), ("output dim", True),
               ("latency 1×128 ms", True), ("items/s 32×128", True), ("items/s throughput scenario", True),
               ("peak RSS MB", True), ("disk MB", True), ("best runtime", False)]
    body = []
    for r in rows:
        s = r.setup
        body.append(("ok", [r.label, f"{s.source}, {s.precision}, {s.device}, {s.threads} thr", _params(r.parameters),
                            r.output_dim if r.output_dim is not None else "–", pick(r.latency, "ms", "1×128"),
                            pick(r.batch_items, ".1f", "32×128"), pick(r.corpus_items, ".1f", ""),
                            pick(r.peak_rss, ".0f", "1×128"), f"{r.disk_mb:.1f}" if r.disk_mb is not None else "–",
                            f"{r.best} ({r.best_wins} shapes)" if r.best else "–"]))
    return headers, body


def models_lines(cells: list[dict], vs: list[Verdict], level: str = "##") -> list[str]:
    """The model comparison table, the plan's expectations checked, and the plan's facts corrected."""
    rows = model_rows(cells, vs)
    if not rows:
        return []
    out = [f"{level} Models side by side", "",
           "Each figure is the fastest runtime's at that shape (named in brackets); peak RSS is the leanest runtime's "
           "at 1×128 (towers: batch 1); disk MB the smallest artifact a runtime loads; best runtime = fastest or tied "
           "at the most shapes. Multimodal models: one row per tower at its fixed length.", "",
           md_table(*model_table_rows(rows)), ""]
    checked = expectations(cells)
    if checked:
        out += [f"{level}# The plan's expectations", ""]
        for bench, checks in checked:
            if len(checked) > 1:
                out += [f"On {bench}:", ""]
            for c in checks:
                out.append(f"- {STATUS_MARK.get(c.status, c.status)} — **{c.claim}**. Rule: {c.rule}.")
                out += [f"  - {e}" for e in c.evidence]
            out.append("")
    if any(r.setup.model in PLAN_MODELS for r in rows):
        out += [f"{level}# The plan's facts, corrected", ""] + [f"- {f.sentence()}" for f in plan_facts()] + [""]
    return out
