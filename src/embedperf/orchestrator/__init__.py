"""Run a matrix: plan cells and their forks, execute them interleaved, analyse each cell, store it.

Three jobs, one module each: `plan` (cells -> fork schedule), `execute` (prepare, workloads, the
reference pass, launching runner processes and keeping each fork's record), `analyse` (a cell
document from its forks: statistics, work, warnings, parity, zero-shot). This module only drives
them. It never imports a framework: every model touch happens in a prepare or runner subprocess.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import subprocess
from pathlib import Path

import embedperf
from embedperf.measure import calibrate
from embedperf.measure.machine import available_cpus, machine_info, thread_env
from embedperf.measure.stats import Stats
from embedperf.models.registry import DEFAULT_MODEL, get_model
from embedperf.models.resolve import resolve_choice
from embedperf.orchestrator import analyse
from embedperf.orchestrator.analyse import Accuracy
from embedperf.orchestrator.execute import Executor, ForkRecord, read_forks
from embedperf.orchestrator.plan import ForkJob, Load, ModelPlan, Shape, fork_schedule, forks_of, shapes_for
from embedperf.paths import workloads_dir
from embedperf.prepare.cache import format_for
from embedperf.progress import Progress
from embedperf.protocol import write_json_atomic
from embedperf.results.store import cell_id, existing_cells
from embedperf.runners.launch import launch
from embedperf.runners.registry import RUNTIMES, Runtime, availability, unimplemented
from embedperf.spec import ModelChoice, RunSpec
from embedperf.workload import captions
from embedperf.workload import text as workload
from embedperf.workload.image import ImageSourceError
from embedperf.workload.text import ShapeError

__all__ = ["Orchestrator", "ModelPlan", "Shape", "run_spec", "load_run_spec", "new_run_id"]

# the null runner of each language: what a call of that language's harness costs by itself
NULL_OF_LANGUAGE = {"python": "null", "rust": "null-rust", "cpp": "null-cpp"}


def outputs_refused(runtime: Runtime, precision: str, x: Shape) -> str | None:
    """Why a cell of an output mode beyond dense is skipped, or None (docs/outputs.md)."""
    if x.outputs == "dense":
        return None
    if runtime.is_null:
        return f"{runtime.name} returns the dense output only (it measures the harness)"
    if precision != "fp32":
        return (f"output mode {x.outputs} is measured at fp32 only: its parity thresholds are set for fp32 and its "
                "graphs have no reduced-precision artifacts (docs/outputs.md)")
    return None


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def project_commit() -> dict:
    """The git commit of the checkout embedperf runs from (and whether it has local changes)."""
    root = Path(embedperf.__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": head or None, "dirty": bool(dirty) if head else None}


class Orchestrator:
    """Drives one run: every model's cells, their forks in interleaved order, one document per cell."""

    def __init__(self, spec: RunSpec, results_root: Path, run_id: str | None = None, say=print, on_cell=None):
        self.spec = spec
        self.on_cell = on_cell  # called with each cell document's path as soon as it is written
        self.run_id = run_id or new_run_id()
        self.run_dir = results_root / self.run_id
        self.threads = spec.threads or available_cpus()
        self.forks = forks_of(spec)
        # this machine's ceilings for the thread budget (measured once by ensure_profile when missing)
        self.profile = calibrate.cached(self.threads)
        self.facts = analyse.RunFacts(spec, self.run_id, self.threads, machine_info(), project_commit(), self.profile,
                                      {}, self.forks, spec.timing.schedule_seed)
        self.progress = Progress(say)
        self.say = self.progress.say
        self.executor = Executor(spec, self.run_dir, self.threads, self.say)
        self.written: list[dict] = []
        self.docs: dict[tuple, tuple[dict, Path]] = {}
        self.closed: set[str] = set()  # ids of the cells written: no more forks for them
        self.accuracy: Accuracy | None = None  # the current model's accuracy passes

    # -- the whole run -----------------------------------------------------------------
    def run(self) -> list[dict]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "work").mkdir(exist_ok=True)
        run_doc = self.run_dir / "run.json"
        if not run_doc.exists():  # run_spec writes it with every part; a lone Orchestrator with its own spec
            write_json_atomic(run_doc, {"run_id": self.run_id, "spec": self.spec.to_dict(),
                                        "parts": [self.spec.to_dict()],
                                        "created": dt.datetime.now(dt.timezone.utc).isoformat()})
        done = existing_cells(self.run_dir)
        plans = [ModelPlan(choice, resolve_choice(choice)) for choice in self.spec.models]
        per_model = len(self.spec.runtimes) * len(self.spec.precision)
        cells = sum(len(shapes_for(self.spec, p)) for p in plans) * per_model
        groups = sum(len({(x.modality, x.outputs) for x in shapes_for(self.spec, p)}) for p in plans) * per_model
        self.say(f"run {self.run_id}: {len(self.spec.models)} model(s) x {len(self.spec.runtimes)} runtime(s) x "
                 f"{len(self.spec.precision)} precision(s) ({', '.join(self.spec.precision)})"
                 + (f" x {len(self.spec.outputs)} output mode(s) ({', '.join(self.spec.outputs)})"
                    if self.spec.outputs != ["dense"] else "") + f", {cells} cell(s) x "
                 f"{self.forks} fork(s) = {groups * self.forks} runner process(es), {self.spec.scenario} scenario, "
                 f"{self.threads} thread(s), {self.spec.device}; results in {self.run_dir}")
        if done:
            self.say(f"resume: {len(done)} cell(s) already on disk are kept")
        self.ensure_profile()
        self.measure_overhead(run_doc)
        with self.progress.running(0, unit="steps (loads + shapes x forks)"):
            for index, plan in enumerate(plans):
                self.run_model(plan, done, index)
        return self.written

    def ensure_profile(self) -> None:
        """Calibrate once (peak matmul rate, bandwidth) when this machine has no profile for the thread budget."""
        if self.profile or not self.spec.calibrate or self.spec.device != "cpu":
            return
        self.say(f"calibrate: no profile of this machine for {self.threads} thread(s) yet; measuring its peak "
                 "fp32 matmul rate and memory bandwidth once (`embedperf calibrate` shows it)")
        try:
            self.profile = self.facts.profile = calibrate.load_or_calibrate(self.threads)
            self.say("calibrate: " + calibrate.describe(self.profile).splitlines()[1])
        except (RuntimeError, subprocess.SubprocessError) as e:
            self.say(f"warning: calibration failed, cells get no share of peak: {e}".splitlines()[0])

    def measure_overhead(self, run_doc: Path) -> None:
        """Time each language's null runner briefly: the per-call cost of the harness itself, kept in run.json."""
        languages = sorted({RUNTIMES[r].language for r in self.spec.runtimes if not RUNTIMES[r].is_null})
        doc = json.loads(run_doc.read_text())
        if doc.get("harness_overhead_ns"):
            self.facts.overhead.update(doc["harness_overhead_ns"])
            return
        if not languages:
            return
        plan = ModelPlan(ModelChoice(DEFAULT_MODEL, "package"), get_model(DEFAULT_MODEL))
        load = workload.ensure(plan.spec, "package", 1, 16, workloads_dir())
        for lang in languages:
            runtime = RUNTIMES[NULL_OF_LANGUAGE[lang]]
            if availability(runtime):
                continue
            shape = {"batch": 1, "seq": 16, "workload": str(load.path),
                     "embeddings": str(self.run_dir / "work" / f"overhead-{lang}.safetensors")}
            request = self.executor.request(plan, runtime, [shape])
            # many short calls on one thread: the harness's own cost, not the stopping rule's
            request["threads"] = {"intra_op": 1, "inter_op": 1}
            request["timing"] = {"warmup": 100, "min_calls": 5000, "min_seconds": 0.2, "max_seconds": 2.0,
                                 "max_calls": 20000, "target_ci": None}
            request["device"], request["fault"] = "cpu", None
            outcome = launch(runtime, request, self.run_dir / "work", f"overhead-{lang}", 120, None, thread_env(1))
            shapes = (outcome.result or {}).get("shapes") or []
            if outcome.returncode == 0 and shapes and shapes[0].get("samples_ns"):
                self.facts.overhead[lang] = float(Stats(tuple(shapes[0]["samples_ns"])).median_ms * 1e6)
        if self.facts.overhead:
            self.say("harness overhead per call: " + ", ".join(f"{k} {v / 1e3:.2f} µs"
                                                               for k, v in self.facts.overhead.items()))
            doc["harness_overhead_ns"] = self.facts.overhead
            write_json_atomic(run_doc, doc)

    # -- the cells of one model --------------------------------------------------------
    def cell_id(self, plan: ModelPlan, runtime: str, precision: str, x: Shape) -> str:
        c = plan.choice
        return cell_id(plan.spec.slug, c.source, runtime, precision, self.spec.device, self.spec.scenario,
                       x.batch, x.seq, c.truncate_dim, modality=x.modality if plan.spec.multimodal else None,
                       order=x.order, threads=self.threads, texts=x.texts, outputs=x.outputs)

    def run_model(self, plan: ModelPlan, done: set[str], index: int) -> None:
        """Every cell of one model: refuse what cannot run, build its inputs, run the forks interleaved."""
        shapes = shapes_for(self.spec, plan)
        self.accuracy = Accuracy(self.run_dir, plan, None, None)  # its corpus is known once the model is prepared
        # a cell is (runtime, precision, shape) within this model; a group (runtime, precision, modality)
        # is what one runner process measures
        ids = {(r, p, x): self.cell_id(plan, r, p, x)
               for r in self.spec.runtimes for p in self.spec.precision for x in shapes}
        todo = [key for key, cid in ids.items() if cid not in done]
        if not todo:
            return
        runnable = self.refuse(plan, todo, ids)
        loads, references = self.inputs(plan, runnable)
        groups: dict[tuple[str, str, str, str], list[Shape]] = {}  # what one runner process measures
        for key in runnable:
            name, precision, x = key
            if plan.error and (RUNTIMES[name].artifact != "none" or not loads):
                self.finish(plan, key, ids[key], "failed", plan.error, [], loads.get(x))
                continue
            groups.setdefault((name, precision, x.modality, x.outputs), []).append(x)
        self.run_forks(plan, groups, ids, index, loads, references)
        if plan.spec.multimodal and plan.prepared:
            self.zero_shot(plan, references)

    def refuse(self, plan: ModelPlan, todo: list[tuple[str, str, Shape]], ids: dict) -> list[tuple[str, str, Shape]]:
        """Write the cells a runtime cannot run as `skipped` with the reason; return the others."""
        runnable = []
        for key in todo:
            runtime = RUNTIMES[key[0]]
            reason = availability(runtime) or unimplemented(runtime, plan.spec) or outputs_refused(runtime, *key[1:])
            if reason is None and self.spec.device.split(":")[0] not in runtime.devices:
                reason = f"{runtime.name} does not run on {self.spec.device}"
            if reason:
                self.finish(plan, key, ids[key], "skipped", reason, [])
            else:
                runnable.append(key)
        return runnable

    def inputs(self, plan: ModelPlan, runnable: list[tuple[str, str, Shape]]) \
            -> tuple[dict[Shape, Load], dict[Shape, Path]]:
        """Artifacts, workloads, the accuracy corpus and the reference pass the runnable cells need.

        A workload that cannot be built marks the model's plan with the error (its cells fail with it).
        """
        formats = {format_for(RUNTIMES[r].artifact, p, x.outputs) for r, p, x in runnable} - {"none"}
        if formats:
            self.executor.prepare(plan, formats)
        needed = list(dict.fromkeys(x for _, _, x in runnable))
        accuracy = None
        try:
            loads = {x: self.executor.workload(plan, x) for x in needed}
            if formats and not plan.error:
                accuracy = self.executor.accuracy_workload(plan)
        except (ImageSourceError, ShapeError, captions.TokenizerError) as e:
            plan.error, loads = str(e), {}
            self.say(f"error: {e}")
        references, accuracy_ref = self.executor.reference_pass(plan, loads, accuracy) if formats and not plan.error \
            else ({}, None)
        self.accuracy = Accuracy(self.run_dir, plan, accuracy, accuracy_ref)
        return loads, references

    def run_forks(self, plan: ModelPlan, groups: dict[tuple[str, str, str, str], list[Shape]], ids: dict,
                  index: int, loads: dict[Shape, Load], references: dict[Shape, Path]) -> None:
        """Run the groups' forks in the seeded interleaved order; a cell is written once its forks are in.

        Forks an interrupted run kept on disk are not run again.
        """
        kept = {(r, p, x): read_forks(self.run_dir, ids[(r, p, x)]) for (r, p, *_), xs in groups.items() for x in xs}
        schedule = fork_schedule(groups, self.forks, self.spec.timing.schedule_seed + index,
                                 needed=lambda g, x, f: f not in kept[(g[0], g[1], x)])
        self.progress.extend(sum(len(job.shapes) + 1 for job in schedule))
        records = {key: dict(recs) for key, recs in kept.items()}
        for key, recs in records.items():  # cells an interrupted run had finished all forks of
            self.maybe_finish(plan, key, recs, ids, loads, references)
        for position, job in enumerate(schedule):
            live = tuple(x for x in job.shapes if ids[(job.runtime, job.precision, x)] not in self.closed)
            if len(live) < len(job.shapes):
                self.progress.extend(-(len(job.shapes) - len(live)) - (0 if live else 1))
            if not live:
                continue
            job = ForkJob(job.runtime, job.precision, job.modality, job.fork, job.forks, live, job.outputs)
            self.progress.current(f"fork {job.fork + 1}/{job.forks} {job.runtime} {job.precision}: {plan.spec.slug}"
                                  + (f" {job.modality} tower" if plan.spec.multimodal else "")
                                  + (f" {job.outputs} outputs" if job.outputs != "dense" else ""))
            wanted = self.accuracy.wanted(job)
            got, pass_entry = self.executor.run_fork(plan, job, position, loads,
                                                     {x: ids[(job.runtime, job.precision, x)] for x in live}, wanted)
            if wanted:
                self.accuracy.record(job, pass_entry, any(rec.status == "ok" for rec in got.values()))
            self.progress.advance(len(live) + 1)
            for x, rec in got.items():
                key = (job.runtime, job.precision, x)
                records[key][job.fork] = rec
                self.say_fork(plan, job, x, rec)
                self.maybe_finish(plan, key, records[key], ids, loads, references)

    def maybe_finish(self, plan: ModelPlan, key: tuple[str, str, Shape], recs: dict[int, ForkRecord], ids: dict,
                     loads: dict[Shape, Load], references: dict[Shape, Path]) -> None:
        """Write the cell once all its forks ran, or as soon as one fork failed or was refused."""
        x = key[2]
        if ids[key] in self.closed or not recs:
            return
        bad = next((r for r in sorted(recs.values(), key=lambda r: r.fork) if r.status != "ok"), None)
        if bad is None and len(recs) < self.forks:
            return
        if bad is None:
            status, reason = "ok", None
        else:
            where = f"fork {bad.fork + 1} of {self.forks}: " if self.forks > 1 and bad.status == "failed" else ""
            status, reason = bad.status, where + (bad.reason or bad.status)
        self.finish(plan, key, ids[key], status, reason, list(recs.values()), loads.get(x), references.get(x))

    def finish(self, plan: ModelPlan, key: tuple[str, str, Shape], cid: str, status: str, reason: str | None,
               forks: list[ForkRecord], load: Load | None = None, reference: Path | None = None) -> dict:
        """Analyse one cell from its forks, write its document, report it."""
        name, precision, x = key
        runtime = RUNTIMES[name]
        self.closed.add(cid)
        doc = analyse.cell_document(self.facts, plan, runtime, precision, x, cid, status, reason, forks, load,
                                    reference, None if plan.spec.multimodal else self.accuracy.of(name, precision))
        path = self.run_dir / f"{cid}.json"
        write_json_atomic(path, doc)
        self.written.append(doc)
        self.docs[(plan.spec.name, plan.choice.source, runtime.name, precision, x)] = (doc, path)
        if self.on_cell:
            self.on_cell(path)
        self.say(self.cell_line(plan, runtime, precision, x, doc))
        return doc

    def say_fork(self, plan: ModelPlan, job: ForkJob, x: Shape, rec: ForkRecord) -> None:
        if job.forks == 1 or rec.status != "ok":
            return  # the cell line says it all
        series = rec.shape.get("passes_ns" if x.order else "samples_ns") or []
        median = Stats(tuple(series)).median_ms if series else None
        text = f"median {median:.3f} ms" if median is not None else "no samples"
        self.say(f"    fork {job.fork + 1}/{job.forks} {x.label(plan.spec.multimodal)} {job.runtime}"
                 f"{self.precision_label(job.precision)}: {text} ({rec.shape.get('stop_rule')})")

    def precision_label(self, precision: str) -> str:
        """' bf16' in progress lines when the run has several precisions (one is said once at the start)."""
        return f" {precision}" if len(self.spec.precision) > 1 else ""

    def cell_line(self, plan: ModelPlan, runtime: Runtime, precision: str, x: Shape, doc: dict) -> str:
        summary = doc["summary"]
        line = f"  {x.label(plan.spec.multimodal)} {runtime.name}{self.precision_label(precision)}: {doc['status']}"
        if x.order and summary:
            line += f"  {summary['items_per_s']:.1f} items/s, {summary['tokens_per_s']:.0f} tokens/s"
        elif summary:
            line += (f"  median {summary['median_ms']:.3f} ms (95% CI {summary['ci_low_ms']:.3f}–"
                     f"{summary['ci_high_ms']:.3f}, {summary['forks']} fork(s))")
        if doc["parity"] and doc["parity"].get("min_cosine") is not None:
            line += f"  min cos {doc['parity']['min_cosine']:.6f}"
        if doc["reason"]:
            line += f"  ({doc['reason']})"
        left = self.progress.eta()
        if left:
            line += f"  [{left} left]"
        return line

    def zero_shot(self, plan: ModelPlan, references: dict[Shape, Path]) -> None:
        """Per runtime, precision and image batch: each image scored against the fixed captions, from the runtime's
        own embeddings, against the reference's; the image cell and the text cell of that batch carry it."""
        logits = (plan.prepared.manifest or {}).get("logits")
        if not logits:
            return
        from embedperf.measure import parity

        for name, precision in ((r, p) for r in self.spec.runtimes for p in self.spec.precision):
            captions_pass = self.accuracy.of(name, precision) or {}
            if RUNTIMES[name].is_null or not captions_pass.get("captions_embeddings") or not self.accuracy.reference:
                continue
            for b in self.spec.batch:
                shapes = {m: Shape(m, b, plan.spec.seq_for(m, plan.choice.source)) for m in ("text", "image")}
                found = {m: self.docs.get((plan.spec.name, plan.choice.source, name, precision, x))
                         for m, x in shapes.items()}
                image = found["image"]
                if image is None or image[0]["status"] != "ok" or references.get(shapes["image"]) is None:
                    continue
                result = analyse.zero_shot(image[0], captions_pass["captions_embeddings"], self.accuracy.reference,
                                           references[shapes["image"]], logits, precision)
                if result is None:
                    continue
                limit = parity.zero_shot_limit(precision)
                for doc, path in (d for d in found.values() if d is not None):
                    doc["zero_shot"] = result
                    if result["max_abs_prob_diff"] > limit and doc["status"] == "ok":
                        doc["status"] = "failed"
                        doc["reason"] = (f"zero-shot: probabilities differ by {result['max_abs_prob_diff']:.2e} "
                                         f"> {limit:g} ({precision}) from the reference's")
                    write_json_atomic(path, doc)
                    if self.on_cell:
                        self.on_cell(path)
                self.say(f"  zero-shot b{b} {name}{self.precision_label(precision)}: {result['images']} image(s) x "
                         f"{result['captions']} captions, max |Δp| {result['max_abs_prob_diff']:.2e}, "
                         f"max |Δlogit| {result['max_abs_logit_diff']:.2e} ({logits['rule']})")


def run_spec(parts: RunSpec | list[RunSpec], results_root: Path, run_id: str | None = None, say=print,
             on_cell=None) -> tuple[str, list[dict]]:
    """Run every part of a run (a suite's parts, or one spec) into one run folder, in order."""
    parts = [parts] if isinstance(parts, RunSpec) else list(parts)
    run_id = run_id or new_run_id()
    run_dir = results_root / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    doc = run_dir / "run.json"
    if not doc.exists():
        write_json_atomic(doc, {"run_id": run_id, "spec": parts[0].to_dict(), "parts": [p.to_dict() for p in parts],
                                "created": dt.datetime.now(dt.timezone.utc).isoformat()})
    cells = []
    for i, part in enumerate(parts):
        if len(parts) > 1:
            say(f"part {i + 1} of {len(parts)}" + (f": {part.description}" if part.description else ""))
        cells += Orchestrator(part, results_root, run_id, say, on_cell).run()
    return run_id, cells


def load_run_spec(results_root: Path, run_id: str) -> list[RunSpec]:
    """The parts of a stored run (what `--resume` runs again)."""
    path = results_root / run_id / "run.json"
    if not path.exists():
        from embedperf.spec import SpecError

        raise SpecError(f"no run {run_id!r} under {results_root} (no run.json)")
    doc = json.loads(path.read_text())
    return [RunSpec.from_dict(p) for p in doc.get("parts") or [doc["spec"]]]
