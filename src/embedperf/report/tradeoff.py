"""Speed against accuracy: what each (runtime, precision) gains over PyTorch fp32 and what it costs.

Per model and shape (source, device, threads and machine held equal), every `ok` cell at any precision is
placed by its speedup over the torch fp32 cell of the same shape (`verdicts.cell_ratio`: the ratio of the
two cells' medians of fork medians, with its 95% CI) and its accuracy against the fp32 reference: recall@10
of the fp32 top-10 neighbours over the accuracy corpus of real sentences where it was measured, else the
worst cosine (twins: random weights, no retrieval claim). A point is on the Pareto front when no other point
is at least as fast and at least as accurate, and better in one of the two. Size on disk and peak RSS per
precision sit beside them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from embedperf.report.groups import BASELINE, is_document, newest, precision_rank, runtime_rank
from embedperf.report.verdicts import Ratio, accuracy_of, cell_ratio


@dataclass
class Point:
    """One (runtime, precision) cell of a model at a shape."""

    runtime: str
    precision: str
    speedup: Ratio | None  # time(torch fp32) / time(this)
    accuracy: float | None  # the y of the view: recall@10, else min cosine
    recall_at_10: float | None
    min_cosine: float | None
    size_mb: float | None
    peak_rss_mb: float | None
    pareto: bool = False


@dataclass
class Tradeoff:
    """The points of one model at one shape, and what their accuracy axis is."""

    model: str
    source: str
    weights: str
    shape: str
    axis: str  # "recall@10" | "min cosine"
    points: list[Point]


def _group_key(doc: dict) -> tuple:
    spec, machine = doc["spec"], doc.get("machine") or {}
    return (spec["model"], spec["source"], spec["device"], (spec.get("threads") or {}).get("intra_op"),
            spec.get("scenario"), spec.get("modality"), spec.get("order"), bool(spec.get("texts")), spec["batch"],
            spec["seq"], spec.get("truncate_dim"), machine.get("cpu_model"))


def _shape_label(doc: dict) -> str:
    spec = doc["spec"]
    if spec.get("order"):
        return f"b{spec['batch']} corpus {spec['order']}"
    if spec.get("modality") == "image":
        return f"{spec['batch']} img {spec['seq']}px"
    return f"{spec['batch']}×{spec['seq']}" + (" text" if spec.get("modality") == "text" and
                                                 doc["model"].get("pooling") == "tower" else "")


def pareto(points: list[Point]) -> None:
    """Mark the points no other point dominates (at least as fast and as accurate, better in one)."""
    placed = [p for p in points if p.speedup is not None and p.accuracy is not None]
    for p in placed:
        p.pareto = not any(q is not p and q.speedup.ratio >= p.speedup.ratio and q.accuracy >= p.accuracy
                           and (q.speedup.ratio > p.speedup.ratio or q.accuracy > p.accuracy) for q in placed)


def tradeoffs(cells: list[dict]) -> list[Tradeoff]:
    """One view per model and shape that has cells at more than one precision."""
    docs, _ = newest([c for c in cells if is_document(c)])
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for doc in docs:
        groups[_group_key(doc)].append(doc)
    out = []
    for key in sorted(groups, key=lambda k: tuple(str(v) for v in k)):
        group = [d for d in groups[key] if not d["spec"]["runtime"].startswith("null")]
        if len({d["spec"]["precision"] for d in group}) < 2:
            continue
        base = next((d for d in group if (d["spec"]["runtime"], d["spec"]["precision"]) == BASELINE
                     and d["status"] == "ok"), None)
        ok = [d for d in group if d["status"] == "ok"]
        real = any((accuracy_of(d) or {}).get("recall_at_10") is not None for d in ok)
        points = []
        for d in sorted(ok, key=lambda d: (precision_rank(d["spec"]["precision"]), runtime_rank(d["spec"]["runtime"]))):
            acc = accuracy_of(d) or {}
            summary, model = d.get("summary") or {}, d.get("model") or {}
            size = model.get("size_on_disk_bytes")
            points.append(Point(d["spec"]["runtime"], d["spec"]["precision"],
                                cell_ratio(base, d) if base is not None else None,
                                acc.get("recall_at_10") if real else acc.get("min_cosine"),
                                acc.get("recall_at_10"), acc.get("min_cosine"),
                                size / 2**20 if size else None, summary.get("peak_rss_mb")))
        pareto(points)
        first = group[0]
        out.append(Tradeoff(first["spec"]["model"], first["spec"]["source"], first["model"].get("weights") or "?",
                            _shape_label(first), "recall@10" if real else "min cosine", points))
    return out


def _f(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def tradeoff_lines(cells: list[dict], level: str = "##") -> list[str]:
    """The Markdown section: one table per model and shape, Pareto-optimal points marked ★."""
    views = tradeoffs(cells)
    if not views:
        return []
    lines = [f"{level} Speed against accuracy", "",
             "Speedup over torch fp32 at the same shape (95% CI); accuracy against the fp32 reference: recall@10 of "
             "the fp32 top-10 neighbours over the accuracy corpus where the model reads real text, else the worst "
             "cosine (random weights: no retrieval claim); ★ = on the Pareto front (no other cell at least as fast "
             "and as accurate).", ""]
    for v in views:
        lines += [f"**{v.model.split('/')[-1]}** ({v.source}, weights {v.weights}), {v.shape}", "",
                  "| runtime | precision | speedup | recall@10 | min cos | disk MB | peak RSS MB | Pareto |",
                  "|---|---|---:|---:|---:|---:|---:|---|"]
        for p in v.points:
            lines.append(f"| {p.runtime} | {p.precision} | {p.speedup.text() if p.speedup else '–'} | "
                         f"{_f(p.recall_at_10, '.3f')} | {_f(p.min_cosine, '.5f')} | {_f(p.size_mb, '.1f')} | "
                         f"{_f(p.peak_rss_mb, '.0f')} | {'★' if p.pareto else ''} |")
        lines.append("")
    return lines
