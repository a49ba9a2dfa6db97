"""Figures of a report as inline SVG strings (matplotlib, Agg, text drawn as paths: no fonts, no network).

Every function takes flat cell rows (``results.store.flatten``) and returns an ``<svg>`` element as a
string, or None when the rows hold nothing to draw. Each figure gets its own ``svg.hashsalt`` so the
ids of several SVGs inlined in one page never collide.
"""

from __future__ import annotations

import io
import math
import re
from collections import defaultdict

from embedperf.report.groups import CORPUS_ORDER, MODALITY_ORDER, RUNTIME_ORDER, precision_rank, runtime_rank
from embedperf.report.markdown import multimodal_models

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf"]
LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "path", "font.size": 9, "axes.grid": True, "grid.alpha": 0.3,
                         "figure.dpi": 100})
    return plt


def runtime_order(names) -> list[str]:
    return sorted(set(names), key=lambda n: (RUNTIME_ORDER.index(n) if n in RUNTIME_ORDER else 99, n))


def color_of(runtime: str, runtimes: list[str]) -> str:
    return COLORS[runtimes.index(runtime) % len(COLORS)] if runtime in runtimes else "#333333"


def to_svg(fig, name: str) -> str:
    """The figure as an <svg> element (XML prolog and DOCTYPE removed), with ids unique to `name`."""
    plt = _plt()
    with plt.rc_context({"svg.hashsalt": f"embedperf-{name}"}):
        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    start = text.find("<svg")
    svg = re.sub(r"<metadata>.*?</metadata>", "", text[start:], flags=re.S)
    # ids are hashes salted per figure; prefix them anyway so equal content in two figures stays distinct
    prefix = re.sub(r"[^A-Za-z0-9]", "", name)
    svg = re.sub(r'id="([^"]+)"', lambda m: f'id="{prefix}-{m.group(1)}"', svg)
    svg = re.sub(r'(xlink:href|href)="#([^"]+)"', lambda m: f'{m.group(1)}="#{prefix}-{m.group(2)}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}-{m.group(1)})", svg)
    return svg.replace("<svg ", f'<svg role="img" aria-label="{name}" ', 1)


def _ok(rows):
    """Measured rows of the dense output: BGE-M3's other output modes have their cost table (docs/outputs.md) and
    would put a second point of one runtime at one shape into a figure."""
    return [r for r in rows if r["status"] == "ok" and r["median_ms"] is not None
            and (r.get("outputs") or "dense") == "dense"]


def _latency(rows):
    """The latency-scenario rows (a throughput cell's calls differ in shape by design: it has its own figure)."""
    return [r for r in rows if not r.get("order")]


def _groups(rows):
    """Rows by (model, source, device, threads, machine, tower, scenario): one panel each. Precisions share a panel
    as separate lines or bars (against the same fp32 reference they are compared with); machines never do."""
    out = defaultdict(list)
    for r in rows:
        out[(r["model"], r["source"], r["device"], r["threads"], r.get("machine") or "", r.get("modality") or "text",
             r.get("scenario") or "latency")].append(r)
    return dict(sorted(out.items(), key=lambda kv: (tuple(str(x) for x in kv[0][:5]),
                                                    MODALITY_ORDER.get(kv[0][5], 9), kv[0][6] != "latency")))


def _title(key, group: list[dict], multimodal: set[str] = frozenset()) -> str:
    model, source, device, threads, _machine, modality, scenario = key
    precisions = ", ".join(sorted({r["precision"] for r in group}, key=precision_rank))
    text = f"{model.split('/')[-1]} ({source}), {precisions}, {device}, {threads} thr"
    if model in multimodal or modality != "text":
        text += f", {modality} tower"
    if scenario != "latency":
        text += f", {scenario}"
    return text


PRECISION_STYLE = {"fp32": "-", "bf16": "--", "fp16": "-.", "int8": ":"}
HATCH = {"fp32": "", "bf16": "//", "fp16": "\\\\", "int8": ".."}


def _series(rows: list[dict]) -> list[tuple[str, str]]:
    """(runtime, precision) pairs in the report's order."""
    return sorted({(r["runtime"], r["precision"]) for r in rows}, key=lambda s: (precision_rank(s[1]),
                                                                                  runtime_rank(s[0])))


def _label(series: tuple[str, str], multi: bool) -> str:
    return f"{series[0]} {series[1]}" if multi else series[0]


def _panels(plt, n: int, width: float = 5.2, height: float = 3.4):
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    # constrained layout keeps one row's tick labels clear of the next row's titles, and makes room for a legend
    # placed outside the axes ("outside lower center"), so a legend never covers data
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def caption(rows: list[dict]) -> str:
    """What every figure must say: machine, threads, precision, weights real or random (and from where)."""
    machines = sorted({r["machine"] for r in rows if r.get("machine")})
    threads = sorted({r["threads"] for r in rows if r.get("threads") is not None})
    precisions = sorted({r["precision"] for r in rows if r.get("precision")}, key=precision_rank)
    devices = sorted({r["device"] for r in rows if r.get("device")})
    weights = sorted({f"{r.get('weights') or '?'} ({r['source']})" for r in rows if r.get("source")})
    parts = ["; ".join(machines) if machines else "machine not recorded",
             f"{', '.join(map(str, threads))} thread(s)" if threads else "threads not recorded",
             ", ".join(devices), ", ".join(precisions), "weights " + ", ".join(weights)]
    return "; ".join(p for p in parts if p)


def _legend(fig, axes, ncol: int | None = None) -> None:
    """One legend for the whole figure, under the panels and outside every axes; duplicates merged."""
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=ncol or min(len(labels), 4), fontsize=8,
                   frameon=False)


def _fixed(group: list[dict], x: str) -> int | None:
    """The value the other dimension is held at: the smallest batch (seq plots) or the length nearest 128 that has
    the most batch sizes (batch plots); None when no value has two points of x."""
    other = "seq" if x == "batch" else "batch"
    counts = {o: len({r[x] for r in group if r[other] == o}) for o in {r[other] for r in group}}
    usable = [o for o, n in counts.items() if n >= 2]
    if not usable:
        return None
    if x == "seq":
        return min(usable)
    return max(usable, key=lambda o: (counts[o], -abs(o - 128)))


def _log_ticks(ax) -> None:
    """Labels at 1, 2 and 5 of every decade (only at 1 past three decades): a log axis spanning less than a decade
    otherwise shows one label or none."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    low, high = ax.get_ylim()
    wide = low > 0 and math.log10(high / low) > 3
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0,) if wide else (1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def attention_share(r: dict) -> float | None:
    """Attention's share (QKᵀ and scores·V) of a cell's matmul FLOPs, from its work breakdown."""
    b = r.get("flops_breakdown")
    if not b or not r.get("flops"):
        return None
    return (b.get("attn_scores", 0) + b.get("attn_values", 0)) / r["flops"]


def latency_plot(rows: list[dict], x: str, name: str) -> str | None:
    """Median latency (with its 95% CI) against seq (x="seq", at the smallest batch) or batch (x="batch", at one
    length), log–log, one line per runtime and one panel per setup; None when no setup has two values of x.
    Sequence ticks carry attention's share of the FLOPs, where each runtime's cost starts to grow faster."""
    other = "seq" if x == "batch" else "batch"
    rows = _latency(_ok(rows))
    groups = {}
    for key, group in _groups(rows).items():
        fixed = _fixed(group, x)
        if fixed is not None:
            groups[key] = (fixed, [r for r in group if r[other] == fixed])
    if not groups:
        return None
    multimodal = multimodal_models(rows)
    plt = _plt()
    fig, axes = _panels(plt, len(groups))
    runtimes = runtime_order(r["runtime"] for r in rows)
    multi = len({r["precision"] for r in rows}) > 1
    for ax, (key, (fixed, group)) in zip(axes, groups.items()):
        for rt, precision in _series(group):
            pts = sorted((r[x], r["median_ms"], r["ci_low_ms"], r["ci_high_ms"]) for r in group
                         if r["runtime"] == rt and r["precision"] == precision)
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            lo = [max(p[1] - (p[2] if p[2] is not None else p[1]), 0) for p in pts]
            hi = [max((p[3] if p[3] is not None else p[1]) - p[1], 0) for p in pts]
            i = runtimes.index(rt)
            ax.errorbar(xs, ys, yerr=[lo, hi], color=color_of(rt, runtimes),
                        linestyle=PRECISION_STYLE.get(precision, "-") if multi else LINESTYLES[i % 2],
                        marker=MARKERS[i % len(MARKERS)], markersize=4, capsize=2, linewidth=1.3,
                        label=_label((rt, precision), multi))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ticks = sorted({r[x] for r in group})
        shares = {r[x]: attention_share(r) for r in group if attention_share(r) is not None}
        if x == "seq" and shares:
            ax.set_xticks(ticks, [f"{t}\n{shares[t]:.0%}" if t in shares else str(t) for t in ticks])
            ax.set_xlabel("sequence length (log); below it attention's share of the FLOPs")
        else:
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.set_xlabel(f"{x} (log)")
        ax.minorticks_off()
        _log_ticks(ax)
        ax.set_ylabel("median latency, ms (log)")
        title = f"{_title(key, group, multimodal)}\n{other} {fixed}"
        if x == "batch" and shares:
            title += f", attention {next(iter(shares.values())):.0%} of FLOPs"
        ax.set_title(title, fontsize=9)
    _legend(fig, axes, min(len(runtimes), 6))
    what = "sequence length" if x == "seq" else "batch"
    fig.suptitle(f"Latency vs {what}: median, 95% bootstrap CI\n{caption(rows)}", fontsize=9)
    return to_svg(fig, name)


def throughput_plot(rows: list[dict], name: str = "throughput") -> str | None:
    """Latency-scenario items per second at the median call time (images/s for an image tower), bars per runtime
    grouped by shape."""
    return _bars(_latency(rows), "items_per_s", "items/s", "Throughput (rows embedded per second, at the median)",
                 name, lambda r: (r["batch"], r["seq"], r.get("shape") or f"{r['batch']}×{r['seq']}"),
                 lambda c: c[2], "batch × seq")


def throughput_scenario_plot(rows: list[dict], name: str = "throughput-scenario") -> str | None:
    """Throughput-scenario items per second over whole corpus passes, bars per runtime, sorted vs unsorted feed."""
    return _bars([r for r in rows if r.get("order")], "items_per_s", "items/s",
                 "Throughput scenario (corpus items per second over whole passes, sorted vs unsorted)", name,
                 lambda r: (r["batch"], CORPUS_ORDER.get(r["order"], 9), r["order"]), lambda c: f"b{c[0]}\n{c[2]}",
                 "batch, corpus order")


def _bars(rows, field, ylabel, title, name, category, label, xlabel) -> str | None:
    """Bars of `field` per runtime, grouped on the x axis by category(row) (labelled label(category))."""
    rows = [r for r in _ok(rows) if r.get(field) is not None and not r["runtime"].startswith("null")]
    groups = _groups(rows)
    if not groups:
        return None
    multimodal = multimodal_models(rows)
    plt = _plt()
    fig, axes = _panels(plt, len(groups), width=6.0)
    runtimes = runtime_order(r["runtime"] for r in rows)
    multi = len({r["precision"] for r in rows}) > 1
    for ax, (key, group) in zip(axes, groups.items()):
        cats = sorted({category(r) for r in group})
        series = _series(group)
        width = 0.8 / len(series)
        values = []
        for j, (rt, precision) in enumerate(series):
            xs, ys = [], []
            for i, cat in enumerate(cats):
                hit = [r[field] for r in group if r["runtime"] == rt and r["precision"] == precision
                       and category(r) == cat]
                if hit:
                    xs.append(i - 0.4 + width * (j + 0.5))
                    ys.append(hit[0])
            values += ys
            ax.bar(xs, ys, width=width, color=color_of(rt, runtimes), label=_label((rt, precision), multi),
                   hatch=HATCH.get(precision, "") if multi else "", edgecolor="white" if multi else None)
        ax.set_xticks(range(len(cats)), [label(c) for c in cats])
        ax.set_xlabel(xlabel)
        if values and min(values) > 0 and max(values) / min(values) > 100:
            ax.set_yscale("log")
            ylabel_ = f"{ylabel} (log)"
        else:
            ylabel_ = ylabel
        ax.set_ylabel(ylabel_)
        ax.set_title(_title(key, group, multimodal), fontsize=9)
    _legend(fig, axes, min(len(_series(rows)), 6))
    fig.suptitle(f"{title}\n{caption(rows)}", fontsize=9)
    return to_svg(fig, name)


def memory_plot(rows: list[dict], name: str = "memory") -> str | None:
    """Peak RSS of each runner process (its largest over the shapes), the timed loop's own peak, and the size on
    disk of what the runtime loads."""
    rows = [r for r in _ok(rows) if r.get("peak_rss_mb") is not None]
    groups = _groups(rows)
    if not groups:
        return None
    multimodal = multimodal_models(rows)
    plt = _plt()
    fig, axes = _panels(plt, len(groups), width=6.0)
    multi = len({r["precision"] for r in rows}) > 1
    for ax, (key, group) in zip(axes, groups.items()):
        series = _series(group)

        def of(s, field):
            return [r.get(field) or 0 for r in group if (r["runtime"], r["precision"]) == s]

        peak = [max(of(s, "peak_rss_mb")) for s in series]
        loop = [max(of(s, "loop_peak_rss_mb")) for s in series]
        disk = [max(of(s, "size_on_disk_bytes")) / 2**20 for s in series]
        xs = list(range(len(series)))
        ax.bar([x - 0.27 for x in xs], peak, width=0.27, color="#1f77b4", label="peak RSS (process)")
        ax.bar(xs, loop, width=0.27, color="#ff7f0e", label="peak RSS (timed loop)")
        ax.bar([x + 0.27 for x in xs], disk, width=0.27, color="#2ca02c", label="size on disk (loaded files)")
        ax.set_xticks(xs, [_label(s, multi) for s in series], rotation=20, ha="right")
        ax.set_ylabel("MB")
        ax.set_title(_title(key, group, multimodal), fontsize=9)
    _legend(fig, axes, 3)
    fig.suptitle(f"Memory: peak resident set size (VmHWM) and size on disk\n{caption(rows)}", fontsize=9)
    return to_svg(fig, name)


def roofline_plot(rows: list[dict], profile: dict, name: str = "roofline") -> str | None:
    """Achieved GFLOP/s against arithmetic intensity (FLOPs per weight byte), with the measured peak and bandwidth."""
    rows = [r for r in _ok(rows) if r.get("gflops") and r.get("arithmetic_intensity")]
    if not rows:
        return None
    peak = float(profile["peak_gflops"])
    bw = float(profile["bandwidth_gbs"])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    runtimes = runtime_order(r["runtime"] for r in rows)
    ai = [r["arithmetic_intensity"] for r in rows]
    lo, hi = min(min(ai), peak / bw) / 4, max(max(ai), peak / bw) * 4
    xs = [lo * (hi / lo) ** (i / 100) for i in range(101)]
    ax.plot(xs, [min(peak, bw * x) for x in xs], color="black", linewidth=1.6,
            label=f"roof: min({peak:.0f} GFLOP/s, {bw:.1f} GB/s × intensity)")
    ax.plot(xs, [bw * x for x in xs], color="black", linewidth=0.8, linestyle=":", label=None)
    ax.axhline(peak, color="black", linewidth=0.8, linestyle=":")
    for extra, style in (("bf16", "--"), ("fp16", "-.")):
        v = profile.get(extra)
        if isinstance(v, dict) and v.get("peak_gflops"):
            ax.axhline(v["peak_gflops"], color="#555555", linewidth=1, linestyle=style,
                       label=f"{extra} peak {v['peak_gflops']:.0f} GFLOP/s")
    for rt in runtimes:
        pts = [(r["arithmetic_intensity"], r["gflops"]) for r in rows if r["runtime"] == rt]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], color=color_of(rt, runtimes), s=22, label=rt,
                   zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(min(min(r["gflops"] for r in rows), bw * lo) / 2, peak * 3)
    ax.set_xlabel("arithmetic intensity, FLOPs per weight byte (fp32, log)")
    ax.set_ylabel("achieved GFLOP/s (matmul FLOPs / median time, log)")
    ax.set_title(f"Roofline: measured peak and bandwidth\n{caption(rows)}", fontsize=9)
    # beside the axes, never over the points
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return to_svg(fig, name)


def tradeoff_plot(views, rows: list[dict], name: str = "tradeoff") -> str | None:
    """Speedup over torch fp32 (x, log) against accuracy (y) per model and shape: a marker per precision, a colour
    per runtime, the Pareto front drawn through the cells no other beats on both."""
    placed = [v for v in views if sum(p.speedup is not None and p.accuracy is not None for p in v.points) >= 2]
    if not placed:
        return None
    placed = placed[:6]  # the figure stays readable; the tables list every view
    plt = _plt()
    fig, axes = _panels(plt, len(placed))
    runtimes = runtime_order(p.runtime for v in placed for p in v.points)
    precisions = sorted({p.precision for v in placed for p in v.points}, key=precision_rank)
    for ax, v in zip(axes, placed):
        points = [p for p in v.points if p.speedup is not None and p.accuracy is not None]
        for p in points:
            ax.errorbar(p.speedup.ratio, p.accuracy, xerr=[[p.speedup.ratio - p.speedup.low],
                                                           [p.speedup.high - p.speedup.ratio]],
                        fmt=MARKERS[precisions.index(p.precision) % len(MARKERS)], color=color_of(p.runtime, runtimes),
                        markeredgecolor="black" if p.pareto else color_of(p.runtime, runtimes), markersize=7,
                        capsize=2, label=f"{p.runtime}", linestyle="none")
        front = sorted((p for p in points if p.pareto), key=lambda p: p.speedup.ratio)
        if len(front) > 1:
            ax.plot([p.speedup.ratio for p in front], [p.accuracy for p in front], color="black", linewidth=0.8,
                    linestyle="--", label="Pareto front")
        ax.set_xscale("log")
        _log_ticks(ax)
        ax.set_xlabel("speedup over torch fp32 (×)")
        ax.set_ylabel(v.axis)
        ax.set_title(f"{v.model.split('/')[-1]} ({v.source}), {v.shape}", fontsize=9)
    for precision in precisions:  # the marker key, once
        axes[0].plot([], [], MARKERS[precisions.index(precision) % len(MARKERS)], color="#777777", label=precision)
    _legend(fig, axes)
    fig.suptitle(f"Speed against accuracy (black edge: Pareto front)\n{caption(rows)}", fontsize=9)
    return to_svg(fig, name)
