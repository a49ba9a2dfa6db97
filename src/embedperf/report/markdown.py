"""The Markdown matrix table, built only from stored result documents."""

from __future__ import annotations

from embedperf.results.store import flatten

RUNTIME_ORDER = ["torch", "onnxruntime-python", "onnxruntime-cpp", "onnxruntime-rust", "candle", "openvino",
                 "null", "null-rust", "null-cpp"]


def _fmt(value, spec: str = ".2f", missing: str = "–") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return missing
    return format(value, spec)


def sort_key(row: dict):
    order = RUNTIME_ORDER.index(row["runtime"]) if row["runtime"] in RUNTIME_ORDER else 99
    return (row["model"], row["source"], row["batch"], row["seq"], order)


def table(cells: list[dict]) -> str:
    """A Markdown table of cells, with a line above saying how the numbers were obtained."""
    rows = sorted((flatten(c) for c in cells), key=sort_key)
    if not rows:
        return "_no cells_\n"
    lines = []
    setups = sorted({(r["model"], r["source"], r["weights"], r["threads"], r["precision"], r["device"])
                     for r in rows})
    for model, source, weights, threads, precision, device in setups:
        lines.append(f"**{model}** — source {source}, weights {weights}, {precision}, {device}, "
                     f"{threads} thread(s); latency scenario, inputs right-padded, seeded")
    lines.append("")
    lines.append("| model | runtime | batch×seq | status | median ms | 95% CI ms | p90 ms | CV | items/s | "
                 "load s | first call s | peak RSS MB | loop RSS MB | min cos |")
    lines.append("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ci = (f"{_fmt(r['ci_low_ms'], '.3f')}–{_fmt(r['ci_high_ms'], '.3f')}"
              if r["ci_low_ms"] is not None else "–")
        status = r["status"] if not r["reason"] else f"{r['status']}: {r['reason']}"
        lines.append(
            f"| {r['model'].split('/')[-1]} | {r['runtime']} | {r['batch']}×{r['seq']} | {status} | "
            f"{_fmt(r['median_ms'], '.3f')} | {ci} | {_fmt(r['p90_ms'], '.3f')} | {_fmt(r['cv'], '.1%')} | "
            f"{_fmt(r['items_per_s'], '.1f')} | {_fmt(r['load_s'], '.2f')} | {_fmt(r['first_call_s'], '.3f')} | "
            f"{_fmt(r['peak_rss_mb'], '.0f')} | {_fmt(r['loop_peak_rss_mb'], '.0f')} | "
            f"{_fmt(r['min_cosine'], '.6f')} |"
        )
    return "\n".join(lines) + "\n"


def overhead_lines(cells: list[dict]) -> str:
    """Per-call harness overhead measured by the null runners."""
    out = []
    for r in sorted((flatten(c) for c in cells), key=sort_key):
        if r["runtime"].startswith("null") and r["median_ms"] is not None:
            out.append(f"harness overhead per call ({r['runtime']}, batch {r['batch']} × seq {r['seq']}): "
                       f"median {r['median_ms'] * 1e3:.2f} µs, p99 {r['p99_ms'] * 1e3:.2f} µs over {r['n']} calls")
    return "\n".join(out)
