"""One self-contained HTML report (and its Markdown twin) from stored cell documents.

The page inlines its style and every figure as SVG (``report.plots``): it loads nothing, runs no
script and works offline. The first screen answers: where the numbers come from, one verdict line
per model setup, and the grid of speedups over PyTorch fp32 (``report.verdicts``). The evidence
follows: each shape's verdict, the models side by side with the plan's expectations
(``report.models``), scaling (latency against sequence length, with attention's share of the FLOPs,
and against batch), the matrix per model, throughput, the throughput scenario, multimodal towers,
memory, parity, the roofline (only with a machine profile from ``measure.calibrate``) and warnings.

Tables fit a laptop-wide page: headers wrap, long tables are split (times apart from memory) or
grouped per model instead of scrolling sideways; legends sit outside the plotted area; every figure
names the machine, threads, precision and whether weights are real or random.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections import defaultdict
from pathlib import Path

from embedperf.report import plots
from embedperf.report.front import fmt_value, model_table_rows, models_lines, provenance, verdict_lines
from embedperf.report.groups import BASELINE, Setup, precision_rank
from embedperf.report.markdown import (_fmt, fmt_flops, fmt_mb, md_table, multimodal_rows, row_of,
                                       run_overhead_lines, sections, setup_lines, sort_key, table, throughput_rows,
                                       warning_notes, with_shapes, zero_shot_note)
from embedperf.report.models import PLAN_MODELS, expectations, model_rows, plan_facts
from embedperf.report.tradeoff import tradeoff_lines, tradeoffs
from embedperf.report.verdicts import RULES, Verdict, fmt_ratio, headline_sentence, headlines, heatmap, verdicts

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:16px auto;max-width:1240px;
color:#1d1d1f;padding:0 16px}
h1{font-size:21px;margin:0 0 4px}h2{font-size:17px;margin-top:26px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:14.5px;margin:16px 0 4px}
p.how{color:#444;margin:2px 0}p.note{color:#7a4a00;background:#fff6e0;padding:6px 10px;border-radius:4px}
p.prov{color:#333;margin:1px 0;font-size:12.5px}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0;max-width:100%}
th,td{border:1px solid #d8d8d8;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f3f4f6;font-weight:600}td{white-space:nowrap}td.wrap{white-space:normal;min-width:6em}
td.num{text-align:right;font-variant-numeric:tabular-nums}td small{color:#555}
tr.failed td{background:#fdecec}tr.skipped td{color:#777}
figure.plot{margin:10px 0}figure.plot svg{max-width:100%;height:auto;display:block}
figure.plot figcaption{font-size:12px;color:#444;margin-top:2px}
div.fit{max-width:100%;overflow-x:auto}ul.warnings li{margin:2px 0}
code{background:#f3f4f6;padding:0 3px;border-radius:3px}
table.headlines{width:100%}table.headlines td{font-size:12.5px;line-height:1.3}
table.heat td{text-align:center;padding:2px 3px;min-width:48px;font-variant-numeric:tabular-nums;line-height:1.15}
table.heat td.rt,table.heat th.rt{text-align:left;white-space:nowrap}
table.heat td small{display:block;font-size:10px;color:#333}
table.heat td.best{outline:2px solid #1b5e20;outline-offset:-2px;font-weight:700}
table.heat td.bad{color:#b71c1c}table.heat td.skip{color:#888}
table.heat th{font-size:11.5px;text-align:center;white-space:normal}
table.verdicts td.shape{white-space:nowrap;font-weight:600}
span.held{color:#1b5e20;font-weight:600}span.nothold{color:#b71c1c;font-weight:600}
span.open{color:#7a4a00;font-weight:600}
"""
SHORT = {"onnxruntime-python": "ort-python", "onnxruntime-cpp": "ort-cpp", "onnxruntime-rust": "ort-rust"}
HEAT_COLUMNS = 18  # model × shape columns per heatmap table: 18 of ~60 px plus the runtime column fit 1240 px


class Raw(str):
    """Table cell content that is already HTML (built here from escaped parts)."""


def _e(value) -> str:
    if isinstance(value, Raw):
        return str(value)
    return html.escape("" if value is None else str(value))


def _pick_html(p, spec: str, usual: str | None = None) -> Raw:
    """A figure of the model table: the value, and under it in small print the runtime (and the shape if other)."""
    if p is None:
        return Raw("–")
    where = "" if usual is None or p.shape == usual else f" at {p.shape}"
    return Raw(f"{_e(fmt_value(p.value, spec))}<br><small>{_e(SHORT.get(p.runtime, p.runtime))}{_e(where)}</small>")


def _rows(cells: list[dict], profile: dict | None) -> list[dict]:
    return sorted(with_shapes(enrich([row_of(c) for c in cells], profile)), key=sort_key)


def enrich(rows: list[dict], profile: dict | None = None) -> list[dict]:
    """Add the work figures (flops and their breakdown, weight bytes, intensity, GFLOP/s) where rows lack them.

    Counts come from ``measure.flops`` for models in the registry (per tower for multimodal models); null
    runners do no work and get none. A throughput cell's work is per corpus pass and needs the corpus's batch
    shapes, which a flat row lacks: only the cell document's own figures are used there. The share of peak
    is never computed here: each cell carries the one of its own precision and device, or none on purpose
    (a bf16 or CUDA cell divided by the fp32 CPU peak would be a wrong figure).
    """
    from embedperf.measure.flops import cell_work
    from embedperf.models.registry import UnknownModel, get_model

    out = []
    for r in rows:
        r = dict(r)
        if not r["runtime"].startswith("null") and not r.get("order"):
            if r.get("flops") is None or r.get("flops_breakdown") is None:
                try:
                    spec = get_model(r["model"])
                except UnknownModel:
                    spec = None
                if spec is not None:
                    work = cell_work(spec, r["source"], r["batch"], r["seq"], r.get("median_ms"), None,
                                     r.get("modality") or "text")
                    keys = ("flops_breakdown",) if r.get("flops") is not None else \
                        ("flops", "flops_breakdown", "weight_bytes", "arithmetic_intensity", "gflops")
                    for k in keys:
                        r[k] = work[k]
            if r.get("flops") is not None and r.get("gflops") is None and r.get("median_ms"):
                r["gflops"] = r["flops"] / (r["median_ms"] * 1e-3) / 1e9
            if r.get("flops") and r.get("weight_bytes") and r.get("arithmetic_intensity") is None:
                r["arithmetic_intensity"] = r["flops"] / r["weight_bytes"]
        out.append(r)
    return out


def profile_for(cells: list[dict]) -> dict | None:
    """The calibration profile the cells were measured against, when it is stored on this machine, else None.

    Matched by the profile id each cell records (``work.machine_profile.id``), not by CPU model name: two
    machines with the same model string but other flags, memory or CPU quota have other ceilings. Never
    measures (``embedperf calibrate`` does): cells of another machine get no roofline rather than a wrong one.
    """
    from embedperf.measure.calibrate import cached

    docs = [c for c in cells if "schema" in c]
    if not docs or len(docs) != len(cells):
        return None
    ids = {((d.get("work") or {}).get("machine_profile") or {}).get("id") for d in docs
           if not d["spec"]["runtime"].startswith("null") and d.get("work")}
    threads = {d["spec"]["threads"]["intra_op"] for d in docs}
    if len(ids) != 1 or None in ids or len(threads) != 1:
        return None
    profile = cached(threads.pop())
    return profile if profile and profile["fingerprint"]["id"] in ids else None


def _warnings(rows: list[dict]) -> list[tuple[str, str, str]]:
    """(mark, cell, message) for every warning the cells carry (the orchestrator's analysis of each fork and of
    the forks together; the report adds none of its own). The marks are the matrix tables' ⚠n."""
    marks = warning_notes(rows)
    out = []
    for r in rows:
        name = f"{r['model'].split('/')[-1]} {r['runtime']} {r['shape']}"
        for w in r.get("warnings") or []:
            out.append((marks.get(id(r), ""), name, w if isinstance(w, str) else w.get("message", str(w))))
    return out


def _table(headers: list[tuple[str, bool]], body: list[tuple[str, list]], wrap: tuple[str, ...] = (),
           css: str = "") -> str:
    """headers: (label, numeric); body: (row css class, cells); `wrap`: labels of columns whose text may wrap."""
    head = "".join(f"<th>{_e(h)}</th>" for h, _ in headers)
    lines = [f'<div class="fit"><table{f" class={chr(34)}{css}{chr(34)}" if css else ""}><thead><tr>{head}</tr>'
             f"</thead><tbody>"]
    for row_css, cells in body:
        tds = "".join(f'<td class="{"num wrap" if h in wrap else "num"}">{_e(v)}</td>' if num else
                      f'<td class="wrap">{_e(v)}</td>' if h in wrap else f"<td>{_e(v)}</td>"
                      for v, (h, num) in zip(cells, headers))
        lines.append(f'<tr class="{_e(row_css)}">{tds}</tr>')
    lines.append("</tbody></table></div>")
    return "\n".join(lines)


def _ci(r: dict) -> str:
    return f"{_fmt(r['ci_low_ms'], '.3f')}–{_fmt(r['ci_high_ms'], '.3f')}" if r["ci_low_ms"] is not None else "–"


def _shape(r: dict) -> str:
    return r.get("shape") or f"{r['batch']}×{r['seq']}"


def _status(r: dict, marks: dict[int, str]) -> str:
    text = r["status"] if not r["reason"] else f"{r['status']}: {r['reason']}"
    return text + (f" {marks[id(r)]}" if id(r) in marks else "")


def times_rows(rows: list[dict], marks: dict[int, str] | None = None) -> tuple[list, list]:
    """The matrix's timing half: one model's cells (the model is the section's heading)."""
    marks = marks or {}
    runs = len({r.get("run_id") for r in rows}) > 1
    headers = [("runtime", False), ("precision", False), ("batch×seq", False), ("status", False)]
    headers += [("run", False)] if runs else []
    headers += [("median ms", True), ("95% CI ms", True), ("p90 ms", True), ("CV", True), ("items/s", True),
                ("GFLOP/s", True), ("share of peak", True), ("stop", False)]
    body = []
    for r in rows:
        ci = _ci(r)
        cells = [r["runtime"], r["precision"], _shape(r), _status(r, marks)]
        cells += [r.get("run_id") or "–"] if runs else []
        cells += [_fmt(r["median_ms"], ".3f"), ci, _fmt(r["p90_ms"], ".3f"), _fmt(r["cv"], ".1%"),
                  _fmt(r["items_per_s"], ".1f"), _fmt(r.get("gflops"), ".2f"), _fmt(r.get("share_of_peak"), ".1%"),
                  r.get("stop_rule") or "–"]
        body.append((r["status"], cells))
    return headers, body


def resources_rows(rows: list[dict]) -> tuple[list, list]:
    """The matrix's other half: work, load, memory, disk and parity of one model's cells."""
    gpu = any(r.get("gpu_peak_mb") is not None for r in rows)
    headers = [("runtime", False), ("precision", False), ("batch×seq", False), ("FLOPs", True),
               ("attention share", True), ("load s", True), ("first call s", True), ("peak RSS MB", True),
               ("loop RSS MB", True)]
    headers += [("GPU peak MB", True)] if gpu else []
    headers += [("disk MB", True), ("min cos", True)]
    body = []
    for r in rows:
        share = plots.attention_share(r)
        cells = [r["runtime"], r["precision"], _shape(r), fmt_flops(r.get("flops"), bool(r.get("order"))),
                 _fmt(share, ".1%"), _fmt(r["load_s"], ".2f"), _fmt(r["first_call_s"], ".3f"),
                 _fmt(r["peak_rss_mb"], ".0f"), _fmt(r["loop_peak_rss_mb"], ".0f")]
        cells += [_fmt(r.get("gpu_peak_mb"), ".0f")] if gpu else []
        cells += [fmt_mb(r.get("size_on_disk_bytes")), _fmt(r["min_cosine"], ".6f")]
        body.append((r["status"], cells))
    return headers, body


def matrix_rows(rows: list[dict]) -> tuple[list, list]:
    """Every column of the matrix in one table (the Markdown twin and JSON consumers; the page splits it)."""
    gpu = any(r.get("gpu_peak_mb") is not None for r in rows)
    headers = [("model", False), ("runtime", False), ("batch×seq", False), ("status", False),
               ("median ms", True), ("95% CI ms", True), ("p90 ms", True), ("CV", True), ("items/s", True),
               ("FLOPs", True), ("GFLOP/s", True), ("share of peak", True), ("stop", False),
               ("load s", True), ("first call s", True), ("peak RSS MB", True), ("loop RSS MB", True)]
    headers += [("GPU peak MB", True)] if gpu else []
    headers += [("disk MB", True), ("min cos", True)]
    body = []
    for r in rows:
        ci = _ci(r)
        status = r["status"] if not r["reason"] else f"{r['status']}: {r['reason']}"
        cells = [
            f"{r['model'].split('/')[-1]} ({r['source']})", r["runtime"], _shape(r), status,
            _fmt(r["median_ms"], ".3f"), ci, _fmt(r["p90_ms"], ".3f"), _fmt(r["cv"], ".1%"),
            _fmt(r["items_per_s"], ".1f"), fmt_flops(r.get("flops"), bool(r.get("order"))),
            _fmt(r.get("gflops"), ".2f"), _fmt(r.get("share_of_peak"), ".1%"), r.get("stop_rule") or "–",
            _fmt(r["load_s"], ".2f"), _fmt(r["first_call_s"], ".3f"),
            _fmt(r["peak_rss_mb"], ".0f"), _fmt(r["loop_peak_rss_mb"], ".0f")]
        cells += [_fmt(r.get("gpu_peak_mb"), ".0f")] if gpu else []
        cells += [fmt_mb(r.get("size_on_disk_bytes")), _fmt(r["min_cosine"], ".6f")]
        body.append((r["status"], cells))
    return headers, body


def parity_rows(rows: list[dict]) -> tuple[list, list]:
    headers = [("model", False), ("runtime", False), ("precision", False), ("batch×seq", False),
               ("min cosine", True), ("mean cosine", True), ("max abs diff", True), ("reference spread", True),
               ("status", False)]
    body = [(r["status"], [f"{r['model'].split('/')[-1]} ({r['source']})", r["runtime"], r["precision"],
                           _shape(r), _fmt(r["min_cosine"], ".6f"), _fmt(r["mean_cosine"], ".6f"),
                           _fmt(r["max_abs_diff"], ".2e"), _fmt(r.get("reference_spread"), ".3f"), r["status"]])
            for r in rows
            if r["min_cosine"] is not None or (r["status"] == "failed" and "parity" in (r["reason"] or ""))]
    return headers, body


def work_rows(rows: list[dict]) -> tuple[list, list]:
    """Work per cell: per call, or per corpus pass for a throughput cell (marked "per pass")."""
    headers = [("model", False), ("runtime", False), ("batch×seq", False), ("GFLOP per call", True),
               ("weight MB", True), ("FLOPs/byte", True), ("GFLOP/s", True), ("share of peak", True)]
    body = [(r["status"], [f"{r['model'].split('/')[-1]} ({r['source']})", r["runtime"], _shape(r),
                           _fmt(r["flops"] / 1e9, ".4f") + (" per pass" if r.get("order") else ""),
                           _fmt((r.get("weight_bytes") or 0) / 2**20, ".1f"),
                           _fmt(r.get("arithmetic_intensity"), ".1f"), _fmt(r.get("gflops"), ".2f"),
                           _fmt(r.get("share_of_peak"), ".1%")])
            for r in rows if r.get("flops") and r["status"] == "ok"]
    return headers, body


def _figure(name: str, svg: str | None, empty: str, caption: str | None = None) -> str:
    if svg is None:
        return f'<p class="note">{_e(empty)}</p>'
    cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    return f'<figure class="plot" data-figure="{_e(name)}">{svg}{cap}</figure>'


def _profile_lines(profile: dict) -> list[str]:
    fp = profile.get("fingerprint") or {}
    lines = [f"machine {fp.get('id', '?')} ({fp.get('cpu_model', '?')}), {profile.get('threads')} thread(s)"
             + (" — quick calibration, not a ceiling" if profile.get("quick") else ""),
             f"peak fp32 matmul {profile['peak_gflops']:.1f} GFLOP/s; memory bandwidth (triad) "
             f"{profile['bandwidth_gbs']:.1f} GB/s; measured {profile.get('created', '?')}"]
    for name in ("bf16", "fp16"):
        v = profile.get(name)
        if isinstance(v, dict):
            lines.append(f"peak {name} matmul {v['peak_gflops']:.1f} GFLOP/s")
        elif v:
            lines.append(f"{name}: {v}")
    return lines + [f"warning: {w}" for w in profile.get("warnings", [])]


# -- the first screen: verdicts and the speedup grid ---------------------------------------------

def _heat_color(ratio: float | None) -> str:
    """Green for faster than torch fp32, red for slower, white at 1; log scale saturating at 8×."""
    if ratio is None or ratio <= 0:
        return "#ffffff"
    t = max(-1.0, min(1.0, math.log2(ratio) / 3))
    top = (120, 198, 121) if t > 0 else (239, 138, 128)
    mix = [round(255 + (c - 255) * abs(t)) for c in top]
    return "#{:02x}{:02x}{:02x}".format(*mix)


def _heat_cell(cell: dict | None, is_baseline: bool) -> str:
    if cell is None:
        return "<td></td>"
    if cell["status"] != "ok":
        mark, css = ("✗", "bad") if cell["status"] == "failed" else ("–", "skip")
        return f'<td class="{css}" title="{_e(cell["status"])}: {_e(cell["reason"])}">{mark}</td>'
    if cell["ratio"] is None:
        return f'<td title="no torch fp32 cell to divide by">{_e(_fmt(cell["median_ms"], ".3g"))} ms</td>'
    best = " best" if cell["fastest"] else ""
    if is_baseline:
        return f'<td class="base{best}" title="the baseline">1<small>baseline</small></td>'
    ratio, low, high = fmt_ratio(cell["ratio"]), fmt_ratio(cell["low"]), fmt_ratio(cell["high"])
    title = f"{ratio}× the speed of torch fp32, 95% CI {low}–{high}×"
    return (f'<td class="{best.strip()}" style="background:{_heat_color(cell["ratio"])}" title="{_e(title)}">'
            f"{ratio}×<small>{low}–{high}</small></td>")


def heatmap_html(all_verdicts: list[Verdict]) -> str:
    """Speedup over torch fp32: rows = runtime (and precision), columns = model and shape, split into tables of at
    most HEAT_COLUMNS columns so the grid wraps down the page instead of running off its side."""
    parts = []
    for grid in heatmap(all_verdicts):
        multi = len({p for _, p in grid["rows"]}) > 1
        chunks, current = [], []
        models: dict[str, list] = defaultdict(list)
        for col in grid["columns"]:
            models[col[0]].append(col)
        for cols in models.values():  # keep a model's shapes together unless it alone is wider than a table
            if current and len(current) + len(cols) > HEAT_COLUMNS:
                chunks.append(current)
                current = []
            for col in cols:
                if len(current) == HEAT_COLUMNS:
                    chunks.append(current)
                    current = []
                current.append(col)
        if current:
            chunks.append(current)
        parts.append(f'<p class="how"><b>Speedup over torch {BASELINE[1]}</b> — {_e(grid["title"])}. Green: faster, '
                     f'red: slower; small print: 95% CI of the ratio; outlined: fastest or tied at that shape; '
                     f'✗ failed, – skipped (hover for the reason).</p>')
        for chunk in chunks:
            spans: list[tuple[str, int]] = []
            for model, _ in chunk:
                if spans and spans[-1][0] == model:
                    spans[-1] = (model, spans[-1][1] + 1)
                else:
                    spans.append((model, 1))
            head1 = '<th class="rt" rowspan="2">runtime</th>' + "".join(
                f'<th colspan="{n}">{_e(m)}</th>' for m, n in spans)
            head2 = "".join(f"<th>{_e(shape)}</th>" for _, shape in chunk)
            body = []
            for rt, precision in grid["rows"]:
                if not any((rt, precision) == key[0] and key[1] in chunk for key in grid["cells"]):
                    continue
                label = SHORT.get(rt, rt) + (f" {precision}" if multi else "")
                tds = "".join(_heat_cell(grid["cells"].get(((rt, precision), col)),
                                         (rt, precision) == BASELINE) for col in chunk)
                body.append(f'<tr><td class="rt" title="{_e(rt)} {_e(precision)}">{_e(label)}</td>{tds}</tr>')
            parts.append(f'<div class="fit"><table class="heat" data-heatmap="1"><thead><tr>{head1}</tr>'
                         f'<tr>{head2}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')
    if any(SHORT.get(rt) for g in heatmap(all_verdicts) for rt, _ in g["rows"]):
        parts.append('<p class="how">ort-python, ort-cpp, ort-rust: ONNX Runtime through its Python, C++ and Rust '
                     '(<code>ort</code>) bindings.</p>')
    return "\n".join(parts)


def _short(runtime: str) -> str:
    return SHORT.get(runtime, runtime)


def headline_table(heads: list) -> str:
    """One row per model (and scenario; and bench when there are several), one column per precision: each setup's
    verdict in a sentence, so the first screen holds every model's answer and still leaves room for the grid."""
    benches = {(h.setup.device, h.setup.threads, h.setup.machine) for h in heads}
    precisions = sorted({h.setup.precision for h in heads}, key=precision_rank)
    rows: dict[tuple, dict[str, object]] = {}
    for h in heads:
        s = h.setup
        key = (s.model, s.source, s.weights, s.scenario) + ((s.machine, s.device, s.threads) if len(benches) > 1
                                                          else ())
        rows.setdefault(key, {})[s.precision] = h
    head = "".join(f"<th>{_e(p)}</th>" for p in precisions)
    body = []
    for key, by_precision in rows.items():
        model, source, weights, scenario = key[:4]
        label = f"{model.split('/')[-1]} ({source}, weights {weights})" + (
            f", {scenario}" if scenario != "latency" else "")
        if len(key) > 4:
            label += f" — {key[5]}, {key[6]} thr, {key[4].label}"
        tds = "".join(f'<td class="wrap">{_e(headline_sentence(by_precision[p], _short))}</td>'
                      if p in by_precision else "<td></td>" for p in precisions)
        body.append(f'<tr><td class="wrap"><b>{_e(label)}</b></td>{tds}</tr>')
    return (f'<div class="fit"><table class="headlines"><thead><tr><th>model</th>{head}</tr></thead><tbody>'
            f'{"".join(body)}</tbody></table></div>')


def verdict_section(all_verdicts: list[Verdict]) -> list[str]:
    """The verdicts: one line per model setup, the speedup grid, then every shape's sentence."""
    if not all_verdicts:
        return ['<section id="verdicts"><h2>Verdicts</h2>',
                '<p class="note">No cell documents with forks: nothing to judge (flat rows carry no samples).</p>',
                "</section>"]
    parts = ['<section id="verdicts"><h2>Verdicts</h2>', headline_table(headlines(all_verdicts))]
    parts.append(heatmap_html(all_verdicts))
    parts.append(f'<p class="how">{_e(RULES)}</p>')
    by: dict[Setup, list[Verdict]] = defaultdict(list)
    for v in all_verdicts:
        by[v.setup].append(v)
    heads = {h.setup: h for h in headlines(all_verdicts)}
    for setup, group in by.items():
        parts.append(f"<h3>{_e(setup.label)}, {_e(setup.scenario)}</h3>")
        parts.append(f'<p class="how">{_e(heads[setup].sentence)}</p>')
        rows = "".join(f'<tr data-cells="{_e(" ".join(e.cell_id or "" for e in v.entries))}"><td class="shape">'
                       f'{_e(v.shape.label)}</td><td class="wrap verdict">{_e(v.sentence)}</td></tr>' for v in group)
        parts.append(f'<div class="fit"><table class="verdicts"><thead><tr><th>shape</th><th>verdict</th></tr>'
                     f"</thead><tbody>{rows}</tbody></table></div>")
    parts.append("</section>")
    return parts


STATUS_CSS = {"held": "held", "not held": "nothold"}


def models_section(cells: list[dict], all_verdicts: list[Verdict]) -> list[str]:
    rows = model_rows(cells, all_verdicts)
    if not rows:
        return []
    headers, body = model_table_rows(rows, _pick_html)
    parts = ['<section id="models"><h2>Models side by side</h2>',
             '<p class="how">Each figure is the fastest runtime\'s at that shape (named under it); peak RSS is the '
             'leanest runtime\'s at 1×128 (towers: batch 1); disk MB the smallest artifact a runtime loads; best '
             'runtime = fastest or tied at the most shapes. Multimodal models: one row per tower at its fixed '
             'length.</p>', _table(headers, body, wrap=("setup", "best runtime", "latency 1×128 ms",
                                                        "items/s 32×128", "items/s throughput scenario",
                                                        "peak RSS MB", "model"))]
    parts.append('<p class="how">ort-python, ort-cpp, ort-rust: ONNX Runtime through its Python, C++ and Rust '
                 'bindings.</p>')
    checked = expectations(cells)
    if checked:
        parts.append("<h3>The plan's expectations</h3>")
        for bench, checks in checked:
            if len(checked) > 1:
                parts.append(f'<p class="how">On {_e(bench)}:</p>')
            items = []
            for c in checks:
                css = STATUS_CSS.get(c.status, "open")
                ev = "".join(f"<li>{_e(e)}</li>" for e in c.evidence)
                items.append(f'<li data-check="{_e(c.status)}"><span class="{css}">{_e(c.status)}</span> — '
                             f"<b>{_e(c.claim)}</b>. <span class=\"how\">Rule: {_e(c.rule)}.</span><ul>{ev}</ul></li>")
            parts.append(f'<ul class="checks">{"".join(items)}</ul>')
    if any(r.setup.model in PLAN_MODELS for r in rows):
        parts.append("<h3>The plan's facts, corrected</h3><ul>"
                     + "".join(f"<li>{_e(f.sentence())}</li>" for f in plan_facts()) + "</ul>")
    parts.append("</section>")
    return parts


def tradeoff_section(cells: list[dict], rows: list[dict]) -> list[str]:
    """Speed against accuracy per model and shape: a table each (Pareto front marked) and one figure."""
    views = tradeoffs(cells)
    if not views:
        return []
    parts = ['<section id="tradeoff"><h2>Speed against accuracy</h2>',
             "<p>Speedup over torch fp32 at the same shape (95% CI) against accuracy: recall@10 of the fp32 top-10 "
             "neighbours over the accuracy corpus where the model reads real text, else the worst cosine to the fp32 "
             "reference (random weights: no retrieval claim). ★ marks the Pareto front: no other cell is at least "
             "as fast and as accurate.</p>"]
    headers = [("runtime", False), ("precision", False), ("speedup", True), ("recall@10", True), ("min cos", True),
               ("disk MB", True), ("peak RSS MB", True), ("Pareto", False)]
    for v in views:
        body = [("", [p.runtime, p.precision, p.speedup.text() if p.speedup else "–", _fmt(p.recall_at_10, ".3f"),
                      _fmt(p.min_cosine, ".5f"), _fmt(p.size_mb, ".1f"), _fmt(p.peak_rss_mb, ".0f"),
                      "★" if p.pareto else ""]) for p in v.points]
        parts += [f"<h3>{_e(v.model.split('/')[-1])} ({_e(v.source)}, weights {_e(v.weights)}), {_e(v.shape)}</h3>",
                  _table(headers, body)]
    parts += [_figure("tradeoff", plots.tradeoff_plot(views, rows), "Fewer than two cells to place.",
                      plots.caption([r for r in rows if r["status"] == "ok"])), "</section>"]
    return parts


def _by_model(rows: list[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        out[(r["model"], r["source"], r.get("device"), r.get("threads"), r.get("machine") or "")].append(r)
    return out


def matrix_section(rows: list[dict]) -> list[str]:
    """Per model: the timing table, then work, memory and parity (two tables that each fit the page)."""
    marks = warning_notes(rows)
    parts = ['<section id="matrix"><h2>Matrix</h2>',
             '<p class="how">Per model; ⚠n marks a cell with warnings (listed under Warnings). GFLOP/s at the '
             'median; share of peak: of the calibrated fp32 matmul peak; stop: the rule that ended the timed loop; '
             'attention share: QKᵀ and scores·V in the matmul FLOPs; disk MB: what the runtime loads from disk.</p>']
    for (model, source, device, threads, machine), group in _by_model(rows).items():
        group = sorted(group, key=lambda r: (precision_rank(r["precision"]), sort_key(r)))
        parts.append(f"<h3>{_e(model)} ({_e(source)}, weights {_e(group[0].get('weights'))}) — {_e(device)}, "
                     f"{_e(threads)} thread(s){', ' + _e(machine) if machine else ''}</h3>")
        parts.append(_table(*times_rows(group, marks), wrap=("status", "run")))
        parts.append(_table(*resources_rows(group)))
    parts.append("</section>")
    return parts


def render_html(cells: list[dict], profile: dict | None = None, title: str = "embedperf report") -> str:
    rows = _rows(cells, profile)
    all_verdicts = verdicts(cells)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             '<link rel="icon" href="data:,">', f"<title>{_e(title)}</title>", f"<style>{STYLE}</style>",
             "</head><body>", f"<h1>{_e(title)}</h1>"]
    parts += [f'<p class="prov">{_e(line)}</p>' for line in provenance(cells)]
    parts.append(f'<p class="prov">{len(rows)} cell(s); written '
                 f'{_e(dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))}</p>')
    if not rows:
        parts.append('<p class="note">No cells.</p></body></html>')
        return "\n".join(parts) + "\n"
    parts += verdict_section(all_verdicts)
    parts += models_section(cells, all_verdicts)
    parts += tradeoff_section(cells, rows)
    caption = plots.caption([r for r in rows if r["status"] == "ok"])  # what the figures draw
    parts += ['<section id="latency"><h2>Scaling</h2>',
              '<p class="how">Where each runtime\'s cost grows: latency against sequence length at the smallest batch '
              '(attention\'s share of the FLOPs under each length) and against batch at one length.</p>',
              _figure("latency-seq", plots.latency_plot(rows, "seq", "latency-seq"),
                      "Latency vs sequence length: no setup has ok cells at two sequence lengths.", caption),
              _figure("latency-batch", plots.latency_plot(rows, "batch", "latency-batch"),
                      "Latency vs batch: no setup has ok cells at two batch sizes.", caption),
              "</section>"]
    parts += matrix_section(rows)
    parts += [f'<p class="how">{_e(line)}</p>' for line in setup_lines(rows)]
    parts += [f'<p class="how">{_e(line)}</p>' for line in run_overhead_lines(cells)]
    parts += ['<section id="throughput"><h2>Throughput</h2>',
              _figure("throughput", plots.throughput_plot(rows), "No ok latency-scenario cells with a throughput.",
                      caption), "</section>"]
    headers, body = throughput_rows(rows)
    if body:
        parts += ['<section id="throughput-scenario"><h2>Throughput scenario</h2>',
                  '<p class="how">items/s and tokens/s over whole corpus passes; padded tokens/s counts the padding '
                  'the model also computes; padding waste = share of the padded tokens that are padding.</p>',
                  _figure("throughput-scenario", plots.throughput_scenario_plot(rows),
                          "No ok throughput-scenario cells to draw.", caption),
                  _table(headers, body, wrap=("status",)), "</section>"]
    headers, body = multimodal_rows(rows)
    if body:
        parts += ['<section id="multimodal"><h2>Multimodal towers</h2>',
                  '<p class="how">texts/s and images/s at each tower\'s median call; tower ms are model time only; '
                  'preprocessing (Python, measured apart from the model) is shown separately.</p>']
        note = zero_shot_note(rows)
        if note:
            parts.append(f'<p class="how">{_e(note)}</p>')
        parts += [_table(headers, body, wrap=("status",)), "</section>"]
    parts += ['<section id="memory"><h2>Memory</h2>',
              _figure("memory", plots.memory_plot(rows), "No ok cells with a peak RSS.", caption), "</section>"]
    headers, body = parity_rows(rows)
    parts += ['<section id="parity"><h2>Parity with the PyTorch fp32 eager reference</h2>',
              _table(headers, body) if body else '<p class="note">No parity figures.</p>', "</section>"]

    parts.append('<section id="roofline"><h2>Roofline</h2>')
    has_work = any(r.get("gflops") for r in rows)
    if profile is None:
        parts.append('<p class="note">Roofline skipped: no machine profile (run <code>embedperf calibrate</code>, '
                     'then <code>embedperf report --html</code> uses it).</p>')
    elif not has_work:
        parts.append('<p class="note">Roofline skipped: no cell carries work figures (flops, GFLOP/s).</p>')
    else:
        parts += [f'<p class="how">{_e(line)}</p>' for line in _profile_lines(profile)]
        parts.append('<p class="how">FLOPs: matrix multiplies over the padded shape (attention: the pairs the model '
                     'attends); bytes: the fp32 non-embedding weights read once per call.</p>')
        parts.append(_figure("roofline", plots.roofline_plot(rows, profile), "No cell to place on the roofline.",
                             caption))
    if has_work:
        parts.append(_table(*work_rows(rows)))
    parts.append("</section>")

    warnings = _warnings(rows)
    parts.append('<section id="warnings"><h2>Warnings</h2>')
    if warnings:
        parts.append('<ul class="warnings">' + "".join(f"<li><b>{_e(m)} {_e(c)}</b>: {_e(w)}</li>"
                                                       for m, c, w in warnings) + "</ul>")
    else:
        parts.append('<p class="how">None.</p>')
    parts.append("</section></body></html>")
    return "\n".join(parts) + "\n"


def write_html(cells: list[dict], out: Path, profile: dict | None = None, title: str = "embedperf report") -> Path:
    """Write the report to `out` (one file, nothing external). `cells`: documents (or flat rows)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(cells, profile, title), encoding="utf-8")
    return out


# -- the Markdown twin -------------------------------------------------------------------------

FIGURE_FILES = (("latency-seq", "Latency vs sequence length"), ("latency-batch", "Latency vs batch"),
                ("throughput", "Throughput"), ("throughput-scenario", "Throughput scenario"), ("memory", "Memory"),
                ("roofline", "Roofline"), ("tradeoff", "Speed against accuracy"))


def _figure_svgs(cells: list[dict], rows: list[dict], profile: dict | None) -> dict[str, str | None]:
    return {"latency-seq": plots.latency_plot(rows, "seq", "latency-seq"),
            "latency-batch": plots.latency_plot(rows, "batch", "latency-batch"),
            "throughput": plots.throughput_plot(rows),
            "throughput-scenario": plots.throughput_scenario_plot(rows),
            "memory": plots.memory_plot(rows),
            "roofline": plots.roofline_plot(rows, profile) if profile else None,
            "tradeoff": plots.tradeoff_plot(tradeoffs(cells), rows)}


def render_markdown(cells: list[dict], profile: dict | None = None, figures: dict[str, str] | None = None) -> str:
    """The whole report in Markdown; `figures`: figure name -> relative path of its SVG file, linked where it fits."""
    rows = _rows(cells, profile)
    figures = figures or {}
    all_verdicts = verdicts(cells)
    parts = ["# embedperf report", ""] + [f"- {line}" for line in provenance(cells)] + [""]
    parts += verdict_lines(all_verdicts)
    parts += models_lines(cells, all_verdicts)
    parts += tradeoff_lines(cells)
    if figures:
        parts += ["## Figures", ""]
        caption = plots.caption([r for r in rows if r["status"] == "ok"])
        for name, label in FIGURE_FILES:
            if name in figures:
                parts += [f"![{label} — {caption}]({figures[name]})", ""]
    parts += ["## Matrix", ""]
    parts.append(table(rows, with_sections=False).rstrip("\n"))
    harness = run_overhead_lines(cells)
    if harness:
        parts += [""] + harness
    parts.append("")
    parts += sections(rows)
    headers, body = parity_rows(rows)
    parts += ["## Parity with the PyTorch fp32 eager reference", "",
              md_table(headers, body) if body else "_no parity figures_", ""]
    parts += ["## Work and roofline", ""]
    if profile:
        parts += [f"- {line}" for line in _profile_lines(profile)] + [""]
    else:
        parts += ["_no machine profile: share of peak not computed (run `embedperf calibrate`)_", ""]
    headers, body = work_rows(rows)
    parts += [md_table(headers, body) if body else "_no work figures_", ""]
    return "\n".join(parts) + "\n"


def write_markdown(cells: list[dict], out: Path, profile: dict | None = None, with_figures: bool = True) -> Path:
    """Write the Markdown report to `out`, and with `with_figures` its figures as SVG files in `<stem>-figures/`
    beside it (linked relatively, so the folder can be committed and read on a forge)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    links = {}
    if with_figures:
        rows = _rows(cells, profile)
        folder = out.parent / f"{out.stem}-figures"
        for name, svg in _figure_svgs(cells, rows, profile).items():
            if svg is None:
                continue
            folder.mkdir(exist_ok=True)
            (folder / f"{name}.svg").write_text(svg + "\n", encoding="utf-8")
            links[name] = f"{folder.name}/{name}.svg"
    out.write_text(render_markdown(cells, profile, links), encoding="utf-8")
    return out
