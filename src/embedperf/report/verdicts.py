"""Verdicts: per setup and shape, the fastest runtime, its speedup over PyTorch fp32, the leanest, what failed.

Rules (the report prints them; `RULES` is that text):

- A cell's figure is its median of fork medians: of calls (latency) or of whole corpus passes
  (throughput); lower is faster. Only `ok` cells with measured forks compete; null runners never do.
- Speedup of runtime R over PyTorch fp32 = time(torch fp32) / time(R), both at the same model, shape,
  device, thread budget and machine, with the 95% CI of that ratio from `measure.stats.ratio_ci`
  (two-level bootstrap of both sides: forks, then samples in each).
- Fastest: the lowest median. Another runtime *ties* with it when the difference is inside the noise
  or too small to act on: the 95% CI of time(other) / time(fastest) reaches down to 1 + TIE_BAND (2%).
  A runtime wins only when the whole CI lies above that; a verdict with ties names every tied runtime.
  The test is the ratio's own CI, not whether the two cells' CIs overlap: two 95% intervals can overlap
  while the ratio's interval, which accounts for both cells' spread, lies clear of 1 (reporting that as
  a tie would contradict the ratio printed beside it).
- Speedup wording: "R is 3.10× faster than torch fp32 (2.90–3.30×)"; when the CI of the speedup
  reaches into [1 − TIE_BAND, 1 + TIE_BAND] R is "on par with torch fp32".
- Leanest: the lowest peak RSS (VmHWM of the runner process, the largest over the cell's forks).
  Another runtime ties when within MEMORY_BAND (5%) of it or when their forks' peak ranges overlap.
- Every cell of the shape that is `failed` or `skipped` is listed with its reason.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from embedperf.measure.stats import ratio_ci
from embedperf.report.groups import (BASELINE, RUNTIME_ORDER, Setup, Shape, by_setup, is_document, newest,
                                     precision_rank, runtime_rank)
from embedperf.results.store import fork_series

TIE_BAND = 0.02
MEMORY_BAND = 0.05
RULES = (f"Speedup = time of torch fp32 / time of the runtime at the same model, shape, device, threads and "
         f"machine (medians of fork medians; throughput: whole corpus passes), with the 95% CI of the ratio "
         f"(two-level bootstrap over forks and samples). Fastest = lowest median; another runtime ties with it "
         f"when the 95% CI of their time ratio reaches down to within {TIE_BAND:.0%} of 1 — a tie is never called "
         f"a win. Leanest = lowest peak RSS; within {MEMORY_BAND:.0%} (or overlapping fork peaks) "
         f"is a tie.")


@dataclass
class Ratio:
    """A ratio of two cells' figures with its 95% CI."""

    ratio: float
    low: float
    high: float

    def text(self) -> str:
        return f"{fmt_ratio(self.ratio)}× ({fmt_ratio(self.low)}–{fmt_ratio(self.high)}×)"


def fmt_ratio(x: float) -> str:
    """Three significant digits, never fewer than two decimals below 10: 3.10, 54.2, 1078."""
    return f"{x:.2f}" if abs(x) < 9.995 else f"{x:.1f}" if abs(x) < 99.95 else f"{x:.0f}"


@dataclass
class Entry:
    """One runtime's cell at a shape, as the verdict sees it."""

    runtime: str
    status: str
    reason: str | None = None
    median_ms: float | None = None
    ci_low_ms: float | None = None
    ci_high_ms: float | None = None
    forks: int = 0
    peak_rss_mb: float | None = None
    speedup: Ratio | None = None  # over torch fp32
    vs_fastest: Ratio | None = None  # time(this) / time(fastest)
    fastest: bool = False  # the fastest or tied with it
    leanest: bool = False  # the leanest or tied with it
    cell_id: str | None = None
    accuracy: dict | None = None  # reduced precision: what it costs (fields vary; missing ones stay missing)


@dataclass
class Verdict:
    """What a reader should take from one setup at one shape."""

    setup: Setup
    shape: Shape
    of: str  # calls | passes
    entries: list[Entry]
    baseline: Entry | None  # the torch fp32 cell this shape's speedups divide by (None: no such cell)
    fastest: list[str] = field(default_factory=list)
    leanest: list[str] = field(default_factory=list)
    sentence: str = ""

    @property
    def tie(self) -> bool:
        return len(self.fastest) > 1

    @property
    def not_ok(self) -> list[Entry]:
        return [e for e in self.entries if e.status != "ok"]

    def entry(self, runtime: str) -> Entry | None:
        return next((e for e in self.entries if e.runtime == runtime), None)

    def to_json(self) -> dict:
        s = self.setup
        return {
            "model": s.model, "source": s.source, "weights": s.weights, "precision": s.precision, "device": s.device,
            "threads": s.threads, "scenario": s.scenario, "machine": s.machine.label,
            "shape": self.shape.label, "modality": self.shape.modality, "batch": self.shape.batch,
            "seq": self.shape.seq, "order": self.shape.order, "truncate_dim": self.shape.truncate_dim,
            "outputs": self.shape.outputs,
            "of": self.of, "fastest": self.fastest, "tie": self.tie, "leanest": self.leanest,
            "baseline": None if self.baseline is None else {"runtime": BASELINE[0], "precision": BASELINE[1],
                                                            "status": self.baseline.status,
                                                            "median_ms": self.baseline.median_ms},
            "entries": [asdict(e) for e in self.entries], "sentence": self.sentence,
        }


def _entry(doc: dict) -> Entry:
    summary = doc.get("summary") or {}
    forks = fork_series(doc) if doc.get("status") == "ok" else []
    return Entry(runtime=doc["spec"]["runtime"], status=doc.get("status") or "?", reason=doc.get("reason"),
                 median_ms=summary.get("median_ms"), ci_low_ms=summary.get("ci_low_ms"),
                 ci_high_ms=summary.get("ci_high_ms"), forks=len(forks), peak_rss_mb=summary.get("peak_rss_mb"),
                 cell_id=doc.get("cell_id"), accuracy=accuracy_of(doc))


def accuracy_of(doc: dict) -> dict | None:
    """A reduced-precision cell's accuracy against the fp32 reference, from whichever block carries it."""
    out = {}
    for block in (doc.get("parity") or {}, doc.get("accuracy") or {}):
        for key in ("min_cosine", "mean_cosine", "recall_at_10", "spearman", "note"):
            if block.get(key) is not None:
                out[key] = block[key]
    return out or None


def _fork_peaks(doc: dict) -> tuple[float, float] | None:
    peaks = [f.get("peak_rss_mb") for f in doc.get("forks") or [] if f.get("peak_rss_mb") is not None]
    return (min(peaks), max(peaks)) if peaks else None


_RATIOS: dict[tuple, "Ratio"] = {}


def _identity(doc: dict) -> tuple:
    """What names one stored cell document for the memo below: its run, id and creation time, and its figures (so
    two documents that share ids but not samples, as hand-made ones can, never share a ratio)."""
    summary = doc.get("summary") or {}
    return (doc.get("run_id"), doc.get("cell_id"), doc.get("created"), summary.get("n"), summary.get("median_ms"),
            summary.get("ci_low_ms"), summary.get("ci_high_ms"), summary.get("mean_ms"))


def cell_ratio(num: dict, den: dict) -> Ratio:
    """time(num) / time(den) with its 95% CI: `measure.stats.ratio_ci` of the two cells' fork series, computed once
    per pair in this process (a report asks for the same pairs in its verdicts, heatmap, Markdown and HTML, and
    each bootstrap costs tens of ms to seconds)."""
    key = (_identity(num), _identity(den))
    if key not in _RATIOS:
        _RATIOS[key] = Ratio(*ratio_ci(fork_series(num), fork_series(den)))
    return _RATIOS[key]


def _competes(doc: dict) -> bool:
    return (doc.get("status") == "ok" and not doc["spec"]["runtime"].startswith("null") and bool(fork_series(doc))
            and (doc.get("summary") or {}).get("median_ms") is not None)


def judge(setup: Setup, shape: Shape, cells: dict[str, dict], baseline: dict | None) -> Verdict:
    """The verdict of one setup at one shape. `cells`: runtime -> document; `baseline`: the torch fp32 document of
    the same model, shape, device, threads and machine (or None)."""
    docs = {rt: d for rt, d in cells.items() if not rt.startswith("null")}
    entries = {rt: _entry(d) for rt, d in docs.items()}
    racing = {rt: d for rt, d in docs.items() if _competes(d)}
    base_ok = baseline is not None and _competes(baseline)
    for rt, d in racing.items():
        if base_ok:
            # the baseline against itself is 1 by definition (a bootstrap of a cell against itself says nothing)
            entries[rt].speedup = Ratio(1.0, 1.0, 1.0) if d is baseline else cell_ratio(baseline, d)
    fastest: list[str] = []
    if racing:
        best = min(racing, key=lambda rt: racing[rt]["summary"]["median_ms"])
        fastest = [best]
        entries[best].vs_fastest = Ratio(1.0, 1.0, 1.0)
        for rt, d in racing.items():
            if rt == best:
                continue
            r = cell_ratio(d, racing[best])
            entries[rt].vs_fastest = r
            if r.low <= 1 + TIE_BAND:
                fastest.append(rt)
        for rt in fastest:
            entries[rt].fastest = True
        fastest.sort(key=lambda rt: racing[rt]["summary"]["median_ms"])
    leanest: list[str] = []
    sized = {rt: d for rt, d in racing.items() if (d.get("summary") or {}).get("peak_rss_mb") is not None}
    if sized:
        low = min(sized, key=lambda rt: sized[rt]["summary"]["peak_rss_mb"])
        low_mb, low_range = sized[low]["summary"]["peak_rss_mb"], _fork_peaks(sized[low])
        for rt, d in sorted(sized.items(), key=lambda kv: kv[1]["summary"]["peak_rss_mb"]):
            rng = _fork_peaks(d)
            overlap = rng is not None and low_range is not None and rng[0] <= low_range[1]
            if rt == low or d["summary"]["peak_rss_mb"] <= low_mb * (1 + MEMORY_BAND) or overlap:
                leanest.append(rt)
                entries[rt].leanest = True
    base_entry = _entry(baseline) if baseline is not None else None
    verdict = Verdict(setup, shape, "passes" if shape.order else "calls",
                      sorted(entries.values(), key=lambda e: _order(e.runtime)), base_entry, fastest, leanest)
    verdict.sentence = sentence(verdict)
    return verdict


def _order(runtime: str) -> int:
    return runtime_rank(runtime)


def _speedup_words(e: Entry) -> str:
    """'3.10× faster than torch fp32 (2.90–3.30×)', 'on par with …', '1.25× slower than …'."""
    r = e.speedup
    if r is None:
        return ""
    base = f"torch {BASELINE[1]}"
    if r.low <= 1 + TIE_BAND and r.high >= 1 - TIE_BAND:
        return f"on par with {base} ({fmt_ratio(r.ratio)}×, {fmt_ratio(r.low)}–{fmt_ratio(r.high)}×)"
    if r.ratio >= 1:
        return f"{fmt_ratio(r.ratio)}× faster than {base} ({fmt_ratio(r.low)}–{fmt_ratio(r.high)}×)"
    return (f"{fmt_ratio(1 / r.ratio)}× slower than {base} ({fmt_ratio(1 / r.high)}–{fmt_ratio(1 / r.low)}×)")


def _no_baseline_reason(v: Verdict) -> str:
    base = f"torch {BASELINE[1]}"
    if v.baseline is None:
        return f"no {base} cell at this shape to compare with"
    return f"the {base} cell is {v.baseline.status}" + (f" ({v.baseline.reason})" if v.baseline.reason else "")


def sentence(v: Verdict) -> str:
    """The verdict in words: fastest (or the tie), its speedup with the CI, leanest, failures and skips."""
    parts = []
    prec = "" if v.setup.precision == BASELINE[1] else f" at {v.setup.precision}"
    if not v.fastest:
        why = ("" if not v.entries else ": its ok cells carry no fork samples to compare"
               if any(e.status == "ok" for e in v.entries) else ": every cell failed or was skipped")
        parts.append("no runtime measured this shape" + why)
    else:
        lead = v.entry(v.fastest[0])
        is_baseline = lead.runtime == BASELINE[0] and v.setup.precision == BASELINE[1]
        if lead.speedup is not None:
            speed = "" if is_baseline else _speedup_words(lead)
        else:
            speed = "" if is_baseline else f"speedup unknown: {_no_baseline_reason(v)}"
        if v.tie:
            others = [v.entry(rt) for rt in v.fastest[1:]]
            within = ", ".join(f"{e.runtime} takes {e.vs_fastest.text()} its time" for e in others)
            names = " and ".join(v.fastest) if len(v.fastest) == 2 else ", ".join(v.fastest)
            parts.append(f"{names} tie for fastest{prec} (inside the noise or within {TIE_BAND:.0%}: {within})")
            if speed:
                parts.append(f"{lead.runtime} is {speed}" if lead.speedup else speed)
        else:
            first = f"{lead.runtime} is fastest{prec}" + (f", {speed}" if speed else "")
            runner_up = sorted((e for e in v.entries if e.vs_fastest is not None and not e.fastest),
                               key=lambda e: e.vs_fastest.ratio)
            if runner_up:
                first += f"; next {runner_up[0].runtime} takes {runner_up[0].vs_fastest.text()} its time"
            parts.append(first)
        if v.setup.precision != BASELINE[1] and lead.accuracy:
            parts.append(f"{lead.runtime} {v.setup.precision} accuracy vs fp32: {accuracy_words(lead.accuracy)}")
    if v.leanest:
        lean = [v.entry(rt) for rt in v.leanest]
        if len(lean) == 1:
            parts.append(f"leanest {lean[0].runtime} ({lean[0].peak_rss_mb:.0f} MB peak RSS)")
        else:
            parts.append("leanest (tied) " + ", ".join(f"{e.runtime} ({e.peak_rss_mb:.0f} MB)" for e in lean))
    for status in ("failed", "skipped"):
        bad = [e for e in v.entries if e.status == status]
        if bad:
            parts.append(f"{status}: " + "; ".join(f"{e.runtime} ({e.reason or 'no reason given'})" for e in bad))
    return ". ".join(_capital(p) for p in parts) + "."


def _capital(part: str, names=None) -> str:
    """A sentence part with a capital, unless it starts with a runtime's name (names keep their spelling)."""
    first = part.split(" ", 1)[0].rstrip(",")
    known = set(RUNTIME_ORDER) | ({names(rt) for rt in RUNTIME_ORDER} if names else set())
    return part if first in known or first.startswith("null") else part[0].upper() + part[1:]


def accuracy_words(acc: dict) -> str:
    """recall@10 0.990, Spearman 0.9990, min cosine 0.99912 — whichever the cell has."""
    words = []
    if acc.get("recall_at_10") is not None:
        words.append(f"recall@10 {acc['recall_at_10']:.3f}")
    if acc.get("spearman") is not None:
        words.append(f"Spearman {acc['spearman']:.4f}")
    if acc.get("min_cosine") is not None:
        words.append(f"min cosine {acc['min_cosine']:.5f}")
    if acc.get("note"):
        words.append(str(acc["note"]))
    return ", ".join(words) or "not measured"


def verdicts(cells: list[dict]) -> list[Verdict]:
    """Every setup × shape's verdict, from cell documents (flat rows carry no forks and are left out)."""
    docs, _ = newest([c for c in cells if is_document(c)])
    groups = by_setup(docs)
    out = []
    for setup, shapes in groups.items():
        base_shapes = groups.get(setup.baseline(), {})
        for shape, runtimes in shapes.items():
            baseline = base_shapes.get(shape, {}).get(BASELINE[0])
            if set(runtimes) <= {"null", "null-rust", "null-cpp"}:
                continue
            out.append(judge(setup, shape, runtimes, baseline))
    return out


@dataclass
class Headline:
    """One setup's verdicts in one line: who wins most shapes and by how much."""

    setup: Setup
    shapes: int
    wins: Counter
    best: str | None
    speedups: list[Ratio]
    leanest: Counter
    not_ok: list[tuple[str, str, str, str | None]]  # runtime, shape, status, reason
    sentence: str = ""


def headlines(all_verdicts: list[Verdict]) -> list[Headline]:
    """Per setup: the runtime fastest (or tied) at most shapes, its speedup range, the leanest, failures."""
    by: dict[Setup, list[Verdict]] = {}
    for v in all_verdicts:
        by.setdefault(v.setup, []).append(v)
    out = []
    for setup, vs in by.items():
        wins = Counter(rt for v in vs for rt in v.fastest)
        lean = Counter(rt for v in vs for rt in v.leanest)
        best = max(wins, key=lambda rt: (wins[rt], -_order(rt))) if wins else None
        speedups = [v.entry(best).speedup for v in vs if best and v.entry(best) and v.entry(best).speedup]
        not_ok = [(e.runtime, v.shape.label, e.status, e.reason) for v in vs for e in v.not_ok]
        h = Headline(setup, len(vs), wins, best, speedups, lean, not_ok)
        h.sentence = headline_sentence(h)
        out.append(h)
    return out


def headline_sentence(h: Headline, names=None) -> str:
    """The setup in one sentence; `names` shortens runtime names (the page's grid uses ort-rust and the like)."""
    name = names or (lambda rt: rt)
    measured = h.shapes
    if h.best is None:
        reasons = {reason for _, _, _, reason in h.not_ok}
        text = f"no runtime measured any of {measured} shape(s)"
        if h.not_ok and len(reasons) == 1:
            statuses = {s for _, _, s, _ in h.not_ok}
            why = reasons.pop() or "no reason given"
            return _capital(f"every cell {'/'.join(sorted(statuses))}: {why}", names) + "."
    else:
        text = f"{name(h.best)} fastest or tied at {h.wins[h.best]} of {measured} shape(s)"
        if h.speedups:
            lo, hi = min(r.ratio for r in h.speedups), max(r.ratio for r in h.speedups)
            span = f"{fmt_ratio(lo)}×" if fmt_ratio(lo) == fmt_ratio(hi) else f"{fmt_ratio(lo)}–{fmt_ratio(hi)}×"
            text += f", {span} the speed of torch {BASELINE[1]}"
        others = [f"{name(rt)} {n}" for rt, n in h.wins.most_common() if rt != h.best]
        if others:
            text += f" (also fastest or tied: {', '.join(others)})"
    if h.leanest:
        rt, n = max(h.leanest.items(), key=lambda kv: (kv[1], -_order(kv[0])))
        text += f"; leanest {name(rt)} ({n} of {measured})"
    if h.not_ok:
        counts = Counter(s for _, _, s, _ in h.not_ok)
        text += "; " + ", ".join(f"{n} cell(s) {s}" for s, n in sorted(counts.items()))
    return _capital(text, names) + "."


def heatmap(all_verdicts: list[Verdict]) -> list[dict]:
    """Speedup over torch fp32 per (runtime, precision) × (model, shape), one grid per device/threads/machine.

    Each grid: {"title", "columns": [(setup label, shape label)], "rows": [(runtime, precision)],
    "cells": {(row, col): {"ratio","low","high","fastest","status","reason"}}}."""
    grids: dict[tuple, dict] = {}
    for v in all_verdicts:
        s = v.setup
        key = (s.device, s.threads, s.machine)
        g = grids.setdefault(key, {"title": f"{s.machine.label}, {s.device}, {s.threads} thread(s)",
                                   "columns": [], "rows": set(), "cells": {}})
        col = (f"{s.slug} ({s.source})", v.shape.label)
        if col not in g["columns"]:
            g["columns"].append(col)
        for e in v.entries:
            row = (e.runtime, s.precision)
            g["rows"].add(row)
            g["cells"][(row, col)] = {
                "ratio": e.speedup.ratio if e.speedup else None, "low": e.speedup.low if e.speedup else None,
                "high": e.speedup.high if e.speedup else None, "fastest": e.fastest, "status": e.status,
                "reason": e.reason, "median_ms": e.median_ms}
    out = []
    for g in grids.values():
        g["rows"] = sorted(g["rows"], key=lambda r: (precision_rank(r[1]), _order(r[0])))
        out.append(g)
    return out


def to_json(cells: list[dict]) -> dict:
    """Everything the verdict section says, as data (`embedperf report --format verdicts-json`)."""
    from embedperf.report import models

    vs = verdicts(cells)
    return {"rules": RULES, "tie_band": TIE_BAND, "memory_band": MEMORY_BAND,
            "headlines": [{"setup": h.setup.label, "model": h.setup.model, "precision": h.setup.precision,
                           "device": h.setup.device, "threads": h.setup.threads, "machine": h.setup.machine.label,
                           "best": h.best, "wins": dict(h.wins), "sentence": h.sentence} for h in headlines(vs)],
            "verdicts": [v.to_json() for v in vs],
            "models": models.to_json(cells)}
