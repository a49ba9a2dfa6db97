"""Run a matrix: plan cells, prepare models, write workloads, launch runners, analyse, store.

Never imports a framework: every model touch happens in a prepare or runner subprocess.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from safetensors.numpy import load_file

import embedperf
from embedperf.measure import calibrate, parity
from embedperf.measure import warnings as cell_warnings
from embedperf.measure.flops import cell_work, corpus_work
from embedperf.measure.machine import available_cpus, machine_info, thread_env
from embedperf.measure.stats import Stats
from embedperf.models.registry import DEFAULT_MODEL, ModelSpec, get_model
from embedperf.models.sources import Located, SourceError, locate
from embedperf.paths import models_dir, workloads_dir
from embedperf.prepare import PrepareError, ensure_prepared
from embedperf.prepare.cache import Prepared
from embedperf.progress import Progress
from embedperf.protocol import PROTOCOL_VERSION, write_json_atomic
from embedperf.results.store import CELL_SCHEMA, cell_id, existing_cells
from embedperf.runners.launch import launch
from embedperf.runners.registry import RUNTIMES, Runtime, availability
from embedperf.spec import ModelChoice, RunSpec
from embedperf.workload import captions, corpus
from embedperf.workload import image as image_workload
from embedperf.workload import text as workload
from embedperf.workload.image import ImageSourceError
from embedperf.workload.text import ShapeError

# The session options every ONNX Runtime binding applies identically, so that a
# difference between them is the binding, not the configuration.
ORT_SESSION_OPTIONS = {
    "graph_optimization_level": "all",
    "execution_mode": "sequential",
    "enable_cpu_mem_arena": True,
    "allow_spinning": True,
}


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


@dataclass(frozen=True)
class Shape:
    """One cell's input: the tower it feeds, a batch size and a length; the corpus order for throughput.

    For an image tower `seq` is the image side in pixels; for a throughput corpus it is the longest item.
    """

    modality: str
    batch: int
    seq: int
    order: str | None = None  # throughput: sorted | unsorted

    def label(self, tower: bool = False) -> str:
        if self.order:
            return f"b{self.batch} corpus {self.order}"
        if self.modality == "image":
            return f"b{self.batch} image {self.seq}px"
        return f"b{self.batch} s{self.seq}" + (" text" if tower else "")


@dataclass(frozen=True)
class Load:
    """A workload file on disk and the facts about it that cells report."""

    path: Path
    facts: dict


@dataclass
class ModelPlan:
    """One model of the run, resolved: where it comes from and what was prepared."""

    choice: ModelChoice
    spec: ModelSpec
    located: Located | None = None
    prepared: Prepared | None = None
    error: str | None = None


# the null runner of each language: what a call of that language's harness costs by itself
NULL_OF_LANGUAGE = {"python": "null", "rust": "null-rust", "cpp": "null-cpp"}


class Orchestrator:
    def __init__(self, spec: RunSpec, results_root: Path, run_id: str | None = None, say=print, on_cell=None):
        self.spec = spec
        self.on_cell = on_cell  # called with each cell document's path as soon as it is written
        self.run_id = run_id or new_run_id()
        self.run_dir = results_root / self.run_id
        self.threads = spec.threads or available_cpus()
        self.machine = machine_info()
        self.commit = project_commit()
        # this machine's ceilings for the thread budget (measured once by ensure_profile when missing)
        self.profile = calibrate.cached(self.threads)
        self.overhead: dict[str, float] = {}
        self.written: list[dict] = []
        self.docs: dict[tuple, tuple[dict, Path]] = {}
        self.kept = 0
        self.progress = Progress(say)
        self.say = self.progress.say
        self.total = 0

    # -- the whole run -------------------------------------------------------------
    def run(self) -> list[dict]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "work").mkdir(exist_ok=True)
        run_doc = self.run_dir / "run.json"
        if not run_doc.exists():
            write_json_atomic(run_doc, {"run_id": self.run_id, "spec": self.spec.to_dict(),
                                        "created": dt.datetime.now(dt.timezone.utc).isoformat()})
        done = existing_cells(self.run_dir)
        self.kept = len(done)
        plans = [ModelPlan(choice, get_model(choice.name)) for choice in self.spec.models]
        self.total = sum(len(self.shapes_for(p)) for p in plans) * len(self.spec.runtimes)
        self.say(f"run {self.run_id}: {len(self.spec.models)} model(s) x {len(self.spec.runtimes)} runtime(s), "
                 f"{self.total} cell(s), {self.spec.scenario} scenario, {self.threads} thread(s), "
                 f"{self.spec.precision}, {self.spec.device}; results in {self.run_dir}")
        if done:
            self.say(f"resume: {len(done)} cell(s) already on disk are kept")
        self.ensure_profile()
        self.measure_overhead(run_doc)
        with self.progress.running(self.total - self.kept):
            for plan in plans:
                self.run_model(plan, done)
        return self.written

    def ensure_profile(self) -> None:
        """Calibrate once (peak matmul rate, bandwidth) when this machine has no profile for the thread budget."""
        if self.profile or not self.spec.calibrate or self.spec.device != "cpu":
            return
        self.say(f"calibrate: no profile of this machine for {self.threads} thread(s) yet; measuring its peak "
                 "fp32 matmul rate and memory bandwidth once (`embedperf calibrate` shows it)")
        try:
            self.profile = calibrate.load_or_calibrate(self.threads)
            self.say("calibrate: " + calibrate.describe(self.profile).splitlines()[1])
        except (RuntimeError, subprocess.SubprocessError) as e:
            self.say(f"warning: calibration failed, cells get no share of peak: {e}".splitlines()[0])

    def measure_overhead(self, run_doc: Path) -> None:
        """Time each language's null runner briefly: the per-call cost of the harness itself, kept in run.json."""
        languages = sorted({RUNTIMES[r].language for r in self.spec.runtimes if not RUNTIMES[r].is_null})
        doc = json.loads(run_doc.read_text())
        if doc.get("harness_overhead_ns"):
            self.overhead = doc["harness_overhead_ns"]
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
            request = self.request(plan, runtime, [shape])
            # many short calls on one thread: the harness's own cost, not the stopping rule's
            request["threads"] = {"intra_op": 1, "inter_op": 1}
            request["timing"] = {"warmup": 100, "min_calls": 5000, "min_seconds": 0.2, "max_seconds": 2.0,
                                 "max_calls": 20000, "target_ci": None}
            request["device"], request["fault"] = "cpu", None
            outcome = launch(runtime, request, self.run_dir / "work", f"overhead-{lang}", 120, None, thread_env(1))
            shapes = (outcome.result or {}).get("shapes") or []
            if outcome.returncode == 0 and shapes and shapes[0].get("samples_ns"):
                self.overhead[lang] = float(Stats(tuple(shapes[0]["samples_ns"])).median_ms * 1e6)
        if self.overhead:
            self.say("harness overhead per call: " + ", ".join(f"{k} {v / 1e3:.2f} µs" for k, v in self.overhead.items()))
            doc["harness_overhead_ns"] = self.overhead
            write_json_atomic(run_doc, doc)

    # -- the cells of one model ----------------------------------------------------------
    def shapes_for(self, plan: ModelPlan) -> list[Shape]:
        spec, source = plan.spec, plan.choice.source
        if self.spec.scenario == "throughput":
            longest = int(self.corpus_lengths(plan).max())
            return [Shape("text", b, longest, order) for b in self.spec.batch for order in ("sorted", "unsorted")]
        if spec.multimodal:
            return [Shape(m, b, spec.seq_for(m, source)) for m in spec.modalities for b in self.spec.batch]
        return [Shape("text", b, s) for b in self.spec.batch for s in self.spec.seq]

    def corpus_lengths(self, plan: ModelPlan):
        c = self.spec.corpus
        high = min(c.high, plan.spec.length_limit(plan.choice.source))
        return corpus.lengths(n=c.items, median=c.median, sigma=c.sigma, low=min(c.low, high), high=high, seed=c.seed)

    def run_model(self, plan: ModelPlan, done: set[str]) -> None:
        shapes = self.shapes_for(plan)
        todo = {r: [x for x in shapes if self.cell_id(plan, r, x) not in done] for r in self.spec.runtimes}
        todo = {r: xs for r, xs in todo.items() if xs}
        if not todo:
            return
        runnable = {}
        for name, xs in todo.items():
            runtime = RUNTIMES[name]
            reason = availability(runtime)
            if reason is None and self.spec.device.split(":")[0] not in runtime.devices:
                reason = f"{name} does not run on {self.spec.device}"
            if reason:
                for x in xs:
                    self.store(plan, runtime, x, status="skipped", reason=reason)
            else:
                runnable[name] = xs
        formats = {RUNTIMES[r].artifact for r in runnable} - {"none"}
        if formats:
            self.prepare(plan, formats)
        needed = list(dict.fromkeys(x for xs in runnable.values() for x in xs))
        try:
            loads = {x: self.workload(plan, x) for x in needed}
        except (ImageSourceError, ShapeError, captions.TokenizerError) as e:
            plan.error, loads = str(e), {}
            self.say(f"error: {e}")
        references = self.reference_pass(plan, loads) if formats and not plan.error else {}
        for name, xs in runnable.items():
            runtime = RUNTIMES[name]
            if plan.error and (runtime.artifact != "none" or not loads):
                for x in xs:
                    self.store(plan, runtime, x, status="failed", reason=plan.error)
                continue
            for modality in dict.fromkeys(x.modality for x in xs):
                self.run_group(plan, runtime, [x for x in xs if x.modality == modality], loads, references)
        if plan.spec.multimodal and plan.prepared:
            self.zero_shot(plan, references)

    def workload(self, plan: ModelPlan, x: Shape) -> Load:
        spec, source = plan.spec, plan.choice.source
        if x.order:
            c = self.spec.corpus
            w = corpus.ensure(spec.token_scheme(source), self.corpus_lengths(plan), x.batch, x.order == "sorted",
                              c.seed, workloads_dir())
            return Load(w.path, w.facts)
        if x.modality == "image":
            w = image_workload.ensure(spec, x.batch, workloads_dir(), Path(self.spec.images) if self.spec.images
                                      else None)
            return Load(w.path, {"preprocess_ms": list(w.preprocess_ms), "images": list(w.sources),
                                 "recipe": spec.image_preprocess})
        if spec.multimodal and plan.located is not None and plan.located.folder is not None:
            # real weights come with their real tokenizer: real captions, one per sample photograph
            w = captions.ensure(spec, plan.located.folder, x.batch, workloads_dir())
            return Load(w.path, {"captions": "real, through the model's tokenizer"})
        w = workload.ensure(spec, source, x.batch, x.seq, workloads_dir())
        return Load(w.path, {})

    # -- prepare and reference -----------------------------------------------------
    def prepare(self, plan: ModelPlan, formats: set[str]) -> None:
        try:
            plan.located = locate(plan.spec, plan.choice.source, plan.choice.path, plan.choice.revision)
            plan.prepared = ensure_prepared(plan.spec, plan.located, formats, models_dir(), self.threads, self.say)
        except (SourceError, PrepareError) as e:
            plan.error = str(e)
            self.say(f"error: {e}")

    def reference_pass(self, plan: ModelPlan, loads: dict[Shape, Load]) -> dict[Shape, Path]:
        """PyTorch fp32, eager attention, one call (or one corpus pass) per shape; cached beside the prepared model."""
        folder = plan.prepared.folder / "references"
        folder.mkdir(exist_ok=True)
        out: dict[Shape, Path] = {}
        for modality in dict.fromkeys(x.modality for x in loads):
            mine = {x: w for x, w in loads.items() if x.modality == modality}
            missing = []
            for x, w in mine.items():
                path = folder / f"{w.path.parent.name}_{w.path.stem}.safetensors"
                out[x] = path
                if not path.exists():
                    missing.append(self.shape_entry(x, w, path))
            if len(missing) < len(mine):
                self.say(f"reference: reusing the cached PyTorch fp32 reference for {len(mine) - len(missing)} "
                         f"{modality} shape(s)")
            if missing:
                self.say(f"reference: PyTorch fp32 eager pass for {len(missing)} {modality} shape(s)")
                request = self.request(plan, RUNTIMES["torch"], missing, modality, reference=True)
                outcome = launch(RUNTIMES["torch"], request, folder, f"reference-{modality}",
                                 self.spec.timing.load_timeout + len(missing) * 1200, None, thread_env(self.threads))
                if outcome.returncode != 0:
                    self.say(f"warning: the reference pass failed: {outcome.why()} (log {outcome.log})")
        return {k: v for k, v in out.items() if v.exists()}

    # -- one runner process --------------------------------------------------------
    def shape_entry(self, x: Shape, w: Load, embeddings: Path) -> dict:
        entry = {"batch": x.batch, "seq": x.seq, "workload": str(w.path), "embeddings": str(embeddings)}
        if x.order:
            entry["scenario"] = "throughput"
        return entry

    def request(self, plan: ModelPlan, runtime: Runtime, shapes: list[dict], modality: str = "text",
                reference: bool = False) -> dict:
        spec = plan.spec
        if runtime.artifact == "none":
            artifact = {"format": "none", "path": ""}
        else:
            artifact = {"format": runtime.artifact, "path": str(plan.prepared.artifact_path(runtime.artifact, modality)),
                        "sha256": plan.prepared.artifact_sha256(runtime.artifact, modality)}
            if runtime.name == "torch":
                artifact["attention"] = "eager" if reference else "sdpa"
        timing = ({"warmup": 0, "min_calls": 1, "min_seconds": 0.0, "max_seconds": 1e-9, "target_ci": None}
                  if reference else self.spec.timing.for_request())
        model = {"name": spec.name, "family": spec.family, "pooling": spec.pooling, "normalize": spec.normalize,
                 "dense": spec.dense_names(), "output_dim": spec.embedding_dim(plan.choice.source),
                 "truncate_dim": None if reference else plan.choice.truncate_dim}
        if spec.multimodal:
            model["modality"] = modality
        return {
            "protocol": PROTOCOL_VERSION,
            "runtime": runtime.name,
            "model": model,
            "artifact": artifact,
            "shapes": shapes,
            "device": "cpu" if reference else self.spec.device,
            "precision": "fp32" if reference else self.spec.precision,
            "threads": {"intra_op": self.threads, "inter_op": 1},
            "timing": timing,
            "onnxruntime": ORT_SESSION_OPTIONS if runtime.artifact == "onnx" else None,
            "fault": self.spec.fault if runtime.is_null else None,
        }

    def run_group(self, plan: ModelPlan, runtime: Runtime, shapes: list[Shape], loads: dict[Shape, Load],
                  references: dict[Shape, Path]) -> None:
        emb_dir = self.run_dir / "embeddings"
        emb_dir.mkdir(exist_ok=True)
        entries = [self.shape_entry(x, loads[x], emb_dir / f"{self.cell_id(plan, runtime.name, x)}.safetensors")
                   for x in shapes]
        modality = shapes[0].modality
        request = self.request(plan, runtime, entries, modality)
        t = self.spec.timing
        # a corpus pass is never cut short: give it room beyond the time cap
        per_shape = t.max_seconds + t.grace + (600 if self.spec.scenario == "throughput" else 0)
        timeout = t.load_timeout + len(entries) * per_shape
        tower = f" {modality} tower" if plan.spec.multimodal else ""
        tag = f"{plan.spec.slug}__{plan.choice.source}__{runtime.name}" + (f"__{modality}" if tower else "")
        self.progress.current(f"{runtime.name}: {plan.spec.slug}{tower}")
        self.say(f"{runtime.name}: {plan.spec.name} ({plan.choice.source}){tower}, {len(entries)} shape(s)")
        outcome = launch(runtime, request, self.run_dir / "work", tag, timeout, self.spec.memory_limit_mb,
                         thread_env(self.threads), gpu=self.spec.device.startswith("cuda"))
        reported = (outcome.result or {}).get("shapes", [])
        for i, x in enumerate(shapes):
            shape = reported[i] if i < len(reported) else None
            if shape is not None and (shape.get("batch"), shape.get("seq")) != (x.batch, x.seq):
                shape = None  # out of step with the request: trust nothing
            common = {"runner": outcome.result, "log": outcome.log, "load": loads[x], "gpu_peak_mb": outcome.gpu_peak_mb}
            if shape is None:
                self.store(plan, runtime, x, status="failed", reason=outcome.why(), **common)
            elif shape["status"] != "ok":
                self.store(plan, runtime, x, status="failed", reason=shape.get("error") or "failed", shape=shape,
                           **common)
            else:
                self.store(plan, runtime, x, status="ok", shape=shape, reference=references.get(x), **common)

    # -- one cell ------------------------------------------------------------------
    def cell_id(self, plan: ModelPlan, runtime: str, x: Shape) -> str:
        c = plan.choice
        return cell_id(plan.spec.slug, c.source, runtime, self.spec.precision, self.spec.device, self.spec.scenario,
                       x.batch, x.seq, c.truncate_dim, modality=x.modality if plan.spec.multimodal else None,
                       order=x.order)

    def store(self, plan: ModelPlan, runtime: Runtime, x: Shape, status: str, reason: str | None = None,
              runner: dict | None = None, shape: dict | None = None, reference: Path | None = None,
              log: Path | None = None, load: Load | None = None, gpu_peak_mb: float | None = None) -> dict:
        spec, choice = plan.spec, plan.choice
        b, s = x.batch, x.seq
        manifest = plan.prepared.manifest if plan.prepared else {}
        facts = load.facts if load else {}
        if x.order:
            described = {"kind": "corpus", "order": x.order, "seed": self.spec.corpus.seed,
                         "lengths": f"log-normal, median {self.spec.corpus.median}, sigma {self.spec.corpus.sigma}, "
                                    f"clipped to [{self.spec.corpus.low}, {s}]", "padding": "right, to each batch's "
                                    "longest", **{k: v for k, v in facts.items() if k != "batch_shapes"}}
        elif x.modality == "image":
            described = {"kind": "images", "recipe": spec.image_preprocess, "size": s,
                         "images": facts.get("images"), "folder": self.spec.images}
        elif facts.get("captions"):
            described = {"kind": "captions", "captions": facts["captions"], "padding": f"right, to {s}"}
        else:
            described = {"kind": "tokens", "seed": workload.DEFAULT_SEED, "padding": "right",
                         "lengths": "row 0 = seq, others seeded in [seq/2, seq]"}
        size = None
        if plan.prepared and runtime.artifact != "none":
            size = plan.prepared.size_bytes(runtime.artifact, x.modality if spec.multimodal else None)
        doc: dict = {
            "schema": CELL_SCHEMA,
            "run_id": self.run_id,
            "cell_id": self.cell_id(plan, runtime.name, x),
            "status": status,
            "reason": reason,
            "spec": {
                "model": spec.name, "family": spec.family, "source": choice.source, "revision": choice.revision,
                "runtime": runtime.name, "language": runtime.language, "precision": self.spec.precision,
                "device": self.spec.device, "scenario": self.spec.scenario, "modality": x.modality, "order": x.order,
                "batch": b, "seq": s, "truncate_dim": choice.truncate_dim,
                "threads": {"intra_op": self.threads, "inter_op": 1},
                "timing": self.spec.timing.__dict__, "memory_limit_mb": self.spec.memory_limit_mb,
                "workload": described,
            },
            "model": {
                "weights": (plan.located.weights if plan.located else
                            ("random" if choice.source in ("twin", "tiny") else "real")),
                "weights_sha256": manifest.get("weights_sha256"), "heads_sha256": manifest.get("heads_sha256"),
                "parameters": manifest.get("parameters"), "prepare_key": manifest.get("key"),
                "artifact": runtime.artifact, "pooling": spec.pooling,
                "output_dim": spec.embedding_dim(choice.source),
                # what this runtime loads from disk (one tower's graph for a multimodal model; the reference
                # folder, both towers, for torch and candle)
                "size_on_disk_bytes": size,
            },
            "machine": self.machine,
            "versions": {
                "embedperf": embedperf.__version__, "python": sys.version.split()[0],
                "exporters": manifest.get("versions"),
                "runner": (runner or {}).get("runner"), "framework": (runner or {}).get("framework"),
            },
            "project": self.commit,
            "harness_overhead_ns": self.overhead or None,
            "runner": {k: (runner or {}).get(k) for k in ("device", "threads", "settings", "load_s")},
            "raw": None, "summary": None, "parity": None, "warnings": [],
            "log": str(log) if log else None,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(),
        }
        if shape and shape.get("samples_ns"):
            self.summarise(doc, plan, runtime, x, shape, runner, facts, gpu_peak_mb)
        if not x.order and x.modality == "text" and not spec.multimodal and s > spec.st_max_seq_length \
                and choice.source != "tiny":
            doc["warnings"].append(f"seq {s} is above max_seq_length {spec.st_max_seq_length}")
        if status == "ok" and not runtime.is_null:
            doc["parity"] = self.parity(shape, reference)
            spread = doc["parity"].get("reference_spread")
            if spread is not None and spread >= parity.SPREAD_LIMIT:
                doc["warnings"].append(f"reference rows are alike (mean cosine {spread:.4f} between rows): "
                                       "parity proves less here")
            failed = self.parity_failure(doc["parity"])
            if failed:
                doc["status"], doc["reason"] = "failed", failed
        path = self.run_dir / f"{doc['cell_id']}.json"
        write_json_atomic(path, doc)
        self.written.append(doc)
        self.docs[(spec.name, choice.source, runtime.name, x)] = (doc, path)
        if self.on_cell:
            self.on_cell(path)
        self.progress.advance()
        median = doc["summary"]["median_ms"] if doc["summary"] else None
        line = (f"  [{len(self.written)}/{self.total - self.kept}] {x.label(spec.multimodal)} {runtime.name}: "
                f"{doc['status']}")
        if x.order and doc["summary"]:
            line += f"  {doc['summary']['items_per_s']:.1f} items/s, {doc['summary']['tokens_per_s']:.0f} tokens/s"
        elif median is not None:
            line += f"  median {median:.3f} ms"
        if doc["parity"] and doc["parity"].get("min_cosine") is not None:
            line += f"  min cos {doc['parity']['min_cosine']:.6f}"
        if doc["reason"]:
            line += f"  ({doc['reason']})"
        left = self.progress.eta()
        if left:
            line += f"  [{left} left]"
        self.say(line)
        return doc

    def summarise(self, doc: dict, plan: ModelPlan, runtime: Runtime, x: Shape, shape: dict, runner: dict | None,
                  facts: dict, gpu_peak_mb: float | None) -> None:
        """Statistics, throughput figures, work and warnings of a cell that has samples."""
        spec, b, s = plan.spec, x.batch, x.seq
        stats = Stats(tuple(shape["samples_ns"]))
        doc["raw"] = {"samples_ns": shape["samples_ns"], "warmup_ns": shape.get("warmup_ns", [])}
        summary = {
            **stats.summary(b), "load_s": (runner or {}).get("load_s"), "first_call_s": shape.get("first_call_s"),
            "peak_rss_mb": shape.get("peak_rss_mb"), "loop_peak_rss_mb": shape.get("loop_peak_rss_mb"),
            "gpu_peak_mb": gpu_peak_mb, "stop_rule": shape.get("stop_rule"), "target_ci": shape.get("target_ci"),
            "ci_checks": shape.get("ci_checks"), "loop_s": shape.get("loop_s"),
        }
        timed = shape["samples_ns"]
        if x.order:
            passes = shape.get("passes_ns") or []
            total_s = sum(passes) / 1e9
            doc["raw"]["passes_ns"] = passes
            items, real, padded = facts.get("items"), facts.get("real_tokens"), facts.get("padded_tokens")
            summary.update({
                "passes": len(passes), "pass_median_s": float(Stats(tuple(passes)).median_ms / 1e3) if passes else None,
                "items_per_s": items * len(passes) / total_s if total_s else None,
                "tokens_per_s": real * len(passes) / total_s if total_s else None,
                "padded_tokens_per_s": padded * len(passes) / total_s if total_s else None,
                "padding_waste": facts.get("padding_waste"),
            })
            timed = passes  # warnings look at whole passes: single calls differ in shape by design
        if x.modality == "image" and facts.get("preprocess_ms"):
            prep = sorted(facts["preprocess_ms"])
            summary["preprocess_ms_per_image"] = prep[len(prep) // 2]
            summary["preprocess_ms_batch"] = sum(prep)
        doc["summary"] = summary
        if not runtime.is_null:
            peak = (self.profile or {}).get("peak_gflops") if (self.spec.device == "cpu"
                                                               and self.spec.precision == "fp32") else None
            if x.order:
                doc["work"] = corpus_work(spec, plan.choice.source, facts.get("batch_shapes") or [],
                                          summary["pass_median_s"], peak)
            else:
                doc["work"] = cell_work(spec, plan.choice.source, b, s, stats.median_ms, peak, x.modality)
            if self.profile:
                doc["work"]["machine_profile"] = {k: self.profile.get(k) for k in ("peak_gflops", "bandwidth_gbs")}
                doc["work"]["machine_profile"]["id"] = self.profile["fingerprint"]["id"]
            share = doc["work"].get("share_of_peak")
            if share is not None and share > 1.0:
                doc["warnings"].append(
                    f"share of peak {share:.0%}: this cell ran faster than the calibrated peak "
                    f"({peak:.1f} GFLOP/s), so that profile understates the machine (measured under load?): "
                    "run `embedperf calibrate --force` on a quiet machine")
        checked = cell_warnings.check_samples(
            timed, None if x.order else shape.get("first_call_s"), (self.machine.get("load_average") or [None])[0],
            self.machine.get("cpus_available"), None if runtime.is_null else self.overhead.get(runtime.language))
        doc["outliers"] = checked["outliers"]
        doc["warnings"] += [w["message"] for w in checked["warnings"]]
        if shape.get("stop_rule") == "time_cap":
            target = shape.get("target_ci")
            doc["warnings"].append(
                f"stopped at the time cap: the 95% CI of the median never came within ±{target:.0%}" if target
                else "stopped at the time cap before min_calls/min_seconds were met")

    def zero_shot(self, plan: ModelPlan, references: dict[Shape, Path]) -> None:
        """Per runtime and batch: text × image probabilities from its own embeddings against the reference's."""
        logits = (plan.prepared.manifest or {}).get("logits")
        if not logits:
            return
        for name in self.spec.runtimes:
            for b in self.spec.batch:
                keys = {m: (plan.spec.name, plan.choice.source, name, Shape(m, b, plan.spec.seq_for(m, plan.choice.source)))
                        for m in ("text", "image")}
                if not all(k in self.docs for k in keys.values()):
                    continue
                docs = {m: self.docs[k] for m, k in keys.items()}
                if any(d["status"] != "ok" or RUNTIMES[name].is_null for d, _ in docs.values()):
                    continue
                refs = {m: references.get(k[3]) for m, k in keys.items()}
                if not all(refs.values()):
                    continue
                emb = {m: self.run_dir / "embeddings" / f"{docs[m][0]['cell_id']}.safetensors" for m in docs}
                result = parity.zero_shot(load_file(str(emb["text"]))["sentence_embedding"],
                                          load_file(str(emb["image"]))["sentence_embedding"],
                                          load_file(str(refs["text"]))["sentence_embedding"],
                                          load_file(str(refs["image"]))["sentence_embedding"],
                                          logits["scale"], logits.get("bias"), logits["rule"])
                for m, (doc, path) in docs.items():
                    doc["zero_shot"] = result
                    if result["max_abs_prob_diff"] > parity.ZERO_SHOT_LIMIT:
                        doc["status"] = "failed"
                        doc["reason"] = (f"zero-shot: probabilities differ by {result['max_abs_prob_diff']:.2e} "
                                         f"> {parity.ZERO_SHOT_LIMIT:g} from the reference's")
                    write_json_atomic(path, doc)
                    if self.on_cell:
                        self.on_cell(path)
                self.say(f"  zero-shot b{b} {name}: max |Δp| {result['max_abs_prob_diff']:.2e}, "
                         f"max |Δlogit| {result['max_abs_logit_diff']:.2e} ({logits['rule']})")

    def parity(self, shape: dict, reference: Path | None) -> dict:
        if reference is None:
            return {"error": "no reference embeddings (the reference pass failed)"}
        try:
            out = load_file(shape["embeddings"])["sentence_embedding"]
            ref = load_file(str(reference))["sentence_embedding"]
        except (OSError, KeyError) as e:
            return {"error": f"could not read embeddings: {e}"}
        result = parity.compare(out, ref)
        result["reference_spread"] = parity.spread(ref)
        result["reference"] = "torch fp32 eager"
        return result

    def parity_failure(self, p: dict) -> str | None:
        if p.get("error"):
            return f"parity: {p['error']}"
        if self.spec.precision == "fp32" and not (p["min_cosine"] >= parity.FP32_MIN_COSINE):
            return f"parity: min cosine {p['min_cosine']:.6f} < {parity.FP32_MIN_COSINE}"
        return None


def run_spec(spec: RunSpec, results_root: Path, run_id: str | None = None, say=print,
             on_cell=None) -> tuple[str, list[dict]]:
    orch = Orchestrator(spec, results_root, run_id, say, on_cell)
    cells = orch.run()
    return orch.run_id, cells


def load_run_spec(results_root: Path, run_id: str) -> RunSpec:
    path = results_root / run_id / "run.json"
    if not path.exists():
        from embedperf.spec import SpecError

        raise SpecError(f"no run {run_id!r} under {results_root} (no run.json)")
    return RunSpec.from_dict(json.loads(path.read_text())["spec"])
