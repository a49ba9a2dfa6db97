"""Analysis: one cell document from its forks — statistics across forks, work, warnings, parity, zero-shot.

Nothing here launches anything; it reads what the forks left on disk and writes the cell's figures.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

import embedperf
from embedperf.measure import activity, calibrate, parity
from embedperf.measure.accuracy import corpus_accuracy
from embedperf.measure import warnings as cell_warnings
from embedperf.measure.flops import cell_work, corpus_work
from embedperf.measure.stats import ForkStats
from embedperf.models.registry import MODE_OUTPUTS
from embedperf.orchestrator.execute import ForkRecord
from embedperf.orchestrator.plan import Load, ModelPlan, Shape
from embedperf.protocol import write_json_atomic
from embedperf.results.store import CELL_SCHEMA
from embedperf.runners import outputs as extra
from embedperf.runners.harness import truncate_and_normalize
from embedperf.runners.registry import RUNTIMES, Runtime
from embedperf.spec import RunSpec
from embedperf.workload import text as workload


@dataclass
class RunFacts:
    """What every cell of a run shares: the spec, the machine and its ceilings, versions, overhead."""

    spec: RunSpec
    run_id: str
    threads: int
    machine: dict
    commit: dict
    profile: dict | None
    overhead: dict
    forks: int
    schedule_seed: int


def describe_workload(facts: RunFacts, plan: ModelPlan, x: Shape, load: Load | None) -> dict:
    """How a cell's inputs were made, in words and parameters."""
    spec, c = plan.spec, facts.spec.corpus
    found = load.facts if load else {}
    if x.order:
        return {"kind": "corpus", "order": x.order, "seed": c.seed,
                "lengths": f"log-normal, median {c.median}, sigma {c.sigma}, clipped to [{c.low}, {x.seq}]",
                "padding": "right, to each batch's longest", **{k: v for k, v in found.items() if k != "batch_shapes"}}
    if x.texts:
        return {k: v for k, v in found.items() if k != "tokenize_ms"}  # the samples go beside the summary
    if x.modality == "image":
        return {"kind": "images", "recipe": spec.image_preprocess, "size": x.seq, "images": found.get("images"),
                "folder": facts.spec.images}
    if found.get("captions"):
        return {"kind": "captions", "captions": found["captions"], "padding": f"right, to {x.seq}"}
    return {"kind": "tokens", "seed": workload.DEFAULT_SEED, "padding": "right",
            "lengths": "row 0 = seq, others seeded in [seq/2, seq]"}


def _fork_entry(rec: ForkRecord, scenario_throughput: bool) -> dict:
    """A fork as the cell document keeps it: its own figures, raw samples, machine activity."""
    shape = rec.shape or {}
    entry = {"fork": rec.fork, "position": rec.position, "status": rec.status, "reason": rec.reason,
             "load_s": rec.runner.get("load_s"), "log": rec.log, "activity": rec.activity}
    for key in ("first_call_s", "stop_rule", "target_ci", "ci_checks", "loop_s", "peak_rss_mb", "loop_peak_rss_mb",
                "embeddings", "samples_ns", "warmup_ns", "passes_ns"):
        if key in shape:
            entry[key] = shape[key]
    series = shape.get("passes_ns") if scenario_throughput else shape.get("samples_ns")
    if series:
        one = ForkStats.of([series])
        low, high = one.ci_ms
        entry.update(n=len(series), median_ms=one.median_ms, ci_low_ms=low, ci_high_ms=high)
    return entry


def _rules(values: list[str | None]) -> str | None:
    """The stop rule of a cell's forks: `ci_reached` when all agree, else each rule with its count."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    counts = {v: present.count(v) for v in dict.fromkeys(present)}
    return present[0] if len(counts) == 1 else " + ".join(f"{n}× {v}" for v, n in counts.items())


def _median(values: list[float | None]) -> float | None:
    present = sorted(v for v in values if v is not None)
    if not present:
        return None
    half = len(present) // 2
    return present[half] if len(present) % 2 else (present[half - 1] + present[half]) / 2


def _max(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def cell_document(facts: RunFacts, plan: ModelPlan, runtime: Runtime, precision: str, x: Shape, cell_id: str,
                  status: str, reason: str | None, forks: list[ForkRecord], load: Load | None = None,
                  reference: Path | None = None, accuracy: dict | None = None) -> dict:
    """The self-describing document of one cell, from its fork records (none for a cell that never ran)."""
    spec, choice, run = plan.spec, plan.choice, facts.spec
    manifest = plan.prepared.manifest if plan.prepared else {}
    # an output mode's graph is fp32 only: its cells at another precision are skipped and read nothing
    reads_artifact = bool(plan.prepared) and runtime.artifact != "none" \
        and (x.outputs == "dense" or precision == "fp32")
    size = plan.prepared.size_bytes(runtime.artifact, x.modality if spec.multimodal else None, precision,
                                    x.outputs) if reads_artifact else None
    first = next((f.runner for f in forks if f.runner.get("framework")), {}) if forks else {}
    throughput = bool(x.order)
    doc: dict = {
        "schema": CELL_SCHEMA,
        "run_id": facts.run_id,
        "cell_id": cell_id,
        "status": status,
        "reason": reason,
        "spec": {
            "model": spec.name, "family": spec.family, "source": choice.source, "revision": choice.revision,
            "runtime": runtime.name, "language": runtime.language, "precision": precision,
            "device": run.device, "scenario": run.scenario, "modality": x.modality, "order": x.order,
            "batch": x.batch, "seq": x.seq, "truncate_dim": choice.truncate_dim, "texts": x.texts,
            "outputs": x.outputs,
            "threads": {"intra_op": facts.threads, "inter_op": 1},
            "timing": run.timing.__dict__, "memory_limit_mb": run.memory_limit_mb,
            "forks": facts.forks, "schedule": {"order": "rounds of a seeded shuffle of the model's runner groups",
                                               "seed": facts.schedule_seed},
            "workload": describe_workload(facts, plan, x, load),
        },
        "model": {
            "weights": (plan.located.weights if plan.located else
                        ("random" if choice.source in ("twin", "tiny") else "real")),
            "weights_sha256": manifest.get("weights_sha256"), "heads_sha256": manifest.get("heads_sha256"),
            "parameters": manifest.get("parameters"), "prepare_key": manifest.get("key"),
            "artifact": runtime.artifact, "pooling": spec.pooling,
            "output_dim": spec.embedding_dim(choice.source),
            # what was read of the model and where from (the registry, or the snapshot's own files)
            "spec": spec.describe(),
            # what this runtime loads from disk (one tower's graph for a multimodal model; the reference
            # folder, both towers, for torch and candle)
            "size_on_disk_bytes": size,
            # how a quantized artifact was made (tool, scheme, calibration, versions); None for an fp32 file
            "quantization": plan.prepared.recipe(runtime.artifact, precision, x.outputs) if reads_artifact else None,
        },
        "machine": facts.machine,
        "versions": {
            "embedperf": embedperf.__version__, "python": sys.version.split()[0],
            "exporters": manifest.get("versions"),
            "runner": first.get("runner"), "framework": first.get("framework"),
        },
        "project": facts.commit,
        "harness_overhead_ns": facts.overhead or None,
        "runner": {k: first.get(k) for k in ("device", "threads", "settings", "load_s")},
        "forks": [_fork_entry(f, throughput) for f in sorted(forks, key=lambda f: f.fork)],
        "summary": None, "parity": None, "warnings": [],
        "created": dt.datetime.now(dt.timezone.utc).isoformat(),
    }
    measured = [f for f in forks if f.status == "ok" and (f.shape or {}).get("samples_ns")]
    if measured:
        summarise(doc, facts, plan, runtime, precision, x, measured, load.facts if load else {})
    if not x.order and x.modality == "text" and not spec.multimodal and x.seq > spec.st_max_seq_length \
            and choice.source != "tiny":
        doc["warnings"].append(f"seq {x.seq} is above max_seq_length {spec.st_max_seq_length}")
    if measured and not runtime.is_null and not x.order:
        doc["outputs"] = output_sizes(measured[0].shape.get("embeddings"), x.outputs, load)
    if doc["status"] == "ok" and not runtime.is_null:
        doc["parity"] = check_parity(measured, reference, choice.truncate_dim, x.outputs, load)
        spread = doc["parity"].get("reference_spread")
        if spread is not None and spread >= parity.SPREAD_LIMIT:
            doc["warnings"].append(f"reference rows are alike (mean cosine {spread:.4f} between rows): "
                                   "parity proves less here")
        failed = parity_failure(doc["parity"], precision)
        if failed:
            doc["status"], doc["reason"] = "failed", failed
    if accuracy is not None and not runtime.is_null:
        # the cost of this precision on a corpus of real sentences (cosine only for twins): one pass per
        # (runtime, precision), shared by its cells
        doc["accuracy"] = accuracy
        if accuracy.get("error"):
            doc["warnings"].append(f"accuracy: {accuracy['error']}")
        elif accuracy.get("below_floor") and doc["status"] == "ok":
            doc["status"], doc["reason"] = "failed", f"accuracy: {accuracy['below_floor']}"
    return doc


def summarise(doc: dict, facts: RunFacts, plan: ModelPlan, runtime: Runtime, precision: str, x: Shape,
              forks: list[ForkRecord], found: dict) -> None:
    """Statistics across forks, throughput figures, work and warnings of a cell that has samples."""
    shapes = [f.shape for f in forks]
    key = "passes_ns" if x.order else "samples_ns"
    cell = ForkStats.of([s[key] for s in shapes])
    summary = {
        **cell.summary(x.batch),
        "load_s": _median([f.runner.get("load_s") for f in forks]),
        "first_call_s": _median([s.get("first_call_s") for s in shapes]),
        "peak_rss_mb": _max([s.get("peak_rss_mb") for s in shapes]),
        "loop_peak_rss_mb": _max([s.get("loop_peak_rss_mb") for s in shapes]),
        # how the loop peak was read, and why it does not depend on the other shapes of the run
        "memory_method": (shapes[0].get("memory_method") or "VmHWM after a clear_refs reset before the loop")
        + "; shapes run smallest first in each runner process, the largest over the cell's forks",
        "gpu_peak_mb": _max([f.runner.get("gpu_peak_mb") for f in forks]),
        "stop_rule": _rules([s.get("stop_rule") for s in shapes]),
        "target_ci": shapes[0].get("target_ci"),
        "ci_checks": sum(s.get("ci_checks") or 0 for s in shapes) if any(s.get("ci_checks") is not None
                                                                          for s in shapes) else None,
        "loop_s": sum(s.get("loop_s") or 0.0 for s in shapes),
    }
    if x.order:
        # throughput: the cell's figure is the time of one whole pass over the corpus; per-call times
        # mix batch shapes by design and say nothing alone
        pass_s = cell.median_ms / 1e3
        items, real, padded = found.get("items"), found.get("real_tokens"), found.get("padded_tokens")
        summary.update({
            "median_of": "whole passes over the corpus", "passes": cell.pooled.n, "pass_median_s": pass_s,
            "items_per_s": items / pass_s if items and pass_s else None,
            "tokens_per_s": real / pass_s if real and pass_s else None,
            "padded_tokens_per_s": padded / pass_s if padded and pass_s else None,
            "padding_waste": found.get("padding_waste"),
        })
    else:
        summary["median_of"] = "calls"
    if x.texts and found.get("tokenize_ms"):
        # what a user of `encode` pays beside the model: tokenizing the batch, timed apart in this process
        doc["tokenize_ms"] = found["tokenize_ms"]
        summary["tokenize_ms_batch"] = found["tokenize_ms_batch"]
        summary["tokenize_ms_per_text"] = found["tokenize_ms_per_text"]
        summary["encode_ms_batch"] = summary["median_ms"] + found["tokenize_ms_batch"]
    if x.modality == "image" and found.get("preprocess_ms"):
        prep = sorted(found["preprocess_ms"])
        summary["preprocess_ms_per_image"] = prep[len(prep) // 2]
        summary["preprocess_ms_batch"] = sum(prep)
    doc["summary"] = summary
    if not runtime.is_null:
        doc["work"] = work_of(facts, plan, precision, x, summary, found)
        share = doc["work"].get("share_of_peak")
        if share is not None and share > 1.0:
            doc["warnings"].append(
                f"share of peak {share:.0%}: this cell ran faster than the calibrated peak "
                f"({doc['work']['machine_profile']['peak_gflops']:.1f} GFLOP/s), so that profile understates the "
                "machine (measured under load?): run `embedperf calibrate --force` on a quiet machine")
    doc["warnings"] += fork_warnings(facts, runtime, x, forks, cell)
    doc["outliers"] = {"method": "modified Z-score (Iglewicz-Hoaglin), |M| > 3.5, within each fork",
                       "count": sum(len(cell_warnings.outliers(s[key])) for s in shapes
                                    if len(s[key]) >= cell_warnings.OUTLIER_MIN_SAMPLES),
                       "n": cell.pooled.n}


def work_of(facts: RunFacts, plan: ModelPlan, precision: str, x: Shape, summary: dict, found: dict) -> dict:
    """FLOPs per call (or pass), achieved GFLOP/s and the share of this machine's measured peak."""
    run = facts.spec
    # the ceiling of this cell's own precision and device (None where none was measured: no share)
    peak = calibrate.peak_for(facts.profile, precision, run.device)
    if x.order:
        work = corpus_work(plan.spec, plan.choice.source, found.get("batch_shapes") or [], summary["pass_median_s"],
                           peak)
    else:
        work = cell_work(plan.spec, plan.choice.source, x.batch, x.seq, summary["median_ms"], peak, x.modality)
    if facts.profile:
        work["machine_profile"] = {"peak_gflops": peak, "precision": precision,
                                   "bandwidth_gbs": facts.profile.get("bandwidth_gbs"),
                                   "id": facts.profile["fingerprint"]["id"]}
    return work


def _ms(value: float) -> str:
    """A duration in ms with three or four significant digits, never in exponent form."""
    return f"{value:.{0 if value >= 1000 else 1 if value >= 10 else 2 if value >= 1 else 4}f}"


def fork_warnings(facts: RunFacts, runtime: Runtime, x: Shape, forks: list[ForkRecord], cell: ForkStats) -> list[str]:
    """What to distrust in a cell, per fork and across its forks."""
    out: list[str] = []
    k = len(forks)
    if k > 1 and cell.disagreeing():
        medians = " / ".join(_ms(m) for m in cell.fork_medians_ms)
        out.append(f"process modes: fork medians {medians} ms differ beyond their own CIs: the runtime (or the "
                   "host) has process-level modes; the cell's CI spans them")
    by_kind: dict[str, list[tuple[int, str]]] = {}
    overhead = None if runtime.is_null else facts.overhead.get(runtime.language)
    for rec in forks:
        shape = rec.shape
        series = shape["passes_ns"] if x.order else shape["samples_ns"]
        checked = cell_warnings.check_samples(series, None if x.order else shape.get("first_call_s"), None,
                                              facts.machine.get("cpus_available"), overhead)
        for w in checked["warnings"]:
            if w["kind"] == "outliers":
                continue  # counted once for the cell in doc["outliers"]
            by_kind.setdefault(w["kind"], []).append((rec.fork, w["message"].split(": ", 1)[-1]))
        stop = shape.get("stop_rule")
        if stop == "time_cap":
            n, min_calls, target = len(shape["samples_ns"]), facts.spec.timing.min_calls, shape.get("target_ci")
            if not x.order and n < min_calls:
                detail = f"after {n} calls, before min_calls ({min_calls}) were met: the time cap wins"
            elif target:
                detail = f"the 95% CI of the median never came within ±{target:.0%}"
            else:
                detail = "before min_calls/min_seconds were met"
            by_kind.setdefault("stopped at the time cap", []).append((rec.fork, detail))
        for line in activity.warnings_of(rec.activity or {}):
            kind, _, detail = line.partition(": ")
            by_kind.setdefault(kind, []).append((rec.fork, detail))
    for kind, hits in by_kind.items():
        where = "" if k == 1 else (" (every fork)" if len(hits) == k else
                                   f" (fork {', '.join(str(f + 1) for f, _ in hits)} of {k})")
        out.append(f"{kind}{where}: {hits[0][1]}")
    return out


def check_parity(forks: list[ForkRecord], reference: Path | None, truncate_dim: int | None = None,
                 outputs: str = "dense", load: Load | None = None) -> dict:
    """Every fork's output against the reference; the cell keeps the worst fork's figures and each fork's cosine.

    The reference pass embeds at full width once per workload; a Matryoshka cell is compared with the
    reference truncated and re-normalised exactly as the runners do it. An output mode beyond dense is also
    judged on its sparse and/or multi-vector outputs (`sparse`, `colbert`: the worst fork's, first calls included).
    """
    if reference is None:
        return {"error": "no reference embeddings (the reference pass failed)"}
    try:
        ref_all = load_file(str(reference))
        ref = ref_all[extra.DENSE]
    except (OSError, KeyError) as e:
        return {"error": f"could not read the reference embeddings: {e}"}
    if truncate_dim:
        ref = truncate_and_normalize(ref, truncate_dim)
    tokens = TokenParity(ref_all, outputs, load) if outputs != "dense" else None
    results, first = [], []
    for rec in forks:
        shape = rec.shape or {}
        result = compare_output(shape.get("embeddings"), ref)
        if result.get("error"):
            return {**result, "error": f"fork {rec.fork + 1}: {result['error']}"}
        results.append(result)
        if tokens:
            tokens.add(shape.get("embeddings"), f"fork {rec.fork + 1}")
        if shape.get("first_embeddings"):
            # the shape's first call (a corpus' first batch: the reference's first rows): a runtime whose
            # answers change after warm-up fails here, not only in its last call
            early = compare_output(shape["first_embeddings"], ref, leading_rows=True)
            if early.get("error"):
                return {**early, "error": f"fork {rec.fork + 1}, first call: {early['error']}"}
            first.append(early)
            if tokens:
                tokens.add(shape["first_embeddings"], f"fork {rec.fork + 1}, first call")
    worst = min(results + first, key=lambda r: r["min_cosine"])
    out = {**worst, "forks_min_cosine": [r["min_cosine"] for r in results],
           "first_call_min_cosine": min((r["min_cosine"] for r in first), default=None),
           "reference_spread": parity.spread(ref), "reference": "torch fp32 eager"}
    if tokens:
        out.update(tokens.worst())
    return out


def compare_output(path: str | None, ref, leading_rows: bool = False) -> dict:
    """One embeddings file against the reference array (`leading_rows`: against its first rows only)."""
    if not path:
        return {"error": "the runner wrote no embeddings"}
    try:
        out = load_file(path)["sentence_embedding"]
    except (OSError, KeyError) as e:
        return {"error": f"could not read embeddings: {e}"}
    return parity.compare(out, ref[:len(out)] if leading_rows else ref)


class TokenParity:
    """The sparse and multi-vector outputs of a cell's forks against the reference's (measure/parity.py): each
    output file is compared as it comes, the worst result of each output kept."""

    def __init__(self, ref: dict, mode: str, load: Load | None):
        self.ref, self.asked = ref, MODE_OUTPUTS[mode]
        self.mask = load_file(str(load.path))["attention_mask"] if load is not None else None
        self.ref_lexical = (extra.rows_of_lexical(ref[extra.LEXICAL_IDS], ref[extra.LEXICAL_WEIGHTS],
                                                  ref[extra.LEXICAL_OFFSETS]) if extra.LEXICAL_IDS in ref else None)
        self.sparse: list[dict] = []
        self.colbert: list[dict] = []

    def add(self, path: str | None, where: str) -> None:
        try:
            out = load_file(path) if path else {}
            if self.mask is None:
                raise KeyError("the workload's attention_mask")
            if "sparse" in self.asked:
                lexical = extra.rows_of_lexical(out[extra.LEXICAL_IDS], out[extra.LEXICAL_WEIGHTS],
                                                out[extra.LEXICAL_OFFSETS])
                result = parity.compare_sparse(out[extra.TOKEN_WEIGHTS], self.ref[extra.TOKEN_WEIGHTS], self.mask,
                                               lexical, self.ref_lexical)
                self.sparse.append({**result, "where": where})
            if "colbert" in self.asked:
                result = parity.compare_colbert(out[extra.COLBERT], self.ref[extra.COLBERT], self.mask)
                self.colbert.append({**result, "where": where})
        except (OSError, KeyError, TypeError) as e:
            missing = {"error": f"{where}: could not read the token outputs or their reference: {e}"}
            (self.sparse if "sparse" in self.asked else self.colbert).append(missing)

    def worst(self) -> dict:
        out = {}
        if self.sparse:
            out["sparse"] = next((r for r in self.sparse if r.get("error")), None) or max(
                self.sparse, key=lambda r: (max(r["token_weights_max_abs_diff"], r["lexical_max_abs_diff"]),
                                            -r["top_k_agreement"]))
        if self.colbert:
            out["colbert"] = next((r for r in self.colbert if r.get("error")), None) or min(
                self.colbert, key=lambda r: r["min_cosine"] if r["min_cosine"] is not None else 2.0)
        return out


def output_sizes(path: str | None, mode: str, load: Load | None) -> dict:
    """What a call of this output mode hands its user, per item (row): bytes of each output as returned, the
    lexical entries kept, and the multi-vectors of real tokens (a user keeps those and drops the padding)."""
    from safetensors import safe_open

    out: dict = {"mode": mode, "returned": list(MODE_OUTPUTS[mode])}
    if not path:
        return out
    try:
        with safe_open(path, framework="numpy") as f:
            shapes = {name: f.get_slice(name).get_shape() for name in f.keys()}
        rows = shapes[extra.DENSE][0]
    except Exception as e:  # a missing or broken file is a fact of the cell, not a reason to stop the run
        return {**out, "error": f"could not read the outputs' shapes from {path}: {type(e).__name__}: {e}"}
    width = {extra.LEXICAL_IDS: 8, extra.LEXICAL_OFFSETS: 8}
    per_item = {name: int(np.prod(shape)) * width.get(name, 4) / rows for name, shape in shapes.items()}
    out["bytes_per_item"] = per_item
    out["bytes_per_item_total"] = sum(per_item.values())
    if extra.LEXICAL_IDS in shapes:
        out["lexical_entries_per_item"] = shapes[extra.LEXICAL_IDS][0] / rows
    if extra.COLBERT in shapes and load is not None:
        real = int((load_file(str(load.path))["attention_mask"][:, 1:] != 0).sum())
        out["colbert_real_vectors_per_item"] = real / rows
        out["colbert_real_bytes_per_item"] = real * shapes[extra.COLBERT][2] * 4 / rows
    return out


def parity_failure(p: dict, precision: str) -> str | None:
    """Why a cell's parity fails it, or None: fp32 below min cosine 0.9999, a reduced precision below its
    min-cosine floor (measure/parity.py FLOORS, docs/precision.md), a sparse or multi-vector output beyond its fp32
    thresholds (docs/outputs.md)."""
    if p.get("error"):
        return f"parity: {p['error']}"
    tokens = parity.outputs_failure(p)
    if tokens:
        return f"parity: {tokens}"
    if precision == "fp32" and not (p["min_cosine"] >= parity.FP32_MIN_COSINE):
        return f"parity: min cosine {p['min_cosine']:.6f} < {parity.FP32_MIN_COSINE}"
    # the workload's rows judge the worst row only: a mean over one row (batch 1) or over seeded ids is
    # not the precision's mean cost; that, recall and Spearman are the accuracy pass's floors (its corpus)
    below = parity.below_floor(precision, {"min_cosine": p.get("min_cosine")})
    return f"parity: {below}" if below else None


def zero_shot(image_doc: dict, captions: str, ref_captions: Path, ref_image: Path, logits: dict,
              precision: str) -> dict | None:
    """Every image of a runtime's image cell scored against the fixed captions, with its own caption pass's
    embeddings, against the same from the reference; the worst fork's result, with each fork's max |Δp|."""
    images = [f.get("embeddings") for f in image_doc["forks"] if f.get("status") == "ok" and f.get("embeddings")]
    if not images:
        return None
    text = load_file(captions)["sentence_embedding"]
    ref_text = load_file(str(ref_captions))["sentence_embedding"]
    ref_images = load_file(str(ref_image))["sentence_embedding"]
    results = [parity.zero_shot(text, load_file(path)["sentence_embedding"], ref_text, ref_images, logits["scale"],
                                logits.get("bias"), logits["rule"], precision) for path in images]
    worst = max(results, key=lambda r: r["max_abs_prob_diff"])
    return {**worst, "forks_max_abs_prob_diff": [r["max_abs_prob_diff"] for r in results]}


class Accuracy:
    """The accuracy pass of each (runtime, precision) of one model: when to ask a runner for it, and its result.

    A text model's pass embeds a corpus of real sentences once (measure/accuracy.py: cosine, recall@10,
    Spearman against the fp32 reference's pass); a tower model's text pass embeds the fixed zero-shot
    captions, which the zero-shot check scores every image against. One pass per (runtime, precision),
    in its first fork; the result is kept under forks/accuracy/ so a resumed run does not run it again.
    """

    def __init__(self, run_dir: Path, plan: ModelPlan, load: Load | None, reference: Path | None):
        self.run_dir, self.plan, self.load, self.reference = run_dir, plan, load, reference
        self.asked: set[tuple[str, str]] = set()

    def _name(self, runtime: str, precision: str) -> str:
        return f"{self.plan.spec.slug}__{self.plan.choice.source}__{runtime}__{precision}__accuracy"

    def of(self, runtime: str, precision: str) -> dict | None:
        """The stored result of a (runtime, precision), or None."""
        path = self.run_dir / "forks" / "accuracy" / f"{self._name(runtime, precision)}.json"
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def wanted(self, job) -> tuple[Load, Path] | None:
        """(corpus, embeddings path) when this runner process should make the pass, else None."""
        key = (job.runtime, job.precision)
        if (self.load is None or self.reference is None or RUNTIMES[job.runtime].is_null or job.modality != "text"
                or job.outputs != "dense" or key in self.asked or self.of(*key) is not None):
            return None
        self.asked.add(key)
        return self.load, self.run_dir / "embeddings" / f"{self._name(*key)}.safetensors"

    def record(self, job, entry: dict | None, measured: bool) -> None:
        """Score the pass a runner made (its shape entry, None when it failed) and keep the result.

        `measured`: whether the runner timed its shapes. One that refused or failed them has no accuracy
        to report (its cells say why), and nothing is kept."""
        if entry is None and not measured:
            return
        if entry is None:
            result = {"error": "the accuracy pass failed (see the runner's log)"}
        elif self.plan.spec.multimodal:
            result = {"captions_embeddings": entry["embeddings"], "captions": self.load.facts.get("captions")}
        else:
            fed = load_file(entry["embeddings"])["sentence_embedding"]
            ref = load_file(str(self.reference))["sentence_embedding"]
            order = load_file(str(self.load.path))["order"]
            result = corpus_accuracy(fed, ref, order, bool(self.load.facts.get("real_text")), job.precision)
            result["corpus"] = {k: v for k, v in self.load.facts.items() if k != "texts_sha256"}
        path = self.run_dir / "forks" / "accuracy" / f"{self._name(job.runtime, job.precision)}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, result)
