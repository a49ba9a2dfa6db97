"""The models side by side: the plan's comparison table with measured figures, its expectations checked, its facts.

Figures come from the cells only: the fastest runtime's median (and items/s) at the plan's shapes, the
leanest runtime's peak RSS, the smallest artifact on disk, and the runtime fastest at most shapes (from
`report.verdicts`). Multimodal models get one row per tower, at the tower's fixed length.

Each expectation of the plan is *held*, *not held*, *inconclusive* (the 95% CI of the ratio straddles
the line) or *not checkable* (the cells it needs are missing, failed, or of different setups), with
the evidence. Cross-model ratios use `measure.stats.ratio_ci` on the two models' fastest cells, which
must share precision, device, threads and machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from embedperf.report.groups import Setup, Shape, by_setup, is_document, newest
from embedperf.report.verdicts import MEMORY_BAND, TIE_BAND, Ratio, Verdict, cell_ratio, headlines, verdicts
from embedperf.results.store import fork_series

GEMMA = "google/embeddinggemma-300m"
QWEN = "Qwen/Qwen3-Embedding-0.6B"
BGE = "BAAI/bge-m3"
CLIP = "openai/clip-vit-base-patch16"
SIGLIP = "google/siglip-base-patch16-224"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
PLAN_MODELS = (GEMMA, QWEN, BGE, SIGLIP, CLIP)  # the plan's five; MiniLM is the bundled sixth
LATENCY_SHAPE = (1, 128)  # the plan's latency column (towers: batch 1 at their own length)
BATCH_SHAPE = (32, 128)  # the plan's items/s column
ABOUT = 0.25  # "about 2×": the ratio's CI within [2/(1+ABOUT), 2·(1+ABOUT)]
SIMILAR = 0.25  # "similar in speed": the ratio's CI within [1/(1+SIMILAR), 1+SIMILAR]


@dataclass(frozen=True)
class PlanFact:
    """A fact the plan states that the model's own configuration contradicts (checked against the registry)."""

    model: str
    what: str
    plan: str | None  # what the plan says (None: another figure than the true one)
    actual: str

    def sentence(self) -> str:
        said = f"not {self.plan} as the plan says" if self.plan else "not the plan's figure"
        return f"{self.model.split('/')[-1]}: {self.what} {self.actual}; {said}."


def plan_facts() -> list[PlanFact]:
    """The plan's wrong facts, with the true values read from the model registry (so they cannot drift)."""
    from embedperf.models.registry import get_model

    gemma, qwen = get_model(GEMMA), get_model(QWEN)
    cuts = "/".join(str(d) for d in gemma.matryoshka)
    return [
        PlanFact(GEMMA, "output dimension", "256", f"{gemma.output_dim}, with Matryoshka cuts to {cuts}"),
        PlanFact(GEMMA, "context length", "8192 tokens", f"{gemma.max_length} tokens"),
        PlanFact(QWEN, "output dimension", None,
                 f"{qwen.output_dim}, with Matryoshka cuts down to {min(qwen.matryoshka)}" if qwen.matryoshka
                 else str(qwen.output_dim)),
    ]


def _registry_parameters(model: str, source: str) -> int | None:
    from embedperf.measure.flops import parameter_counts, tower_parameters
    from embedperf.models.registry import UnknownModel, get_model

    try:
        spec = get_model(model)
    except UnknownModel:
        return None
    if spec.multimodal:
        return sum(sum(tower_parameters(spec, source, m).values()) for m in spec.modalities)
    return sum(parameter_counts(spec, source).values())


@dataclass
class Pick:
    """One figure of the table: a value, the runtime and cell it came from."""

    value: float
    runtime: str
    shape: str
    doc: dict | None = None


@dataclass
class ModelRow:
    """One line of the model comparison table (a tower of a multimodal model is its own line)."""

    setup: Setup
    tower: str | None
    parameters: int | None
    output_dim: int | None
    latency: Pick | None = None  # fastest median ms at 1×128 (towers: batch 1)
    batch_items: Pick | None = None  # fastest items/s at 32×128 (towers: batch 32), else the largest batch
    corpus_items: Pick | None = None  # best items/s in the throughput scenario
    peak_rss: Pick | None = None  # leanest peak RSS at the latency shape
    disk_mb: float | None = None
    best: str | None = None  # fastest or tied at the most shapes
    best_wins: str | None = None

    @property
    def label(self) -> str:
        return self.setup.slug + (f" {self.tower} tower" if self.tower else "")


def _ok(doc: dict | None) -> bool:
    return bool(doc) and doc.get("status") == "ok" and bool(fork_series(doc)) and \
        (doc.get("summary") or {}).get("median_ms") is not None


def _find(shapes: dict[Shape, dict[str, dict]], modality: str, batch: int, seq: int | None,
          nearest: bool = False) -> tuple[Shape, dict] | None:
    """The shape at this batch and length; with `nearest`, else the length closest to it (log scale) at this batch
    (the comparison table then says which shape its figure is from)."""
    # the plan compares the models' dense embeddings: BGE-M3's other output modes are cells of their own
    candidates = [(shape, runtimes) for shape, runtimes in shapes.items()
                  if not shape.order and not shape.truncate_dim and shape.modality == modality
                  and shape.batch == batch and shape.outputs == "dense"]
    for shape, runtimes in candidates:
        if seq is None or shape.seq == seq:
            return shape, runtimes
    if nearest and candidates and seq:
        return min(candidates, key=lambda c: (abs(math.log(c[0].seq / seq)), -c[0].seq))
    return None


def _fastest(shapes, modality, batch, seq, nearest: bool = False) -> Pick | None:
    found = _find(shapes, modality, batch, seq, nearest)
    if not found:
        return None
    shape, runtimes = found
    ok = {rt: d for rt, d in runtimes.items() if _ok(d) and not rt.startswith("null")}
    if not ok:
        return None
    rt = min(ok, key=lambda r: ok[r]["summary"]["median_ms"])
    return Pick(ok[rt]["summary"]["median_ms"], rt, shape.label, ok[rt])


def _largest_batch(shapes, modality: str, seq: int | None) -> int | None:
    """The largest batch above 1 measured at this length (the stand-in when a run lacks batch 32)."""
    batches = [sh.batch for sh in shapes if sh.modality == modality and not sh.order and not sh.truncate_dim
               and sh.outputs == "dense" and sh.batch > 1 and (seq is None or sh.seq == seq)]
    return max(batches) if batches else None


def _items(pick: Pick | None) -> Pick | None:
    if pick is None or pick.doc is None:
        return None
    ips = pick.doc["summary"].get("items_per_s")
    return Pick(ips, pick.runtime, pick.shape, pick.doc) if ips is not None else None


def _leanest(shapes, modality, batch, seq, nearest: bool = False) -> Pick | None:
    found = _find(shapes, modality, batch, seq, nearest)
    if not found:
        return None
    shape, runtimes = found
    ok = {rt: d for rt, d in runtimes.items() if _ok(d) and not rt.startswith("null")
          and d["summary"].get("peak_rss_mb") is not None}
    if not ok:
        return None
    rt = min(ok, key=lambda r: ok[r]["summary"]["peak_rss_mb"])
    return Pick(ok[rt]["summary"]["peak_rss_mb"], rt, shape.label, ok[rt])


def _tower_seq(setup: Setup, modality: str, shapes) -> int | None:
    """The one length a tower runs at (from its cells)."""
    seqs = {sh.seq for sh in shapes if sh.modality == modality and not sh.order}
    return seqs.pop() if len(seqs) == 1 else None


def model_rows(cells: list[dict], all_verdicts: list[Verdict] | None = None) -> list[ModelRow]:
    """The comparison table's rows: per model setup (latency scenario), the plan's figures."""
    docs, _ = newest([c for c in cells if is_document(c)])
    groups = by_setup(docs)
    all_verdicts = verdicts(cells) if all_verdicts is None else all_verdicts
    heads = {h.setup: h for h in headlines(all_verdicts)}
    rows = []
    for setup, shapes in groups.items():
        if setup.scenario != "latency":
            continue
        some = next(iter(next(iter(shapes.values())).values()))
        multimodal = any(sh.tower for sh in shapes)
        corpus = next((sh2 for s2, sh2 in groups.items() if s2.scenario == "throughput" and s2.model == setup.model
                       and s2.source == setup.source and s2.bench == setup.bench), {})
        corpus_pick = None
        for shape, runtimes in corpus.items():
            for rt, d in runtimes.items():
                ips = (d.get("summary") or {}).get("items_per_s")
                if _ok(d) and ips is not None and not rt.startswith("null") and \
                        (corpus_pick is None or ips > corpus_pick.value):
                    corpus_pick = Pick(ips, rt, shape.label, d)
        params = (some.get("model") or {}).get("parameters") or _registry_parameters(setup.model, setup.source)
        dim = (some.get("model") or {}).get("output_dim")
        head = heads.get(setup)
        towers = [m for m in ("text", "image") if any(sh.modality == m for sh in shapes)] if multimodal else [None]
        for tower in towers:
            modality = tower or "text"
            seq = _tower_seq(setup, modality, shapes) if tower else LATENCY_SHAPE[1]
            row = ModelRow(setup, tower, params, dim)
            row.latency = _fastest(shapes, modality, LATENCY_SHAPE[0], seq, nearest=True)
            at = seq if tower else BATCH_SHAPE[1]
            row.batch_items = _items(_fastest(shapes, modality, BATCH_SHAPE[0], at))
            if row.batch_items is None and _largest_batch(shapes, modality, at):
                row.batch_items = _items(_fastest(shapes, modality, _largest_batch(shapes, modality, at), at))
            if row.batch_items is None and _largest_batch(shapes, modality, None):
                row.batch_items = _items(_fastest(shapes, modality, _largest_batch(shapes, modality, None), at,
                                                  nearest=True))
            row.corpus_items = None if tower else corpus_pick
            row.peak_rss = _leanest(shapes, modality, LATENCY_SHAPE[0], seq, nearest=True)
            sizes = [(d.get("model") or {}).get("size_on_disk_bytes") for sh, rts in shapes.items()
                     if sh.modality == modality for d in rts.values()]
            sizes = [s for s in sizes if s]
            row.disk_mb = min(sizes) / 2**20 if sizes else None
            if head and head.best:
                row.best, row.best_wins = head.best, f"{head.wins[head.best]} of {head.shapes}"
            if any((row.latency, row.batch_items, row.corpus_items, row.peak_rss)):
                rows.append(row)  # a setup whose cells all failed or were skipped is in the verdicts, not here
    return rows


# -- the plan's expectations ------------------------------------------------------------------

@dataclass
class Check:
    """One expectation of the plan, judged from the cells."""

    claim: str
    status: str  # held | not held | inconclusive | not checkable | mixed
    rule: str
    evidence: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"claim": self.claim, "status": self.status, "rule": self.rule, "evidence": self.evidence}


def _combine(statuses: list[str], every: bool = False) -> str:
    """One status from several comparisons: all held, all not held, else mixed or inconclusive.

    every: the claim is about every model ("the fastest of the five"): one comparison that fails makes it not
    held, and one that could not be made keeps it from being held."""
    judged = [s for s in statuses if s != "not checkable"]
    if not judged:
        return "not checkable"
    if every and "not held" in judged:
        return "not held"
    if all(s == "held" for s in judged):
        return "not checkable" if every and len(judged) < len(statuses) else "held"
    if all(s == "not held" for s in judged):
        return "not held"
    if "held" in judged and "not held" in judged:
        return "mixed"
    return "not held" if "not held" in judged and "held" not in judged else "inconclusive"


class _Bench:
    """The fastest cell of each model at a comparable call, within one bench (precision, device, threads, machine)."""

    def __init__(self, groups: dict[Setup, dict[Shape, dict[str, dict]]], bench: tuple):
        self.groups = {s: sh for s, sh in groups.items() if s.bench == bench and s.scenario == "latency"}

    def shapes(self, model: str):
        for setup, shapes in self.groups.items():
            if setup.model == model:
                return setup, shapes
        return None, {}

    def call(self, model: str, batch: int, modality: str = "text") -> Pick | None:
        """The fastest cell at batch × 128 (text models) or at batch on the tower's own length."""
        setup, shapes = self.shapes(model)
        if setup is None:
            return None
        tower = any(sh.tower for sh in shapes)
        seq = _tower_seq(setup, modality, shapes) if tower else LATENCY_SHAPE[1]
        return _fastest(shapes, modality, batch, seq)

    def common_batch(self, a: str, b: str, modality: str = "text") -> int | None:
        """The largest batch above 1 both models have at the compared length (32 in the plan's suites)."""
        found = []
        for model in (a, b):
            setup, shapes = self.shapes(model)
            if setup is None:
                return None
            tower = any(sh.tower for sh in shapes)
            seq = _tower_seq(setup, modality, shapes) if tower else LATENCY_SHAPE[1]
            found.append({sh.batch for sh in shapes if sh.modality == modality and not sh.order and sh.batch > 1
                          and sh.seq == seq and not sh.truncate_dim and sh.outputs == "dense"})
        common = found[0] & found[1]
        return max(common) if common else None

    def memory(self, model: str, modality: str = "text") -> Pick | None:
        setup, shapes = self.shapes(model)
        if setup is None:
            return None
        tower = any(sh.tower for sh in shapes)
        seq = _tower_seq(setup, modality, shapes) if tower else LATENCY_SHAPE[1]
        return _leanest(shapes, modality, LATENCY_SHAPE[0], seq)


def _name(model: str, pick: Pick) -> str:
    return f"{model.split('/')[-1]} {pick.shape} ({pick.runtime}, {pick.value:.3g} ms)"


def _slower_by(a: Pick, b: Pick) -> Ratio:
    """time(b) / time(a) with its CI: above 1 means a is faster."""
    return cell_ratio(b.doc, a.doc)


def _faster(a_model: str, a: Pick | None, b_model: str, b: Pick | None, where: str) -> tuple[str, str]:
    """Is a faster than b? status and one line of evidence."""
    if a is None or b is None:
        missing = a_model if a is None else b_model
        return "not checkable", f"no ok cell of {missing.split('/')[-1]} at {where}"
    r = _slower_by(a, b)
    if r.low > 1 + TIE_BAND:
        status = "held"
    elif r.high < 1 - TIE_BAND:
        status = "not held"
    else:
        status = "inconclusive"
    return status, f"{_name(b_model, b)} takes {r.text()} the time of {_name(a_model, a)}"


def _band(num_model: str, num: Pick | None, den_model: str, den: Pick | None, low: float, high: float,
          what: str, where: str) -> tuple[str, str]:
    """Is time(num) / time(den) within [low, high]? (held: the whole CI inside; not held: wholly outside)."""
    if num is None or den is None:
        missing = num_model if num is None else den_model
        return "not checkable", f"no ok cell of {missing.split('/')[-1]} at {where}"
    r = cell_ratio(num.doc, den.doc)
    if low <= r.low and r.high <= high:
        status = "held"
    elif r.high < low or r.low > high:
        status = "not held"
    else:
        status = "inconclusive"
    return status, (f"{_name(num_model, num)} takes {r.text()} the time of {_name(den_model, den)} "
                    f"({what}: [{low:.2f}, {high:.2f}])")


def expectations(cells: list[dict]) -> list[tuple[str, list[Check]]]:
    """Each expectation of the plan, per bench (precision, device, threads, machine) that holds its models."""
    docs, _ = newest([c for c in cells if is_document(c)])
    groups = by_setup(docs)
    benches = sorted({s.bench for s in groups if s.model in PLAN_MODELS and s.scenario == "latency"},
                     key=lambda b: (b[3], b[1], b[2], b[0]))
    out = []
    for bench in benches:
        b = _Bench(groups, bench)
        precision, device, threads, machine = bench
        out.append((f"{machine.label}, {device}, {threads} thread(s), {precision}", _checks(b)))
    return out


def _short(model: str) -> str:
    return model.split("/")[-1]


def _pairs(b: _Bench, compare, a_model: str, b_model: str, modalities=("text",)) -> tuple[list[str], list[str]]:
    """Statuses and evidence of compare(pick_a, pick_b, where) at batch 1 (required) and 32 (where both have it)."""
    absent = [_short(m) for m in (a_model, b_model) if b.shapes(m)[0] is None]
    if absent:
        return ["not checkable"], [f"not run here: {', '.join(absent)}"]
    statuses, evidence = [], []
    for modality in modalities:
        for batch in (LATENCY_SHAPE[0], b.common_batch(a_model, b_model, modality)):
            if batch is None:
                continue
            pa, pb = b.call(a_model, batch, modality), b.call(b_model, batch, modality)
            where = f"batch {batch}" + (f", {modality} tower" if len(modalities) > 1 else "")
            status, line = compare(pa, pb, where)
            statuses.append(status)
            evidence.append(line)
    return statuses, evidence


def _checks(b: _Bench) -> list[Check]:
    checks = []
    # 1. EmbeddingGemma is the fastest of the five: faster than each of the other four
    statuses, evidence = [], []
    for other in (QWEN, BGE, CLIP, SIGLIP):
        s, e = _pairs(b, lambda pa, pb, where: _faster(GEMMA, pa, other, pb, where), GEMMA, other)
        statuses += s
        evidence += [x for x in e if x not in evidence]
    checks.append(Check("EmbeddingGemma is the fastest of the five", _combine(statuses, every=True),
                        f"EmbeddingGemma's fastest runtime at 1×128 and the largest common batch (32×128 in "
                        f"full.yaml) against each other model's fastest; "
                        f"CLIP/SigLIP by their text towers at their fixed 77/64 tokens (shorter than 128: this "
                        f"favours them); held when every ratio's 95% CI lies above {1 + TIE_BAND:.2f}", evidence))
    # 2. Qwen3-Embedding is about 2x slower than EmbeddingGemma
    low, high = 2 / (1 + ABOUT), 2 * (1 + ABOUT)
    statuses, evidence = _pairs(b, lambda pq, pg, where: _band(QWEN, pq, GEMMA, pg, low, high, "about 2×", where),
                                QWEN, GEMMA)
    checks.append(Check("Qwen3-Embedding is about 2× slower than EmbeddingGemma", _combine(statuses),
                        f"time(Qwen3) / time(EmbeddingGemma), fastest runtimes, at 1×128 and the largest common "
                        f"batch; held when the 95% CI lies within [{low:.2f}, {high:.2f}], not held when wholly "
                        f"outside", evidence))
    # 3. BGE-M3 is similar in speed to Qwen3-Embedding
    low, high = 1 / (1 + SIMILAR), 1 + SIMILAR
    statuses, evidence = _pairs(b, lambda pb_, pq, where: _band(BGE, pb_, QWEN, pq, low, high, "similar", where),
                                BGE, QWEN)
    checks.append(Check("BGE-M3 is similar in speed to Qwen3-Embedding", _combine(statuses),
                        f"time(BGE-M3) / time(Qwen3), fastest runtimes, at 1×128 and the largest common batch; "
                        f"held when the 95% CI lies within [{low:.2f}, {high:.2f}], not held when wholly outside",
                        evidence))
    # 4. CLIP is faster than SigLIP
    statuses, evidence = _pairs(b, lambda pc, ps, where: _faster(CLIP, pc, SIGLIP, ps, where), CLIP, SIGLIP,
                                ("text", "image"))
    checks.append(Check("CLIP is faster than SigLIP", _combine(statuses),
                        "each tower at batch 1 and the largest common batch, fastest runtimes (CLIP text 77 tokens "
                        f"vs SigLIP 64; images 224px: 197 vs 196 positions); held when every ratio's CI lies above "
                        f"{1 + TIE_BAND:.2f}",
                        evidence))
    # 5. EmbeddingGemma uses the least memory
    checks.append(_least_memory(b))
    return checks


def _least_memory(b: _Bench) -> Check:
    rule = (f"the leanest runtime's peak RSS at 1×128 (towers: batch 1, each tower its own process) against each "
            f"other model's; held when every other is more than {MEMORY_BAND:.0%} above")
    claim = "EmbeddingGemma uses the least memory"
    gemma = b.memory(GEMMA)
    if gemma is None:
        return Check(claim, "not checkable", rule, [f"no peak RSS of {_short(GEMMA)} at 1×128"])
    statuses, evidence = [], []
    for other, modality in ((QWEN, "text"), (BGE, "text"), (CLIP, "text"), (CLIP, "image"), (SIGLIP, "text"),
                            (SIGLIP, "image")):
        if b.shapes(other)[0] is None:
            line = f"not run here: {_short(other)}"
            if line not in evidence:
                statuses.append("not checkable")
                evidence.append(line)
            continue
        them = b.memory(other, modality)
        if them is None:
            statuses.append("not checkable")
            evidence.append(f"no peak RSS of {_short(other)} {modality} at batch 1")
            continue
        ratio = them.value / gemma.value
        statuses.append("held" if ratio > 1 + MEMORY_BAND else "not held" if ratio < 1 - MEMORY_BAND
                        else "inconclusive")
        evidence.append(f"{_short(other)} {them.shape} ({them.runtime}) {them.value:.0f} MB = {ratio:.2f}× "
                        f"{_short(GEMMA)} {gemma.shape} ({gemma.runtime}) {gemma.value:.0f} MB")
    return Check(claim, _combine(statuses, every=True), rule, evidence)


def to_json(cells: list[dict]) -> dict:
    rows = model_rows(cells)
    return {
        "table": [{"model": r.setup.model, "tower": r.tower, "setup": r.setup.label, "parameters": r.parameters,
                   "output_dim": r.output_dim,
                   "latency_ms": _pick_json(r.latency), "items_per_s": _pick_json(r.batch_items),
                   "throughput_items_per_s": _pick_json(r.corpus_items), "peak_rss_mb": _pick_json(r.peak_rss),
                   "disk_mb": r.disk_mb, "best_runtime": r.best, "best_wins": r.best_wins} for r in rows],
        "expectations": [{"bench": bench, "checks": [c.to_json() for c in checks]}
                         for bench, checks in expectations(cells)],
        "plan_facts": [f.sentence() for f in plan_facts()],
    }


def _pick_json(p: Pick | None) -> dict | None:
    return None if p is None else {"value": p.value, "runtime": p.runtime, "shape": p.shape}
