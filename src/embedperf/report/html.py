"""One self-contained HTML report (and its Markdown twin) from stored cell documents.

The page inlines its style and every figure as SVG (``report.plots``): it loads nothing, runs no
script and works offline. Sections: the matrix table, latency against batch and against sequence
length, throughput (latency cells at their median), the throughput scenario (corpus passes, sorted vs
unsorted; only with such cells), the multimodal towers (texts/s, images/s, preprocessing apart, zero-shot;
only with such cells), memory (peak RSS and size on disk), parity, the roofline (only with cells that carry
work figures *and* a machine profile from ``measure.calibrate``; otherwise a note says why it is absent), and warnings.
"""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path

from embedperf.report import plots
from embedperf.report.markdown import (_fmt, fmt_flops, fmt_mb, md_table, multimodal_rows, row_of,
                                       run_overhead_lines, sections, setup_lines, sort_key, table, throughput_rows,
                                       with_shapes, zero_shot_note)

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1180px;
color:#1d1d1f;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
p.how{color:#444;margin:2px 0}p.note{color:#7a4a00;background:#fff6e0;padding:6px 10px;border-radius:4px}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0}
th,td{border:1px solid #d8d8d8;padding:3px 7px;text-align:left;white-space:nowrap}
th{background:#f3f4f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td{background:#fdecec}tr.skipped td{color:#777}
figure.plot{margin:10px 0;overflow-x:auto}figure.plot svg{max-width:100%;height:auto}
div.scroll{overflow-x:auto}ul.warnings li{margin:2px 0}code{background:#f3f4f6;padding:0 3px;border-radius:3px}
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _row(doc_or_row: dict) -> dict:
    return row_of(doc_or_row)


def _rows(cells: list[dict], profile: dict | None) -> list[dict]:
    return sorted(with_shapes(enrich([_row(c) for c in cells], profile)), key=sort_key)


def enrich(rows: list[dict], profile: dict | None = None) -> list[dict]:
    """Add the work figures (flops, weight bytes, intensity, GFLOP/s) where the rows lack them.

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
            if r.get("flops") is None:
                try:
                    spec = get_model(r["model"])
                except UnknownModel:
                    spec = None
                if spec is not None:
                    work = cell_work(spec, r["source"], r["batch"], r["seq"], r.get("median_ms"), None,
                                     r.get("modality") or "text")
                    for k in ("flops", "weight_bytes", "arithmetic_intensity", "gflops"):
                        r[k] = work[k]
            elif r.get("gflops") is None and r.get("median_ms"):
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


def _warnings(cells: list[dict]) -> list[tuple[str, str]]:
    """(cell, message) for every warning the cells carry (the orchestrator's analysis of each fork and of
    the forks together; the report adds none of its own)."""
    rows = with_shapes([_row(c) for c in cells])
    out = []
    for r in rows:
        name = f"{r['model'].split('/')[-1]} {r['runtime']} {r['shape']}"
        for w in r.get("warnings") or []:
            out.append((name, w if isinstance(w, str) else w.get("message", str(w))))
    return out


def _setup_lines(rows: list[dict]) -> list[str]:
    return setup_lines(rows)


def _table(headers: list[tuple[str, bool]], body: list[tuple[str, list]]) -> str:
    """headers: (label, numeric); body: (row css class, cells)."""
    head = "".join(f"<th>{_e(h)}</th>" for h, _ in headers)
    lines = [f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>']
    for css, cells in body:
        tds = "".join(f'<td class="num">{_e(v)}</td>' if num else f"<td>{_e(v)}</td>"
                      for v, (_, num) in zip(cells, headers))
        lines.append(f'<tr class="{_e(css)}">{tds}</tr>')
    lines.append("</tbody></table></div>")
    return "\n".join(lines)


def _shape(r: dict) -> str:
    return r.get("shape") or f"{r['batch']}×{r['seq']}"


def matrix_rows(rows: list[dict]) -> tuple[list, list]:
    gpu = any(r.get("gpu_peak_mb") is not None for r in rows)
    headers = [("model", False), ("runtime", False), ("batch×seq", False), ("status", False),
               ("median ms", True), ("95% CI ms", True), ("p90 ms", True), ("CV", True), ("items/s", True),
               ("FLOPs", True), ("GFLOP/s", True), ("share of peak", True), ("stop", False),
               ("load s", True), ("first call s", True), ("peak RSS MB", True), ("loop RSS MB", True)]
    headers += [("GPU peak MB", True)] if gpu else []
    headers += [("disk MB", True), ("min cos", True)]
    body = []
    for r in rows:
        ci = (f"{_fmt(r['ci_low_ms'], '.3f')}–{_fmt(r['ci_high_ms'], '.3f')}" if r["ci_low_ms"] is not None else "–")
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


def _figure(name: str, svg: str | None, empty: str) -> str:
    if svg is None:
        return f'<p class="note">{_e(empty)}</p>'
    return f'<figure class="plot" data-figure="{_e(name)}">{svg}</figure>'


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


def render_html(cells: list[dict], profile: dict | None = None, title: str = "embedperf report") -> str:
    rows = _rows(cells, profile)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             '<link rel="icon" href="data:,">', f"<title>{_e(title)}</title>", f"<style>{STYLE}</style>",
             "</head><body>", f"<h1>{_e(title)}</h1>"]
    parts += [f'<p class="how">{_e(line)}</p>' for line in _setup_lines(rows)]
    parts += [f'<p class="how">{_e(line)}</p>' for line in run_overhead_lines(cells)]
    parts.append(f'<p class="how">{len(rows)} cell(s); written '
                 f'{_e(dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))}; runs: '
                 f'{_e(", ".join(sorted({r["run_id"] for r in rows})))}</p>')
    if not rows:
        parts.append('<p class="note">No cells.</p></body></html>')
        return "\n".join(parts) + "\n"

    parts += ['<section id="matrix"><h2>Matrix</h2>', _table(*matrix_rows(rows))]
    if any(r.get("flops") for r in rows):
        parts.append('<p class="how">FLOPs: matmul FLOPs per call (/pass: per corpus pass of a throughput cell); '
                     'GFLOP/s at the median; share of peak: of the calibrated fp32 matmul peak; stop: the rule that '
                     'ended the timed loop; disk MB: what the runtime loads from disk.</p>')
    parts.append("</section>")
    parts += ['<section id="latency"><h2>Latency</h2>',
              _figure("latency-batch", plots.latency_plot(rows, "batch", "latency-batch"),
                      "Latency vs batch: no setup has ok cells at two batch sizes."),
              _figure("latency-seq", plots.latency_plot(rows, "seq", "latency-seq"),
                      "Latency vs sequence length: no setup has ok cells at two sequence lengths."),
              "</section>"]
    parts += ['<section id="throughput"><h2>Throughput</h2>',
              _figure("throughput", plots.throughput_plot(rows),
                      "No ok latency-scenario cells with a throughput."), "</section>"]
    headers, body = throughput_rows(rows)
    if body:
        parts += ['<section id="throughput-scenario"><h2>Throughput scenario</h2>',
                  '<p class="how">items/s and tokens/s over whole corpus passes; padded tokens/s counts the padding '
                  'the model also computes; padding waste = share of the padded tokens that are padding.</p>',
                  _figure("throughput-scenario", plots.throughput_scenario_plot(rows),
                          "No ok throughput-scenario cells to draw."),
                  _table(headers, body), "</section>"]
    headers, body = multimodal_rows(rows)
    if body:
        parts += ['<section id="multimodal"><h2>Multimodal towers</h2>',
                  '<p class="how">texts/s and images/s at each tower\'s median call; tower ms are model time only; '
                  'preprocessing (Python, measured apart from the model) is shown separately.</p>']
        note = zero_shot_note(rows)
        if note:
            parts.append(f'<p class="how">{_e(note)}</p>')
        parts += [_table(headers, body), "</section>"]
    parts += ['<section id="memory"><h2>Memory</h2>',
              _figure("memory", plots.memory_plot(rows), "No ok cells with a peak RSS."), "</section>"]
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
        parts.append('<p class="how">FLOPs: matrix multiplies over the padded shape (attention counted in '
                     'full); bytes: the fp32 non-embedding weights read once per call.</p>')
        parts.append(_figure("roofline", plots.roofline_plot(rows, profile), "No cell to place on the roofline."))
    if has_work:
        parts.append(_table(*work_rows(rows)))
    parts.append("</section>")

    warnings = _warnings(cells)
    parts.append('<section id="warnings"><h2>Warnings</h2>')
    if warnings:
        parts.append('<ul class="warnings">' + "".join(f"<li><b>{_e(c)}</b>: {_e(m)}</li>" for c, m in warnings)
                     + "</ul>")
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


def _md_table(headers, body) -> str:
    return md_table(headers, body)


def render_markdown(cells: list[dict], profile: dict | None = None) -> str:
    rows = _rows(cells, profile)
    parts = ["# embedperf report", ""]
    parts.append(table(rows, with_sections=False).rstrip("\n"))
    harness = run_overhead_lines(cells)
    if harness:
        parts += [""] + harness
    parts.append("")
    parts += sections(rows)
    headers, body = parity_rows(rows)
    parts += ["## Parity with the PyTorch fp32 eager reference", "",
              _md_table(headers, body) if body else "_no parity figures_", ""]
    parts += ["## Work and roofline", ""]
    if profile:
        parts += [f"- {line}" for line in _profile_lines(profile)] + [""]
    else:
        parts += ["_no machine profile: share of peak not computed (run `embedperf calibrate`)_", ""]
    headers, body = work_rows(rows)
    parts += [_md_table(headers, body) if body else "_no work figures_", ""]
    warnings = _warnings(cells)
    parts += ["## Warnings", ""] + ([f"- **{c}**: {m}" for c, m in warnings] or ["None."])
    return "\n".join(parts) + "\n"


def write_markdown(cells: list[dict], out: Path, profile: dict | None = None) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_markdown(cells, profile), encoding="utf-8")
    return out
